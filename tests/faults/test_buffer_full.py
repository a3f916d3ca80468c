"""The gateway's disk full: the buffer at its size bound while the uplink is down for long.

As designed (agent/buffer/overflow.py, guarantee 6): the oldest records go, a gap event records the
exact lost seq range, and the agent keeps taking readings. Checked end to end: the collector's
seqs and the gap events' ranges together cover every seq the agent ever gave, without overlap;
what was lost is exactly the oldest of each device's readings; everything else is counted once.

Twice: with the agent's clock confirmed by the collector, and with a clock the collector
never confirms (hours off, no NTP): the gap events must reach the collector all the same.
"""

from __future__ import annotations

import glob
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from tests.fixtures.agent import AgentProcess
from tests.fixtures.collector import CollectorProcess, free_port
from tests.fixtures.devices import DAY, PERIOD_S, Devices, footfall_totals, iso, make_tenant
from tests.fixtures.poll import wait_until
from tests.fixtures.tcp_proxy import ProxyFactory, address

# Real processes and real outages: on a busy machine a scenario can outlast the suite's 300 s limit per test.
pytestmark = pytest.mark.timeout(900)

READINGS = 3000


def _clock_hours_off(hours: int) -> dict[str, str]:
    """The environment that runs the agent with its wall clock `hours` off (libfaketime; monotonic untouched)."""
    (library,) = glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1")
    return {"LD_PRELOAD": library, "FAKETIME": f"{hours:+d}h", "FAKETIME_DONT_FAKE_MONOTONIC": "1"}


@pytest.mark.parametrize("clock", ["confirmed", "untrusted"])
def test_buffer_at_its_bound_drops_the_oldest_with_exact_gap_events_and_keeps_running(
    tmp_path: Path,
    pg_dsn: str,
    collector_process: Callable[..., CollectorProcess],
    agent_process: Callable[..., AgentProcess],
    tcp_proxy: ProxyFactory,
    store_devices: Callable[..., Devices],
    clock: str,
) -> None:
    collector = collector_process("--database-url", pg_dsn)
    proxy = tcp_proxy(address(collector.url))
    tenant = make_tenant(pg_dsn)
    push_port = free_port()
    agent = agent_process(
        proxy.url, tenant.token, tmp_path / "agent",
        settings={"http_push": {"listen": f'"127.0.0.1:{push_port}"'}, "buffer": {"max_size": '"64KiB"'}},
        env=_clock_hours_off(5) if clock == "untrusted" else None,
    )
    proxy.set_mode("cut")
    devices = store_devices(push_port, tills=(), per_post=25, pace=0.0)
    wait_until(lambda: devices.truth.counts >= READINGS, what=f"{READINGS} readings taken")
    truth = devices.stop()
    assert not truth.errors

    # Well past its bound the agent still runs and still takes readings.
    wait_until(
        lambda: agent.status_file().get("buffer", {}).get("gap_events", 0) >= 2, what="gap events in the agent's status"
    )
    assert agent.proc is not None and agent.proc.poll() is None
    # Over the bound only while an upload attempt is out (guarantee 6): back within it once that ends,
    # even though nothing is written any more (a status snapshot may have caught an attempt).
    wait_until(lambda: agent.buffer_stats().bytes <= 64 * 1024, what="the buffer within its bound")
    late = {"line": "main", "start": iso_period(17_000), "end": iso_period(17_001), "in": 7, "out": 3}
    assert agent.push("door-1", late) == 200

    proxy.set_mode("pass")
    # With an untrusted clock the agent's own clock events stay held (the readings are the devices' own).
    agent.wait_drained(held_ok=clock == "untrusted")
    final = agent.buffer_stats()

    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        hw_seq = conn.execute("SELECT hw_seq FROM agents").fetchone()[0]
        stored = [seq for (seq,) in conn.execute(
            "SELECT seq FROM people_counts UNION ALL SELECT seq FROM transactions "
            "UNION ALL SELECT seq FROM occupancy UNION ALL SELECT seq FROM sensor_events"
        )]
        gaps = conn.execute(
            "SELECT lost_first, lost_last, sensor FROM sensor_events WHERE kind = 'gap' ORDER BY lost_first"
        ).fetchall()
        gap_clocks = {c for (c,) in conn.execute("SELECT clock FROM sensor_events WHERE kind = 'gap'")}
        rows = conn.execute("SELECT sensor, period_start FROM people_counts").fetchall()

    # The gap events name exactly the seqs that never arrived: together with what did, every seq once.
    lost = {seq for first, last, _ in gaps for seq in range(first, last + 1)}
    assert gaps and all(sensor == "agent" for *_, sensor in gaps)
    if clock == "untrusted":
        assert gap_clocks == {"suspect"}, "timed by a clock nobody confirmed"
    assert len(stored) == len(set(stored)), "a record was stored twice"
    assert not lost & set(stored)
    assert lost | set(stored) == set(range(1, hw_seq + 1))

    # What was lost is the oldest readings of each device, and all the rest arrived exactly once.
    arrived = {(sensor, iso(start)) for sensor, start in rows}
    assert len(arrived) == len(rows)
    lost_readings = 0
    entries = exits = 0
    for sensor, periods in truth.periods.items():
        kept = [(sensor, start) in arrived for start in periods]
        first_kept = kept.index(True)
        assert all(kept[first_kept:]), f"{sensor}: a reading newer than the oldest kept one was lost"
        lost_readings += first_kept
        for e, x in list(periods.values())[first_kept:]:
            entries, exits = entries + e, exits + x
    assert lost_readings > 0
    # Lost seqs are the lost readings plus the gap events that were themselves dropped (their ranges carried on).
    gap_events_dropped = final.gap_events - len(gaps)
    assert len(lost) == lost_readings + gap_events_dropped
    assert final.dropped_records == len(lost)
    assert footfall_totals(collector.url, tenant.site, tenant.key) == (entries + 7, exits + 3)


def iso_period(index: int) -> str:
    """The start of the devices' index-th period (far past those they sent)."""
    return iso(DAY + timedelta(seconds=index * PERIOD_S))
