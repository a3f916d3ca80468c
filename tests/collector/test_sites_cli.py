"""`footfall collector sites set|show|sensors`, `orgs set`, `partitions` and the retention of raw rows."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from footfall.collector.cli import app as collector_cli
from footfall.collector.cli import parse_hours
from footfall.collector.partitions import drop_expired, list_partitions
from footfall.collector.settings import SettingsError, load_settings
from footfall.collector.store import Store

from tests.collector.test_cli import run
from tests.fixtures.collector import RunningCollector, count_record
from tests.fixtures.pg import sql_value


def test_sites_settings_from_the_command_line(pg_dsn: str) -> None:
    db = ("--database-url", pg_dsn)
    assert run(collector_cli, "orgs", "create", "Acme", *db)[0] == 0
    assert run(collector_cli, "sites", "create", "--org", "acme", "--id", "lyon", "--timezone", "Europe/Paris",
               *db)[0] == 0
    code, _, err = run(collector_cli, "sites", "set", "lyon", "--visitors", "mean", "--tag", "region:south",
                       "--tag", "format:mall", "--hours", "mon-fri=09:00-19:00",
                       "--hours", "sat=10:00-13:00,14:00-18:00",
                       "--closed", "2026-12-25", "--exception", "2026-12-24=09:00-14:00", "--day-reset", "05:30",
                       "--expected-sensors", "door-1,door-2", *db)
    assert code == 0, err
    shown = json.loads(run(collector_cli, "sites", "show", "lyon", *db)[1])
    assert shown["visitors"] == "mean" and shown["tags"] == ["format:mall", "region:south"]
    assert shown["opening_hours"]["sat"] == [["10:00", "13:00"], ["14:00", "18:00"]]
    assert "sun" not in shown["opening_hours"]
    assert shown["hours_exceptions"] == {"2026-12-24": [["09:00", "14:00"]], "2026-12-25": []}
    assert (shown["day_reset"], shown["expected_sensors"]) == ("05:30", ["door-1", "door-2"])
    code, _, err = run(collector_cli, "sites", "set", "lyon", "--visitors", "people", "--day-reset", "05:10", *db)
    assert code == 1 and "visitors" in err and "day_reset" in err
    assert run(collector_cli, "sites", "set", "lyon", "--hours", "someday=09:00-10:00", *db)[0] == 1
    assert run(collector_cli, "sites", "set", "lyon", *db)[0] == 1
    assert run(collector_cli, "orgs", "set", "acme", "--week-start", "sunday", *db)[0] == 0
    assert sql_value(pg_dsn, "SELECT week_start FROM organizations WHERE id = 'acme'") == 7
    assert run(collector_cli, "orgs", "set", "acme", "--week-start", "funday", *db)[0] == 1
    assert parse_hours(["sun=closed"]) == {"sun": []}


async def test_sensors_are_listed_retired_and_restored(collector: RunningCollector) -> None:
    agent = await collector.enroll()
    assert (await collector.upload(agent, [count_record(1, datetime(2026, 6, 10, tzinfo=UTC))])).status == 200
    db = ("--database-url", collector.dsn)

    def listing(*extra: str) -> list[dict[str, object]]:
        code, out, err = run(collector_cli, "sites", "sensors", agent.site, "--json", *extra, *db)
        assert code == 0, err
        return json.loads(out)

    sensors = await asyncio.to_thread(listing)
    assert [(s["name"], s["counts"], s["retired_at"]) for s in sensors] == [("door", True, None)]
    assert (await asyncio.to_thread(listing, "--retire", "door"))[0]["retired_at"] is not None
    assert (await asyncio.to_thread(listing, "--restore", "door"))[0]["retired_at"] is None


async def test_retention_drops_old_raw_partitions_and_keeps_every_rollup(collector: RunningCollector) -> None:
    agent = await collector.enroll(timezone="UTC")
    old, recent = datetime(2024, 1, 15, tzinfo=UTC), datetime(2026, 5, 15, tzinfo=UTC)
    batch = [count_record(1, old, entries=7), count_record(2, recent, entries=5)]
    assert (await collector.upload(agent, batch)).status == 200
    key = await collector.create_api_key(agent.org)
    before = await collector.get(f"/v1/sites/{agent.site}/metrics", key=key,
                                 params={"from": "2024-01-01", "to": "2024-02-01", "granularity": "month"})
    async with await psycopg.AsyncConnection.connect(collector.dsn, autocommit=True) as conn:
        listed = await list_partitions(conn)
        assert {("people_counts", "raw"), ("counts_15m", "rollup")} <= {(p.table, p.kind) for p in listed}
        dropped = await drop_expired(conn, Store(), timedelta(days=400), now=datetime(2026, 6, 1, tzinfo=UTC))
        assert "people_counts_2024_01" in dropped and not any(n.startswith("counts_15m") for n in dropped)
        kept = {p.name for p in await list_partitions(conn)}
        assert "counts_15m_2024_01" in kept and "people_counts_2026_05" in kept and "people_counts_2024_01" not in kept
    after = await collector.get(f"/v1/sites/{agent.site}/metrics", key=key,
                                params={"from": "2024-01-01", "to": "2024-02-01", "granularity": "month"})
    assert after.body["totals"]["entries"] == before.body["totals"]["entries"] == 7
    assert await collector.value("SELECT count(*) FROM people_counts") == 1
    # A late batch for the dropped month makes its partition again.
    assert (await collector.upload(agent, [count_record(3, old + timedelta(hours=1))])).status == 200
    code, out, _ = await asyncio.to_thread(run, collector_cli, "partitions", "--database-url", collector.dsn)
    assert code == 0 and "people_counts_2024_01" in out and "rollup" in out
    code, out, _ = await asyncio.to_thread(run, collector_cli, "partitions", "prune", "--older-than", "400d",
                                           "--database-url", collector.dsn)
    assert code == 0 and "people_counts_2024_01" in out


def test_retention_setting_is_checked() -> None:
    assert load_settings(None, raw_retention="400d").raw_retention == 400 * 86400
    assert load_settings(None, raw_retention="").raw_retention == 0
    with pytest.raises(SettingsError, match="raw-retention: must be at least 31d"):
        load_settings(None, raw_retention="1d")
