"""With the timescaledb extension: hypertables instead of native partitions, and the same answers.

Runs only where the extension is installed (deselected elsewhere, see tests/fixtures/pg.py); every
behaviour here is also tested on plain PostgreSQL by test_ingest.py and test_metrics.py.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from footfall.collector.store import PARTITIONED_TABLES

from tests.collector.test_metrics import site_with_data
from tests.fixtures.collector import RunningCollector, count_record

pytestmark = pytest.mark.timescaledb


async def test_time_tables_are_hypertables_and_need_no_partitions(collector: RunningCollector) -> None:
    hypertables = await collector.rows("SELECT hypertable_name FROM timescaledb_information.hypertables ORDER BY 1")
    assert [name for (name,) in hypertables] == sorted(PARTITIONED_TABLES)
    agent = await collector.enroll()
    backlog = datetime(2024, 2, 29, 23, 50, tzinfo=UTC)
    answer = await collector.upload(agent, [count_record(1, backlog), count_record(2, backlog)])
    assert answer.body == {"accepted": 2, "duplicates": 0, "acked_seq": 2}
    assert (await collector.upload(agent, [count_record(1, backlog), count_record(2, backlog)])).body["accepted"] == 0
    assert await collector.value("SELECT count(*) FROM pg_class WHERE relname LIKE 'people_counts_20%'") == 0
    assert await collector.value("SELECT sum(entries) FROM counts_15m") == 2


async def test_local_days_across_dst_are_the_same_on_hypertables(collector: RunningCollector) -> None:
    site, key = await site_with_data(collector, "America/New_York", [(date(2026, 3, 7), date(2026, 3, 9))])
    params = {"from": "2026-03-07", "to": "2026-03-10"}
    answer = await collector.get(f"/v1/sites/{site}/footfall", key=key, params=params)
    assert [b["entries"] for b in answer.body["buckets"]] == [96, 92, 96]
