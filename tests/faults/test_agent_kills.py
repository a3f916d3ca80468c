"""The agent killed with SIGKILL at random moments, over and over: nothing lost, nothing doubled.

Three kinds of moment, chosen at random for each kill while the devices keep pushing:
- `writing`: any instant while devices post readings and the buffer commits them;
- `in_flight`: a batch has left the agent and waits in the uplink (the proxy holds the request);
- `before_ack`: the collector has committed a batch and its answer waits in the uplink (the proxy
  holds the answer), so the agent dies not knowing it was stored.
After each kill the held bytes are either delivered late (to a collector whose agent is dead) or
lost with the link, and the agent is restarted. At the end the API's totals must equal what the
devices were told was taken.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures.agent import AgentProcess
from tests.fixtures.collector import CollectorProcess, free_port
from tests.fixtures.devices import Devices, counts_in_database, footfall_totals, make_tenant, sales_in_database
from tests.fixtures.tcp_proxy import ProxyFactory, address

# Real processes and real outages: on a busy machine a scenario can outlast the suite's 300 s limit per test.
pytestmark = pytest.mark.timeout(900)

KILLS = 52
MOMENTS = ("writing", "in_flight", "before_ack")


def test_agent_sigkilled_at_random_moments_loses_and_doubles_nothing(
    tmp_path: Path,
    pg_dsn: str,
    collector_process: Callable[..., CollectorProcess],
    agent_process: Callable[..., AgentProcess],
    tcp_proxy: ProxyFactory,
    store_devices: Callable[..., Devices],
) -> None:
    collector = collector_process("--database-url", pg_dsn)
    proxy = tcp_proxy(address(collector.url))
    tenant = make_tenant(pg_dsn)
    port = free_port()
    agent = agent_process(
        proxy.url, tenant.token, tmp_path / "agent", settings={"http_push": {"listen": f'"127.0.0.1:{port}"'}}
    )
    devices = store_devices(port, seed=6)
    rng = random.Random(6)
    moments: Counter[str] = Counter()
    for _ in range(KILLS):
        moment = rng.choice(MOMENTS)
        if moment == "writing":
            # A random instant, not a wait for a condition: the devices are posting all along.
            time.sleep(rng.uniform(0.0, 0.25))
        else:
            proxy.set_mode("hold_requests" if moment == "in_flight" else "hold_answers")
            proxy.wait_until(lambda p: p.stats.held >= 1, what=f"a batch held in the uplink ({moment})")
        agent.kill()
        moments[moment] += 1
        # What was held is delivered late (the collector gets a dead agent's batch) or dies with the link.
        proxy.set_mode(rng.choice(("pass", "cut")))
        proxy.set_mode("pass")
        agent.start()

    truth = devices.stop()
    agent.wait_drained()
    assert not truth.errors
    assert sum(moments.values()) >= 50 and all(moments[m] >= 5 for m in MOMENTS), moments
    assert footfall_totals(collector.url, tenant.site, tenant.key) == (truth.entries, truth.exits)
    assert counts_in_database(pg_dsn) == truth.counts
    assert sales_in_database(pg_dsn) == (truth.sales, truth.sales_minor)
    # The kills really hit between commit and ack: batches came back and were recognised as duplicates.
    status, health = collector.health()
    assert status == 200 and health["ingest"]["duplicates"] > 0, health
    assert truth.failures > 0, "the devices must have met a dead agent at least once"
    assert agent.stop() == 0
