"""Key rotation from the agent's side (protocol/SPEC.md section 11).

1. A new key is made and saved as `agent.key.next` (mode 0600, fsynced) before anything is
   sent, so a crash at any point leaves the agent with a key the collector accepts.
2. `POST /v1/agents/rotate-key` signed with the current key, carrying the new public key and
   the new key's signature of the rotation message.
3. On 200 `agent.key.next` replaces `agent.key` (one rename); from then on every request is
   signed with the new key, and the collector refuses the old one.

If the answer was lost (a crash, a cut uplink), `agent.key.next` is still there at the next
try: the same request is sent again with the current key and, if the collector answers
`bad_signature` (it had rotated already), once more signed with the next key, which the
collector accepts as the rotation it already did.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from footfall.agent.collector_client import Reply
from footfall.agent.identity import IdentityError, key_path, load_key, promote_key, write_key
from footfall.protocol.fleet import ROTATE_KEY_PATH, make_rotation
from footfall.protocol.signing import generate_key

from footfall.logs import event

log = logging.getLogger("footfall.agent.rotation")
NEXT_KEY_FILE = "agent.key.next"

# Sends one signed request: (key, path, JSON payload) -> the collector's reply.
Send = Callable[[Ed25519PrivateKey, str, dict[str, str]], Awaitable[Reply]]


class RotationError(Exception):
    """The collector did not take the new key; the current key stays in use."""


def pending(state_dir: Path) -> bool:
    """Whether an earlier rotation may not have finished (`agent.key.next` exists)."""
    return key_path(state_dir, NEXT_KEY_FILE).exists()


async def rotate(folder: Path, agent: str, current: Ed25519PrivateKey, send: Send) -> Ed25519PrivateKey:
    """Rotate to a new key (or finish an earlier rotation); the key to use from now on. RotationError otherwise."""
    try:
        new = load_key(folder, NEXT_KEY_FILE) if pending(folder) else None
    except IdentityError as exc:
        event(log, "next_key_unusable", logging.WARNING, error=str(exc))
        new = None
    if new is None:
        new = generate_key()
        write_key(folder, new, force=True, name=NEXT_KEY_FILE)
    body = make_rotation(agent, current, new).as_json()
    reply = await send(current, ROTATE_KEY_PATH, body)
    if reply.status == 401 and reply.code == "bad_signature":
        # The collector may already hold the new key (our earlier request got through, its answer did not).
        reply = await send(new, ROTATE_KEY_PATH, body)
    if not reply.ok:
        raise RotationError(f"the collector refused the new key ({reply.status}): {reply.reason}")
    promote_key(folder, NEXT_KEY_FILE)
    event(log, "key_rotated", agent=agent)
    return new
