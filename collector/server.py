"""`footfall collector serve`: database, migrations, the HTTP server, and a clean stop on SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
import logging
import signal
import time

import psycopg
from aiohttp import web

from footfall.logs import event

from .app import make_app
from .database import open_database
from .errors import CollectorError
from .migrate import migrate
from .settings import CollectorSettings

log = logging.getLogger("footfall.collector.server")

# How long `serve` waits at start for an external database that is not up yet.
STARTUP_WAIT_S = 60.0


async def serve(settings: CollectorSettings, stop: asyncio.Event | None = None) -> None:
    """Run the collector until SIGTERM or SIGINT (or until `stop` is set)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with open_database(settings, serving=True) as dsn:
            await _migrate(dsn)
            runner = web.AppRunner(make_app(dsn, settings), access_log=None)
            await runner.setup()
            try:
                try:
                    await web.TCPSite(runner, settings.host, settings.port).start()
                except OSError as exc:
                    raise CollectorError(f"cannot listen on {settings.listen}: {exc.strerror or exc}") from None
                event(
                    log, "collector_listening", url=f"http://{settings.listen}",
                    database="external" if settings.database_url else str(settings.data_dir),
                )
                await stop.wait()
                event(log, "collector_stopping")
            finally:
                await runner.cleanup()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


async def _migrate(dsn: str) -> None:
    """Apply migrations, waiting (bounded) for a database that is still starting."""
    deadline = time.monotonic() + STARTUP_WAIT_S
    while True:
        try:
            await migrate(dsn)
            return
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                raise CollectorError(f"the database is unreachable after {STARTUP_WAIT_S:.0f} s: {exc}") from None
            event(log, "database_not_ready", logging.WARNING, error=str(exc).strip())
            await asyncio.sleep(1.0)
