"""The `footfall` command: one entry point with the agent, collector and fleet groups and the demo.

Each group lives beside the code it drives; this module only mounts them. The collector's
group imports its database stack inside its commands, so `footfall agent ...` runs on a
gateway that has no psycopg installed.
"""

from __future__ import annotations

import typer

from footfall import __version__
from footfall.agent.cli import app as agent_app
from footfall.collector.cli import app as collector_app
from footfall.collector.fleet_cli import app as fleet_app

app = typer.Typer(
    name="footfall",
    help="Retail people counting: store agent, cloud collector, fleet tools.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(agent_app, name="agent", help="Run and look after the in-store agent.")
app.add_typer(collector_app, name="collector", help="Run and administer the cloud collector.")
app.add_typer(fleet_app, name="fleet", help="Manage a fleet of agents through the collector's admin API.")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"footfall {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Retail people counting: store agent, cloud collector, fleet tools."""


@app.command(context_settings={"allow_extra_args": False})
def demo(
    duration: float = typer.Option(
        0,
        help="Run this many seconds, then check the API's totals against the simulator's; exit 0 only if equal. "
        "0 runs until Ctrl-C.",
    ),
    data_dir: str = typer.Option("demo-data", help="Where the demo keeps its database cluster, agent state and logs."),
    port: int = typer.Option(8700, help="The collector's port on 127.0.0.1."),
    rate: float = typer.Option(20.0, help="Simulated readings per second (people counter and POS together)."),
) -> None:
    """Start an embedded collector, an enrolled agent and a simulated store; print the API to query."""
    from footfall.demo import run_demo

    raise typer.Exit(run_demo(duration=duration, data_dir=data_dir, port=port, rate=rate))


def main() -> None:
    """Console entry point."""
    app()
