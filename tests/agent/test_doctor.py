"""`footfall agent doctor` against a real collector over loopback, a real HTTPS server with an untrusted
certificate, real key files and a real pseudo-terminal as a serial port."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import ssl
import sys
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from footfall.agent.config.load import load_config
from footfall.agent.decode.profile_load import load_profiles
from footfall.agent.doctor import ServiceUser, check_config_secrets, check_serial, service_user
from footfall.agent.identity import enroll
from footfall.agent.timesync import kernel_synchronized

from tests.fixtures.collector import RunningCollector, free_port


def write_config(folder: Path, url: str) -> Path:
    path = folder / "agent.toml"
    path.write_text(f'[agent]\nstate_dir = "state"\n[collector]\nurl = "{url}"\n[buffer]\nmax_size = "1MiB"\n'
                    '[[sources]]\nname = "door"\ntransport = "http_push"\nadapter = "generic-json-counter"\n'
                    'path = "/push/door"\n')
    return path


async def doctor(config: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "footfall", "agent", "doctor", "--config", str(config), "--user", "root", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    text = out.decode()
    assert proc.returncode is not None
    return proc.returncode, json.loads(text) if "--json" in args else {"text": text}, err.decode()


def levels(report: dict[str, Any]) -> dict[str, str]:
    found: dict[str, str] = {}
    for check in report["checks"]:
        found.setdefault(check["area"], check["level"])
    return found


async def test_doctor_checks_a_healthy_enrolled_agent_and_fixes_its_key(
    tmp_path: Path, collector: RunningCollector
) -> None:
    org = await collector.create_org()
    site = await collector.create_site(org)
    config = write_config(tmp_path, collector.url)
    await enroll(tmp_path / "state", collector.url, await collector.create_token(site, org))
    synced = kernel_synchronized()

    code, report, _ = await doctor(config, "--json")
    found = levels(report)
    assert {k: found[k] for k in ("config", "key", "enrolled", "dns", "tcp", "tls", "clock", "serial", "disk")} == {
        "config": "ok", "key": "ok", "enrolled": "ok", "dns": "ok", "tcp": "ok", "tls": "warn", "clock": "ok",
        "serial": "ok", "disk": "ok",
    }
    assert found["agent"] == "warn", "never run with this state directory"
    assert found["time"] == ("ok" if synced else "fail")
    assert code == (0 if synced else 1)

    key = tmp_path / "state" / "agent.key"
    key.chmod(0o644)
    code, report, _ = await doctor(config, "--json")
    (bad,) = [c for c in report["checks"] if c["area"] == "key"]
    assert (bad["level"], bad["fixable"], bad["fix"]) == ("fail", True, f"chmod 600 {key} (and re-enroll with "
                                                           "--force if it may have been copied)")
    assert code == 1
    code, report, _ = await doctor(config, "--fix")
    assert f"fixed: chmod 600 {key}" in report["text"]
    assert key.stat().st_mode & 0o777 == 0o600
    assert "ok    key" in report["text"]


async def test_doctor_names_an_unreachable_collector_and_an_untrusted_certificate(tmp_path: Path) -> None:
    (tmp_path / "down").mkdir()
    config = write_config(tmp_path / "down", f"http://127.0.0.1:{free_port()}")
    code, report, _ = await doctor(config, "--json")
    tcp = next(c for c in report["checks"] if c["area"] == "tcp")
    assert code == 1 and tcp["level"] == "fail" and "cannot connect" in tcp["message"]
    assert "firewall" in tcp["fix"]
    assert levels(report)["key"] == "fail", "not enrolled"

    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    runner = web.AppRunner(web.Application())
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=context)
    await site.start()
    try:
        (tmp_path / "tls").mkdir()
        code, report, _ = await doctor(write_config(tmp_path / "tls", f"https://127.0.0.1:{port}"), "--json")
    finally:
        await runner.cleanup()
    tls = next(c for c in report["checks"] if c["area"] == "tls")
    assert tls["level"] == "fail" and "not trusted" in tls["message"] and "self-signed" in tls["message"]


def self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=30)).sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_serial_ports_must_exist_and_be_readable_by_the_service_user(tmp_path: Path) -> None:
    master, slave = os.openpty()
    try:
        port = Path(os.ttyname(slave))
        nobody = service_user("nobody")
        assert nobody.exists
        (denied,) = check_serial([("door", port)], nobody)
        group = port.stat().st_gid
        assert denied.level == "fail" and "nobody cannot read and write" in denied.message
        assert denied.fix.startswith("usermod -aG ") and denied.fix.endswith(" nobody, then systemctl restart "
                                                                               "footfall-agent")
        member = ServiceUser("nobody", nobody.uid, nobody.gid, nobody.groups | {group}, True)
        port.chmod(0o660)
        (allowed,) = check_serial([("door", port)], member)
        assert allowed.level == "ok"
        (missing,) = check_serial([("door", tmp_path / "ttyUSB9")], nobody)
        assert missing.level == "fail" and "does not exist" in missing.message
        (not_tty,) = check_serial([("door", tmp_path)], nobody)
        assert not_tty.level == "fail" and "not a serial device" in not_tty.message
    finally:
        os.close(slave)
        os.close(master)


def test_doctor_fails_a_config_with_credentials_that_every_user_can_read(tmp_path: Path) -> None:
    config = write_config(tmp_path, "https://collector.example.com")
    config.write_text(config.read_text() + 'token = "s3cret"\n')
    config.chmod(0o644)  # the packaged file, edited by hand
    loaded = load_config(config, adapters=load_profiles)
    # The service runs as its own user (packaged: footfall): root's file gets that user's group.
    gid = 65534 if os.geteuid() == 0 else os.getgid()  # only root may give a file to another group
    service = ServiceUser("nobody", 65534, gid, frozenset({gid}), True)
    (found,) = check_config_secrets(config, loaded, service)
    assert (found.level, found.area) == ("fail", "secrets")
    assert "door.token" in found.message and "s3cret" not in found.message and "mode 644" in found.message
    assert found.fixer is not None
    found.fixer()
    info = config.stat()
    assert (info.st_mode & 0o777, info.st_gid) == (0o640, gid)
    assert [c.level for c in check_config_secrets(config, loaded, service)] == ["ok"]
    # Run by hand, as the user who owns it: nobody else reads it at all.
    config.chmod(0o644)
    (mine,) = check_config_secrets(config, loaded, ServiceUser("me", info.st_uid, 0, frozenset(), True))
    assert mine.fixer is not None and mine.fixer() == f"chmod 600 {config}"
    assert config.stat().st_mode & 0o777 == 0o600
