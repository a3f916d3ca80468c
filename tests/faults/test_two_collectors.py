"""Two collector processes behind one address, receiving the same agent's uploads and retries at once.

Through tests/fixtures/tcp_proxy.py: first every upload is mirrored to both collectors at the
same moment; then uploads are spread round robin while the uplink holds them, so the agent times
out, retries (and halves) on new connections, and when the uplink lets go every held copy of
the same records reaches one collector or the other concurrently. Counted once all the same.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures.agent import AgentProcess
from tests.fixtures.collector import CollectorProcess, free_port
from tests.fixtures.devices import Devices, counts_in_database, footfall_totals, make_tenant, sales_in_database
from tests.fixtures.poll import wait_until
from tests.fixtures.tcp_proxy import ProxyFactory, address

# Real processes and real outages: on a busy machine a scenario can outlast the suite's 300 s limit per test.
pytestmark = pytest.mark.timeout(900)


def _timeouts(agent: AgentProcess) -> int:
    return agent.logs().count("no answer from the collector")


def test_two_collectors_receiving_the_same_retries_concurrently_count_once(
    tmp_path: Path,
    pg_dsn: str,
    collector_process: Callable[..., CollectorProcess],
    agent_process: Callable[..., AgentProcess],
    tcp_proxy: ProxyFactory,
    store_devices: Callable[..., Devices],
) -> None:
    collectors = [collector_process("--database-url", pg_dsn) for _ in range(2)]
    proxy = tcp_proxy(*(address(c.url) for c in collectors), mirror=True)
    tenant = make_tenant(pg_dsn)
    push_port = free_port()
    agent = agent_process(
        proxy.url, tenant.token, tmp_path / "agent",
        settings={"http_push": {"listen": f'"127.0.0.1:{push_port}"'}, "collector": {"timeout": '"1s"'}},
    )
    devices = store_devices(push_port, seed=22, per_post=5)
    stats = proxy.stats
    # Every upload reaches both collectors at the same moment.
    wait_until(lambda: stats.answers[200] >= 20 and stats.mirrored[200] >= 20, what="mirrored uploads")

    proxy.mirror = False
    for _ in range(4):
        proxy.set_mode("hold_requests")
        timeouts = _timeouts(agent)
        wait_until(lambda t=timeouts: _timeouts(agent) >= t + 2, what="the agent retrying held uploads")
        ok = stats.answers[200]
        proxy.set_mode("pass")
        wait_until(lambda o=ok: stats.answers[200] >= o + 3, what="uploads again")

    truth = devices.stop()
    agent.wait_drained()
    assert not truth.errors
    assert footfall_totals(collectors[0].url, tenant.site, tenant.key) == (truth.entries, truth.exits)
    assert footfall_totals(collectors[1].url, tenant.site, tenant.key) == (truth.entries, truth.exits)
    assert counts_in_database(pg_dsn) == truth.counts
    assert sales_in_database(pg_dsn) == (truth.sales, truth.sales_minor)
    ingest = [c.health()[1]["ingest"] for c in collectors]
    assert all(i["accepted"] > 0 and i["duplicates"] > 0 for i in ingest), ingest
