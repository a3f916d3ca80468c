"""A fleet: 500 simulated agents, each enrolled for real with its own key and seq, uploading at
once through one address to two collector processes, while the uplink is cut, reset and
blackholed at random and one collector is killed and restarted. Every site's totals exact.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable

import aiohttp
import psycopg
import pytest

from tests.fixtures.collector import CollectorProcess, free_port
from tests.fixtures.fleet import FleetSite, SimAgent, make_fleet_tenant, site_truth
from tests.fixtures.tcp_proxy import ProxyFactory, TcpProxy, address

# Real processes and real outages: on a busy machine a scenario can outlast the suite's 300 s limit per test.
pytestmark = pytest.mark.timeout(900)

SITES = 20
AGENTS_PER_SITE = 25
ROUNDS = 2


FAULTS = ("cut", "reset", "blackhole", "kill", "reset", "cut", "blackhole")


async def _chaos(
    proxy: TcpProxy, restart: Callable[[], CollectorProcess], victim: CollectorProcess, stop: asyncio.Event
) -> list[str]:
    """Outages at random moments until `stop`: the uplink cut, reset or blackholed for a moment; a collector killed."""
    rng = random.Random(500)
    done: list[str] = []
    for fault in FAULTS:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), rng.uniform(0.3, 1.0))
        if stop.is_set():
            break
        if fault == "kill":
            victim.kill()
            # The other collector serves alone (connections to the dead one are refused) until it is back.
            victim = await asyncio.to_thread(restart)
        else:
            await asyncio.to_thread(proxy.set_mode, fault)
            await asyncio.sleep(rng.uniform(0.1, 0.3))
            await asyncio.to_thread(proxy.set_mode, "pass")
        done.append(fault)
    return done


async def test_a_fleet_of_500_agents_with_random_outages_against_two_collectors(
    pg_dsn: str, collector_process: Callable[..., CollectorProcess], tcp_proxy: ProxyFactory
) -> None:
    ports = [free_port(), free_port()]
    collectors = [collector_process("--database-url", pg_dsn, port=port) for port in ports]
    proxy = tcp_proxy(*(address(c.url) for c in collectors))
    tenant = await make_fleet_tenant(pg_dsn, sites=SITES, agents_per_site=AGENTS_PER_SITE)
    rng = random.Random(7)
    connector = aiohttp.TCPConnector(limit=250)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
        gate = asyncio.Semaphore(50)

        async def enroll(site: FleetSite) -> SimAgent:
            async with gate:
                return await SimAgent.enroll(session, proxy.url, site)

        agents = await asyncio.gather(*(enroll(s) for s in tenant.sites for _ in range(AGENTS_PER_SITE)))
        assert len({a.agent_id for a in agents}) == SITES * AGENTS_PER_SITE

        async def live(agent: SimAgent) -> None:
            for _ in range(ROUNDS):
                agent.take(rng.randint(1, 30), rng)
                await agent.drain(session, proxy.url)
                await asyncio.sleep(rng.uniform(0, 0.5))

        stop = asyncio.Event()
        chaos = asyncio.create_task(
            _chaos(proxy, lambda: collector_process("--database-url", pg_dsn, port=ports[1]), collectors[1], stop)
        )
        try:
            await asyncio.gather(*(live(a) for a in agents))
        finally:
            stop.set()
            faults = await chaos
        assert set(faults) == set(FAULTS), f"the fleet finished before the outages: {faults}"
        # The outages were felt: uploads failed and were retried (resets, refusals, timeouts, 503s).
        assert sum(a.failures for a in agents) > 0

        truth = site_truth(agents)
        for site, expected in truth.items():
            url = f"{collectors[0].url}/v1/sites/{site}/footfall?from=2026-03-07&to=2026-03-10&granularity=day"
            async with session.get(url, headers={"Authorization": f"Bearer {tenant.key}"}) as response:
                body = await response.json()
            assert (body["totals"]["entries"], body["totals"]["exits"]) == expected, site
    async with await psycopg.AsyncConnection.connect(pg_dsn) as conn:
        cur = await conn.execute("SELECT count(*), count(DISTINCT (agent_id, seq)) FROM people_counts")
        assert await cur.fetchone() == (sum(a.taken for a in agents),) * 2
