"""The agent's .deb: built by scripts/package, its layout and scripts checked, then installed, upgraded,
removed and purged in a throwaway root (dpkg --root, maintainer scripts run chrootless with DPKG_ROOT).

What this cannot do: start the unit (no systemd as PID 1 on the test machines). The unit is checked
with `systemd-analyze verify` and its sandbox scored with `systemd-analyze security --offline`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNIT = "lib/systemd/system/footfall-agent.service"


def run(*args: str | Path, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600, check=False,
                          env={**os.environ, **(env or {})})
    if check:
        assert done.returncode == 0, f"{args} -> {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package, built once for this module."""
    out = tmp_path_factory.mktemp("deb")
    built = run(REPO / "scripts" / "package", "--output", out)
    path = Path(built.stdout.strip().splitlines()[-1])
    assert path.name.startswith("footfall-agent_0.1.0-1_") and path.exists()
    return path


def control(deb: Path) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in run("dpkg-deb", "-f", deb).stdout.splitlines():
        if ":" in line and not line.startswith(" "):
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def test_the_package_layout_and_its_scripts(deb: Path, tmp_path: Path) -> None:
    fields = control(deb)
    assert fields["Package"] == "footfall-agent" and fields["Version"] == "0.1.0-1"
    assert fields["Architecture"] == run("dpkg", "--print-architecture").stdout.strip()
    assert "python3-venv" in fields["Depends"] and "passwd" in fields["Depends"]
    listing = run("dpkg-deb", "-c", deb).stdout
    files = {line.split()[-1].lstrip(".") for line in listing.splitlines()}
    shipped = ("/" + UNIT, "/etc/footfall/agent.toml", "/usr/bin/footfall", "/usr/share/doc/footfall-agent/README.md")
    for path in shipped:
        assert path in files, path
    wheels = sorted(f.rsplit("/", 1)[1] for f in files if f.startswith("/opt/footfall/wheels/") and f.endswith(".whl"))
    names = {w.split("-")[0].lower() for w in wheels}
    assert {"footfall", "aiohttp", "msgpack", "cryptography", "tenacity", "typer", "prometheus_client"} <= names
    assert not any(n.startswith("psycopg") for n in names), "the collector's database stack stays off gateways"
    assert not any(f.startswith("/var/lib/footfall") for f in files), "the state directory is made, not shipped"

    extracted = tmp_path / "control"
    run("dpkg-deb", "-e", deb, extracted)
    assert (extracted / "conffiles").read_text().split() == ["/etc/footfall/agent.toml"]
    for script in ("postinst", "prerm", "postrm"):
        assert (extracted / script).stat().st_mode & 0o111, f"{script} must be executable"
        run("sh", "-n", extracted / script)

    root = tmp_path / "files"
    run("dpkg-deb", "-x", deb, root)
    text = (root / UNIT).read_text()
    for directive in ("User=footfall", "SupplementaryGroups=dialout", "NoNewPrivileges=yes", "ProtectSystem=strict",
                      "StateDirectory=footfall", "ReadWritePaths=/var/lib/footfall", "StandardError=journal",
                      "CapabilityBoundingSet=\n"):
        assert directive in text, directive
    assert re.search(r"^ExecStart=/opt/footfall/venv/bin/footfall agent run --config /etc/footfall/agent.toml$",
                     text, re.MULTILINE)


@pytest.fixture
def throwaway_root(tmp_path: Path) -> Iterator[Path]:
    """An empty root with a dpkg database and the few /etc files useradd needs (root and dialout)."""
    root = tmp_path / "root"
    for folder in ("var/lib/dpkg/updates", "var/lib/dpkg/info", "etc", "usr/sbin"):
        (root / folder).mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_text("")
    (root / "var/lib/dpkg/available").write_text("")
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (root / "etc/group").write_text("root:x:0:\ndialout:x:20:\n")
    (root / "etc/shadow").write_text("root:*:19000:0:99999:7:::\n")
    (root / "etc/gshadow").write_text("root:*::\ndialout:*::\n")
    yield root
    shutil.rmtree(root, ignore_errors=True)


def dpkg(root: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """dpkg on the throwaway root; maintainer scripts run on this machine with DPKG_ROOT set."""
    return run("dpkg", f"--root={root}", "--force-script-chrootless", "--force-depends", "--force-not-root",
               "--log=/dev/null", *args)


def revision(deb: Path, folder: Path, new: str) -> Path:
    """The same package under another version: an upgrade to install over the first."""
    tree = folder / "tree"
    run("dpkg-deb", "-R", deb, tree)
    control_file = tree / "DEBIAN" / "control"
    control_file.write_text(control_file.read_text().replace("Version: 0.1.0-1", f"Version: {new}"))
    out = folder / f"footfall-agent_{new}.deb"
    run("dpkg-deb", "--root-owner-group", "-Zxz", "--build", tree, out)
    return out


def account(root: Path, name: str, file: str) -> list[str]:
    for line in (root / "etc" / file).read_text().splitlines():
        if line.startswith(f"{name}:"):
            return line.split(":")
    return []


def test_install_upgrade_remove_and_purge_in_a_throwaway_root(deb: Path, throwaway_root: Path, tmp_path: Path) -> None:
    root = throwaway_root
    dpkg(root, "-i", deb)
    user = account(root, "footfall", "passwd")
    assert user[5:] == ["/var/lib/footfall", "/usr/sbin/nologin"] and int(user[2]) < 1000, "a system user"
    assert "footfall" in account(root, "dialout", "group")[3].split(",")
    state = root / "var/lib/footfall"
    info = state.stat()
    assert (info.st_uid, info.st_mode & 0o777) == (int(user[2]), 0o750)
    enabled = root / "etc/systemd/system/multi-user.target.wants/footfall-agent.service"
    assert enabled.is_symlink() and os.readlink(enabled) == "/" + UNIT
    footfall = root / "opt/footfall/venv/bin/footfall"
    assert run(footfall, "--version").stdout.strip() == "footfall 0.1.0"
    checked = run(footfall, "agent", "config", "check", root / "etc/footfall/agent.toml")
    assert "OK" in checked.stdout
    assert run(root / "opt/footfall/venv/bin/python", "-c", "import psycopg", check=False).returncode != 0
    assert "exec /opt/footfall/venv/bin/footfall" in (root / "usr/bin/footfall").read_text()
    assert "install ok installed" in dpkg(root, "-s", "footfall-agent").stdout

    # systemd can read the unit, and its sandbox scores well.
    unit = tmp_path / "footfall-agent.service"
    unit.write_text((root / UNIT).read_text().replace("ExecStart=/opt/", f"ExecStart={root}/opt/"))
    verified = run("systemd-analyze", "verify", unit)
    assert verified.stderr == "", verified.stderr
    security = run("systemd-analyze", "--offline=true", f"--root={root}", "security", "footfall-agent.service",
                   check=False)
    exposure = re.search(r"Overall exposure level for footfall-agent.service: ([0-9.]+)", security.stdout)
    assert exposure and float(exposure.group(1)) < 3.0, security.stdout[-500:]

    # Upgrade: the buffer, key and identity stay; the venv is built afresh.
    (state / "buffer.sqlite").write_bytes(b"readings not yet uploaded")
    (state / "agent.key").write_bytes(b"the key")
    (root / "etc/footfall/agent.toml").write_text('[agent]\nstate_dir = "/var/lib/footfall"\n# edited\n')
    stale = root / "opt/footfall/venv/left-over"
    stale.write_text("from the old version")
    dpkg(root, "-i", revision(deb, tmp_path, "0.1.0-2"))
    assert "Version: 0.1.0-2" in dpkg(root, "-s", "footfall-agent").stdout
    assert (state / "buffer.sqlite").read_bytes() == b"readings not yet uploaded"
    assert (state / "agent.key").read_bytes() == b"the key"
    assert "# edited" in (root / "etc/footfall/agent.toml").read_text(), "an edited conffile is kept"
    assert not stale.exists() and footfall.exists()
    assert len([line for line in (root / "etc/passwd").read_text().splitlines() if line.startswith("footfall:")]) == 1

    # Remove: the data and the config stay; the program and the enabled unit go.
    dpkg(root, "-r", "footfall-agent")
    assert (state / "buffer.sqlite").exists() and (root / "etc/footfall/agent.toml").exists()
    assert not (root / "opt/footfall").exists() and not (root / "usr/bin/footfall").exists()
    assert not enabled.exists() and not (root / UNIT).exists()

    # Purge: the data goes too; the system user stays, as Debian does.
    dpkg(root, "-P", "footfall-agent")
    assert not state.exists() and not (root / "etc/footfall").exists()
    assert account(root, "footfall", "passwd")
