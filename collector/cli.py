"""`footfall collector ...`: run the collector and administer organizations, sites, tokens, keys and agents.

The database stack (psycopg, the app) is imported inside each command, never at module level:
`footfall/cli.py` mounts this group on every machine, gateways included, and `footfall agent`
must work where psycopg is not installed.

Every command takes `--database-url` (or $FOOTFALL_DATABASE_URL) or `--data-dir` (the embedded
cluster, default ./footfall-data) and `--config collector.toml`. Secrets (tokens, keys) are
printed once, alone on stdout, so `TOKEN=$(footfall collector tokens create ...)` works; the
human explanation goes to stderr.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

from footfall.units import parse_duration

from .errors import CollectorError
from .settings import CollectorSettings, load_settings

if TYPE_CHECKING:
    import psycopg

T = TypeVar("T")

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Run and administer the cloud collector.")
orgs_app = typer.Typer(no_args_is_help=True, help="Organizations (tenants).")
sites_app = typer.Typer(no_args_is_help=True, help="Sites (stores) and their time zones.")
tokens_app = typer.Typer(no_args_is_help=True, help="Enrollment tokens for agents.")
keys_app = typer.Typer(no_args_is_help=True, help="API keys for analysts and fleet admins.")
agents_app = typer.Typer(no_args_is_help=True, help="Enrolled agents.")
app.add_typer(orgs_app, name="orgs")
app.add_typer(sites_app, name="sites")
app.add_typer(tokens_app, name="tokens")
app.add_typer(keys_app, name="keys")
app.add_typer(agents_app, name="agents")

DatabaseUrl = Annotated[
    str | None,
    typer.Option("--database-url", envvar="FOOTFALL_DATABASE_URL", help="PostgreSQL URL [default: embedded cluster]."),
]
DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", envvar="FOOTFALL_DATA_DIR", help="Embedded cluster home [default: footfall-data]."),
]
Config = Annotated[Path | None, typer.Option("--config", help="A collector.toml; flags override it.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of a table.")]


def _settings(config: Path | None, **flags: Any) -> CollectorSettings:
    try:
        return load_settings(config, **flags)
    except CollectorError as exc:
        _fail(str(exc))


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def _run(coro: Awaitable[T]) -> T:
    """Run one command's coroutine; operator errors become a message and exit status 1."""
    import psycopg

    async def main() -> T:
        return await coro

    try:
        return asyncio.run(main())
    except CollectorError as exc:
        _fail(str(exc))
    except psycopg.OperationalError as exc:
        _fail(f"cannot reach the database: {str(exc).strip()}")


def _with_db(settings: CollectorSettings, action: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]) -> T:
    """Run `action` on a connection to the (migrated) database."""
    import psycopg

    from .database import admin_database

    async def main() -> T:
        async with admin_database(settings) as dsn, await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            return await action(conn)

    return _run(main())


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    for row in [list(headers), *cells]:
        typer.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    if not rows:
        typer.echo("(none)", err=True)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _json(items: Sequence[Any]) -> None:
    from dataclasses import asdict

    typer.echo(json.dumps([asdict(i) for i in items], default=_json_default, indent=2))


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__}")


@app.command()
def serve(
    listen: Annotated[str | None, typer.Option(help="host:port to listen on [default: 127.0.0.1:8700].")] = None,
    database_url: DatabaseUrl = None,
    data_dir: DataDir = None,
    config: Config = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning or error.")] = None,
    log_format: Annotated[str | None, typer.Option(help="logfmt or json.")] = None,
) -> None:
    """Serve the ingest, enrollment, metrics and fleet APIs (migrating the database first).

    Without a database URL, runs a private PostgreSQL cluster under --data-dir, stopped on exit.
    """
    from footfall.logs import configure

    from .server import serve as run

    settings = _settings(
        config, listen=listen, database_url=database_url, data_dir=data_dir, log_level=log_level, log_format=log_format
    )
    configure(settings.log_level, "json" if settings.log_format == "json" else "logfmt")
    _run(run(settings))


@app.command("migrate")
def migrate_command(database_url: DatabaseUrl = None, data_dir: DataDir = None, config: Config = None) -> None:
    """Bring the database schema up to date (safe to run while other collectors start)."""
    from .database import open_database
    from .migrate import migrate

    settings = _settings(config, database_url=database_url, data_dir=data_dir)

    async def main() -> list[Any]:
        async with open_database(settings, serving=False) as dsn:
            return await migrate(dsn)

    applied = _run(main())
    for migration in applied:
        typer.echo(f"applied {migration.version:04d}_{migration.name}")
    typer.echo("schema is up to date" if not applied else f"{len(applied)} migration(s) applied", err=True)


@orgs_app.command("create")
def orgs_create(
    name: Annotated[str, typer.Argument(help="Display name, e.g. 'Acme Retail'.")],
    org_id: Annotated[str | None, typer.Option("--id", help="The id [default: from the name: acme-retail].")] = None,
    database_url: DatabaseUrl = None,
    data_dir: DataDir = None,
    config: Config = None,
) -> None:
    """Create an organization; prints its id."""
    from . import admin

    org = _with_db(
        _settings(config, database_url=database_url, data_dir=data_dir),
        lambda conn: admin.create_organization(conn, name, org_id),
    )
    typer.echo(org.id)


@orgs_app.command("list")
def orgs_list(
    database_url: DatabaseUrl = None, data_dir: DataDir = None, config: Config = None, as_json: AsJson = False
) -> None:
    """List organizations."""
    from . import admin

    orgs = _with_db(_settings(config, database_url=database_url, data_dir=data_dir), admin.list_organizations)
    if as_json:
        _json(orgs)
    else:
        _table(["ID", "NAME", "CREATED"], [(o.id, o.name, o.created_at) for o in orgs])


@sites_app.command("create")
def sites_create(
    org: Annotated[str, typer.Option("--org", help="The organization's id.")],
    site_id: Annotated[str, typer.Option("--id", help="The site's id, unique in its organization, e.g. paris-01.")],
    timezone: Annotated[str, typer.Option("--timezone", help="IANA zone, e.g. Europe/Paris.")],
    name: Annotated[str | None, typer.Option("--name", help="Display name [default: the id].")] = None,
    database_url: DatabaseUrl = None,
    data_dir: DataDir = None,
    config: Config = None,
) -> None:
    """Create a site; prints its id."""
    from . import admin

    site = _with_db(
        _settings(config, database_url=database_url, data_dir=data_dir),
        lambda conn: admin.create_site(conn, org, site_id, timezone, name),
    )
    typer.echo(site.id)


@sites_app.command("list")
def sites_list(
    org: Annotated[str | None, typer.Option("--org", help="Only this organization's sites.")] = None,
    database_url: DatabaseUrl = None,
    data_dir: DataDir = None,
    config: Config = None,
    as_json: AsJson = False,
) -> None:
    """List sites."""
    from . import admin

    sites = _with_db(
        _settings(config, database_url=database_url, data_dir=data_dir), lambda conn: admin.list_sites(conn, org)
    )
    if as_json:
        _json(sites)
    else:
        _table(["ORG", "ID", "NAME", "TIMEZONE"], [(s.org_id, s.id, s.name, s.timezone) for s in sites])


@tokens_app.command("create")
def tokens_create(
    site: Annotated[str, typer.Option("--site", help="The site the agents will belong to.")],
    org: Annotated[str | None, typer.Option("--org", help="The site's organization, if its id is not unique.")] = None,
    expires: Annotated[str, typer.Option("--expires", help="Lifetime, e.g. 30m, 24h, 7d.")] = "24h",
    uses: Annotated[int, typer.Option("--uses", min=1, help="How many agents may enroll with it.")] = 1,
    database_url: DatabaseUrl = None,
    data_dir: DataDir = None,
    config: Config = None,
) -> None:
    """Create an enrollment token; prints it once (only its hash is kept)."""
    from . import admin

    try:
        lifetime = timedelta(seconds=parse_duration(expires))
    except ValueError as exc:
        _fail(f"--expires: {exc}")
    issued = _with_db(
        _settings(config, database_url=database_url, data_dir=data_dir),
        lambda conn: admin.create_enrollment_token(conn, site, org_id=org, expires=lifetime, uses=uses),
    )
    typer.echo(issued.token)
    typer.echo(
        f"enrollment token {issued.id} for site {issued.site_id} ({issued.org_id}): {issued.uses} use(s), "
        f"expires {_cell(issued.expires_at)}. It is shown only now.",
        err=True,
    )


@tokens_app.command("list")
def tokens_list(
    org: Annotated[str | None, typer.Option("--org", help="Only this organization's tokens.")] = None,
    database_url: DatabaseUrl = None,
    data_dir: DataDir = None,
    config: Config = None,
    as_json: AsJson = False,
) -> None:
    """List enrollment tokens (their prefixes; the tokens themselves are not kept)."""
    from . import admin

    tokens = _with_db(
        _settings(config, database_url=database_url, data_dir=data_dir),
        lambda conn: admin.list_enrollment_tokens(conn, org),
    )
    if as_json:
        _json(tokens)
    else:
        _table(
            ["ID", "PREFIX", "ORG", "SITE", "USES LEFT", "EXPIRES", "REVOKED"],
            [(t.id, t.prefix + "…", t.org_id, t.site_id, t.uses_left, t.expires_at, t.revoked) for t in tokens],
        )


@tokens_app.command("revoke")
def tokens_revoke(
    token_id: Annotated[int, typer.Argument(help="The token's id (see `tokens list`).")],
    database_url: DatabaseUrl = None,
    data_dir: DataDir = None,
    config: Config = None,
) -> None:
    """Revoke an enrollment token."""
    from . import admin

    _with_db(
        _settings(config, database_url=database_url, data_dir=data_dir),
        lambda conn: admin.revoke_enrollment_token(conn, token_id),
    )
    typer.echo(f"enrollment token {token_id} revoked", err=True)


@keys_app.command("create")
def keys_create(
    org: Annotated[str, typer.Option("--org", help="The organization the key reads.")],
    role: Annotated[str, typer.Option("--role", help="analyst (metrics) or fleet_admin (metrics and fleet admin).")],
    name: Annotated[str, typer.Option("--name", help="A label, e.g. who holds it.")] = "",
    database_url: DatabaseUrl = None,
    data_dir: DataDir = None,
    config: Config = None,
) -> None:
    """Create an API key; prints it once (only its hash is kept)."""
    from . import admin

    issued = _with_db(
        _settings(config, database_url=database_url, data_dir=data_dir),
        lambda conn: admin.create_api_key(conn, org, role, name),
    )
    typer.echo(issued.key)
    typer.echo(f"API key {issued.id} ({issued.role}) for {issued.org_id}. It is shown only now.", err=True)


@keys_app.command("list")
def keys_list(
    org: Annotated[str | None, typer.Option("--org", help="Only this organization's keys.")] = None,
    database_url: DatabaseUrl = None,
    data_dir: DataDir = None,
    config: Config = None,
    as_json: AsJson = False,
) -> None:
    """List API keys (their prefixes)."""
    from . import admin

    keys = _with_db(
        _settings(config, database_url=database_url, data_dir=data_dir), lambda conn: admin.list_api_keys(conn, org)
    )
    if as_json:
        _json(keys)
    else:
        _table(
            ["ID", "PREFIX", "ORG", "ROLE", "NAME", "REVOKED"],
            [(k.id, k.prefix + "…", k.org_id, k.role, k.name, k.revoked) for k in keys],
        )


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[int, typer.Argument(help="The key's id (see `keys list`).")],
    database_url: DatabaseUrl = None,
    data_dir: DataDir = None,
    config: Config = None,
) -> None:
    """Revoke an API key."""
    from . import admin

    _with_db(
        _settings(config, database_url=database_url, data_dir=data_dir), lambda conn: admin.revoke_api_key(conn, key_id)
    )
    typer.echo(f"API key {key_id} revoked", err=True)


@agents_app.command("list")
def agents_list(
    org: Annotated[str | None, typer.Option("--org", help="Only this organization's agents.")] = None,
    site: Annotated[str | None, typer.Option("--site", help="Only this site's agents.")] = None,
    database_url: DatabaseUrl = None,
    data_dir: DataDir = None,
    config: Config = None,
    as_json: AsJson = False,
) -> None:
    """List enrolled agents."""
    from . import admin

    agents = _with_db(
        _settings(config, database_url=database_url, data_dir=data_dir),
        lambda conn: admin.list_agents(conn, org, site),
    )
    if as_json:
        _json(agents)
    else:
        _table(
            ["ID", "ORG", "SITE", "STATUS", "VERSION", "LAST SEEN", "HW SEQ", "CLOCK", "SKEW", "RESTAMPED", "SUSPECT"],
            [
                (a.id, a.org_id, a.site_id, a.status, a.version, a.last_seen_at, a.hw_seq, a.clock_state,
                 "" if a.clock_skew_s is None else f"{a.clock_skew_s:+.1f}s", a.readings_restamped,
                 a.readings_suspect)
                for a in agents
            ],
        )


@agents_app.command("revoke")
def agents_revoke(
    agent_id: Annotated[str, typer.Argument(help="The agent's id (agt_…).")],
    database_url: DatabaseUrl = None,
    data_dir: DataDir = None,
    config: Config = None,
) -> None:
    """Revoke an agent: its next upload is refused; its data stays."""
    from . import admin

    _with_db(
        _settings(config, database_url=database_url, data_dir=data_dir), lambda conn: admin.revoke_agent(conn, agent_id)
    )
    typer.echo(f"agent {agent_id} revoked", err=True)


# Site settings, sensors, the organization's week start and partitions (collector/sites.py, collector/partitions.py).

partitions_app = typer.Typer(help="Monthly partitions of the time tables, and the retention of raw rows.")
app.add_typer(partitions_app, name="partitions")
_DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def parse_hours(specs: Sequence[str]) -> dict[str, list[list[str]]]:
    """`mon-fri=09:00-19:00`, `sat=10:00-13:00,14:00-18:00`, `sun=closed` -> the JSON of opening_hours."""
    weekly: dict[str, list[list[str]]] = {}
    for spec in specs:
        days, sep, intervals = spec.partition("=")
        first, _, last = days.strip().lower().partition("-")
        if not sep or first not in _DAY_NAMES or (last and last not in _DAY_NAMES):
            raise ValueError(f"{spec!r}: write DAY[-DAY]=HH:MM-HH:MM[,HH:MM-HH:MM] such as mon-fri=09:00-19:00")
        span = _DAY_NAMES[_DAY_NAMES.index(first): _DAY_NAMES.index(last or first) + 1]
        pairs = [] if intervals.strip() == "closed" else [p.strip().split("-") for p in intervals.split(",")]
        if any(len(p) != 2 for p in pairs):
            raise ValueError(f"{spec!r}: each interval is HH:MM-HH:MM")
        for day in span:
            weekly[day] = [list(p) for p in pairs]
    return weekly


@sites_app.command("show")
def sites_show(
    site: Annotated[str, typer.Argument(help="The site's id.")],
    org: Annotated[str | None, typer.Option("--org", help="The site's organization, if its id is not unique.")] = None,
    database_url: DatabaseUrl = None,
    data_dir: DataDir = None,
    config: Config = None,
) -> None:
    """Show a site's settings (JSON)."""
    from . import admin, sites

    async def action(conn: psycopg.AsyncConnection[Any]) -> Any:
        found = await admin.resolve_site(conn, site, org)
        return await sites.get_site(conn, found.org_id, found.id)

    record = _with_db(_settings(config, database_url=database_url, data_dir=data_dir), action)
    typer.echo(json.dumps(record.as_json(), indent=2))


@sites_app.command("set")
def sites_set(
    site: Annotated[str, typer.Argument(help="The site's id.")],
    org: Annotated[str | None, typer.Option("--org", help="The site's organization, if its id is not unique.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Display name.")] = None,
    timezone: Annotated[str | None, typer.Option("--timezone", help="IANA zone (before the site has data).")] = None,
    visitors: Annotated[str | None, typer.Option("--visitors", help="entries, exits or mean.")] = None,
    day_reset: Annotated[str | None, typer.Option("--day-reset", help="Local HH:MM the occupancy estimate restarts.")]
    = None,
    tags: Annotated[list[str] | None, typer.Option("--tag", help="A tag (repeat; replaces the tags).")] = None,
    hours: Annotated[list[str] | None, typer.Option("--hours", help="mon-fri=09:00-19:00 (repeat; replaces them).")]
    = None,
    no_hours: Annotated[bool, typer.Option("--no-hours", help="Remove the opening hours (always trading).")] = False,
    closed: Annotated[list[str] | None, typer.Option("--closed", help="A date closed all day (repeat).")] = None,
    exception: Annotated[list[str] | None, typer.Option("--exception", help="2026-12-24=09:00-14:00 (repeat).")] = None,
    expected: Annotated[str | None, typer.Option("--expected-sensors", help="Comma-separated names, or 'learn'.")]
    = None,
    database_url: DatabaseUrl = None,
    data_dir: DataDir = None,
    config: Config = None,
) -> None:
    """Change a site's settings; prints them. Every problem is reported at once."""
    from . import admin, sites
    from .sitesettings import SettingsError

    changes: dict[str, Any] = {}
    for key, value in (("name", name), ("timezone", timezone), ("visitors", visitors), ("day_reset", day_reset)):
        if value is not None:
            changes[key] = value
    if tags is not None:
        changes["tags"] = tags
    try:
        if hours:
            changes["opening_hours"] = parse_hours(hours)
        if no_hours:
            changes["opening_hours"], changes["hours_exceptions"] = None, {}
        if closed or exception:
            dated: dict[str, list[list[str]]] = {day: [] for day in closed or []}
            for spec in exception or []:
                day, _, intervals = spec.partition("=")
                dated[day] = [p.strip().split("-") for p in intervals.split(",")]
            changes["hours_exceptions"] = dated
    except ValueError as exc:
        _fail(str(exc))
    if expected is not None:
        changes["expected_sensors"] = None if expected == "learn" else [s for s in expected.split(",") if s]
    if not changes:
        _fail("nothing to change: give at least one option (see --help)")

    async def action(conn: psycopg.AsyncConnection[Any]) -> Any:
        found = await admin.resolve_site(conn, site, org)
        try:
            return await sites.update_site(conn, found.org_id, found.id, changes)
        except SettingsError as exc:
            raise CollectorError("; ".join(exc.problems)) from None

    record = _with_db(_settings(config, database_url=database_url, data_dir=data_dir), action)
    typer.echo(json.dumps(record.as_json(), indent=2))


@sites_app.command("sensors")
def sites_sensors(
    site: Annotated[str, typer.Argument(help="The site's id.")],
    org: Annotated[str | None, typer.Option("--org", help="The site's organization, if its id is not unique.")] = None,
    retire: Annotated[str | None, typer.Option("--retire", help="Retire this sensor now.")] = None,
    restore: Annotated[str | None, typer.Option("--restore", help="Expect this retired sensor again.")] = None,
    database_url: DatabaseUrl = None,
    data_dir: DataDir = None,
    config: Config = None,
    as_json: AsJson = False,
) -> None:
    """List a site's sensors learnt from its data; retire one that was removed, or restore it."""
    from datetime import UTC

    from . import admin, sites

    async def action(conn: psycopg.AsyncConnection[Any]) -> Any:
        found = await admin.resolve_site(conn, site, org)
        if retire:
            await sites.retire_sensor(conn, found.org_id, found.id, retire, datetime.now(UTC))
        if restore:
            await sites.retire_sensor(conn, found.org_id, found.id, restore, None)
        return await sites.list_sensors(conn, found.org_id, found.id)

    found = _with_db(_settings(config, database_url=database_url, data_dir=data_dir), action)
    if as_json:
        _json(found)
    else:
        _table(["SENSOR", "COUNTS", "OCCUPANCY", "SINCE", "LAST REPORT", "RETIRED"],
               [(s.name, s.counts, s.occupancy, s.reporting_since, s.last_report_at, s.retired_at) for s in found])


@orgs_app.command("set")
def orgs_set(
    org: Annotated[str, typer.Argument(help="The organization's id.")],
    week_start: Annotated[str, typer.Option("--week-start", help="monday ... sunday: the first day of week buckets.")],
    database_url: DatabaseUrl = None,
    data_dir: DataDir = None,
    config: Config = None,
) -> None:
    """Change an organization's settings."""
    from . import sites
    from .periods import WEEKDAYS

    if week_start.lower() not in WEEKDAYS:
        _fail(f"--week-start must be one of {', '.join(WEEKDAYS)}, got {week_start!r}")
    day = WEEKDAYS.index(week_start.lower()) + 1
    _with_db(_settings(config, database_url=database_url, data_dir=data_dir),
             lambda conn: sites.set_week_start(conn, org, day))
    typer.echo(f"{org}: weeks start on {week_start.lower()}", err=True)


@partitions_app.callback(invoke_without_command=True)
def partitions_list(
    ctx: typer.Context,
    database_url: DatabaseUrl = None,
    data_dir: DataDir = None,
    config: Config = None,
    as_json: AsJson = False,
) -> None:
    """Show the partitions of the time tables: month, raw or rollup, estimated rows and size."""
    if ctx.invoked_subcommand is not None:
        return
    from .partitions import list_partitions

    found = _with_db(_settings(config, database_url=database_url, data_dir=data_dir), list_partitions)
    if as_json:
        _json(found)
        return
    _table(["TABLE", "PARTITION", "FROM", "TO", "KIND", "ROWS", "SIZE"],
           [(p.table, p.name, p.start.date(), p.end.date(), p.kind, p.rows, _size(p.bytes)) for p in found])


@partitions_app.command("prune")
def partitions_prune(
    older_than: Annotated[str, typer.Option("--older-than", help="Drop raw months that ended before this, e.g. 400d.")],
    database_url: DatabaseUrl = None,
    data_dir: DataDir = None,
    config: Config = None,
) -> None:
    """Drop raw partitions older than --older-than now; rollups (every metric) are kept."""
    from .partitions import drop_expired
    from .store import Store

    try:
        seconds = parse_duration(older_than)
    except ValueError as exc:
        _fail(f"--older-than: {exc}")
    dropped = _with_db(_settings(config, database_url=database_url, data_dir=data_dir),
                       lambda conn: drop_expired(conn, Store(), timedelta(seconds=seconds)))
    for name in dropped:
        typer.echo(name)
    typer.echo(f"{len(dropped)} raw partition(s) dropped", err=True)


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"
