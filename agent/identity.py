"""Who this agent is: its Ed25519 key, its enrollment record, and the enrollment client.

Under the state directory:
- `agent.key`: the private key, PKCS#8 PEM, mode 0600, written by `private_file.write_private`
  (created 0600, never briefly readable by others, fsynced, renamed into place), so a crash
  leaves either no key or a whole one. A key that group or others can read is refused: it may
  have leaked.
- `identity.json`: agent_id, collector_url, organization, site, timezone, enrolled_at, written
  the same way (0600 too: the collector URL may carry credentials).

Enrollment (protocol/SPEC.md section 5) sends only the public key; the private key never
leaves this machine. Key generation and encoding come from `footfall.protocol.signing`;
the file I/O stays here, out of protocol/.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import stat
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from footfall.agent.private_file import fsync_dir, write_private
from footfall.protocol import signing

from footfall import __version__
from footfall.logs import event

log = logging.getLogger("footfall.agent.identity")

KEY_FILE = "agent.key"
IDENTITY_FILE = "identity.json"
ENROLL_PATH = "/v1/agents/enroll"


class IdentityError(Exception):
    """The key or identity file is missing, unsafe or unreadable; the message says how to fix it."""


class EnrollmentError(Exception):
    """The collector refused enrollment, or could not be reached; `retryable` says if trying again may help."""

    def __init__(self, message: str, *, status: int = 0, retryable: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable


@dataclass(frozen=True, slots=True)
class Identity:
    """What enrollment recorded about this agent."""

    agent_id: str
    collector_url: str
    organization: str
    site: str
    timezone: str
    enrolled_at: str


def key_path(state_dir: Path, name: str = KEY_FILE) -> Path:
    """Where the private key lives (`name`: another key file in the state directory, e.g. a rotation's next key)."""
    return Path(state_dir) / name


def identity_path(state_dir: Path) -> Path:
    """Where identity.json lives."""
    return Path(state_dir) / IDENTITY_FILE


def write_key(state_dir: Path, key: Ed25519PrivateKey, *, force: bool = False, name: str = KEY_FILE) -> Path:
    """Save the private key as PKCS#8 PEM, mode 0600; refuses to replace one unless `force`."""
    path = key_path(state_dir, name)
    if path.exists() and not force:
        raise IdentityError(
            f"{path} already exists; this agent is enrolled. Use --force to replace its key and re-enroll"
        )
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    write_private(path, pem)
    return path


def load_key(state_dir: Path, name: str = KEY_FILE) -> Ed25519PrivateKey:
    """The private key; IdentityError if it is missing, readable by others, or not an Ed25519 PEM key."""
    path = key_path(state_dir, name)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise IdentityError(f"no key at {path}: run `footfall agent enroll` first") from None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise IdentityError(
            f"{path} is accessible by other users (mode {stat.S_IMODE(info.st_mode):03o}); "
            f"fix it with `chmod 600 {path}`, and re-enroll if the key may have been copied"
        )
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError, OSError) as exc:
        raise IdentityError(f"cannot read the key {path}: {exc}; re-enroll with --force to make a new one") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise IdentityError(f"{path} is not an Ed25519 key; re-enroll with --force to make a new one")
    return key


def promote_key(state_dir: Path, name: str) -> None:
    """Make the key file `name` the agent's key (one atomic rename, then the folder is fsynced)."""
    os.replace(key_path(state_dir, name), key_path(state_dir))
    fsync_dir(Path(state_dir))


def save_identity(state_dir: Path, identity: Identity) -> Path:
    """Write identity.json atomically."""
    path = identity_path(state_dir)
    write_private(path, json.dumps(asdict(identity), indent=2) + "\n")
    return path


def load_identity(state_dir: Path) -> Identity:
    """Read identity.json; IdentityError when missing or damaged."""
    path = identity_path(state_dir)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IdentityError(f"no {path}: this agent is not enrolled; run `footfall agent enroll`") from None
    except PermissionError:
        raise IdentityError(
            f"cannot read {path} (mode 0600): run this as root (sudo) or as the agent's own user"
        ) from None
    except (OSError, ValueError) as exc:
        raise IdentityError(f"cannot read {path}: {exc}; re-enroll with --force") from None
    names = [f.name for f in fields(Identity)]
    if not isinstance(data, dict) or any(not isinstance(data.get(n), str) for n in names):
        raise IdentityError(f"{path} lacks some of {names}; re-enroll with --force")
    return Identity(**{n: data[n] for n in names})


async def enroll(
    state_dir: Path,
    collector_url: str,
    token: str,
    *,
    force: bool = False,
    hostname: str | None = None,
    request_timeout: float = 30.0,
) -> Identity:
    """Generate a key (mode 0600), register its public half with the collector, write identity.json.

    The key is saved before the request, so a lost answer can be retried with the same key
    (the collector then answers 409 if it did register it). An existing enrolled key is kept
    unless `force`.
    """
    state_dir = Path(state_dir)
    collector_url = collector_url.rstrip("/")
    enrolled = identity_path(state_dir).exists()
    if key_path(state_dir).exists() and not force:
        if enrolled:
            raise IdentityError(
                f"{key_path(state_dir)} exists and this agent is enrolled; pass --force to make a new key and re-enroll"
            )
        key = load_key(state_dir)
        event(log, "enroll_reusing_key", path=str(key_path(state_dir)))
    else:
        key = signing.generate_key()
        write_key(state_dir, key, force=True)
    body = {
        "token": token,
        "public_key": signing.public_key_b64(key),
        "hostname": hostname or socket.gethostname(),
        "version": __version__,
    }
    answer = await _post_enroll(collector_url, body, request_timeout)
    identity = Identity(
        agent_id=_text(answer, "agent_id"),
        collector_url=collector_url,
        organization=_text(answer, "organization"),
        site=_text(answer, "site"),
        timezone=_text(answer, "timezone"),
        enrolled_at=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    )
    save_identity(state_dir, identity)
    event(log, "enrolled", agent=identity.agent_id, organization=identity.organization, site=identity.site)
    return identity


async def _post_enroll(collector_url: str, body: dict[str, str], request_timeout: float) -> dict[str, Any]:
    url = collector_url + ENROLL_PATH
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=request_timeout)) as session,
            session.post(url, json=body) as response,
        ):
            text = await response.text()
            status = response.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise EnrollmentError(
            f"cannot reach the collector at {url}: {exc or type(exc).__name__}", retryable=True
        ) from None
    reason = _reason(text)
    if status == 201:
        try:
            answer = json.loads(text)
        except ValueError:
            raise EnrollmentError(f"the collector answered 201 without JSON: {text[:200]!r}", status=status) from None
        if not isinstance(answer, dict):
            raise EnrollmentError(f"the collector answered 201 with {text[:200]!r}", status=status)
        return answer
    hints = {
        400: "the collector refused the request",
        401: "the token is unknown, used up, revoked or expired: ask your fleet admin for a new enrollment token",
        409: "this public key is already enrolled: use --force to make a new key",
    }
    hint = hints.get(status, "the collector failed")
    raise EnrollmentError(
        f"enrollment refused ({status}): {hint}" + (f"; it said: {reason}" if reason else ""),
        status=status,
        retryable=status >= 500,
    )


def _reason(text: str) -> str:
    try:
        data = json.loads(text)
    except ValueError:
        return text.strip()[:200]
    if isinstance(data, dict):
        return str(data.get("message") or data.get("error") or "")
    return ""


def _text(answer: dict[str, Any], key: str) -> str:
    value = answer.get(key)
    if not isinstance(value, str) or not value:
        raise EnrollmentError(f"the collector's enrollment answer lacks {key!r}: {answer}")
    return value
