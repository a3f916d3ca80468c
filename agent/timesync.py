"""Is this machine's clock synchronised? Asked of the kernel (adjtimex) and of systemd (timedatectl).

The kernel's answer is what counts: `adjtimex(2)` with no modes only reads, and returns
`TIME_ERROR` while the clock is unsynchronised (no NTP daemon has disciplined it, or it lost
its source). It costs one system call, so the heartbeat asks at every beat. `timedatectl`
adds which service syncs the clock, when systemd runs; `footfall agent doctor` shows both.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import shutil
import subprocess
from dataclasses import dataclass

TIME_ERROR = 5
# struct timex is about 208 bytes on 64-bit Linux; a larger zeroed buffer (modes = 0) only reads.
_TIMEX_BYTES = 512


def kernel_synchronized() -> bool | None:
    """True when the kernel considers the clock synchronised; None when it cannot be asked."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        adjtimex = libc.adjtimex
    except (OSError, AttributeError):
        return None
    result = adjtimex(ctypes.create_string_buffer(_TIMEX_BYTES))
    if result < 0:
        return None
    return result != TIME_ERROR


@dataclass(frozen=True, slots=True)
class SystemdTime:
    """What `timedatectl` says, when it can say anything."""

    synchronized: bool | None
    ntp_service: bool | None
    detail: str


def systemd_time(timeout: float = 5.0) -> SystemdTime:
    """`timedatectl show`: NTPSynchronized and NTP (a sync service enabled); None where systemd does not answer."""
    binary = shutil.which("timedatectl")
    if binary is None:
        return SystemdTime(None, None, "timedatectl is not installed")
    try:
        done = subprocess.run(
            [binary, "show", "-p", "NTPSynchronized", "-p", "NTP"],
            capture_output=True, text=True, timeout=timeout, check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return SystemdTime(None, None, f"timedatectl failed: {exc}")
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        return SystemdTime(None, None, lines[0] if lines else f"timedatectl exited with {done.returncode}")
    values = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    return SystemdTime(
        values.get("NTPSynchronized") == "yes" if "NTPSynchronized" in values else None,
        values.get("NTP") == "yes" if "NTP" in values else None,
        done.stdout.strip(),
    )
