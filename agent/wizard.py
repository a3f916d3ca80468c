"""`footfall agent init`: a commented agent.toml from a few answers, each device probed before it is written.

Two forms with one outcome. Interactive (a terminal, no `--device`): it asks for the collector,
the state directory and the address devices post to, then device after device, picked from
the adapter catalogue (every profile the agent can load, with its one-line description). Flags
(`--device name=entrance,adapter=generic-json-counter,path=/push/entrance`): the same, for
scripts and for technicians who prepared the line in advance.

Probing: before a device is written, the wizard listens where the agent will, on that device's
path, and waits for its first POST. The body is decoded with the chosen adapter and the
readings shown; the device is answered 503 with Retry-After (nothing was stored, so it must
keep its readings and send them again once the agent runs). A body the adapter cannot read
refuses the device (pick another adapter); no POST before the timeout (or Enter, in the
terminal) writes the device anyway, with a warning in the output and in the file. A transport
without a probe here yet is written with a note saying so.

Serial ports: the wizard lists the ports present, `/dev/serial/by-id/...` names first (each
with the kernel name it points at now), and suggests the first; a port given by its kernel name
is written by its by-id name when it has one, since `/dev/ttyUSB0` may be another device after
a re-plug (the file's comment says which kernel name it was).

The file is rendered with comments from the config's own field documentation, checked with
the agent's loader before anything is written, and written atomically with mode 0600 (it may
hold device tokens and passwords; 0640 with the service's group when root writes it for a
service user). With an enrollment token the agent is enrolled right after (`footfall agent enroll`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from footfall.agent.config.load import parse_config
from footfall.agent.config.reader import ConfigError, split_listen
from footfall.agent.config.sections import SECTIONS, AgentConfig
from footfall.agent.config.transports import transports
from footfall.agent.decode.errors import DecodeError
from footfall.agent.decode.extract import DecodeContext, extract
from footfall.agent.decode.formats import default_extractors
from footfall.agent.decode.profile import Profile
from footfall.agent.decode.profile_load import load_profiles
from footfall.agent.decode.readings import CumulativeCount, Reading
from footfall.agent.private_file import write_private
from footfall.agent.sources.http_push import bearer_matches
from footfall.agent.sources.port_names import BY_ID, list_ports, present_ports, stable_name
from footfall.protocol.records import Count, Occupancy, Transaction

DEFAULT_LISTEN = "0.0.0.0:8088"
DEFAULT_STATE_DIR = Path("/var/lib/footfall")
PROBE_TIMEOUT_S = 60.0


class WizardError(Exception):
    """The answers cannot make a working agent.toml; nothing was written."""


@dataclass(slots=True)
class Device:
    """One device to write as a `[[sources]]` entry."""

    name: str
    adapter: str
    transport: str
    options: dict[str, Any] = field(default_factory=dict)
    note: str = ""


@dataclass(slots=True)
class Plan:
    """Everything the file will say."""

    output: Path
    state_dir: Path = DEFAULT_STATE_DIR
    collector_url: str = ""
    listen: str = DEFAULT_LISTEN
    devices: list[Device] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What a probe saw: readings from a first message, an error, or nothing before the deadline."""

    readings: tuple[Reading, ...] = ()
    error: str = ""
    remote: str = ""
    waited: bool = False

    @property
    def ok(self) -> bool:
        """A message arrived and the adapter read it."""
        return not self.error and not self.waited


def catalogue() -> dict[str, Profile]:
    """Every adapter profile the agent ships, by name."""
    return load_profiles((), extractors=default_extractors())


def parse_device(spec: str, profiles: Mapping[str, Profile], *, by_id: str = BY_ID) -> Device:
    """`name=entrance,adapter=generic-json-counter,path=/push/entrance` -> Device; WizardError naming the problem.

    A serial device without `port=` gets the first port present (by-id names first), and one
    given by its kernel name gets its by-id name (`serial_port`).
    """
    values: dict[str, str] = {}
    for part in (p for p in spec.split(",") if p.strip()):
        key, sep, value = part.partition("=")
        if not sep:
            raise WizardError(f"--device {spec!r}: {part!r} is not key=value")
        values[key.strip()] = value.strip()
    name, adapter = values.pop("name", ""), values.pop("adapter", "")
    if not name or not adapter:
        raise WizardError(f"--device {spec!r}: name=... and adapter=... are required")
    if adapter not in profiles:
        raise WizardError(f"--device {spec!r}: no adapter {adapter!r}; known: {', '.join(sorted(profiles))}")
    transport = values.pop("transport", "") or default_transport()
    registry = transports()
    if transport not in registry:
        raise WizardError(f"--device {spec!r}: transport must be one of {', '.join(registry)}")
    options = {k: _typed(v) for k, v in values.items()}
    note = ""
    if transport == "serial":
        try:
            note = serial_port(options, by_id)
        except WizardError as exc:
            raise WizardError(f"--device {spec!r}: {exc}") from None
    for f in fields(registry[transport].options):
        if f.default is MISSING and f.default_factory is MISSING and f.name not in options:
            suggest = SUGGESTIONS.get((transport, f.name))
            if suggest is None:
                raise WizardError(f"--device {spec!r}: {f.name}=... is required ({f.metadata['doc']})")
            options[f.name] = suggest(name)
    return Device(name, adapter, transport, options, note=note)


def serial_port(options: dict[str, Any], by_id: str = BY_ID) -> str:
    """Fill in or firm up a serial device's `port` (the stable by-id name where there is one); a note for the file."""
    port = str(options.get("port", ""))
    if not port:
        ports = list_ports(by_id)
        if not ports:
            raise WizardError(f"port=... is required, and none was found to suggest: {present_ports(by_id)}")
        options["port"] = ports[0].name
        others = "; also present: " + ", ".join(p.describe() for p in ports[1:]) if ports[1:] else ""
        return f"port: the first serial port present, {ports[0].describe()}{others}"
    stable = stable_name(port, by_id)
    if not stable:
        return ""
    options["port"] = stable
    return f"port: the stable name of {port}, which may be another device after a re-plug"


def port_menu(by_id: str = BY_ID) -> list[str]:
    """The serial ports present, one line each, by-id names first with the kernel name each points at."""
    ports = list_ports(by_id)
    if not ports:
        return [f"  {present_ports(by_id)}"]
    return [f"  - {p.describe()}" for p in ports]


def default_transport() -> str:
    """The transport to use when a device does not say: the only one there is, else http_push."""
    registry = transports()
    return next(iter(registry)) if len(registry) == 1 else "http_push"


def _typed(value: str) -> Any:
    """A flag's text as the TOML value it most likely means (true/false, a whole number, else text)."""
    if value in ("true", "false"):
        return value == "true"
    if value.isdigit():
        return int(value)
    return value


# (transport, option) -> its suggested value for a device name.
SUGGESTIONS: dict[tuple[str, str], Callable[[str], Any]] = {
    ("http_push", "path"): lambda name: f"/push/{name}",
}


# --- probing ----------------------------------------------------------------------------------


async def probe_http_push(
    listen: str,
    device: Device,
    profile: Profile,
    *,
    wait_s: float,
    skip: asyncio.Event | None = None,
    on_listening: Callable[[int], None] | None = None,
) -> ProbeResult:
    """Listen at `listen` on the device's path for its first POST, decode it, answer 503; or give up."""
    path, token = str(device.options.get("path", "")), str(device.options.get("token", ""))
    extractor = default_extractors()[profile.format]
    got: asyncio.Future[ProbeResult] = asyncio.get_running_loop().create_future()

    async def handle(request: web.Request) -> web.Response:
        if token and not bearer_matches(request.headers.get("Authorization", ""), token):
            return web.json_response({"error": "unauthorized", "message": "this source needs its token"}, status=401)
        payload = await request.read()
        try:
            readings = extract(profile, extractor, payload, DecodeContext(source=device.name, zone=None))
            result = ProbeResult(tuple(readings), remote=request.remote or "")
        except DecodeError as exc:
            result = ProbeResult(error=str(exc), remote=request.remote or "")
        if not got.done():
            got.set_result(result)
        # Nothing was stored: the device must keep its readings and send them to the agent later.
        return web.json_response(
            {"error": "not_stored", "message": "footfall agent init is probing this device; send it again later"},
            status=503,
            headers={"Retry-After": "30"},
        )

    app = web.Application()
    app.router.add_post(path, handle)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    host, port = split_listen(listen)
    site = web.TCPSite(runner, host, port, reuse_address=True)
    try:
        try:
            await site.start()
        except OSError as exc:
            return ProbeResult(error=f"cannot listen on {listen} to probe: {exc.strerror or exc}")
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        if on_listening is not None:
            on_listening(sockets[0].getsockname()[1] if sockets else port)
        waiters: list[asyncio.Future[Any]] = [got]
        skipper = asyncio.ensure_future(skip.wait()) if skip is not None else None
        if skipper is not None:
            waiters.append(skipper)
        try:
            done, _ = await asyncio.wait(waiters, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if skipper is not None:
                skipper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await skipper
        return got.result() if got in done else ProbeResult(waited=True)
    finally:
        await runner.cleanup()


def describe(reading: Reading) -> str:
    """One reading in a few words."""
    if isinstance(reading, Count):
        return (f"count {reading.sensor}/{reading.line} {_hhmm(reading.start_ms)}-{_hhmm(reading.end_ms)} UTC: "
                f"{reading.entries} in, {reading.exits} out")
    if isinstance(reading, CumulativeCount):
        return f"running totals {reading.line} at {_hhmm(reading.at_ms)} UTC: {reading.entries} in, {reading.exits} out"
    if isinstance(reading, Occupancy):
        return f"occupancy {reading.zone} at {_hhmm(reading.at_ms)} UTC: {reading.value}"
    if isinstance(reading, Transaction):
        return (f"{reading.kind} {reading.txn_id} at {_hhmm(reading.at_ms)} UTC: "
                f"{reading.amount_minor / 100:.2f} {reading.currency}")
    return repr(reading)


def _hhmm(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M")


# --- the file ---------------------------------------------------------------------------------


def render(plan: Plan, profiles: Mapping[str, Profile], now: datetime | None = None) -> str:
    """The commented agent.toml."""
    now = now or datetime.now(UTC)
    chosen: dict[str, dict[str, Any]] = {
        "agent": {"state_dir": str(plan.state_dir)},
        "collector": {"url": plan.collector_url} if plan.collector_url else {},
        "http_push": {"listen": plan.listen} if any(d.transport == "http_push" for d in plan.devices) else {},
    }
    out = [
        f"# footfall agent configuration, written by `footfall agent init` on {now:%Y-%m-%d %H:%M} UTC.",
        "# Every key is explained in CONFIG.md; `footfall agent config check FILE` checks this file.",
        "# Keys shown commented out hold their defaults: uncomment a line to change it.",
    ]
    for section, cls in SECTIONS.items():
        out += ["", f"[{section}]", f"# {(cls.__doc__ or '').strip().splitlines()[0]}"]
        for f in fields(cls):
            doc = f.metadata.get("doc", "")
            if f.name in chosen.get(section, {}):
                out += [f"# {doc}", f"{f.name} = {_toml(chosen[section][f.name])}"]
            else:
                out.append(f"# {f.name} = {_default(f.default, f.metadata.get('kind', ''))}    # {doc}")
    out += ["", "# ---- devices ----"]
    for device in plan.devices:
        profile = profiles[device.adapter]
        out += ["", f"# {device.name}: {profile.description or device.adapter} ({profile.shape})"]
        if device.note:
            out += [f"# {line}" for line in device.note.splitlines()]
        out += ["[[sources]]", f"name = {_toml(device.name)}", f"transport = {_toml(device.transport)}",
                f"adapter = {_toml(device.adapter)}"]
        out += [f"{key} = {_toml(value)}" for key, value in device.options.items() if value != ""]
    if not plan.devices:
        out += ["# none yet: run `footfall agent init` again, or add [[sources]] entries (see CONFIG.md)"]
    return "\n".join(out) + "\n"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)


def _default(value: Any, kind: str) -> str:
    if kind == "duration":
        seconds = float(value)
        return _toml(f"{int(seconds)}s" if seconds >= 1 and seconds == int(seconds) else f"{int(seconds * 1000)}ms")
    if kind == "size":
        for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
            if value and value % scale == 0:
                return _toml(f"{value // scale}{unit}")
    if isinstance(value, Path):
        return _toml(str(value))
    return _toml(value)


def check(text: str, output: Path) -> AgentConfig:
    """Load the rendered text exactly as the agent will; WizardError with every problem otherwise."""
    import tomllib

    try:
        return parse_config(tomllib.loads(text), where=str(output), base=output.parent, adapters=load_profiles,
                            path=output)
    except (tomllib.TOMLDecodeError, ConfigError) as exc:
        raise WizardError(f"the answers do not make a valid agent.toml:\n{exc}") from None


def write(text: str, output: Path, *, force: bool, state_dir: Path | None = None) -> None:
    """Write the file atomically, mode 0600 (device tokens and passwords); WizardError if it exists without `force`.

    Run as root for a service that runs as its own user (the owner of `state_dir`, as packaged), the
    file is also readable by that user's group (mode 0640, owner root), so the service can read it.
    """
    if output.exists() and not force:
        raise WizardError(f"{output} exists; pass --force to replace it")
    write_private(output, text, group=_service_group(state_dir))


def _service_group(state_dir: Path | None) -> int | None:
    """The group of the service user that must read the config: the state directory's, when root writes it."""
    if state_dir is None or os.geteuid() != 0:
        return None
    try:
        owner = state_dir.stat()
    except OSError:
        return None
    return owner.st_gid if owner.st_uid != 0 else None


def probe_note(result: ProbeResult, when: datetime, timeout: float) -> str:
    """What the file says about a device's probe."""
    if result.ok:
        return (f"probed {when:%Y-%m-%d %H:%M} UTC: {len(result.readings)} reading(s) from {result.remote}, "
                f"e.g. {describe(result.readings[0])}" if result.readings else
                f"probed {when:%Y-%m-%d %H:%M} UTC: a message from {result.remote} with no reading in it")
    return (f"NOT probed: no message within {seconds(timeout)}; check the device once the agent runs "
            "(footfall agent status)")


def seconds(value: float) -> str:
    """A probe timeout in words: `300 ms`, `30 s`."""
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.0f} s"


def stdin_is_terminal() -> bool:
    """Whether a person can answer questions."""
    return sys.stdin.isatty()


def summary(devices: Sequence[Device]) -> str:
    """`entrance (generic-json-counter), till (generic-json-pos)`."""
    return ", ".join(f"{d.name} ({d.adapter})" for d in devices) or "no devices"
