"""A bad uplink between agent and collector: cut, blackholed, reset mid-body, slowed; 5xx storms; 413 and 429.

The TCP faults go through tests/fixtures/tcp_proxy.py, the HTTP answers through a real reverse
proxy that injects them (tests/fixtures/http_faults.py). Each test ends with the API's totals
equal to what the devices were told was taken.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable
from email.utils import formatdate
from pathlib import Path

import pytest

from tests.fixtures.agent import AgentProcess
from tests.fixtures.collector import CollectorProcess, free_port
from tests.fixtures.devices import Devices, Tenant, counts_in_database, footfall_totals, make_tenant, sales_in_database
from tests.fixtures.http_faults import Answer, Decision, Forward, ForwardThenAnswer, GatewayFactory, Seen
from tests.fixtures.poll import wait_until
from tests.fixtures.tcp_proxy import ProxyFactory, address

# Real processes and real outages: on a busy machine a scenario can outlast the suite's 300 s limit per test.
pytestmark = pytest.mark.timeout(900)


def _start(
    tmp_path: Path,
    dsn: str,
    uplink_url: str,
    agent_process: Callable[..., AgentProcess],
    store_devices: Callable[..., Devices],
    tenant: Tenant,
    **settings: dict[str, str],
) -> tuple[AgentProcess, Devices]:
    push_port = free_port()
    agent = agent_process(
        uplink_url, tenant.token, tmp_path / "agent",
        settings={"http_push": {"listen": f'"127.0.0.1:{push_port}"'}, **settings},
    )
    return agent, store_devices(push_port, seed=len(dsn))


def _check_exact(collector: CollectorProcess, dsn: str, tenant: Tenant, agent: AgentProcess, devices: Devices) -> None:
    truth = devices.stop()
    agent.wait_drained()
    assert not truth.errors
    assert footfall_totals(collector.url, tenant.site, tenant.key) == (truth.entries, truth.exits)
    assert counts_in_database(dsn) == truth.counts
    assert sales_in_database(dsn) == (truth.sales, truth.sales_minor)
    status = agent.status_file()
    assert status["buffer"]["rejected"] == 0 and status["buffer"]["dropped_records"] == 0, status["buffer"]


def test_uplink_cut_blackholed_reset_mid_body_and_slowed(
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
    agent, devices = _start(
        tmp_path, pg_dsn, proxy.url, agent_process, store_devices, tenant, collector={"timeout": '"1500ms"'}
    )
    stats = proxy.stats
    wait_until(lambda: stats.answers[200] >= 5, what="uploads flowing")

    proxy.set_mode("cut")
    refused = stats.refused
    wait_until(lambda: stats.refused >= refused + 3, what="the agent retrying against a cut uplink")

    proxy.set_mode("blackhole")
    timeouts, taken = _timeouts(agent), devices.truth.counts
    # Hung connections time out and the agent tries again on new ones; the devices are never held up.
    wait_until(lambda: _timeouts(agent) >= timeouts + 2, what="the agent giving up on hung connections")
    assert devices.truth.counts > taken

    proxy.set_mode("reset")
    resets = stats.resets
    wait_until(lambda: stats.resets >= resets + 3, what="uploads reset mid-body")

    # The backlog of the outage makes batches bigger than the slow link carries within the
    # agent's timeout: it must still make progress (smaller batches), not retry the same one for ever.
    proxy.set_mode("slow", rate=3000)
    acked = _acked_batches(agent)
    wait_until(lambda: _acked_batches(agent) >= acked + 3, within=60, what="uploads completing over a slow uplink")

    proxy.set_mode("pass")
    _check_exact(collector, pg_dsn, tenant, agent, devices)


def _timeouts(agent: AgentProcess) -> int:
    """Uploads the agent gave up waiting for (from its log)."""
    return agent.logs().count("no answer from the collector")


def _acked_batches(agent: AgentProcess) -> int:
    """Batches the agent has seen acknowledged (from its status file)."""
    return int((agent.status_file().get("upload") or {}).get("batches", 0))


def test_5xx_storm_loses_and_doubles_nothing(
    tmp_path: Path,
    pg_dsn: str,
    collector_process: Callable[..., CollectorProcess],
    agent_process: Callable[..., AgentProcess],
    faulty_gateway: GatewayFactory,
    store_devices: Callable[..., Devices],
) -> None:
    collector = collector_process("--database-url", pg_dsn)
    gateway = faulty_gateway(collector.url)
    tenant = make_tenant(pg_dsn)
    agent, devices = _start(tmp_path, pg_dsn, gateway.url, agent_process, store_devices, tenant)
    rng = random.Random(5)

    def storm(n: int, body: bytes) -> Decision:
        roll = rng.random()
        if roll < 0.4:
            return Answer(rng.choice((500, 502, 503, 504)), retry_after=rng.choice((None, "0")))
        if roll < 0.7:
            # The collector committed; the agent hears a gateway error and must send it again.
            return ForwardThenAnswer(rng.choice((500, 502, 504)))
        return Forward()

    gateway.wait_for(lambda s: s.status == 200, 3, what="uploads flowing")
    gateway.set_policy(storm)
    gateway.wait_for(lambda s: isinstance(s.decision, ForwardThenAnswer) and s.upstream_status == 200, 6)
    gateway.wait_for(lambda s: isinstance(s.decision, Answer), 8)
    gateway.set_policy(lambda n, body: Forward())
    _check_exact(collector, pg_dsn, tenant, agent, devices)
    # The retries of committed batches were recognised as duplicates by the collector.
    status, health = collector.health()
    assert status == 200 and health["ingest"]["duplicates"] > 0, health


def _is_ingest(seen: Seen) -> bool:
    return seen.path == "/v1/ingest"


def test_413_makes_the_agent_split_and_429_retry_after_is_honoured(
    tmp_path: Path,
    pg_dsn: str,
    collector_process: Callable[..., CollectorProcess],
    agent_process: Callable[..., AgentProcess],
    faulty_gateway: GatewayFactory,
    store_devices: Callable[..., Devices],
) -> None:
    collector = collector_process("--database-url", pg_dsn)
    gateway = faulty_gateway(collector.url)
    tenant = make_tenant(pg_dsn)
    agent, devices = _start(
        tmp_path, pg_dsn, gateway.url, agent_process, store_devices, tenant,
        upload={"max_age": '"1s"', "backoff_initial": '"50ms"', "backoff_max": '"5s"'},
    )
    # A gateway with a small body limit: every batch over 300 bytes (a few records) is refused with 413.
    limit = 300
    small = Forward()  # the decision for a batch within the limit, told apart from those made before

    gateway.set_policy(lambda n, body: Answer(413) if len(body) > limit else small)
    gateway.wait_for(lambda s: s.status == 413, 3, what="413s")
    gateway.wait_for(lambda s: s.decision is small and s.status == 200, 10, what="split batches accepted")

    # Rate limited: every other upload gets 429 with Retry-After, in seconds or as an HTTP date.
    def limited(n: int, body: bytes) -> Decision:
        if n % 2:
            return Forward()
        if n % 4:
            return Answer(429, retry_after="1")
        # An HTTP date has a resolution of one second: two seconds from now is at least one away.
        return Answer(429, retry_after=formatdate(time.time() + 2, usegmt=True))

    gateway.set_policy(limited)
    start = len(gateway.seen())
    gateway.wait_for(lambda s: s.status == 429, 4, within=60, what="429s")
    gateway.set_policy(lambda n, body: Forward())
    _check_exact(collector, pg_dsn, tenant, agent, devices)

    seen = [s for s in gateway.seen()[start:] if _is_ingest(s)]
    waits = [(s, after.at - s.at) for s, after in itertools.pairwise(seen) if s.status == 429]
    assert len(waits) >= 4
    for answer, waited in waits:
        # A lower bound only (the agent may come back later, never sooner): at least a second each time.
        assert waited >= 0.95, f"the agent came back {waited:.2f} s after a 429 asking for {answer.decision}"
