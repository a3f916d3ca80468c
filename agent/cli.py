"""`footfall agent ...`: run, enroll, status, config check and buffer salvage. Mounted by footfall/cli.py.

Thin: each command parses its flags and calls the module that does the work. Nothing here (or
below) imports the collector or its database stack, so a gateway needs only the agent's
dependencies.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer
from footfall.agent.config import DEFAULT_CONFIG_PATH, AgentConfig, ConfigError, load_config
from footfall.agent.decode.profile import load_profiles

from footfall.logs import configure

app = typer.Typer(help="Run and look after the in-store agent.", no_args_is_help=True, add_completion=False)
config_app = typer.Typer(help="Check an agent.toml.", no_args_is_help=True, add_completion=False)
app.add_typer(config_app, name="config")
buffer_app = typer.Typer(help="Look after the agent's buffer file.", no_args_is_help=True, add_completion=False)
app.add_typer(buffer_app, name="buffer")

ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="The agent's TOML config file.")]


def _load(path: Path, *, err: bool = True) -> AgentConfig:
    try:
        return load_config(path, adapters=load_profiles)
    except ConfigError as exc:
        typer.echo(str(exc), err=err)
        raise typer.Exit(1) from None


@app.command()
def run(config: ConfigOption = DEFAULT_CONFIG_PATH) -> None:
    """Run the agent until SIGTERM or Ctrl-C: receive readings, buffer them, upload them."""
    from footfall.agent.buffer import BufferError
    from footfall.agent.identity import IdentityError
    from footfall.agent.pipeline import run_until_signalled
    from footfall.agent.sources.base import SourceError

    cfg = _load(config)
    configure(cfg.agent.log_level, cfg.agent.log_format)
    try:
        asyncio.run(run_until_signalled(cfg))
    except (ConfigError, IdentityError, BufferError, SourceError) as exc:
        typer.echo(f"footfall agent: {exc}", err=True)
        raise typer.Exit(1) from None


@buffer_app.command("salvage")
def buffer_salvage(
    file: Annotated[Path, typer.Argument(help="A quarantined buffer file (buffer.sqlite.corrupt-<time>).")],
    config: ConfigOption = DEFAULT_CONFIG_PATH,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be re-queued; change nothing.")] = False,
) -> None:
    """Re-queue the records a damaged buffer file still holds and the collector has not acknowledged.

    Run it with the agent stopped. Records get fresh seqs; those already acknowledged, or counted
    again since the buffer was replaced, are skipped, so nothing is counted twice.
    """
    from footfall.agent.buffer_tools import SalvageError, salvage
    from footfall.agent.pipeline import BUFFER_FILE

    cfg = _load(config)
    configure("warning")
    try:
        report = asyncio.run(
            salvage(cfg.agent.state_dir / BUFFER_FILE, file, max_size=cfg.buffer.max_size, dry_run=dry_run)
        )
    except SalvageError as exc:
        typer.echo(f"footfall agent buffer salvage: {exc}", err=True)
        raise typer.Exit(1) from None
    for line in report.lines():
        typer.echo(line)


@app.command()
def enroll(
    collector: Annotated[
        str, typer.Option("--collector", help="The collector's base URL, e.g. https://collector.example.com.")
    ],
    token: Annotated[
        str,
        typer.Option(
            "--token", envvar="FOOTFALL_ENROLL_TOKEN", help="The one-time enrollment token (or $FOOTFALL_ENROLL_TOKEN)."
        ),
    ],
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Enroll the agent of this config (its state_dir).")
    ] = None,
    state_dir: Annotated[Path | None, typer.Option("--state-dir", help="Or name the state directory directly.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing key and enrollment.")] = False,
) -> None:
    """Make this agent's key (mode 0600, it never leaves this machine) and register it with the collector."""
    from footfall.agent.identity import EnrollmentError, IdentityError
    from footfall.agent.identity import enroll as do_enroll

    if (config is None) == (state_dir is None):
        typer.echo("footfall agent enroll: give exactly one of --config FILE or --state-dir DIR", err=True)
        raise typer.Exit(2)
    if state_dir is None:
        assert config is not None
        state_dir = _load(config).agent.state_dir
    configure("warning")
    try:
        identity = asyncio.run(do_enroll(state_dir, collector, token, force=force))
    except (IdentityError, EnrollmentError) as exc:
        typer.echo(f"footfall agent enroll: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"enrolled as {identity.agent_id} ({identity.organization} / {identity.site}, {identity.timezone})")
    typer.echo(f"key and identity in {state_dir}")


@app.command()
def status(
    config: ConfigOption = DEFAULT_CONFIG_PATH,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Buffer depth, oldest unsent reading, last upload and each source's health. Exit 3 if not running."""
    from footfall.agent.status import gather, render

    try:
        cfg = load_config(config)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    info = gather(cfg)
    typer.echo(json.dumps(info, indent=2) if as_json else render(info))
    if not info["running"]:
        raise typer.Exit(3)


@config_app.command("check")
def config_check(file: Annotated[Path, typer.Argument(help="The agent.toml to check.")]) -> None:
    """Check a config and the adapter profiles it uses; print every problem (exit 1) or a summary."""
    cfg = _load(file, err=False)
    sources = ", ".join(f"{s.name} ({s.transport}, {s.adapter})" for s in cfg.sources) or "none"
    typer.echo(f"{file}: OK; state in {cfg.agent.state_dir}; sources: {sources}")
