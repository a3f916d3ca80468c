"""POST /v1/ingest over real HTTP and PostgreSQL: what is stored, what is refused, and that nothing counts twice."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import msgpack
import pytest
from footfall.collector import admin
from footfall.collector.ingest import MAX_NEW_SENSORS
from footfall.collector.store import PARTITIONED_TABLES, add_months, month_of, partition_name
from footfall.protocol import ingest as protocol_ingest
from footfall.protocol.envelope import CONTENT_TYPE, MAX_MONTHS, Batch, encode_payload
from footfall.protocol.records import MAX_DETAIL_CHARS, MAX_RAW_CHARS, Occupancy, Record, SensorEvent, to_wire
from footfall.protocol.signing import HEADER_SERVER_TIME, generate_key, public_bytes, sign_request
from yarl import URL

from tests.collector.conftest import eventually
from tests.fixtures.collector import (
    CollectorFactory,
    EnrolledAgent,
    RunningCollector,
    count_record,
    event_record,
    ms,
    transaction_record,
)
from tests.protocol.weak_keys import FORGED, SMALL_ORDER

T0 = datetime(2026, 3, 8, 10, 0, tzinfo=UTC)
DATA_TABLES = (
    "people_counts", "occupancy", "transactions", "sensor_events",
    "counts_15m", "counts_day", "sales_15m", "sales_day", "sensors",
)


async def snapshot(collector: RunningCollector, agent: EnrolledAgent) -> dict[str, Any]:
    """Every row count that ingest can change, and the agent's mark: equal snapshots mean nothing was stored."""
    state: dict[str, Any] = {t: await collector.value(f"SELECT count(*) FROM {t}") for t in DATA_TABLES}
    state["rollup_sums"] = await collector.rows(
        "SELECT (SELECT coalesce(sum(entries), 0) FROM counts_15m), (SELECT coalesce(sum(entries), 0) FROM counts_day)"
    )
    state["agent"] = await collector.rows("SELECT hw_seq, last_seen_at FROM agents WHERE id = %s", agent.id)
    return state


async def test_a_batch_is_stored_with_its_rollups_and_acked(collector: RunningCollector) -> None:
    agent = await collector.enroll(timezone="Europe/Paris")
    late_evening = datetime(2026, 3, 7, 23, 30, tzinfo=UTC)  # 00:30 on March 8 in Paris
    records = [
        count_record(1, T0, entries=5, exits=2),
        count_record(2, T0 + timedelta(minutes=15), entries=3, exits=1),
        count_record(3, T0 + timedelta(minutes=5), minutes=5, entries=1, line="side"),
        count_record(4, late_evening, entries=7),
        Occupancy("door", "shop", ms(T0), 12, seq=5),
        transaction_record(6, T0, amount_minor=2500, items=3),
        transaction_record(7, T0 + timedelta(minutes=1), kind="refund", amount_minor=500),
        transaction_record(8, T0 + timedelta(minutes=2), kind="void", amount_minor=100),
        SensorEvent("agent", ms(T0), "gap", "buffer overflow", lost_first=100, lost_last=120, seq=9),
        event_record(12, T0, kind="counter_reset"),
    ]
    answer = await collector.upload(agent, records)
    assert answer.status == 200, answer.body
    assert answer.body == {"accepted": 10, "duplicates": 0, "acked_seq": 12}
    assert abs(int(answer.headers[HEADER_SERVER_TIME]) - time.time()) < 5

    assert await collector.rows("SELECT seq, sensor, line, entries, exits, clock FROM people_counts ORDER BY seq") == [
        (1, "door", "main", 5, 2, "ok"), (2, "door", "main", 3, 1, "ok"),
        (3, "door", "side", 1, 0, "ok"), (4, "door", "main", 7, 0, "ok"),
    ]
    assert await collector.rows(
        "SELECT bucket_start, line, entries, exits FROM counts_15m ORDER BY bucket_start, line"
    ) == [
        (late_evening, "main", 7, 0),
        (T0, "main", 5, 2),
        (T0, "side", 1, 0),  # a 5-minute count lands in the bucket of its start
        (T0 + timedelta(minutes=15), "main", 3, 1),
    ]
    assert await collector.rows("SELECT local_day, line, entries, exits FROM counts_day ORDER BY line") == [
        (date(2026, 3, 8), "main", 15, 3), (date(2026, 3, 8), "side", 1, 0),
    ]
    assert await collector.rows("SELECT sales_count, sales_amount, refunds_count, refunds_amount, voids_count, "
                                "voids_amount, items FROM sales_15m") == [(1, 2500, 1, 500, 1, 100, 3)]
    assert await collector.value("SELECT count(*) FROM sales_day WHERE local_day = '2026-03-08'") == 1
    assert await collector.rows("SELECT zone, value FROM occupancy") == [("shop", 12)]
    assert await collector.rows("SELECT kind, lost_first, lost_last FROM sensor_events ORDER BY seq") == [
        ("gap", 100, 120), ("counter_reset", 0, 0),
    ]
    assert await collector.rows("SELECT kind, name, first_seen_at, last_seen_at FROM sensors ORDER BY kind") == [
        ("sensor", "door", late_evening, T0 + timedelta(minutes=15)),
        ("terminal", "pos1", T0, T0 + timedelta(minutes=2)),
    ]
    hw_seq, last_seen, skew = (await collector.rows("SELECT hw_seq, last_seen_at, clock_skew_s FROM agents"))[0]
    assert hw_seq == 12 and last_seen is not None and abs(skew) < 5


async def test_the_same_batch_twice_is_counted_once(collector: RunningCollector) -> None:
    agent = await collector.enroll()
    records = [count_record(seq, T0 + timedelta(minutes=15 * seq), entries=seq) for seq in range(1, 21)]
    first = await collector.upload(agent, records)
    again = await collector.upload(agent, records)
    assert first.body == {"accepted": 20, "duplicates": 0, "acked_seq": 20}
    assert again.status == 200
    assert again.body == {"accepted": 0, "duplicates": 20, "acked_seq": 20}
    assert await collector.value("SELECT count(*) FROM people_counts") == 20
    assert await collector.value("SELECT sum(entries) FROM counts_15m") == sum(range(1, 21))
    assert await collector.value("SELECT sum(entries) FROM counts_day") == sum(range(1, 21))


async def test_a_partly_new_batch_stores_only_the_new_records(collector: RunningCollector) -> None:
    agent = await collector.enroll()
    await collector.upload(agent, [count_record(s, T0) for s in (1, 2, 3)])
    answer = await collector.upload(agent, [count_record(s, T0) for s in (2, 3, 4, 7)])
    assert answer.body == {"accepted": 2, "duplicates": 2, "acked_seq": 7}
    assert await collector.value("SELECT array_agg(seq ORDER BY seq) FROM people_counts") == [1, 2, 3, 4, 7]
    assert await collector.value("SELECT sum(entries) FROM counts_15m") == 5


async def test_concurrent_overlapping_uploads_are_counted_once(collector_factory: CollectorFactory) -> None:
    # Two collector processes' worth of apps on one database, an agent retrying while its first try is in flight.
    one, two = await collector_factory(), await collector_factory()
    agent = await one.enroll()
    records = [count_record(seq, T0 + timedelta(minutes=seq), entries=seq % 7) for seq in range(1, 301)]
    shorter, longer = records[:200], records
    answers = await asyncio.gather(
        one.upload(agent, shorter), two.upload(agent, longer), one.upload(agent, longer), two.upload(agent, shorter)
    )
    assert all(a.status == 200 for a in answers), [a.body for a in answers]
    assert sum(a.body["accepted"] for a in answers) == 300
    assert sum(a.body["duplicates"] for a in answers) == 200 + 300 + 300 + 200 - 300
    assert await one.rows("SELECT count(*), count(DISTINCT seq) FROM people_counts") == [(300, 300)]
    expected = sum(seq % 7 for seq in range(1, 301))
    assert await one.value("SELECT sum(entries) FROM counts_15m") == expected
    assert await one.value("SELECT sum(entries) FROM counts_day") == expected
    assert await one.value("SELECT hw_seq FROM agents") == 300


async def test_a_backlog_lands_in_months_that_had_no_partition(collector: RunningCollector) -> None:
    agent = await collector.enroll()
    old = datetime(2024, 2, 29, 23, 50, tzinfo=UTC)
    partitions = "SELECT count(*) FROM pg_class WHERE relname LIKE %s"
    assert await collector.value(partitions, "%_2024_02") == 0
    answer = await collector.upload(
        agent, [count_record(1, old), transaction_record(2, old), event_record(3, old), count_record(4, T0)]
    )
    assert answer.status == 200, answer.body
    for table in ("people_counts", "counts_15m", "transactions", "sales_15m", "sensor_events"):
        assert await collector.value(f"SELECT count(*) FROM {table}_2024_02") == 1, table
    assert await collector.value("SELECT count(*) FROM people_counts_2026_03") == 1
    # A second collector process has an empty partition cache: it finds the partitions and goes on.
    assert (await collector.upload(agent, [count_record(5, old + timedelta(minutes=1))])).status == 200


async def test_partitions_are_made_ahead_at_start(collector: RunningCollector) -> None:
    names = [partition_name(table, add_months(month_of(datetime.now(UTC)), 2)) for table in PARTITIONED_TABLES]

    async def made() -> bool:
        found = await collector.value("SELECT count(*) FROM pg_class WHERE relname = ANY(%s)", names)
        return bool(found == len(names))

    await eventually(made, what=f"partitions {names}")


def _signed(agent: EnrolledAgent, body: bytes, **kw: Any) -> dict[str, str]:
    return agent.headers(body, **kw)


def _lying_range(agent: EnrolledAgent) -> tuple[bytes, dict[str, str]]:
    batch = Batch(agent.id, 3, 9, ms(T0), (count_record(3, T0), count_record(4, T0)))
    body = zlib.compress(encode_payload(batch))
    return body, _signed(agent, body)


def _not_zlib(agent: EnrolledAgent) -> tuple[bytes, dict[str, str]]:
    body = b"this is not zlib"
    return body, _signed(agent, body)


def _not_msgpack(agent: EnrolledAgent) -> tuple[bytes, dict[str, str]]:
    body = zlib.compress(b"\xc1\xc1 not msgpack")
    return body, _signed(agent, body)


def _bad_record(agent: EnrolledAgent) -> tuple[bytes, dict[str, str]]:
    envelope = {"v": 1, "agent": agent.id, "seq_first": 3, "seq_last": 3, "sent_at_ms": ms(T0),
                "records": [{"type": "count", "sensor": "door", "seq": 3}]}
    body = zlib.compress(msgpack.packb(envelope))
    return body, _signed(agent, body)


def _time_out_of_bounds(agent: EnrolledAgent) -> tuple[bytes, dict[str, str]]:
    body = agent.body([count_record(3, T0), count_record(4, datetime(1999, 12, 31, tzinfo=UTC))])
    return body, _signed(agent, body)


def _two_days_ahead(agent: EnrolledAgent) -> tuple[bytes, dict[str, str]]:
    body = agent.body([count_record(3, datetime.now(UTC) + timedelta(days=2))])
    return body, _signed(agent, body)


def _long_detail(agent: EnrolledAgent) -> tuple[bytes, dict[str, str]]:
    body = agent.body([event_record(3, T0, kind="error", detail="x" * 2_000_000)])
    return body, _signed(agent, body)


def _nul_in_receipt(agent: EnrolledAgent) -> tuple[bytes, dict[str, str]]:
    # What an ESC/POS printer stream holds: PostgreSQL text cannot, so the protocol carries none.
    receipt = replace(transaction_record(3, T0), raw="\x1b@CAFE\nTOTAL 4.50\n\x1dV\x00")
    body = agent.body([receipt])
    return body, _signed(agent, body)


def _mismatch(agent: EnrolledAgent) -> tuple[bytes, dict[str, str]]:
    body = agent.body([count_record(3, T0)], agent="agt_someoneelse000000")
    return body, _signed(agent, body)


def _bad_signature(agent: EnrolledAgent) -> tuple[bytes, dict[str, str]]:
    body = agent.body([count_record(3, T0)])
    signed = sign_request(generate_key(), "POST", "/v1/ingest", agent.id, int(time.time()), body)
    return body, {**signed.as_dict(), "Content-Type": CONTENT_TYPE}


def _tampered(agent: EnrolledAgent) -> tuple[bytes, dict[str, str]]:
    body = agent.body([count_record(3, T0)])
    headers = _signed(agent, body)
    return agent.body([count_record(3, T0, entries=1000)]), headers


def _signed_for_other_path(agent: EnrolledAgent) -> tuple[bytes, dict[str, str]]:
    body = agent.body([count_record(3, T0)])
    return body, _signed(agent, body, path="/v1/heartbeat")


def _unknown_agent(agent: EnrolledAgent) -> tuple[bytes, dict[str, str]]:
    stranger = EnrolledAgent("agt_unknown0000000000", generate_key(), agent.org, agent.site, agent.timezone)
    body = stranger.body([count_record(3, T0)])
    return body, _signed(stranger, body)


def _stale(agent: EnrolledAgent) -> tuple[bytes, dict[str, str]]:
    body = agent.body([count_record(3, T0)])
    return body, _signed(agent, body, timestamp=int(time.time()) - 301)


def _future(agent: EnrolledAgent) -> tuple[bytes, dict[str, str]]:
    body = agent.body([count_record(3, T0)])
    return body, _signed(agent, body, timestamp=int(time.time()) + 400)


def _unsigned(agent: EnrolledAgent) -> tuple[bytes, dict[str, str]]:
    return agent.body([count_record(3, T0)]), {"Content-Type": CONTENT_TYPE}


def _wrong_type(agent: EnrolledAgent) -> tuple[bytes, dict[str, str]]:
    body = agent.body([count_record(3, T0)])
    return body, {**_signed(agent, body), "Content-Type": "application/json"}


def _zeros(agent: EnrolledAgent) -> tuple[bytes, dict[str, str]]:
    # 64 MiB of zeros in 64 KB: refused at the first byte, which is no envelope, without inflating the rest.
    body = zlib.compress(b"\x00" * (64 * 1024 * 1024 + 1), 9)
    return body, _signed(agent, body)


def _bomb(agent: EnrolledAgent) -> tuple[bytes, dict[str, str]]:
    # A valid shape that inflates past the payload limit: refused once it gets there.
    receipt = {**to_wire(transaction_record(1, T0)), "raw": "x" * MAX_RAW_CHARS}
    envelope = {"v": 1, "agent": agent.id, "seq_first": 1, "seq_last": 1000, "sent_at_ms": ms(T0),
                "records": [{**receipt, "seq": seq} for seq in range(1, 1001)]}
    body = zlib.compress(msgpack.packb(envelope), 9)
    return body, _signed(agent, body)


REFUSALS: list[tuple[str, Callable[[EnrolledAgent], tuple[bytes, dict[str, str]]], int, str]] = [
    ("seq range that lies", _lying_range, 400, "malformed_batch"),
    ("not zlib", _not_zlib, 400, "malformed_batch"),
    ("not msgpack", _not_msgpack, 400, "malformed_batch"),
    ("record missing fields", _bad_record, 400, "malformed_batch"),
    ("time before 2000", _time_out_of_bounds, 400, "malformed_batch"),
    ("two days ahead of the collector", _two_days_ahead, 400, "malformed_batch"),
    (f"detail over {MAX_DETAIL_CHARS} characters", _long_detail, 400, "malformed_batch"),
    ("NUL in a receipt", _nul_in_receipt, 400, "malformed_batch"),
    ("agent mismatch", _mismatch, 400, "agent_mismatch"),
    ("bad signature", _bad_signature, 401, "bad_signature"),
    ("body changed after signing", _tampered, 401, "bad_signature"),
    ("signed for another path", _signed_for_other_path, 401, "bad_signature"),
    ("unknown agent", _unknown_agent, 401, "unknown_agent"),
    ("timestamp 301 s old", _stale, 401, "timestamp_out_of_window"),
    ("timestamp 400 s ahead", _future, 401, "timestamp_out_of_window"),
    ("no signature", _unsigned, 401, "missing_signature"),
    ("wrong content type", _wrong_type, 415, "unsupported_media_type"),
    ("64 MiB of zeros", _zeros, 400, "malformed_batch"),
    ("decompresses past 16 MiB", _bomb, 413, "batch_too_large"),
]


@pytest.mark.parametrize(("build", "status", "code"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
async def test_a_refused_upload_changes_nothing(
    collector: RunningCollector, build: Callable[[EnrolledAgent], tuple[bytes, dict[str, str]]], status: int, code: str
) -> None:
    agent = await collector.enroll()
    assert (await collector.upload(agent, [count_record(1, T0), count_record(2, T0)])).status == 200
    before = await snapshot(collector, agent)
    body, headers = build(agent)
    answer = await collector.post_ingest(body, headers)
    assert (answer.status, answer.body["error"]) == (status, code), answer.body
    assert answer.body["message"]
    assert HEADER_SERVER_TIME in answer.headers
    assert await snapshot(collector, agent) == before


async def test_a_revoked_agent_is_refused_at_once_even_with_its_key_cached(collector: RunningCollector) -> None:
    agent = await collector.enroll()
    assert (await collector.upload(agent, [count_record(1, T0)])).status == 200  # the key is now cached
    async with collector.connection() as conn:
        await admin.revoke_agent(conn, agent.id)
    before = await snapshot(collector, agent)
    answer = await collector.upload(agent, [count_record(2, T0)])
    assert (answer.status, answer.body["error"]) == (401, "revoked_agent")
    assert await snapshot(collector, agent) == before
    # And again, now that the cache has forgotten it: refused before the body is even decoded.
    answer = await collector.upload(agent, [count_record(3, T0)])
    assert (answer.status, answer.body["error"]) == (401, "revoked_agent")


async def test_a_key_rotated_through_another_collector_is_read_again_not_refused(collector: RunningCollector) -> None:
    agent = await collector.enroll()
    assert (await collector.upload(agent, [count_record(1, T0)])).status == 200  # the old key is now cached
    # Another collector process took the rotation: the database has the new key, this process's cache the old.
    new = generate_key()
    async with collector.connection() as conn:
        await conn.execute("UPDATE agents SET public_key = %s WHERE id = %s", (public_bytes(new), agent.id))
    rotated = replace(agent, key=new)
    assert (await collector.upload(rotated, [count_record(2, T0)])).status == 200
    # The old key, now that the cache holds the new one: looked up again, and still refused.
    answer = await collector.upload(agent, [count_record(3, T0)])
    assert (answer.status, answer.body["error"]) == (401, "bad_signature")


async def test_a_body_over_the_limit_is_413_before_it_is_read(collector_factory: CollectorFactory) -> None:
    collector = await collector_factory(max_body=4096)
    agent = await collector.enroll()
    # Random receipt ids: compression cannot bring them under the limit.
    records = [transaction_record(seq, T0, txn_id=secrets.token_hex(40)) for seq in range(1, 400)]
    answer = await collector.upload(agent, records)
    assert answer.status == 413, answer
    assert answer.body["error"] == "batch_too_large"
    assert await collector.value("SELECT count(*) FROM transactions") == 0


async def test_error_answers_share_one_shape(collector: RunningCollector) -> None:
    missing = await collector.get("/v1/nothing-here")
    assert (missing.status, missing.body["error"]) == (404, "not_found")
    wrong_method = await collector.get("/v1/ingest")
    assert (wrong_method.status, wrong_method.body["error"]) == (405, "method_not_allowed")
    assert HEADER_SERVER_TIME in wrong_method.headers


async def test_the_agents_own_clock_skew_is_recorded_even_when_it_signs_with_a_corrected_time(
    collector: RunningCollector,
) -> None:
    agent = await collector.enroll()
    # Its clock runs two hours ahead; it learnt the offset, so its request timestamp is right,
    # but the batch carries its own clock: that is the skew the fleet must see.
    batch = Batch(agent.id, 1, 1, int((time.time() + 7200) * 1000), (count_record(1, T0),))
    body = zlib.compress(encode_payload(batch))
    answer = await collector.post_ingest(body, agent.headers(body))
    assert answer.status == 200, answer.body
    skew = await collector.value("SELECT clock_skew_s FROM agents WHERE id = %s", agent.id)
    assert abs(skew - 7200) < 60


async def test_ingest_keeps_each_agents_clock_state_skew_and_flagged_counts(collector: RunningCollector) -> None:
    from dataclasses import replace

    from footfall.collector.cli import app as collector_cli
    from footfall.protocol.envelope import encode_body, make_batch
    from typer.testing import CliRunner

    agent = await collector.enroll()

    async def send(records: list[Any], clock_off_s: float = 0.0) -> None:
        body = encode_body(make_batch(agent.id, records, int((time.time() + clock_off_s) * 1000)))
        answer = await collector.post_ingest(body, agent.headers(body))
        assert answer.status == 200, answer.body

    async def picture() -> tuple[Any, ...]:
        return (await collector.rows(
            "SELECT clock_state, readings_restamped, readings_suspect, clock_skew_s FROM agents"
        ))[0]

    first = [
        replace(count_record(1, T0), clock="restamped"),
        replace(count_record(2, T0 + timedelta(minutes=15)), clock="restamped"),
        replace(count_record(3, T0 + timedelta(minutes=30)), clock="suspect"),
        replace(event_record(4, T0, kind="clock", sensor="agent"), clock="restamped"),  # an event, not a reading
    ]
    await send(first)
    state, restamped, suspect, skew = await picture()
    assert (state, restamped, suspect) == ("suspect", 2, 1) and abs(skew) < 5
    await send(first)  # a replay adds nothing
    assert (await picture())[:3] == ("suspect", 2, 1)
    await send([replace(count_record(5, T0 + timedelta(hours=1)), clock="restamped")])
    assert (await picture())[:3] == ("restamped", 3, 1)
    # The agent's own clock two hours slow, its request timestamp corrected as the protocol allows.
    await send([count_record(6, T0 + timedelta(hours=2))], clock_off_s=-7200)
    state, _, _, skew = await picture()
    assert state == "skewed" and -7210 < skew < -7190
    await send([count_record(7, T0 + timedelta(hours=3))])
    assert (await picture())[0] == "ok"

    listed = await asyncio.to_thread(
        CliRunner().invoke, collector_cli, ["agents", "list", "--database-url", collector.dsn]
    )
    assert listed.exit_code == 0, listed.output
    header, row = listed.stdout.splitlines()[:2]
    assert header.split()[-4:] == ["CLOCK", "SKEW", "RESTAMPED", "SUSPECT"]
    assert row.split()[-4] == "ok" and row.split()[-3].endswith("s") and row.split()[-2:] == ["3", "1"]
    (info,) = await _list_agents(collector)
    assert (info.clock_state, info.readings_restamped, info.readings_suspect) == ("ok", 3, 1)


async def _list_agents(collector: RunningCollector) -> list[admin.AgentInfo]:
    async with collector.connection() as conn:
        return await admin.list_agents(conn)


# Issue 11: trust from the outside.


async def test_a_weak_key_stored_before_the_fix_verifies_no_forged_upload(collector: RunningCollector) -> None:
    agent = await collector.enroll()
    async with collector.connection() as conn:
        await conn.execute("UPDATE agents SET public_key = %s WHERE id = %s", (bytes.fromhex(SMALL_ORDER[2]), agent.id))
    before = await snapshot(collector, agent)
    body = agent.body([count_record(1, T0, entries=1000)])
    headers = {**agent.headers(body), "X-Footfall-Signature": FORGED}
    answer = await collector.post_ingest(body, headers)
    assert (answer.status, answer.body["error"]) == (401, "bad_signature"), answer.body
    assert "enroll again" in answer.body["message"]
    assert await snapshot(collector, agent) == before


async def _answer_to_headers_alone(collector: RunningCollector, headers: dict[str, str]) -> tuple[int, Any]:
    """Send a request's head announcing an 8 MiB body and never the body: the answer, if one comes."""
    url = URL(collector.url)
    size = 8 * 1024 * 1024
    before = asyncio.all_tasks()
    reader, writer = await asyncio.open_connection(url.host, url.port)
    try:
        head = {"Host": f"{url.host}:{url.port}", "Content-Type": CONTENT_TYPE, "Content-Length": str(size), **headers}
        writer.write(("POST /v1/ingest HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in head.items()) + "\r\n")
                     .encode())
        await writer.drain()
        async with asyncio.timeout(20):
            status_line = await reader.readline()
            lines = (await reader.readuntil(b"\r\n\r\n")).decode().split("\r\n")
            length = next(int(line.split(":")[1]) for line in lines if line.lower().startswith("content-length:"))
            payload = json.loads(await reader.readexactly(length))
        # Answered: now send the body, which the server reads and drops before it lets the connection go.
        writer.write(bytes(size))
        await writer.drain()
    finally:
        writer.close()
        await writer.wait_closed()

    async def let_go() -> bool:
        return all(t.done() for t in asyncio.all_tasks() - before if "RequestHandler" in repr(t.get_coro()))

    await eventually(let_go, what="the server to let the connection go")
    return int(status_line.split()[1]), payload


async def test_who_is_asking_is_checked_before_the_body_is_read(collector: RunningCollector) -> None:
    # Unsigned, or signed by a stranger, the revoked or with a stale clock: refused on the headers, so
    # 32 such requests with 8 MiB bodies cost the collector nothing but their heads.
    agent, revoked = await collector.enroll(), await collector.enroll()
    async with collector.connection() as conn:
        await admin.revoke_agent(conn, revoked.id)
    now = int(time.time())
    cases = [
        ({}, "missing_signature"),
        (sign_request(generate_key(), "POST", "/v1/ingest", "agt_nobody0000000000", now, b"").as_dict(),
         "unknown_agent"),
        (sign_request(revoked.key, "POST", "/v1/ingest", revoked.id, now, b"").as_dict(), "revoked_agent"),
        (sign_request(agent.key, "POST", "/v1/ingest", agent.id, now - 3600, b"").as_dict(),
         "timestamp_out_of_window"),
    ]
    for headers, code in cases:
        status, answer = await _answer_to_headers_alone(collector, headers)
        assert (status, answer["error"]) == (401, code), answer


def _nesting_bomb(agent: str, elements: int = 100, width: int = 20_000) -> bytes:
    """The issue's body, scaled down: `records` holds arrays of `width` empty arrays, one byte each."""
    head = msgpack.packb({"v": 1, "agent": agent, "seq_first": 1, "seq_last": 1, "sent_at_ms": ms(T0)})
    parts = [b"\x86", head[1:], msgpack.packb("records"), b"\xdc" + elements.to_bytes(2, "big")]
    parts += [b"\xdc" + width.to_bytes(2, "big") + b"\x90" * width] * elements
    return zlib.compress(b"".join(parts), 9)


async def test_a_batch_being_decoded_holds_up_no_other_request(
    collector: RunningCollector, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The decoder is held on a gate in its worker thread: /healthz must be answered meanwhile, whatever
    # the decoding costs. (Decoding on the event loop, as before, would hold /healthz until it ended.)
    decoding, release = threading.Event(), threading.Event()
    decode = protocol_ingest.decode_body

    def gated(body: bytes, *, now_ms: int | None = None) -> Batch:
        decoding.set()
        release.wait(30)
        return decode(body, now_ms=now_ms)

    monkeypatch.setattr(protocol_ingest, "decode_body", gated)
    agent = await collector.enroll()
    body = _nesting_bomb(agent.id)
    upload = asyncio.create_task(collector.post_ingest(body, agent.headers(body)))
    try:
        assert await asyncio.to_thread(decoding.wait, 20), "the upload never reached its decoding"
        health = await collector.get("/healthz")
        assert health.status == 200
        assert not upload.done(), "answered while its decoding is held"
    finally:
        release.set()
    answer = await upload
    assert (answer.status, answer.body["error"]) == (400, "malformed_batch"), answer.body
    assert "record 0" in answer.body["message"]


async def test_uploads_into_a_month_without_partitions_do_not_deadlock(
    collector: RunningCollector, caplog: pytest.LogCaptureFixture
) -> None:
    # One agent's backlog lands in a month with no partition (they are made, locking their parent tables)
    # while another agent's batch writes raw rows then rollups. Taken in two orders, the locks deadlocked
    # in 7 of 8 tries; in one order they cannot. Eight months, eight races.
    backlog, live = await collector.enroll(), await collector.enroll()
    live_records = [count_record(seq, T0 + timedelta(minutes=seq), sensor=f"door-{seq % 4}") for seq in range(1, 401)]
    caplog.set_level(logging.WARNING, logger="footfall.collector.ingest")
    for i in range(8):
        month = datetime(2011, 1 + i, 1, tzinfo=UTC)
        old = [count_record(seq, month + timedelta(minutes=seq)) for seq in range(10 * i + 1, 10 * i + 11)]
        fresh = [replace(r, seq=r.seq + 400 * i) for r in live_records]
        answers = await asyncio.gather(collector.upload(backlog, old), collector.upload(live, fresh))
        assert [a.status for a in answers] == [200, 200], [a.body for a in answers]
    retries = [r.getMessage() for r in caplog.records if r.getMessage() == "batch_retry"]
    assert retries == [], "a batch's transaction was aborted (deadlock) and retried"
    made = [partition_name(t, date(2011, 1 + i, 1)) for t in ("people_counts", "counts_15m") for i in range(8)]
    assert await collector.value("SELECT count(*) FROM pg_class WHERE relname = ANY(%s)", made) == 16


async def test_a_batch_spanning_more_than_max_months_is_413_and_makes_no_partition(collector: RunningCollector) -> None:
    agent = await collector.enroll()
    months = [datetime(2012, 1 + i, 1, tzinfo=UTC) for i in range(MAX_MONTHS + 1)]
    answer = await collector.upload(agent, [count_record(seq, m) for seq, m in enumerate(months, start=1)])
    assert (answer.status, answer.body["error"]) == (413, "batch_too_large"), answer.body
    assert f"more than {MAX_MONTHS} calendar months" in answer.body["message"]
    names = [partition_name(t, month_of(m)) for t in PARTITIONED_TABLES for m in months]
    assert await collector.value("SELECT count(*) FROM pg_class WHERE relname = ANY(%s)", names) == 0
    # Split as the agent does on 413: each half goes in.
    half = (MAX_MONTHS + 1) // 2
    records = [count_record(seq, m) for seq, m in enumerate(months, start=1)]
    assert (await collector.upload(agent, records[:half])).status == 200
    assert (await collector.upload(agent, records[half:])).status == 200


async def test_a_record_from_2098_is_refused_and_makes_no_partition(collector: RunningCollector) -> None:
    agent = await collector.enroll()
    answer = await collector.upload(agent, [count_record(1, T0), count_record(2, datetime(2098, 1, 1, tzinfo=UTC))])
    assert (answer.status, answer.body["error"]) == (400, "malformed_batch"), answer.body
    assert "record 1" in answer.body["message"] and "24 h" in answer.body["message"]
    names = [partition_name(t, date(2098, 1, 1)) for t in PARTITIONED_TABLES]
    assert await collector.value("SELECT count(*) FROM pg_class WHERE relname = ANY(%s)", names) == 0


async def test_a_batch_naming_too_many_new_sensors_is_400_naming_the_bound(collector: RunningCollector) -> None:
    agent = await collector.enroll()
    before = await snapshot(collector, agent)

    def batch(first: int, names: range) -> list[Record]:
        return [count_record(first + i, T0, sensor=f"door-{n}") for i, n in enumerate(names)]

    answer = await collector.upload(agent, batch(1, range(MAX_NEW_SENSORS + 1)))
    assert (answer.status, answer.body["error"]) == (400, "too_many_sensors"), answer.body
    assert f"at most {MAX_NEW_SENSORS} new ones" in answer.body["message"]
    assert await snapshot(collector, agent) == before
    # As many as the bound goes in; then sensors it already has do not count against it.
    assert (await collector.upload(agent, batch(1, range(MAX_NEW_SENSORS)))).status == 200
    known_and_new = batch(MAX_NEW_SENSORS + 1, range(MAX_NEW_SENSORS * 2))
    assert (await collector.upload(agent, known_and_new)).status == 200
    assert await collector.value("SELECT count(*) FROM sensors WHERE agent_id = %s", agent.id) == 2 * MAX_NEW_SENSORS
