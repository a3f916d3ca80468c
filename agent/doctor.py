"""`footfall agent doctor`: check what a gateway needs, say what is wrong in plain words, fix what can be fixed.

Each check gives `ok`, `warn` or `fail`, one line saying what it found and, when not ok, the
fix in words a technician can type. Some problems can be fixed on the spot (a key readable by
others, a key the service user cannot read): `--fix` fixes them, and in a terminal the doctor
offers to. The checks, in order:

- config: the file loads with the agent's loader (every problem listed);
- secrets: a config that holds device tokens, webhook secrets or passwords is not readable by
  every user (`footfall agent init` writes it so; a hand-edited copy of the packaged 0644 file
  may not be);
- key: present, mode 0600, owned by the service user; enrollment recorded;
- collector: DNS, TCP, TLS (certificate valid, days to expiry), the collector answering, and
  this clock against the collector's (`X-Footfall-Server-Time`);
- agent: running, and accepted by the collector (its last upload and heartbeat were not refused);
- rejected: records the collector refused as malformed, parked on the gateway and never counted
  (how many, from which source, the newest reason; every record of a source refused is a fail);
- serial ports: each configured device path exists and the service user may read and write
  it (the `dialout` group, usually);
- disk: room for the buffer to grow to `[buffer] max_size`;
- time: the kernel says the clock is synchronised (adjtimex), and what timedatectl says.

The service user is the one the packaged unit runs as (`footfall`), or the current user when
there is no such user (a development machine).
"""

from __future__ import annotations

import asyncio
import grp
import json
import os
import pwd
import shutil
import socket
import ssl
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp
from footfall.agent.config.load import load_config
from footfall.agent.config.reader import ConfigError
from footfall.agent.config.sections import AgentConfig
from footfall.agent.decode.profile_load import load_profiles
from footfall.agent.identity import IdentityError, identity_path, key_path, load_identity
from footfall.agent.pipeline import STATUS_FILE
from footfall.agent.status import gather
from footfall.agent.timesync import kernel_synchronized, systemd_time
from footfall.protocol.signing import DEFAULT_WINDOW_S, HEADER_SERVER_TIME

Level = Literal["ok", "warn", "fail"]
SERVICE_USER = "footfall"
NETWORK_TIMEOUT_S = 5.0
# Past these, the clock against the collector's is worth a warning; past the signing window, uploads fail.
CLOCK_WARN_S = 5.0
CERT_WARN_DAYS = 14
MIN_FREE_BYTES = 64 * 1024 * 1024


@dataclass(slots=True)
class Check:
    """One finding."""

    area: str
    level: Level
    message: str
    fix: str = ""
    fixer: Callable[[], str] | None = field(default=None, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (without the fixer)."""
        return {"area": self.area, "level": self.level, "message": self.message, "fix": self.fix,
                "fixable": self.fixer is not None}


@dataclass(frozen=True, slots=True)
class ServiceUser:
    """Who the agent runs as: name, uid, gid and every group id."""

    name: str
    uid: int
    gid: int
    groups: frozenset[int]
    exists: bool


def service_user(name: str = SERVICE_USER) -> ServiceUser:
    """The named user, or the current one when it does not exist."""
    try:
        entry = pwd.getpwnam(name)
        return ServiceUser(name, entry.pw_uid, entry.pw_gid, frozenset(os.getgrouplist(name, entry.pw_gid)), True)
    except KeyError:
        entry = pwd.getpwuid(os.getuid())
        return ServiceUser(entry.pw_name, entry.pw_uid, entry.pw_gid, frozenset(os.getgroups()) | {entry.pw_gid},
                           False)


def can_access(path: Path, user: ServiceUser, want: int) -> bool:
    """Whether `user` has the `want` bits (R_OK|W_OK as 4|2) on `path` by owner, group or other permissions."""
    info = path.stat()
    if user.uid == 0:
        return True
    mode = stat.S_IMODE(info.st_mode)
    if info.st_uid == user.uid:
        bits = (mode >> 6) & 7
    elif info.st_gid in user.groups:
        bits = (mode >> 3) & 7
    else:
        bits = mode & 7
    return bits & want == want


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def check_config(path: Path) -> tuple[Check, AgentConfig | None]:
    """The config loads with the agent's loader."""
    try:
        config = load_config(path, adapters=load_profiles)
    except ConfigError as exc:
        return Check("config", "fail", str(exc), f"edit {path} as each line says, then run this again"), None
    sources = ", ".join(f"{s.name} ({s.transport})" for s in config.sources) or "no sources yet"
    return Check("config", "ok", f"{path} is valid: {sources}"), config


# Source options whose value is a credential (CONFIG.md: http_push, mqtt, http_poll).
SECRET_OPTIONS = ("token", "secret", "password")


def config_secrets(config: AgentConfig) -> list[str]:
    """Where the config holds a credential (`till.token`), by key only: never the value."""
    return [
        f"{source.name}.{key}" for source in config.sources for key in SECRET_OPTIONS
        if getattr(source.options, key, "")
    ]


def check_config_secrets(path: Path, config: AgentConfig, user: ServiceUser) -> list[Check]:
    """A config holding credentials is not readable by other users (nothing to check without any)."""
    secrets = config_secrets(config)
    if not secrets:
        return []
    info = path.stat()
    mode = stat.S_IMODE(info.st_mode)
    held = ", ".join(secrets)
    if not mode & 0o007:
        return [Check("secrets", "ok", f"{path} holds credentials ({held}); other users cannot read it")]
    if user.exists and info.st_uid != user.uid:
        # Owned by root, read by the service: its group may read, others not.
        group = _group_name(user.gid)
        fix = f"chgrp {group} {path} && chmod 640 {path}"

        def fixer() -> str:
            os.chown(path, -1, user.gid)
            os.chmod(path, 0o640)
            return fix
    else:
        fix = f"chmod 600 {path}"

        def fixer() -> str:
            os.chmod(path, 0o600)
            return fix
    return [Check("secrets", "fail", f"{path} holds credentials ({held}) and every user can read it (mode {mode:03o})",
                  fix, fixer=fixer)]


def check_key(state_dir: Path, user: ServiceUser) -> list[Check]:
    """The key exists, is 0600 and readable by the service user; the agent is enrolled."""
    path = key_path(state_dir)
    if not path.exists():
        return [Check("key", "fail", f"no key at {path}: this agent is not enrolled",
                      "footfall agent enroll --collector URL --token ffe_... --config FILE")]
    info = path.stat()
    checks: list[Check] = []
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        checks.append(Check(
            "key", "fail", f"{path} has mode {mode:03o}: other users can read the private key",
            f"chmod 600 {path} (and re-enroll with --force if it may have been copied)",
            fixer=lambda: _chmod_private(path),
        ))
    if user.exists and info.st_uid != user.uid:
        owner = pwd.getpwuid(info.st_uid).pw_name if _known_uid(info.st_uid) else str(info.st_uid)
        checks.append(Check(
            "key", "fail", f"{path} belongs to {owner}: the service user {user.name} cannot read it",
            f"chown {user.name}: {path} {identity_path(state_dir)}",
            fixer=lambda: _chown_identity(state_dir, user),
        ))
    if not checks:
        checks.append(Check("key", "ok", f"{path} is private (mode 600) and belongs to {user.name}"))
    try:
        identity = load_identity(state_dir)
        checks.append(Check("enrolled", "ok",
                            f"as {identity.agent_id} ({identity.organization} / {identity.site}) "
                            f"with {identity.collector_url}"))
    except IdentityError as exc:
        checks.append(Check("enrolled", "fail", str(exc),
                            "footfall agent enroll --collector URL --token ffe_... --config FILE --force"))
    return checks


def _chmod_private(path: Path) -> str:
    os.chmod(path, 0o600)
    return f"chmod 600 {path}"


def _known_uid(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


def _chown_identity(state_dir: Path, user: ServiceUser) -> str:
    for path in (key_path(state_dir), identity_path(state_dir)):
        if path.exists():
            os.chown(path, user.uid, user.gid)
    return f"chown {user.name} {key_path(state_dir)} {identity_path(state_dir)}"


async def check_collector(url: str, now: Callable[[], float] = time.time) -> list[Check]:
    """DNS, TCP, TLS and an HTTP answer from the collector, with its clock against ours."""
    if not url:
        return [Check("collector", "fail", "no collector URL: not in the config and not enrolled",
                      "set [collector] url, or run footfall agent enroll --collector URL ...")]
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    checks: list[Check] = []
    try:
        infos = await asyncio.wait_for(
            asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM), NETWORK_TIMEOUT_S
        )
    except (OSError, TimeoutError) as exc:
        return [Check("dns", "fail", f"cannot resolve {host}: {exc or 'timed out'}",
                      "check the gateway's DNS servers (resolvectl status) and the spelling of the URL")]
    addresses = sorted({str(info[4][0]) for info in infos})
    checks.append(Check("dns", "ok", f"{host} -> {', '.join(addresses[:3])}"))
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), NETWORK_TIMEOUT_S)
        writer.close()
        await writer.wait_closed()
    except (OSError, TimeoutError) as exc:
        checks.append(Check("tcp", "fail", f"cannot connect to {host}:{port}: {exc or 'timed out'}",
                            f"check the uplink and that the firewall lets this gateway reach {host}:{port}"))
        return checks
    checks.append(Check("tcp", "ok", f"connected to {host}:{port}"))
    if parts.scheme == "https":
        tls = await _check_tls(host, port, now)
        checks.append(tls)
        if tls.level == "fail":
            return checks
    else:
        checks.append(Check("tls", "warn", f"{url} is plain HTTP: uploads are not encrypted",
                            "use an https:// collector URL outside a lab"))
    checks.append(await _check_http(url, now))
    return checks


async def _check_tls(host: str, port: int, now: Callable[[], float]) -> Check:
    context = ssl.create_default_context()
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=context, server_hostname=host), NETWORK_TIMEOUT_S
        )
    except ssl.SSLCertVerificationError as exc:
        return Check("tls", "fail", f"{host}'s certificate is not trusted: {exc.verify_message}",
                     "install the collector's CA certificate (update-ca-certificates) or fix the certificate")
    except (OSError, TimeoutError, ssl.SSLError) as exc:
        return Check("tls", "fail", f"TLS handshake with {host}:{port} failed: {exc or 'timed out'}",
                     "check that the collector serves HTTPS on this port")
    try:
        cert = writer.get_extra_info("peercert") or {}
        version = writer.get_extra_info("ssl_object").version()
    finally:
        writer.close()
        await writer.wait_closed()
    expires = cert.get("notAfter")
    if not expires:
        return Check("tls", "ok", f"{version}, certificate trusted")
    days = (ssl.cert_time_to_seconds(expires) - now()) / 86400
    if days < CERT_WARN_DAYS:
        return Check("tls", "warn", f"{version}; the certificate expires in {days:.0f} days ({expires})",
                     "renew the collector's certificate")
    return Check("tls", "ok", f"{version}, certificate trusted, valid for {days:.0f} more days")


async def _check_http(url: str, now: Callable[[], float]) -> Check:
    """The collector answers /healthz (or /v1/health), and its clock is close to ours."""
    timeout = aiohttp.ClientTimeout(total=NETWORK_TIMEOUT_S)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for path in ("/healthz", "/v1/health"):
                sent = now()
                async with session.get(url.rstrip("/") + path) as response:
                    await response.read()
                    received = now()
                    server_time = response.headers.get(HEADER_SERVER_TIME)
                    if response.status != 404:
                        break
    except (aiohttp.ClientError, TimeoutError) as exc:
        return Check("collector", "fail", f"{url} does not answer HTTP: {exc or 'timed out'}",
                     "check the URL; a proxy in the way must let the request through")
    if server_time is None:
        return Check("collector", "fail", f"{url} answered {response.status} but is not a footfall collector",
                     "check the URL (it is the collector's base URL, e.g. https://collector.example.com)")
    offset = float(server_time) - (sent + received) / 2
    what = f"{url} answers ({response.status}); this clock is {abs(offset):.1f} s " + (
        "behind" if offset > 0 else "ahead of") + " the collector's"
    if abs(offset) >= DEFAULT_WINDOW_S:
        return Check("clock", "fail", what + f": uploads are refused past {DEFAULT_WINDOW_S} s",
                     "synchronise the clock: timedatectl set-ntp true (see the time check)")
    if abs(offset) >= CLOCK_WARN_S:
        return Check("clock", "warn", what, "synchronise the clock: timedatectl set-ntp true")
    return Check("clock", "ok", what)


def check_agent(config: AgentConfig) -> list[Check]:
    """Whether the agent runs, and whether the collector accepted its last upload and heartbeat."""
    status = gather(config)
    checks: list[Check] = []
    if status["running"]:
        checks.append(Check("agent", "ok", f"running (pid {status['pid']})"))
    elif (config.agent.state_dir / STATUS_FILE).exists():
        checks.append(Check("agent", "warn", "not running", "systemctl start footfall-agent; journalctl -u "
                            "footfall-agent says why it stopped"))
    else:
        checks.append(Check("agent", "warn", "has never run with this state directory",
                            "systemctl enable --now footfall-agent"))
    upload = status.get("upload") or {}
    beat = status.get("heartbeat") or {}
    if upload.get("state") == "re-enroll" or beat.get("state") == "refused":
        reason = upload.get("last_error") or beat.get("last_error") or ""
        checks.append(Check("accepted", "fail", f"the collector refuses this agent: {reason}",
                            "ask the fleet admin for a token, then footfall agent enroll --force ..."))
    elif status["running"] and upload:
        checks.append(Check("accepted", "ok", f"uploads {upload.get('state')}"))
    checks.append(_rejected_check(status))
    return checks


def _rejected_check(status: dict[str, Any]) -> Check:
    """Records the collector refused: parked on the gateway and never counted (agent/status.py gathers them)."""
    rejected = status["rejected"]
    fix = (
        "read the reason; once the cause is fixed (an upgraded agent): systemctl stop footfall-agent; "
        "footfall agent buffer requeue-rejected; systemctl start footfall-agent"
    )
    if rejected["outages"]:
        return Check(
            "rejected", "fail",
            f"the collector refuses every record of {', '.join(rejected['outages'])}: nothing of it is counted "
            f"({rejected['parked']} records parked; newest reason: {rejected['reason']})", fix,
        )
    if rejected["parked"]:
        where = ", ".join(f"{n} {c}" for n, c in sorted(rejected["by_source"].items()))
        return Check(
            "rejected", "warn",
            f"{rejected['parked']} records refused by the collector are parked, never counted ({where}); "
            f"newest reason: {rejected['reason']}", fix,
        )
    if rejected["refusals"]:
        return Check("rejected", "ok", f"none parked ({rejected['refusals']} refused earlier, since re-queued)")
    return Check("rejected", "ok", "the collector has refused no record")


def serial_ports(config: AgentConfig) -> list[tuple[str, Path]]:
    """(source, device path) for every source whose transport options name a device under /dev."""
    found = []
    for source in config.sources:
        for name in ("port", "device"):
            value = getattr(source.options, name, None)
            if isinstance(value, str) and value.startswith("/dev/"):
                found.append((source.name, Path(value)))
    return found


def check_serial(ports: list[tuple[str, Path]], user: ServiceUser) -> list[Check]:
    """Each device exists, is a character device, and the service user may read and write it."""
    if not ports:
        return [Check("serial", "ok", "no serial devices configured")]
    checks = []
    for source, path in ports:
        if not path.exists():
            hint = "plug the adapter in; ls /dev/serial/by-id/ lists what is there" if path.name else ""
            checks.append(Check("serial", "fail", f"{source}: {path} does not exist", hint))
            continue
        info = path.stat()
        if not stat.S_ISCHR(info.st_mode):
            checks.append(Check("serial", "fail", f"{source}: {path} is not a serial device",
                                "name the device, e.g. /dev/serial/by-id/usb-FTDI_...-port0"))
            continue
        if can_access(path, user, 6):
            checks.append(Check("serial", "ok", f"{source}: {path} readable and writable by {user.name}"))
            continue
        group = _group_name(info.st_gid)
        checks.append(Check(
            "serial", "fail",
            f"{source}: {user.name} cannot read and write {path} (owner {info.st_uid}, group {group}, "
            f"mode {stat.S_IMODE(info.st_mode):03o})",
            f"usermod -aG {group} {user.name}, then systemctl restart footfall-agent",
        ))
    return checks


def check_disk(config: AgentConfig) -> Check:
    """Room for the buffer to reach its bound."""
    folder = config.agent.state_dir
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    usage = shutil.disk_usage(folder)
    from footfall.agent.buffer import read_stats
    from footfall.agent.pipeline import BUFFER_FILE

    stats = read_stats(config.agent.state_dir / BUFFER_FILE) if config.agent.state_dir.exists() else None
    used = stats.bytes if stats else 0
    need = max(0, config.buffer.max_size - used)
    free = _size(usage.free)
    if usage.free < MIN_FREE_BYTES:
        return Check("disk", "fail", f"only {free} free on {folder}: new readings may fail to commit",
                     "free space on this disk (journalctl --vacuum-size=50M helps), or lower [buffer] max_size")
    if usage.free < need:
        return Check("disk", "warn",
                     f"{free} free on {folder}, but the buffer may grow by {_size(need)} during an outage",
                     f"free space, or set [buffer] max_size to about {_size(int(usage.free * 0.8) + used)}")
    return Check("disk", "ok", f"{free} free on {folder}; the buffer may use up to {_size(config.buffer.max_size)}")


def check_time() -> Check:
    """The kernel's synchronisation state, with systemd's word when it has one."""
    kernel = kernel_synchronized()
    systemd = systemd_time()
    said = ""
    if systemd.synchronized is not None:
        said = f"; timedatectl: synchronised {'yes' if systemd.synchronized else 'no'}, NTP service " + (
            "on" if systemd.ntp_service else "off")
    if kernel is None:
        return Check("time", "warn", "cannot ask the kernel whether the clock is synchronised" + said,
                     "check timedatectl status by hand")
    if kernel:
        return Check("time", "ok", "the clock is synchronised (kernel)" + said)
    return Check("time", "fail", "the clock is NOT synchronised (kernel: unsynchronised)" + said,
                 "enable time sync: apt install systemd-timesyncd; timedatectl set-ntp true "
                 "(readings are stamped with this clock)")


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


async def run_checks(config_path: Path, user: ServiceUser) -> list[Check]:
    """Every check, in order."""
    first, config = check_config(config_path)
    checks = [first]
    if config is None:
        return checks
    checks += check_config_secrets(config_path, config, user)
    checks += check_key(config.agent.state_dir, user)
    url = config.collector.url
    if not url:
        try:
            url = load_identity(config.agent.state_dir).collector_url
        except IdentityError:
            url = ""
    checks += await check_collector(url)
    checks += check_agent(config)
    checks += check_serial(serial_ports(config), user)
    checks.append(check_disk(config))
    checks.append(await asyncio.to_thread(check_time))
    return checks


def render(checks: list[Check]) -> str:
    """`ok    area       message`, the fix indented under anything not ok."""
    lines = []
    for c in checks:
        lines.append(f"{c.level.upper() if c.level != 'ok' else 'ok':<5} {c.area:<10} {c.message}")
        if c.fix and c.level != "ok":
            lines.append(f"{'':16} fix: {c.fix}" + ("  (footfall agent doctor --fix does it)" if c.fixer else ""))
    fails = sum(c.level == "fail" for c in checks)
    warns = sum(c.level == "warn" for c in checks)
    lines.append(f"{len(checks)} checks: {fails} failed, {warns} warnings")
    return "\n".join(lines)


def as_json(checks: list[Check]) -> str:
    """The checks as a JSON array, with when they ran."""
    return json.dumps({"at": datetime.now(UTC).isoformat(), "checks": [c.as_dict() for c in checks]}, indent=2)
