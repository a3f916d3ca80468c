"""`footfall fleet ...`: the fleet admin API from an IT team's terminal (human tables, or --json for scripts).

Talks HTTP to a collector with a fleet_admin API key; imports aiohttp only, never the
database stack, so it runs on any admin laptop.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Annotated, Any, NoReturn

import aiohttp
import typer

from footfall.units import format_duration

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Manage a fleet of agents through a collector.")
agents_app = typer.Typer(no_args_is_help=True, help="Enrolled agents.")
app.add_typer(agents_app, name="agents")

Collector = Annotated[
    str,
    typer.Option("--collector", envvar="FOOTFALL_COLLECTOR_URL", help="The collector's base URL."),
]
Key = Annotated[
    str,
    typer.Option("--key", envvar="FOOTFALL_API_KEY", help="A fleet_admin API key (ffk_…); or $FOOTFALL_API_KEY."),
]
TIMEOUT_S = 30.0


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


async def _get(base: str, path: str, key: str, params: dict[str, str] | None = None) -> Any:
    """GET a JSON document from the collector; the collector's own error message on failure."""
    url = base.rstrip("/") + path
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url, headers={"Authorization": f"Bearer {key}"}, params=params) as response,
        ):
            text = await response.text()
            try:
                body = json.loads(text)
            except ValueError:
                body = None
            if response.status != 200:
                message = body.get("message") if isinstance(body, dict) else text[:200]
                _fail(f"{url} answered {response.status}: {message}")
            return body
    except (aiohttp.ClientError, TimeoutError) as exc:
        _fail(f"cannot reach the collector at {base}: {exc or type(exc).__name__}")


def _ago(stamp: str | None, now: datetime) -> str:
    if not stamp:
        return "never"
    return format_duration((now - datetime.fromisoformat(stamp)).total_seconds()) + " ago"


@agents_app.command("list")
def agents_list(
    collector: Collector = "http://127.0.0.1:8700",
    key: Key = "",
    site: Annotated[str | None, typer.Option("--site", help="Only this site's agents.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the collector's JSON for scripts.")] = False,
) -> None:
    """List the organization's agents: status, version, last seen and acknowledged seq."""
    if not key:
        _fail("an API key is needed: pass --key ffk_… or set FOOTFALL_API_KEY")
    body = asyncio.run(_get(collector, "/v1/admin/agents", key, {"site": site} if site else None))
    agents = body["agents"]
    if as_json:
        typer.echo(json.dumps(agents, indent=2))
        return
    now = datetime.now(UTC)
    rows = [
        [a["id"], a["site"], a["status"], a["version"] or "-", _ago(a["last_seen"], now), str(a["hw_seq"])]
        for a in agents
    ]
    headers = ["ID", "SITE", "STATUS", "VERSION", "LAST SEEN", "HW SEQ"]
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    for row in [headers, *rows]:
        typer.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    if not rows:
        typer.echo("(no agents enrolled)", err=True)
