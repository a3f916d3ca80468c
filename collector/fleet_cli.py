"""`footfall fleet ...`: the fleet admin API from an IT team's terminal (human tables, or --json for scripts).

Talks HTTP to a collector with a fleet_admin API key (collector/fleet_client.py says where the
URL and key come from, and lists the exit codes). Imports aiohttp only, never the database
stack, so it runs on any admin laptop. Tables go to stdout, notes and progress bars to stderr,
so `--json` output and secrets printed alone on stdout can be piped.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer

from footfall.units import format_duration, parse_duration

from .fleet_client import (
    COLLECTOR_ENV,
    EXIT_CODES,
    EXIT_REJECTED,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    KEY_ENV,
    FleetClient,
    FleetError,
    resolve_target,
)

T = TypeVar("T")
_EXIT_HELP = "Exit codes: " + "; ".join(f"{code} {what}" for code, what in EXIT_CODES.items()) + "."
app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="Manage a fleet of agents through a collector.", epilog=_EXIT_HELP
)
tokens_app = typer.Typer(no_args_is_help=True, help="Enrollment tokens.")
agents_app = typer.Typer(no_args_is_help=True, help="Enrolled agents.")
config_app = typer.Typer(no_args_is_help=True, help="Configuration pushed to agents.")
app.add_typer(tokens_app, name="tokens")
app.add_typer(agents_app, name="agents")
app.add_typer(config_app, name="config")

Collector = Annotated[
    str | None,
    typer.Option("--collector", envvar=COLLECTOR_ENV, help="The collector's base URL (or $FOOTFALL_COLLECTOR).",
                 show_default=False),
]
Key = Annotated[
    str | None,
    typer.Option("--key", envvar=KEY_ENV, help="A fleet_admin API key, ffk_… (or $FOOTFALL_KEY).", show_default=False),
]
ConfigFile = Annotated[
    Path | None,
    typer.Option("--config-file", envvar="FOOTFALL_FLEET_CONFIG",
                 help="A fleet.toml with collector and key [default: ~/.config/footfall/fleet.toml].",
                 show_default=False),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
Stale = Annotated[str, typer.Option("--stale", help="An agent silent this long is stale.")]
Offline = Annotated[str, typer.Option("--offline", help="An agent silent this long is offline.")]
# Past this many seconds of skew, the clock column gets a "!".
LARGE_SKEW_S = 10.0
STATES = ("online", "stale", "offline", "revoked")
SORTS = (
    "site", "id", "state", "last-seen", "backlog", "oldest", "skew", "version", "sources-down", "rejected", "config"
)


def _fail(message: str, code: int) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _call(
    collector: str | None, key: str | None, config_file: Path | None, action: Callable[[FleetClient], Awaitable[T]]
) -> T:
    """Resolve the target, run `action` with a client, and turn a FleetError into its message and exit code."""
    try:
        target = resolve_target(collector, key, config_file)

        async def main() -> T:
            async with FleetClient(target) as client:
                return await action(client)

        return asyncio.run(main())
    except FleetError as exc:
        _fail(str(exc), exc.exit_code)


def _seconds(value: str, flag: str) -> float:
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        _fail(f"{flag}: {exc}", EXIT_USAGE)
    if seconds <= 0:
        _fail(f"{flag} must be more than zero", EXIT_USAGE)
    return seconds


def _print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2))


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], empty: str = "(none)") -> None:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    for row in [list(headers), *rows]:
        typer.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    if not rows:
        typer.echo(empty, err=True)


def _parse_time(stamp: str | None) -> datetime | None:
    return datetime.fromisoformat(stamp) if stamp else None


def _ago(stamp: str | None, now: datetime) -> str:
    moment = _parse_time(stamp)
    if moment is None:
        return "never"
    return format_duration(max(0.0, (now - moment).total_seconds())) + " ago"


def _age(seconds: float | None) -> str:
    return "-" if seconds is None else format_duration(max(0.0, seconds))


def _skew(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:+.0f}s" + ("!" if abs(value) >= LARGE_SKEW_S else "")


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, scale in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return f"{n}B"


def _progress(length: int, label: str) -> Any:
    """A progress bar on stderr (plain counts when stderr is not a terminal)."""
    return typer.progressbar(length=length, label=label, file=sys.stderr, show_pos=True)


# --- tokens -----------------------------------------------------------------------------------


@tokens_app.command("create")
def tokens_create(
    site: Annotated[str, typer.Option("--site", help="The site the agents will belong to.")],
    expires: Annotated[str, typer.Option("--expires", help="Lifetime, e.g. 30m, 24h, 7d.")] = "24h",
    uses: Annotated[int, typer.Option("--uses", min=1, help="How many agents may enroll with it.")] = 1,
    collector: Collector = None,
    key: Key = None,
    config_file: ConfigFile = None,
    as_json: AsJson = False,
) -> None:
    """Create an enrollment token; prints it alone on stdout, once (the collector keeps only its hash)."""
    lifetime = _seconds(expires, "--expires")
    issued = _call(
        collector, key, config_file,
        lambda c: c.post("/v1/admin/tokens", {"site": site, "expires": lifetime, "uses": uses}),
    )
    if as_json:
        _print_json(issued)
        return
    typer.echo(issued["token"])
    typer.echo(
        f"enrollment token {issued['id']} for site {issued['site']}: {issued['uses']} use(s), expires "
        f"{issued['expires_at']}. It is shown only now. On the gateway: "
        "footfall agent enroll --collector URL --token TOKEN",
        err=True,
    )


@tokens_app.command("list")
def tokens_list(
    collector: Collector = None, key: Key = None, config_file: ConfigFile = None, as_json: AsJson = False
) -> None:
    """List enrollment tokens (their prefixes) with their state: active, expired, used_up or revoked."""
    tokens = _call(collector, key, config_file, lambda c: c.get("/v1/admin/tokens"))["tokens"]
    if as_json:
        _print_json(tokens)
        return
    _table(
        ["ID", "PREFIX", "SITE", "STATE", "USES LEFT", "EXPIRES"],
        [[str(t["id"]), t["prefix"] + "…", t["site"], t["state"], str(t["uses_left"]), t["expires_at"]]
         for t in tokens],
    )


@tokens_app.command("revoke")
def tokens_revoke(
    token_ids: Annotated[list[int], typer.Argument(help="Token ids (see `tokens list`).")],
    collector: Collector = None,
    key: Key = None,
    config_file: ConfigFile = None,
    as_json: AsJson = False,
) -> None:
    """Revoke enrollment tokens: they enroll nobody from now on (agents already enrolled stay)."""

    async def revoke(client: FleetClient) -> list[Any]:
        return [await client.post(f"/v1/admin/tokens/{token_id}/revoke") for token_id in token_ids]

    done = _call(collector, key, config_file, revoke)
    if as_json:
        _print_json(done)
    else:
        for token_id in token_ids:
            typer.echo(f"enrollment token {token_id} revoked", err=True)


# --- agents -----------------------------------------------------------------------------------


@agents_app.command("list")
def agents_list(
    stale: Stale = "15m",
    offline: Offline = "24h",
    site: Annotated[str | None, typer.Option("--site", help="Only this site's agents.")] = None,
    state: Annotated[
        str | None, typer.Option("--state", help="Only agents in these states, e.g. stale,offline.")
    ] = None,
    version: Annotated[str | None, typer.Option("--version", help="Only agents running this version.")] = None,
    sort: Annotated[str, typer.Option("--sort", help="Order by: " + ", ".join(SORTS) + ".")] = "site",
    desc: Annotated[bool, typer.Option("--desc", help="Reverse the order (largest backlog first, ...).")] = False,
    collector: Collector = None,
    key: Key = None,
    config_file: ConfigFile = None,
    as_json: AsJson = False,
) -> None:
    """One line an agent: site, state (online/stale/offline/revoked), version, last seen, backlog, skew, sources.

    An agent is online while it was heard from (heartbeat or upload) within --stale, stale until
    --offline, then offline. SKEW is its clock minus the collector's ("!" past 10 s). BACKLOG is
    what waits on the gateway, OLDEST the age of the oldest unsent reading. REJECTED counts the
    records the collector refused, parked on the gateway and never counted ("!" when any): a bug
    somewhere, or an outage when it grows with every reading (`agents show` gives the reason).
    """
    if sort not in SORTS:
        _fail(f"--sort must be one of {', '.join(SORTS)}", EXIT_USAGE)
    states = [s for s in (state or "").split(",") if s]
    if any(s not in STATES for s in states):
        _fail(f"--state takes {', '.join(STATES)} (comma-separated)", EXIT_USAGE)
    params = {
        "stale": str(_seconds(stale, "--stale")),
        "offline": str(max(_seconds(offline, "--offline"), _seconds(stale, "--stale"))),
        "sort": sort,
    }
    if desc:
        params["desc"] = "1"
    if site:
        params["site"] = site
    if states:
        params["state"] = ",".join(states)
    if version:
        params["version"] = version
    body = _call(collector, key, config_file, lambda c: c.get("/v1/admin/agents", params))
    agents = body["agents"]
    if as_json:
        _print_json(agents)
        return
    now = datetime.fromisoformat(body["now"])
    rows = [
        [
            a["id"],
            a["site"],
            a["state"],
            a["version"] or "-",
            _ago(a["last_seen"], now),
            "-" if a["backlog_records"] is None else str(a["backlog_records"]),
            _age(a["backlog_oldest_age_s"]) if a["backlog_records"] else "-",
            _skew(a["clock_skew_s"]),
            "-" if a["sources_total"] is None else f"{a['sources_down']}/{a['sources_total']}",
            _rejected_cell(a.get("rejected_records")),
            _config_cell(a),
        ]
        for a in agents
    ]
    _table(
        ["ID", "SITE", "STATE", "VERSION", "LAST SEEN", "BACKLOG", "OLDEST", "SKEW", "DOWN", "REJECTED", "CONFIG"],
        rows,
        empty="(no agents match)",
    )
    counts = {s: sum(1 for a in agents if a["state"] == s) for s in STATES}
    typer.echo(f"{len(agents)} agents: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n), err=True)


def _rejected_cell(parked: int | None) -> str:
    """Refused records parked on the gateway: "-" before a heartbeat, "0", or the count flagged with "!"."""
    if parked is None:
        return "-"
    return f"{parked}!" if parked else "0"


def _config_cell(agent: dict[str, Any]) -> str:
    desired, applied, state = agent["config_desired_version"], agent["config_applied_version"], agent["config_state"]
    if state == "none":
        return f"v{applied}" if applied else "local"
    if state == "current":
        return f"v{applied}"
    return f"v{applied or '-'}→v{desired} {state}"


@agents_app.command("show")
def agents_show(
    agent_id: Annotated[str, typer.Argument(help="The agent's id (agt_…).")],
    stale: Stale = "15m",
    offline: Offline = "24h",
    collector: Collector = None,
    key: Key = None,
    config_file: ConfigFile = None,
    as_json: AsJson = False,
) -> None:
    """Everything the collector knows of one agent: state, buffer, sources, clock, config, recent gaps and errors."""
    params = {"stale": str(_seconds(stale, "--stale")), "offline": str(_seconds(offline, "--offline"))}
    a = _call(collector, key, config_file, lambda c: c.get(f"/v1/admin/agents/{agent_id}", params))
    if as_json:
        _print_json(a)
        return
    now = datetime.now(UTC)
    hb = a.get("heartbeat") or {}
    lines = [
        f"agent      {a['id']} ({a['hostname'] or 'unknown host'}), site {a['site']}",
        f"state      {a['state'].upper()}: last heard from {_ago(a['last_seen'], now)} "
        f"(heartbeat {_ago(a['last_heartbeat_at'], now)}, upload {_ago(a['last_upload_at'], now)})",
        f"version    {a['version'] or '-'}; enrolled {a['enrolled_at']}"
        + (f"; REVOKED {a['revoked_at']}" if a["revoked_at"] else ""),
        f"clock      skew {_skew(a['clock_skew_s'])} (collector's estimate)"
        + (f"; agent's own offset {hb['clock'].get('offset_s')}s, NTP synchronised: "
           f"{_yes_no(hb['clock'].get('synchronized'))}" if hb.get("clock") else ""),
        f"uploads    acked up to seq {a['hw_seq']}",
    ]
    buffer = hb.get("buffer")
    if buffer:
        lines.append(
            f"backlog    {buffer['depth']} records ({_size(buffer['bytes'])} of {_size(buffer['max_size'])}), "
            f"oldest {_age(a['backlog_oldest_age_s'])}; {buffer['dropped_records']} dropped when full, "
            f"{buffer.get('rejected_parked', buffer['rejected'])} refused by the collector and parked"
            + (f" (newest: {buffer['rejected_reason']})" if buffer.get("rejected_reason") else "")
        )
        lines.append(f"disk       {_size(a['disk_free_bytes'])} free for the buffer")
    upload = hb.get("upload")
    if upload:
        lines.append(
            f"upload     {upload['state']}" + (f"; last error: {upload['last_error']}" if upload["last_error"] else "")
        )
    config = f"runs v{a['config_applied_version']}" if a["config_applied_version"] else "runs its local file"
    if a["config_desired_version"]:
        config += f"; fleet wants v{a['config_desired_version']} ({a['config_state']})"
    if a["config_rejected_version"]:
        config += f"; refused v{a['config_rejected_version']}: {a['config_error']}"
    lines.append(f"config     {config}")
    if a["rotate_requested_at"]:
        lines.append(f"key        rotation requested {_ago(a['rotate_requested_at'], now)}, waiting for the agent")
    elif a["key_rotated_at"]:
        lines.append(f"key        rotated {_ago(a['key_rotated_at'], now)}")
    sources = hb.get("sources") or []
    lines.append(f"sources    {len(sources)}" + (f", {a['sources_down']} not ok" if a["sources_down"] else ""))
    for s in sources:
        seen = f"last reading {_ago_ms(s['last_reading_ms'], now)}" if s["last_reading_ms"] else "no reading yet"
        line = f"  {s['name']}: {s['state']}, {seen}, {s['errors']} errors ({s['transport']}, {s['adapter']})"
        if s["last_error"] and s["state"] != "ok":
            line += f"\n    {s['last_error']}"
        lines.append(line)
    lines.append(f"gaps       {len(a['recent_gaps'])} recent" + (":" if a["recent_gaps"] else ""))
    for gap in a["recent_gaps"]:
        lines.append(f"  {gap['at']}: lost seq {gap['lost_first']}-{gap['lost_last']} {gap['detail']}".rstrip())
    lines.append(f"errors     {len(a['recent_errors'])} recent" + (":" if a["recent_errors"] else ""))
    for error in a["recent_errors"]:
        lines.append(f"  {error['at']} {error['sensor']} {error['kind']}: {error['detail']}".rstrip())
    lines.append("log" + (":" if a["log"] else "        (empty)"))
    for entry in a["log"]:
        lines.append(f"  {entry['at']} {entry['kind']}: {entry['detail']}".rstrip())
    typer.echo("\n".join(lines))


def _ago_ms(ms: int, now: datetime) -> str:
    return format_duration(max(0.0, now.timestamp() - ms / 1000)) + " ago"


def _yes_no(value: Any) -> str:
    return "unknown" if value is None else ("yes" if value else "NO")


def _each(
    agent_ids: Sequence[str], label: str, action: Callable[[FleetClient, str], Awaitable[Any]]
) -> Callable[[FleetClient], Awaitable[list[Any]]]:
    """Run `action` for every agent in turn, with a progress bar when there are several."""

    async def run(client: FleetClient) -> list[Any]:
        results = []
        if len(agent_ids) == 1:
            return [await action(client, agent_ids[0])]
        with _progress(len(agent_ids), label) as bar:
            for agent_id in agent_ids:
                results.append(await action(client, agent_id))
                bar.update(1)
        return results

    return run


@agents_app.command("revoke")
def agents_revoke(
    agent_ids: Annotated[list[str], typer.Argument(help="Agent ids (agt_…).")],
    collector: Collector = None,
    key: Key = None,
    config_file: ConfigFile = None,
    as_json: AsJson = False,
) -> None:
    """Revoke agents: their uploads and heartbeats get 401 at once; their buffered data stays on the gateway."""
    results = _call(
        collector, key, config_file,
        _each(agent_ids, "revoking", lambda c, a: c.post(f"/v1/admin/agents/{a}/revoke")),
    )
    if as_json:
        _print_json(results)
        return
    for result in results:
        note = " (it already was)" if result["already"] else ""
        typer.echo(
            f"agent {result['id']} revoked{note}: its readings stay buffered on the gateway until it is "
            "enrolled again (footfall agent enroll --force)",
            err=True,
        )


@agents_app.command("rotate-key")
def agents_rotate_key(
    agent_ids: Annotated[list[str], typer.Argument(help="Agent ids (agt_…).")],
    collector: Collector = None,
    key: Key = None,
    config_file: ConfigFile = None,
    as_json: AsJson = False,
) -> None:
    """Ask agents to rotate their keys at their next heartbeat (the old key vouches for the new one)."""
    results = _call(
        collector, key, config_file,
        _each(agent_ids, "flagging", lambda c, a: c.post(f"/v1/admin/agents/{a}/rotate-key")),
    )
    if as_json:
        _print_json(results)
        return
    for result in results:
        typer.echo(
            f"agent {result['id']} will rotate its key at its next heartbeat; `footfall fleet agents show` "
            "says when it has",
            err=True,
        )


# --- config -----------------------------------------------------------------------------------


@config_app.command("push")
def config_push(
    file: Annotated[Path, typer.Argument(help="A complete agent.toml; - reads standard input.", allow_dash=True)],
    agent: Annotated[str | None, typer.Option("--agent", help="Push to this agent.")] = None,
    site: Annotated[str | None, typer.Option("--site", help="Push to every agent of this site.")] = None,
    to_all: Annotated[bool, typer.Option("--all", help="Push to every agent of the organization.")] = False,
    note: Annotated[str, typer.Option("--note", help="A line saying why, kept with the version.")] = "",
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait until every targeted agent applied or refused it (progress bar).")
    ] = False,
    timeout: Annotated[str, typer.Option("--timeout", help="With --wait: give up after this long.")] = "10m",
    poll: Annotated[str, typer.Option("--poll", help="With --wait: how often to ask the collector.")] = "2s",
    collector: Collector = None,
    key: Key = None,
    config_file: ConfigFile = None,
    as_json: AsJson = False,
) -> None:
    """Push a new configuration version; agents fetch it at their next heartbeat, check it and apply it.

    An agent refuses a configuration that its own loader finds invalid (and keeps running the
    previous one): check a file first with `footfall agent config check FILE`.
    """
    if sum([agent is not None, site is not None, to_all]) != 1:
        _fail("give exactly one of --agent A, --site S or --all", EXIT_USAGE)
    scope, target = ("agent", agent) if agent else (("site", site) if site else ("all", ""))
    try:
        text = sys.stdin.read() if str(file) == "-" else file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        _fail(f"cannot read {file}: {exc}", EXIT_USAGE)
    deadline = _seconds(timeout, "--timeout")
    every = _seconds(poll, "--poll")

    async def push(client: FleetClient) -> tuple[dict[str, Any], dict[str, Any] | None]:
        pushed = await client.post("/v1/admin/configs", {"scope": scope, "target": target, "config": text,
                                                         "note": note})
        if not wait:
            return pushed, None
        return pushed, await _wait_applied(client, pushed, deadline, every, quiet=as_json)

    pushed, outcome = _call(collector, key, config_file, push)
    if as_json:
        _print_json({**pushed, **({"outcome": outcome} if outcome else {})})
    else:
        typer.echo(
            f"configuration v{pushed['version']} pushed to {len(pushed['agents'])} agent(s) "
            f"({scope}{' ' + target if target else ''}); they fetch it at their next heartbeat",
            err=True,
        )
    if outcome is not None:
        if not as_json:
            _report_outcome(outcome, pushed["version"])
        if outcome["rejected"]:
            raise typer.Exit(EXIT_REJECTED)
        if outcome["pending"]:
            raise typer.Exit(EXIT_TIMEOUT)


async def _wait_applied(
    client: FleetClient, pushed: dict[str, Any], deadline_s: float, every_s: float, *, quiet: bool
) -> dict[str, Any]:
    """Poll config status until every targeted agent applied or refused the version, or the deadline passes."""
    version, targets = pushed["version"], set(pushed["agents"])
    end = time.monotonic() + deadline_s
    done: dict[str, dict[str, Any]] = {}
    bar = None if quiet else _progress(len(targets), f"v{version} applied")
    try:
        while True:
            status = await client.get("/v1/admin/configs/status")
            for entry in status["agents"]:
                if entry["id"] not in targets or entry["id"] in done:
                    continue
                if entry["applied"] == version or entry["rejected"] == version or entry["desired"] != version:
                    done[entry["id"]] = entry
                    if bar is not None:
                        bar.update(1)
            if len(done) == len(targets) or time.monotonic() >= end:
                break
            await asyncio.sleep(every_s)
    finally:
        if bar is not None:
            bar.render_finish()
    applied = sorted(a for a, e in done.items() if e["applied"] == version)
    rejected = {a: e["error"] for a, e in done.items() if e["rejected"] == version and e["applied"] != version}
    superseded = sorted(a for a, e in done.items() if a not in applied and a not in rejected)
    return {"applied": applied, "rejected": rejected, "superseded": superseded,
            "pending": sorted(targets - set(done))}


def _report_outcome(outcome: dict[str, Any], version: int) -> None:
    typer.echo(f"{len(outcome['applied'])} agent(s) run v{version}", err=True)
    for agent_id, error in outcome["rejected"].items():
        typer.echo(f"REFUSED by {agent_id}: {error}", err=True)
    for agent_id in outcome["superseded"]:
        typer.echo(f"{agent_id}: a newer push replaced v{version}", err=True)
    if outcome["pending"]:
        typer.echo(f"still waiting for {len(outcome['pending'])}: {', '.join(outcome['pending'])}", err=True)


@config_app.command("status")
def config_status(
    stale: Stale = "15m",
    collector: Collector = None,
    key: Key = None,
    config_file: ConfigFile = None,
    as_json: AsJson = False,
) -> None:
    """Which agents run which configuration version: per version, then per agent (refusals with their reason)."""
    params = {"stale": str(_seconds(stale, "--stale"))}
    status = _call(collector, key, config_file, lambda c: c.get("/v1/admin/configs/status", params))
    if as_json:
        _print_json(status)
        return
    _table(
        ["VERSION", "TARGET", "WANTED BY", "APPLIED", "PENDING", "REFUSED", "RUNNING", "PUSHED", "NOTE"],
        [[f"v{v['version']}", f"{v['scope']} {v['target']}".strip(), str(v["desired_by"]), str(v["applied"]),
          str(v["pending"]), str(v["rejected"]), str(v["running"]), v["created_at"], v["note"]]
         for v in status["versions"]],
        empty="(no configuration pushed yet)",
    )
    typer.echo("")
    _table(
        ["AGENT", "SITE", "STATE", "RUNS", "WANTS", "CONFIG", "REFUSED"],
        [[a["id"], a["site"], a["state"], f"v{a['applied']}" if a["applied"] else "local",
          f"v{a['desired']}" if a["desired"] else "-", a["config_state"],
          f"v{a['rejected']}: {a['error']}" if a["rejected"] and a["config_state"] == "rejected" else ""]
         for a in status["agents"]],
        empty="(no agents)",
    )


@config_app.command("show")
def config_show(
    version: Annotated[int, typer.Argument(help="The configuration version.")],
    collector: Collector = None,
    key: Key = None,
    config_file: ConfigFile = None,
    as_json: AsJson = False,
) -> None:
    """Print a pushed configuration (the TOML text alone on stdout, or the whole record with --json)."""
    document = _call(collector, key, config_file, lambda c: c.get(f"/v1/admin/configs/{version}"))
    if as_json:
        _print_json(document)
        return
    typer.echo(document["config"], nl=not document["config"].endswith("\n"))
    typer.echo(
        f"v{document['version']}: pushed {document['created_at']} to {document['scope']} {document['target']}"
        + (f" ({document['note']})" if document["note"] else ""),
        err=True,
    )
