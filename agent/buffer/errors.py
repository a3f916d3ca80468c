"""What the buffer raises: a write that was not taken, and a file found damaged while running."""

from __future__ import annotations


class BufferError(Exception):
    """The buffer could not commit (disk full, I/O error, closed): nothing of the write was taken."""

    retryable = True


class BufferCorrupt(BufferError):
    """SQLite found the file damaged while running; a restart moves it aside and starts a fresh one."""

    retryable = False
