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


async def test_the_analysts_api_answers_the_same_on_hypertables(collector: RunningCollector) -> None:
    from tests.collector.test_analytics import (
        test_a_group_in_three_zones_adds_up_each_sites_local_periods,
        test_an_outage_lowers_completeness_and_flags_its_buckets,
        test_occupancy_from_sensors_and_from_the_balance,
    )

    await test_a_group_in_three_zones_adds_up_each_sites_local_periods(collector)
    await test_an_outage_lowers_completeness_and_flags_its_buckets(collector)
    await test_occupancy_from_sensors_and_from_the_balance(collector)


async def test_row_security_holds_on_hypertables(collector: RunningCollector) -> None:
    from tests.collector.test_tenancy import test_row_security_bounds_the_api_role_even_without_a_where

    await test_row_security_bounds_the_api_role_even_without_a_where(collector)


async def test_retention_drops_raw_chunks_and_keeps_rollups(collector: RunningCollector) -> None:
    from datetime import timedelta

    import psycopg
    from footfall.collector.partitions import drop_expired, list_partitions
    from footfall.collector.store import Store

    agent = await collector.enroll(timezone="UTC")
    old = datetime(2024, 1, 15, tzinfo=UTC)
    assert (await collector.upload(agent, [count_record(1, old, entries=7)])).status == 200
    async with await psycopg.AsyncConnection.connect(collector.dsn, autocommit=True) as conn:
        assert {p.table for p in await list_partitions(conn)} >= {"people_counts", "counts_15m"}
        dropped = await drop_expired(conn, Store(), timedelta(days=400), now=datetime(2026, 6, 1, tzinfo=UTC))
        assert dropped
    assert await collector.value("SELECT count(*) FROM people_counts") == 0
    assert await collector.value("SELECT sum(entries) FROM counts_15m") == 7
