"""The collector killed in the middle of a batch's transaction, and PostgreSQL restarted or crashed under load.

Ground truth is what the devices were told was taken; the API's totals must equal it exactly.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from footfall.collector.embedded_pg import EmbeddedPostgres
from psycopg import sql

from tests.fixtures.agent import AgentProcess
from tests.fixtures.collector import CollectorProcess, free_port
from tests.fixtures.devices import Devices, counts_in_database, footfall_totals, make_tenant, sales_in_database
from tests.fixtures.pg import sql_value
from tests.fixtures.poll import wait_until
from tests.fixtures.tcp_proxy import ProxyFactory, address

# Real processes and real outages: on a busy machine a scenario can outlast the suite's 300 s limit per test.
pytestmark = pytest.mark.timeout(900)

# Where the batch transaction is made to wait before the kill: the raw COPY, then each rollup upsert.
BLOCK_AT = (
    ("people_counts", "COPY"),
    ("counts_15m", "INSERT INTO counts_15m"),
    ("counts_day", "INSERT INTO counts_day"),
)


def _blocked_backend(dsn: str, statement: str) -> int | None:
    """The pid of a backend inside a transaction, waiting for a lock while running `statement`."""
    return sql_value(
        dsn,
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
        "AND xact_start IS NOT NULL AND wait_event_type = 'Lock' AND query LIKE %s",
        (f"%{statement}%",),
    )


def _backend_alive(dsn: str, pid: int) -> bool:
    return bool(sql_value(dsn, "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)))


def test_collector_sigkilled_mid_transaction_commits_nothing_of_it(
    tmp_path: Path,
    pg_dsn: str,
    collector_process: Callable[..., CollectorProcess],
    agent_process: Callable[..., AgentProcess],
    store_devices: Callable[..., Devices],
) -> None:
    port = free_port()
    collector = collector_process("--database-url", pg_dsn, port=port)
    tenant = make_tenant(pg_dsn)
    push_port = free_port()
    agent = agent_process(
        collector.url, tenant.token, tmp_path / "agent", settings={"http_push": {"listen": f'"127.0.0.1:{push_port}"'}}
    )
    devices = store_devices(push_port, seed=11)
    # Uploads flow (so the month's partitions exist: making one would wait on our locks outside any batch).
    wait_until(lambda: sql_value(pg_dsn, "SELECT hw_seq FROM agents"), what="a first batch committed")
    for table, statement in BLOCK_AT:
        with psycopg.connect(pg_dsn) as blocker:
            # Hold a lock the batch transaction needs at this step: it stops there, half done. A batch
            # locks the partitioned parents first thing (collector/store.py, lock order): lock their
            # partitions, which it reaches only when it writes.
            children = blocker.execute(
                "SELECT i.inhrelid::regclass::text FROM pg_inherits i WHERE i.inhparent = %s::regclass "
                "UNION ALL SELECT %s WHERE NOT EXISTS (SELECT 1 FROM pg_inherits WHERE inhparent = %s::regclass)",
                (table, table, table),
            ).fetchall()
            for (name,) in children:
                blocker.execute(sql.SQL("LOCK TABLE ONLY {} IN SHARE MODE").format(sql.Identifier(name)))
            pid = wait_until(lambda s=statement: _blocked_backend(pg_dsn, s), what=f"a batch blocked at {statement}")
            hw_before = sql_value(pg_dsn, "SELECT hw_seq FROM agents")
            collector.kill()
            blocker.rollback()
        # The orphaned transaction runs on, finds its client gone, and rolls back: nothing of it stays.
        wait_until(lambda p=pid: not _backend_alive(pg_dsn, p), what="the killed collector's backend to end")
        hw_after = sql_value(pg_dsn, "SELECT hw_seq FROM agents")
        assert hw_after == hw_before
        above = sql_value(pg_dsn, "SELECT count(*) FROM people_counts WHERE seq > %s", (hw_after,))
        assert above == 0, f"rows of the killed transaction were committed (blocked at {statement})"
        collector = collector_process("--database-url", pg_dsn, port=port)

    truth = devices.stop()
    agent.wait_drained()
    assert not truth.errors
    assert footfall_totals(collector.url, tenant.site, tenant.key) == (truth.entries, truth.exits)
    assert counts_in_database(pg_dsn) == truth.counts
    assert sales_in_database(pg_dsn) == (truth.sales, truth.sales_minor)


def _postmaster_pid(cluster: EmbeddedPostgres) -> int:
    return int((cluster.pgdata / "postmaster.pid").read_text().split("\n", 1)[0])


def test_postgres_restarted_and_crashed_under_load_loses_nothing(
    tmp_path: Path,
    pg_private_cluster: EmbeddedPostgres,
    collector_process: Callable[..., CollectorProcess],
    agent_process: Callable[..., AgentProcess],
    tcp_proxy: ProxyFactory,
    store_devices: Callable[..., Devices],
) -> None:
    dsn = pg_private_cluster.dsn
    collector = collector_process("--database-url", dsn, "--config", str(_fast_retry(tmp_path)))
    proxy = tcp_proxy(address(collector.url))
    tenant = make_tenant(dsn)
    push_port = free_port()
    agent = agent_process(
        proxy.url, tenant.token, tmp_path / "agent", settings={"http_push": {"listen": f'"127.0.0.1:{push_port}"'}}
    )
    devices = store_devices(push_port, seed=12)
    for how in ("restart", "crash"):
        wait_until(lambda: proxy.stats.answers[200] >= 20, what="uploads flowing before the outage")
        unavailable = proxy.stats.answers[503]
        if how == "restart":
            pg_private_cluster.stop()
        else:
            # The postmaster dies at once, as in an OOM kill: the next start runs crash recovery.
            os.kill(_postmaster_pid(pg_private_cluster), signal.SIGKILL)
        # Meanwhile the collector answers 503 with Retry-After, and the agent keeps its data and retries.
        wait_until(
            lambda u=unavailable: proxy.stats.answers[503] >= u + 2, what=f"503s while PostgreSQL is down ({how})"
        )
        assert agent.proc is not None and agent.proc.poll() is None
        pg_private_cluster.start()
        ok = proxy.stats.answers[200]
        wait_until(lambda o=ok: proxy.stats.answers[200] > o + 5, what=f"uploads again after the {how}")

    truth = devices.stop()
    agent.wait_drained()
    assert not truth.errors
    assert footfall_totals(collector.url, tenant.site, tenant.key) == (truth.entries, truth.exits)
    assert counts_in_database(dsn) == truth.counts
    assert sales_in_database(dsn) == (truth.sales, truth.sales_minor)
    assert proxy.stats.answers[500] == 0


def _fast_retry(folder: Path) -> Path:
    """A collector.toml that answers 503 quickly and asks for a short Retry-After (the test's patience)."""
    path = folder / "collector.toml"
    path.write_text('database_timeout = "1s"\nretry_after = "1s"\n')
    return path
