"""`footfall agent ...`: run, enroll, status, adapters and config check. Mounted by footfall/cli.py.

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
from footfall.agent.run import load_checked, run_agent

from footfall.logs import configure

app = typer.Typer(help="Run and look after the in-store agent.", no_args_is_help=True, add_completion=False)
config_app = typer.Typer(help="Check an agent.toml.", no_args_is_help=True, add_completion=False)
app.add_typer(config_app, name="config")

ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="The agent's TOML config file.")]


def _load(path: Path, *, err: bool = True) -> AgentConfig:
    try:
        return load_checked(path)
    except ConfigError as exc:
        typer.echo(str(exc), err=err)
        raise typer.Exit(1) from None


@app.command()
def adapters(
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="Also list the profiles in this config's [agent] adapter_dirs."),
    ] = None,
    adapter_dir: Annotated[
        list[Path] | None, typer.Option("--adapter-dir", help="Another folder of profiles (repeatable).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """List every adapter profile and what it needs: transport, format, count semantics, times, settings."""
    from footfall.agent.decode.catalog import describe, render

    dirs: list[Path] = list(adapter_dir or [])
    if config is not None:
        try:
            dirs = [*load_config(config).agent.adapter_dirs, *dirs]
        except ConfigError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(1) from None
    try:
        profiles = load_profiles(dirs)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    ordered = [profiles[name] for name in sorted(profiles)]
    typer.echo(json.dumps([describe(p) for p in ordered], indent=2) if as_json else render(ordered))


@app.command()
def run(config: ConfigOption = DEFAULT_CONFIG_PATH) -> None:
    """Run the agent until SIGTERM or Ctrl-C: receive readings, buffer them, upload them."""
    raise typer.Exit(run_agent(config))


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
