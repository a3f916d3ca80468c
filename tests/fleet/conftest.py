"""A fleet to drive: a real `collector serve` process, an organization with a site and a fleet_admin key,
and `footfall fleet ...` run as an IT team runs it (the collector URL and key from the environment)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from footfall.collector import admin
from footfall.collector.fleet_cli import app as fleet_cli
from typer.testing import CliRunner

from tests.fixtures.collector import CollectorProcess

# Agents in these tests beat every 200 ms, so "stale after 3s" is fifteen missed heartbeats (robust on a busy machine).
FAST_HEARTBEAT = '[heartbeat]\ninterval = "200ms"\n'


@dataclass
class Result:
    """What a CLI run printed and its exit code."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        """stdout as JSON."""
        return json.loads(self.out)


@dataclass
class Fleet:
    """A running collector with one organization, two sites and a fleet_admin key."""

    collector: CollectorProcess
    dsn: str
    org: str
    site: str
    other_site: str
    key: str

    @property
    def url(self) -> str:
        """The collector's base URL."""
        return self.collector.url

    def cli(self, *args: str, env: dict[str, str] | None = None) -> Result:
        """`footfall fleet ARGS` with FOOTFALL_COLLECTOR and FOOTFALL_KEY set."""
        result = CliRunner().invoke(
            fleet_cli, list(args), env={"FOOTFALL_COLLECTOR": self.url, "FOOTFALL_KEY": self.key, **(env or {})}
        )
        return Result(result.exit_code, result.stdout, result.stderr)

    def ok(self, *args: str) -> Result:
        """Like `cli`, failing the test unless the exit code is 0."""
        result = self.cli(*args)
        assert result.code == 0, f"footfall fleet {' '.join(args)} -> {result.code}\n{result.out}\n{result.err}"
        return result

    def token(self, *args: str) -> str:
        """A new enrollment token through `footfall fleet tokens create`."""
        return self.ok("tokens", "create", "--site", self.site, *args).out.strip()

    def agent(self, agent_id: str) -> dict[str, Any]:
        """`footfall fleet agents show A --json`."""
        return dict(self.ok("agents", "show", agent_id, "--json").json())

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        """Rows of one query on the collector's database."""
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            return conn.execute(query.encode(), params or None).fetchall()


def bootstrap(dsn: str) -> tuple[str, str, str, str]:
    """An organization with two sites and a fleet_admin key: (org, site, other site, key)."""

    async def make() -> tuple[str, str, str, str]:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            org = (await admin.create_organization(conn, "Fleet Retail")).id
            site = (await admin.create_site(conn, org, "lyon-01", "Europe/Paris")).id
            other = (await admin.create_site(conn, org, "nice-02", "Europe/Paris")).id
            key = await admin.create_api_key(conn, org, "fleet_admin")
        return org, site, other, key.key

    return asyncio.run(make())


@pytest.fixture
def fleet(pg_dsn: str, collector_process: Callable[..., CollectorProcess]) -> Fleet:
    """A collector process on a fresh database, bootstrapped."""
    collector = collector_process("--database-url", pg_dsn)
    org, site, other, key = bootstrap(pg_dsn)
    return Fleet(collector, pg_dsn, org, site, other, key)


def wait_for(check: Callable[[], Any], *, within: float = 30.0, what: str = "") -> Any:
    """Poll `check` until it returns something true; that value. Fails after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within}s waiting for {what or check}")
        time.sleep(0.05)
