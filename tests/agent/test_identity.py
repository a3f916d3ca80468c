"""The agent's key file and enrollment against a real HTTP collector peer on 127.0.0.1."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from footfall.agent.identity import (
    EnrollmentError,
    IdentityError,
    enroll,
    key_path,
    load_identity,
    load_key,
    write_key,
)
from footfall.protocol import signing

from tests.agent.peer import PeerCollector


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_key_is_pkcs8_pem_mode_0600_even_with_a_loose_umask(tmp_path: Path) -> None:
    key = signing.generate_key()
    old = os.umask(0)
    try:
        path = write_key(tmp_path / "state", key)
    finally:
        os.umask(old)
    assert mode(path) == 0o600
    assert path.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert signing.public_bytes(load_key(tmp_path / "state")) == signing.public_bytes(key)
    assert sorted(p.name for p in path.parent.iterdir()) == ["agent.key"], "no temporary file left behind"


def test_an_existing_key_is_not_replaced_without_force(tmp_path: Path) -> None:
    first = signing.generate_key()
    write_key(tmp_path, first)
    with pytest.raises(IdentityError, match="--force"):
        write_key(tmp_path, signing.generate_key())
    write_key(tmp_path, signing.generate_key(), force=True)
    assert signing.public_bytes(load_key(tmp_path)) != signing.public_bytes(first)


def test_a_key_readable_by_others_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = write_key(tmp_path, signing.generate_key())
    path.chmod(0o644)
    with pytest.raises(IdentityError, match=f"chmod 600 {path}"):
        load_key(tmp_path)


def test_missing_or_damaged_files_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(IdentityError, match="footfall agent enroll"):
        load_key(tmp_path)
    with pytest.raises(IdentityError, match="not enrolled"):
        load_identity(tmp_path)
    (tmp_path / "identity.json").write_text('{"agent_id": 3}')
    with pytest.raises(IdentityError, match="re-enroll"):
        load_identity(tmp_path)


async def test_enrollment_registers_the_public_key_and_writes_identity(tmp_path: Path, peer: PeerCollector) -> None:
    identity = await enroll(tmp_path, peer.url + "/", "ffe_test", hostname="gw-12")
    assert (identity.agent_id, identity.organization, identity.site, identity.timezone) == (
        "agt_test1",
        "acme",
        "store-12",
        "Europe/Paris",
    )
    assert identity.collector_url == peer.url
    assert load_identity(tmp_path) == identity
    assert json.loads((tmp_path / "identity.json").read_text())["agent_id"] == "agt_test1"
    assert peer.keys["agt_test1"] == signing.public_bytes(load_key(tmp_path))
    assert mode(key_path(tmp_path)) == 0o600

    with pytest.raises(IdentityError, match="pass --force"):
        await enroll(tmp_path, peer.url, "ffe_test")
    again = await enroll(tmp_path, peer.url, "ffe_test", force=True)
    assert again.agent_id == "agt_test2"
    assert peer.keys["agt_test2"] == signing.public_bytes(load_key(tmp_path)) != peer.keys["agt_test1"]


async def test_a_refused_token_writes_no_identity_and_the_retry_reuses_the_key(
    tmp_path: Path, peer: PeerCollector
) -> None:
    with pytest.raises(EnrollmentError, match=r"401.*ask your fleet admin for a new enrollment token") as caught:
        await enroll(tmp_path, peer.url, "ffe_wrong")
    assert caught.value.status == 401 and not caught.value.retryable
    assert not (tmp_path / "identity.json").exists()
    public = signing.public_bytes(load_key(tmp_path))
    identity = await enroll(tmp_path, peer.url, "ffe_test")
    assert peer.keys[identity.agent_id] == public


async def test_a_key_the_collector_already_has_gets_409(tmp_path: Path, peer: PeerCollector) -> None:
    await enroll(tmp_path, peer.url, "ffe_test")
    (tmp_path / "identity.json").unlink()
    with pytest.raises(EnrollmentError, match=r"409.*already enrolled"):
        await enroll(tmp_path, peer.url, "ffe_test")


async def test_an_unreachable_collector_is_retryable(tmp_path: Path, peer: PeerCollector) -> None:
    url = peer.url
    await peer.stop()
    with pytest.raises(EnrollmentError, match="cannot reach the collector") as caught:
        await enroll(tmp_path, url, "ffe_test", request_timeout=5)
    assert caught.value.retryable
