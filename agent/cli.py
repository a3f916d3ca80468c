"""`footfall agent ...`: run, enroll, init, status, doctor, adapters, config check, probe, buffer salvage and requeue.

Mounted by footfall/cli.py.

Thin: each command parses its flags and calls the module that does the work. Nothing here (or
below) imports the collector or its database stack, so a gateway needs only the agent's
dependencies.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import MISSING, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from footfall.agent.cli_probe import app as probe_app
from footfall.agent.config.load import DEFAULT_CONFIG_PATH, load_config
from footfall.agent.config.reader import ConfigError
from footfall.agent.config.sections import AgentConfig
from footfall.agent.config.transports import transports
from footfall.agent.decode.profile_load import load_profiles
from footfall.agent.run import load_checked, run_agent

from footfall.logs import configure

if TYPE_CHECKING:
    from footfall.agent import wizard as wizard_types

app = typer.Typer(help="Run and look after the in-store agent.", no_args_is_help=True, add_completion=False)
config_app = typer.Typer(help="Check an agent.toml.", no_args_is_help=True, add_completion=False)
app.add_typer(config_app, name="config")
app.add_typer(probe_app, name="probe")
buffer_app = typer.Typer(help="Look after the agent's buffer file.", no_args_is_help=True, add_completion=False)
app.add_typer(buffer_app, name="buffer")

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
    from footfall.agent.buffer.salvage import SalvageError, salvage
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


@buffer_app.command("requeue-rejected")
def buffer_requeue_rejected(
    config: ConfigOption = DEFAULT_CONFIG_PATH,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be re-queued; change nothing.")] = False,
) -> None:
    """Send again the records the collector refused, once this agent's rules make them valid.

    Run it with the agent stopped, after upgrading the agent that made them. Each parked record
    is repaired where today's decoder knows how (a receipt's printer commands), checked, and
    re-queued with a fresh seq; one still invalid stays parked. A parked record was never
    counted, so it counts once; a second run finds nothing to send.
    """
    from footfall.agent.buffer.requeue import RequeueError, requeue_rejected
    from footfall.agent.pipeline import BUFFER_FILE

    cfg = _load(config)
    configure("warning")
    try:
        report = asyncio.run(requeue_rejected(cfg, cfg.agent.state_dir / BUFFER_FILE, dry_run=dry_run))
    except RequeueError as exc:
        typer.echo(f"footfall agent buffer requeue-rejected: {exc}", err=True)
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
    _hand_over(state_dir)
    typer.echo(f"enrolled as {identity.agent_id} ({identity.organization} / {identity.site}, {identity.timezone})")
    typer.echo(f"key and identity in {state_dir}")


def _hand_over(state_dir: Path) -> None:
    """Run as root on a packaged gateway: give the key and identity to the owner of the state directory.

    The service runs as its own user (packaging/: `footfall`), which must be able to read the key
    that root just wrote with mode 0600.
    """
    from footfall.agent.identity import IDENTITY_FILE, KEY_FILE

    if os.geteuid() != 0:
        return
    owner = state_dir.stat()
    if owner.st_uid == 0:
        return
    for name in (KEY_FILE, IDENTITY_FILE):
        path = state_dir / name
        if path.exists():
            os.chown(path, owner.st_uid, owner.st_gid)


@app.command()
def status(
    config: ConfigOption = DEFAULT_CONFIG_PATH,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Buffer, oldest unsent reading, last upload, each source, heartbeat, clock and fleet config. Exit 3 if stopped."""
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


@app.command()
def init(
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the config.")] = DEFAULT_CONFIG_PATH,
    collector: Annotated[str, typer.Option("--collector", help="The collector's base URL (https://...).")] = "",
    state_dir: Annotated[
        Path | None, typer.Option("--state-dir", help="Where the buffer and key live [default: /var/lib/footfall].")
    ] = None,
    listen: Annotated[
        str | None, typer.Option("--listen", help="host:port devices POST to [default: 0.0.0.0:8088].")
    ] = None,
    device: Annotated[
        list[str] | None,
        typer.Option(
            "--device",
            help="A device: name=entrance,adapter=generic-json-counter[,path=/push/entrance][,token=...]. Repeat "
            "for each; giving one means no questions.",
        ),
    ] = None,
    probe_timeout: Annotated[
        str, typer.Option("--probe-timeout", help="How long to wait for each device's first message.")
    ] = "60s",
    no_probe: Annotated[bool, typer.Option("--no-probe", help="Write the devices without probing them.")] = False,
    token: Annotated[
        str | None,
        typer.Option("--token", envvar="FOOTFALL_ENROLL_TOKEN", help="Enroll right after, with this token."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing file.")] = False,
    non_interactive: Annotated[
        bool, typer.Option("--non-interactive", "-y", help="Ask nothing: use the flags and defaults.")
    ] = False,
) -> None:
    """Write a commented agent.toml: pick devices from the adapter catalogue, probe each, then write and enroll.

    In a terminal without --device it asks its questions; with --device (or -y) it asks nothing.
    Exit 0 written (and enrolled when a token was given), 1 nothing written or enrollment failed.
    """
    from footfall.agent import wizard

    from footfall.units import parse_duration

    try:
        timeout = parse_duration(probe_timeout)
    except ValueError as exc:
        typer.echo(f"footfall agent init: --probe-timeout: {exc}", err=True)
        raise typer.Exit(2) from None
    profiles = wizard.catalogue()
    plan = wizard.Plan(output=output, state_dir=state_dir or wizard.DEFAULT_STATE_DIR, collector_url=collector,
                       listen=listen or wizard.DEFAULT_LISTEN)
    interactive = not device and not non_interactive and wizard.stdin_is_terminal()
    try:
        if interactive:
            token = _ask(plan, profiles, token, timeout=timeout, probe=not no_probe, force=force)
        else:
            for spec in device or []:
                dev = wizard.parse_device(spec, profiles)
                if not no_probe:
                    _probe(dev, profiles, plan.listen, timeout, interactive=False)
                plan.devices.append(dev)
        text = wizard.render(plan, profiles)
        wizard.check(text, output)
        wizard.write(text, output, force=force or interactive, state_dir=plan.state_dir)
    except wizard.WizardError as exc:
        typer.echo(f"footfall agent init: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"wrote {output}: {len(plan.devices)} device(s): {wizard.summary(plan.devices)}")
    if token:
        from footfall.agent.identity import EnrollmentError, IdentityError
        from footfall.agent.identity import enroll as do_enroll

        url = plan.collector_url
        if not url:
            typer.echo("footfall agent init: enrolling needs --collector", err=True)
            raise typer.Exit(1)
        try:
            identity = asyncio.run(do_enroll(plan.state_dir, url, token))
        except (IdentityError, EnrollmentError) as exc:
            typer.echo(f"footfall agent init: the config is written, but enrollment failed: {exc}", err=True)
            raise typer.Exit(1) from None
        _hand_over(plan.state_dir)
        typer.echo(f"enrolled as {identity.agent_id} ({identity.organization} / {identity.site})")
    else:
        typer.echo(f"next: footfall agent enroll --collector URL --token ffe_... --config {output}")
    typer.echo("then: systemctl restart footfall-agent (or footfall agent run), and footfall agent status")


def _ask(
    plan: wizard_types.Plan, profiles: dict[str, Any], token: str | None, *, timeout: float, probe: bool, force: bool
) -> str | None:
    """The interactive questions; fills `plan`, returns the enrollment token (or None)."""
    from footfall.agent import wizard
    from footfall.agent.sources.port_names import list_ports

    typer.echo(f"footfall agent init: your answers become {plan.output} (Ctrl-C leaves nothing behind).")
    if plan.output.exists() and not force and not typer.confirm(f"{plan.output} exists. Replace it?", default=False):
        raise wizard.WizardError(f"{plan.output} kept as it is")
    plan.collector_url = typer.prompt("Collector URL, e.g. https://collector.example.com", default=plan.collector_url)
    plan.state_dir = Path(typer.prompt("State directory (buffer, key)", default=str(plan.state_dir)))
    plan.listen = typer.prompt("Address devices POST to (host:port)", default=plan.listen)
    names = sorted(profiles)
    typer.echo("Adapters:")
    for number, name in enumerate(names, start=1):
        typer.echo(f"  {number:>2}. {name:<28} {profiles[name].description} ({profiles[name].shape})")
    while True:
        choice = typer.prompt(
            f"Device {len(plan.devices) + 1}: adapter number or name (Enter when done)", default="", show_default=False
        ).strip()
        if not choice:
            break
        adapter = names[int(choice) - 1] if choice.isdigit() and 1 <= int(choice) <= len(names) else choice
        if adapter not in profiles:
            typer.echo(f"  no adapter {choice!r}: type a number from 1 to {len(names)} or a name from the list")
            continue
        name = typer.prompt("  Device name (its readings carry it)", default=f"device-{len(plan.devices) + 1}")
        transport = wizard.default_transport()
        registry = transports()
        if len(registry) > 1:
            transport = typer.prompt(f"  Transport ({', '.join(registry)})", default=transport)
        device = wizard.Device(name, adapter, transport)
        known = registry.get(transport)
        if known is None:
            typer.echo(f"  no transport {transport!r}: type one of {', '.join(registry)}")
            continue
        for f in fields(known.options):
            # A technician is asked for a webhook secret only when the adapter checks signatures.
            if f.metadata.get("signed_only") and profiles[adapter].signature is None:
                continue
            suggest = wizard.SUGGESTIONS.get((transport, f.name))
            default = suggest(name) if suggest else ("" if f.default is MISSING else f.default)
            if (transport, f.name) == ("serial", "port"):
                typer.echo("  Serial ports present (stable by-id names first):")
                typer.echo("\n".join(wizard.port_menu()))
                default = next((p.name for p in list_ports()), "")
            device.options[f.name] = typer.prompt(f"  {f.name}: {f.metadata['doc']}", default=default,
                                                  show_default=default != "")
        if transport == "serial":
            try:
                device.note = wizard.serial_port(device.options)
            except wizard.WizardError as exc:
                typer.echo(f"  {exc}")
                continue
        if probe and not _probe(device, profiles, plan.listen, timeout, interactive=True):
            continue
        plan.devices.append(device)
    return typer.prompt("Enrollment token (Enter to enroll later)", default=token or "", show_default=False,
                        hide_input=True) or None


def _probe(device: Any, profiles: dict[str, Any], listen: str, timeout: float, *, interactive: bool) -> bool:
    """Probe one device; False when it should not be written (its message does not match the adapter)."""
    from footfall.agent import wizard

    if device.transport != "http_push":
        missing = f"not probed: no probe for transport {device.transport} yet"
        device.note = f"{device.note}\n{missing}" if device.note else missing
        typer.echo(f"  {device.name}: {missing}", err=True)
        return True
    path = device.options.get("path", "")

    def listening(port: int) -> None:
        host = listen.rsplit(":", 1)[0]
        where = "<this gateway's address>" if host in ("0.0.0.0", "::", "[::]") else host
        typer.echo(
            f"  waiting up to {wizard.seconds(timeout)} for {device.name} to POST to http://{where}:{port}{path}"
            + (" (Enter skips)" if interactive else ""),
            err=not interactive,
        )

    async def run() -> Any:
        skip = asyncio.Event()
        loop = asyncio.get_running_loop()
        def enter() -> None:
            sys.stdin.readline()
            skip.set()

        if interactive:
            loop.add_reader(sys.stdin.fileno(), enter)
        try:
            return await wizard.probe_http_push(
                listen, device, profiles[device.adapter], wait_s=timeout, skip=skip, on_listening=listening
            )
        finally:
            if interactive:
                loop.remove_reader(sys.stdin.fileno())

    result = asyncio.run(run())
    when = datetime.now(UTC)
    if result.error and not result.remote:
        raise wizard.WizardError(f"{device.name}: {result.error}")
    if result.error:
        message = f"{device.name}: the message from {result.remote} does not match adapter {device.adapter}: " + (
            result.error
        )
        if not interactive:
            raise wizard.WizardError(message + "; pick another adapter (footfall agent init lists them)")
        typer.echo("  " + message)
        return typer.confirm("  Write this device anyway?", default=False)
    device.note = wizard.probe_note(result, when, timeout)
    if result.waited:
        typer.echo(
            f"  WARNING: {device.name}: no message within {wizard.seconds(timeout)}; written without a probe", err=True
        )
    else:
        typer.echo(f"  {device.name}: got {len(result.readings)} reading(s) from {result.remote}")
        for reading in result.readings[:5]:
            typer.echo(f"    {wizard.describe(reading)}")
    return True


@app.command()
def doctor(
    config: ConfigOption = DEFAULT_CONFIG_PATH,
    user: Annotated[
        str, typer.Option("--user", help="The user the agent service runs as (the package's is footfall).")
    ] = "footfall",
    fix: Annotated[
        bool, typer.Option("--fix", help="Fix what can be fixed (key mode and owner) without asking.")
    ] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 on warnings too.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Check the config, key, collector (DNS, TCP, TLS, clock), serial ports, disk and time sync; say how to fix.

    Exit 0 when nothing failed (warnings are printed), 1 when a check failed (or warned, with --strict).
    """
    from footfall.agent import doctor as checks_module

    service = checks_module.service_user(user)
    checks = asyncio.run(checks_module.run_checks(config, service))
    fixable = [c for c in checks if c.fixer is not None and c.level != "ok"]
    if fixable and not as_json and (fix or (sys.stdin.isatty() and typer.confirm(
        f"{len(fixable)} problem(s) can be fixed now ({', '.join(c.area for c in fixable)}). Fix them?",
        default=False,
    ))):
        for check in fixable:
            assert check.fixer is not None
            done = check.fixer()
            typer.echo(f"fixed: {done}")
        checks = asyncio.run(checks_module.run_checks(config, service))
    if not service.exists and not as_json:
        typer.echo(f"note: there is no user {user!r}; checked for {service.name} instead", err=True)
    typer.echo(checks_module.as_json(checks) if as_json else checks_module.render(checks))
    failed = any(c.level == "fail" for c in checks) or (strict and any(c.level == "warn" for c in checks))
    if failed:
        raise typer.Exit(1)
