"""Which database a collector command uses: `--database-url`, or the embedded cluster under `--data-dir`.

The embedded cluster belongs to the `serve` process using it: `serve` holds an exclusive
lock on `data_dir/collector.lock` for its whole life (the kernel drops it if the process is
killed) and stops the cluster when it exits, whether it started the cluster or found it left
running by a killed predecessor. Administrative commands (`orgs create`, `tokens create`, ...)
start the cluster if needed and stop it afterwards only if they started it and no `serve` has
taken the lock meanwhile, so they never pull the database from under a running collector.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from .embedded_pg import EmbeddedPostgres
from .errors import ClusterError
from .migrate import check_schema, migrate
from .settings import CollectorSettings

LOCK_NAME = "collector.lock"


@contextlib.contextmanager
def serve_lock(data_dir: Path) -> Iterator[None]:
    """Hold the data directory's serve lock; ClusterError when another collector holds it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise ClusterError(
                f"another collector (pid {holder}) is serving from {data_dir}; stop it first, "
                "or give this one its own --data-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def serve_lock_held(data_dir: Path) -> bool:
    """Whether a `serve` process holds the data directory's lock right now."""
    try:
        fd = os.open(data_dir / LOCK_NAME, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


@contextlib.asynccontextmanager
async def open_database(settings: CollectorSettings, *, serving: bool) -> AsyncIterator[str]:
    """The DSN to use: the configured URL, or the embedded cluster's (started as needed)."""
    if settings.database_url:
        yield settings.database_url
        return
    data_dir = settings.data_dir.resolve()
    cluster = EmbeddedPostgres(data_dir)
    with serve_lock(data_dir) if serving else contextlib.nullcontext():
        started = await asyncio.to_thread(cluster.start)
        try:
            yield cluster.dsn
        finally:
            if serving or (started and not serve_lock_held(data_dir)):
                await asyncio.to_thread(cluster.stop)


@contextlib.asynccontextmanager
async def admin_database(settings: CollectorSettings) -> AsyncIterator[str]:
    """A database ready for administrative commands.

    The embedded cluster is migrated on the spot (it is this collector's own); an external
    database must have been migrated with `footfall collector migrate`, and is refused otherwise.
    """
    async with open_database(settings, serving=False) as dsn:
        if settings.database_url:
            await check_schema(dsn)
        else:
            await migrate(dsn)
        yield dsn
