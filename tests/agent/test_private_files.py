"""Every file the agent writes that may hold a secret is 0600 from its first byte, whatever the umask.

The files (agent/private_file.py): the key and a rotation's next key, the enrollment record,
the pushed configuration and its state, and the agent.toml `footfall agent init` writes. Each is
written by the real code path under a permissive umask (022 as by hand, 000 as the worst case);
every temporary file fsynced on the way must already be private, and none may be left behind.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from footfall.agent import fleet_config, identity, private_file, wizard
from footfall.agent.identity import Identity, save_identity, write_key
from footfall.agent.rotation import NEXT_KEY_FILE
from footfall.protocol import signing

SECRET_CONFIG = """\
[collector]
url = "https://collector.example.com"

[agent]
state_dir = "state"

[[sources]]
name = "till"
transport = "http_push"
adapter = "generic-json-pos"
path = "/pos/till"
token = "s3cret-token"
"""


@pytest.fixture(params=[0o022, 0o000], ids=["umask-022", "umask-000"])
def loose_umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


@pytest.fixture
def fsynced_modes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """(path, mode) of every regular file at the moment it is fsynced: content on its way to disk."""
    seen: list[tuple[str, int]] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        info = os.fstat(fd)
        if stat.S_ISREG(info.st_mode):
            seen.append((os.readlink(f"/proc/self/fd/{fd}"), stat.S_IMODE(info.st_mode)))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return seen


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_every_file_that_may_hold_a_secret_is_0600_whatever_the_umask(
    tmp_path: Path, loose_umask: int, fsynced_modes: list[tuple[str, int]]
) -> None:
    state = tmp_path / "state"
    written = [
        write_key(state, signing.generate_key()),
        write_key(state, signing.generate_key(), name=NEXT_KEY_FILE),
        save_identity(state, Identity("agt_1", "https://collector.example.com", "org", "site", "UTC", "now")),
    ]
    local = wizard.check(SECRET_CONFIG, tmp_path / "agent.toml")
    applied = fleet_config.store_applied(state, 3, SECRET_CONFIG, fleet_config.FleetConfigState(), 1)
    fleet_config.store_rejected(state, 4, "sources[0].token: must be a string, got ...", applied)
    written += [state / fleet_config.CONFIG_FILE, state / fleet_config.STATE_FILE]
    wizard.write(SECRET_CONFIG, tmp_path / "agent.toml", force=True, state_dir=state)
    written.append(tmp_path / "agent.toml")

    assert {path.name: mode(path) for path in written} == {path.name: 0o600 for path in written}
    assert fleet_config.effective_config(local)[0].sources[0].options.token == "s3cret-token"
    assert fsynced_modes and all(m == 0o600 for _, m in fsynced_modes), fsynced_modes
    left = sorted(p.name for p in [*state.iterdir(), *tmp_path.iterdir()] if p.name.endswith(".tmp"))
    assert left == [], "no temporary file left behind"


def test_a_file_root_writes_for_the_service_user_is_readable_by_its_group_only(tmp_path: Path) -> None:
    # As `sudo footfall agent init` on a packaged gateway: the service (user footfall) must read agent.toml.
    group = os.getgid() if os.geteuid() != 0 else 65534
    path = private_file.write_private(tmp_path / "agent.toml", SECRET_CONFIG, group=group)
    info = path.stat()
    assert (stat.S_IMODE(info.st_mode), info.st_gid) == (0o640, group)


def test_write_private_replaces_a_loose_file_and_keeps_nothing_of_it(tmp_path: Path) -> None:
    path = tmp_path / "fleet-config.toml"
    path.write_text("old")
    path.chmod(0o666)
    private_file.write_private(path, "new")
    assert (path.read_text(), mode(path)) == ("new", 0o600)


def test_the_key_files_still_refuse_a_loose_mode(tmp_path: Path) -> None:
    path = write_key(tmp_path, signing.generate_key())
    path.chmod(0o644)
    with pytest.raises(identity.IdentityError, match="chmod 600"):
        identity.load_key(tmp_path)
