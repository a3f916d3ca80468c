"""Clock trouble: agents whose clocks are hours off (libfaketime), talking to a collector with the right time.

What must hold: the agent corrects its request timestamps from `X-Footfall-Server-Time` (so its
uploads pass the signing window), the collector records the agent's real skew on its row (the
fleet sees it), and the readings, stamped by the devices, are neither lost nor shifted: the
API's hourly buckets equal the devices' own.
"""

from __future__ import annotations

import glob
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest

from tests.fixtures.agent import AgentProcess
from tests.fixtures.collector import CollectorProcess, free_port
from tests.fixtures.devices import Devices, Truth, footfall, make_tenant
from tests.fixtures.poll import wait_until

# Real processes and real outages: on a busy machine a scenario can outlast the suite's 300 s limit per test.
pytestmark = pytest.mark.timeout(900)

SKEWS_H = (5, -7)


def _faketime(offset_h: int) -> dict[str, str]:
    """The environment that runs a process with its wall clock `offset_h` hours off (monotonic untouched)."""
    (library,) = glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1")
    return {"LD_PRELOAD": library, "FAKETIME": f"{offset_h:+d}h", "FAKETIME_DONT_FAKE_MONOTONIC": "1"}


def _hourly_truth(truth: Truth, zone: ZoneInfo) -> Counter[str]:
    """Entries per local hour (ISO start with offset), from what the devices sent."""
    out: Counter[str] = Counter()
    for periods in truth.periods.values():
        for start, (entries, _) in periods.items():
            local = datetime.fromisoformat(start).astimezone(zone).replace(minute=0, second=0, microsecond=0)
            out[local.isoformat()] += entries
    return out


def test_agent_clocks_hours_off_are_flagged_and_shift_nothing(
    tmp_path: Path,
    pg_dsn: str,
    collector_process: Callable[..., CollectorProcess],
    agent_process: Callable[..., AgentProcess],
    store_devices: Callable[..., Devices],
) -> None:
    collector = collector_process("--database-url", pg_dsn)
    runs = []
    for number, skew_h in enumerate(SKEWS_H):
        tenant = make_tenant(pg_dsn, org_name=f"Clock Retail {number}", site=f"store-{number}")
        port = free_port()
        agent = agent_process(
            collector.url, tenant.token, tmp_path / f"agent-{number}",
            settings={"http_push": {"listen": f'"127.0.0.1:{port}"'}}, env=_faketime(skew_h),
        )
        runs.append((skew_h, tenant, agent, store_devices(port, seed=number, per_post=10, pace=0.005)))

    for _, _, _, devices in runs:
        wait_until(lambda d=devices: d.truth.counts >= 600, what="readings from the store")
    for skew_h, tenant, agent, devices in runs:
        truth = devices.stop()
        agent.wait_drained(held_ok=True)  # their clocks stay untrusted: the clock events wait
        assert not truth.errors
        status = agent.status_file()
        # The agent measured its offset from the collector's answers and signs with corrected timestamps.
        assert abs(status["upload"]["clock_offset_s"] + skew_h * 3600) < 120, status["upload"]

        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            (skew_s,) = conn.execute(
                "SELECT clock_skew_s FROM agents WHERE site_id = %s", (tenant.site,)
            ).fetchone()  # type: ignore[misc]
        assert skew_s is not None and abs(skew_s - skew_h * 3600) < 120, f"recorded skew {skew_s} s"

        answer = footfall(collector.url, tenant.site, tenant.key, granularity="hour")
        zone = ZoneInfo(answer.get("timezone", "Europe/Paris"))
        api = Counter({b["start"]: b["entries"] for b in answer["buckets"] if b["entries"]})
        expected = _hourly_truth(truth, zone)
        assert _normalised(api, zone) == _normalised(expected, zone)
        assert sum(api.values()) == truth.entries


def _normalised(buckets: Counter[str], zone: ZoneInfo) -> dict[datetime, int]:
    """Bucket starts as aware datetimes (the API and the test may spell offsets differently)."""
    return {datetime.fromisoformat(k).astimezone(zone): v for k, v in buckets.items() if v}
