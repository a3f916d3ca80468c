"""Files that may hold a secret, written the one safe way: atomically, and never readable by other users.

The agent writes these through `write_private`: its key and a rotation's next key, its
enrollment record, the configuration the fleet pushed (`fleet-config.toml`, which may carry
device tokens and webhook secrets) and what it says about it, and the `agent.toml` that
`footfall agent init` writes (device tokens, broker passwords). The mode does not depend on the
umask: a technician running the agent or the wizard by hand (umask 022, or 000) gets the same
0600 files as the service (systemd's UMask=0077).

How: a temporary file beside the target, created by `os.open(O_CREAT | O_EXCL, 0600)` (through
`tempfile.mkstemp`), so its content is never readable by others, not even for a moment; its
mode set exactly with `fchmod` (the umask can only have narrowed it); written, fsynced,
renamed over the target (readers see the old file or the new one, never half of one), and the
folder fsynced so the rename survives a power cut.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

PRIVATE = 0o600
# Owner read-write, group read: for a file root writes that the service's own user must read.
GROUP_READABLE = 0o640


def write_private(path: Path, data: bytes | str, *, group: int | None = None) -> Path:
    """Write `data` (str as UTF-8) to `path` atomically, mode 0600; returns `path`.

    `group`: the file also belongs to this group, which may read it (mode 0640), set before the
    rename so the file never appears with another owner or mode.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if group is not None:
            os.fchown(fd, -1, group)
        os.fchmod(fd, PRIVATE if group is None else GROUP_READABLE)
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(name)
        raise
    os.close(fd)
    try:
        os.replace(name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(name)
        raise
    fsync_dir(path.parent)
    return path


def fsync_dir(folder: Path) -> None:
    """Make a rename or a new file in `folder` durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
