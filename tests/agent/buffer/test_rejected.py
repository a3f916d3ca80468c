"""Records the collector refuses: an alarm everywhere, and recoverable once a newer agent can fix them.

An older agent kept ESC/POS receipts with their printer commands (NUL bytes in `raw`); the
collector refuses them and the agent parks them. Against a real collector and a real pipeline:
`status`, `doctor`, the heartbeat (and `footfall fleet agents list`) and the Prometheus metrics
all name them; `footfall agent buffer requeue-rejected` refuses to run beside the agent, then
repairs and re-sends them once, with fresh seqs, and a second run finds nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from footfall.agent.buffer import Buffer, read_stats
from footfall.agent.buffer.requeue import RequeueError, requeue_rejected
from footfall.agent.config.sections import (
    AgentConfig,
    AgentSection,
    BufferSection,
    CollectorSection,
    HeartbeatSection,
    HttpPushSection,
    MetricsSection,
    SourceConfig,
    UploadSection,
)
from footfall.agent.config.transports import SerialOptions
from footfall.agent.doctor import check_agent
from footfall.agent.identity import enroll
from footfall.agent.pipeline import BUFFER_FILE, Pipeline
from footfall.agent.status import gather, render
from footfall.protocol.records import Count, Transaction

from tests.agent.conftest import eventually
from tests.fixtures.adapter_cases import ROOT
from tests.fixtures.collector import RunningCollector

AT = int(datetime(2026, 3, 8, 10, 5, tzinfo=UTC).timestamp() * 1000)
SALE = ROOT / "escpos-receipt" / "cases" / "printer-commands-with-zero-parameters" / "input.bin"


def old_receipt(number: str) -> Transaction:
    """A receipt as agents before the ESC/POS parser kept it: the whole frame, decoded in its code page."""
    raw = SALE.read_bytes().replace(b"1004", number.encode()).decode("cp858")
    assert "\x00" in raw
    return Transaction("till-1", number, AT, "sale", 500, "EUR", 3, raw=raw)


def agent_config(state: Path, url: str) -> AgentConfig:
    till = SourceConfig(
        name="till-1", transport="serial", adapter="escpos-receipt",
        # The port does not matter (its transport retries in the background); the code page does.
        options=SerialOptions(port="/dev/null", adapter_options={"codepage": "cp858"}),
    )
    return AgentConfig(
        agent=AgentSection(state_dir=state),
        collector=CollectorSection(url=url, timeout=10.0),
        buffer=BufferSection(commit_interval=0.01),
        upload=UploadSection(max_age=0.02, backoff_initial=0.05, backoff_max=0.5),
        heartbeat=HeartbeatSection(interval=0.1),
        metrics=MetricsSection(listen="127.0.0.1:0"),
        http_push=HttpPushSection(listen="127.0.0.1:0"),
        sources=(till,),
    )


class Running:
    """A pipeline run in the background until `stop()`."""

    def __init__(self, config: AgentConfig) -> None:
        self.pipeline = Pipeline(config)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> Pipeline:
        self._task = asyncio.create_task(self.pipeline.run(self._stop))
        await eventually(lambda: self.pipeline.uploader is not None, within=30, what="the pipeline to start")
        return self.pipeline

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
            self._task = None


@pytest.fixture
async def runs() -> AsyncIterator[list[Running]]:
    started: list[Running] = []
    yield started
    for run in started:
        await run.stop()


async def test_refused_records_are_an_alarm_and_come_back_once_repaired(
    tmp_path: Path, collector: RunningCollector, runs: list[Running]
) -> None:
    org = await collector.create_org()
    site = await collector.create_site(org, timezone="Europe/Paris")
    fleet_key = await collector.create_api_key(org, "fleet_admin")
    state = tmp_path / "state"
    identity = await enroll(state, collector.url, await collector.create_token(site, org))
    config = agent_config(state, collector.url)
    # The buffer as the older agent left it: two receipts with printer commands, one good count.
    async with Buffer(state / BUFFER_FILE, max_size=1 << 26, commit_interval=0) as old:
        await old.append([old_receipt("2001"), Count("door", "main", AT, AT + 60_000, 4, 1), old_receipt("2002")])

    first = Running(config)
    runs.append(first)
    pipeline = await first.start()
    await eventually(
        lambda: pipeline.buffer.pending.depth == 0 and pipeline.uploader is not None
        and pipeline.uploader.status.rejected == 2,
        within=30, what="the collector to refuse both receipts",
    )
    assert await collector.value("SELECT count(*) FROM people_counts") == 1
    assert await collector.value("SELECT count(*) FROM transactions") == 0

    # status: a problem naming the count, the source and the reason; every record of till-1 refused is an outage.
    await pipeline.write_status()
    status = gather(config)
    assert status["rejected"]["parked"] == 2 and status["rejected"]["by_source"] == {"till-1": 2}
    assert status["rejected"]["outages"] == ["till-1"]
    text = render(status)
    assert "2 records REFUSED by the collector are parked on this gateway" in text
    assert "source till-1: the collector refused EVERY record" in text
    assert "requeue-rejected" in text
    # doctor: the same, as a failing check with the fix.
    (check,) = [c for c in check_agent(config) if c.area == "rejected"]
    assert check.level == "fail" and "till-1" in check.message and "requeue-rejected" in check.fix
    # metrics: a counter per source, and what is parked.
    metrics_port = pipeline.metrics_server.port if pipeline.metrics_server else 0
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{metrics_port}/metrics") as got:
        exposition = await got.text()
    assert 'footfall_agent_source_records_rejected_total{source="till-1"} 2.0' in exposition
    assert "footfall_agent_rejected_parked 2.0" in exposition
    assert "footfall_agent_rejected_records_total 2.0" in exposition

    # The heartbeat carries it: the fleet list shows it, the agent's log says it, the source is not ok.
    async def fleet_sees_it() -> bool:
        listed = (await collector.get("/v1/admin/agents", key=fleet_key)).body["agents"]
        return [(a["id"], a["rejected_records"]) for a in listed] == [(identity.agent_id, 2)]

    await eventually(fleet_sees_it, within=30, what="the heartbeat to report the refused records")
    shown = (await collector.get(f"/v1/admin/agents/{identity.agent_id}", key=fleet_key)).body
    assert shown["rejected_reason"] and shown["sources_down"] == 1
    assert any(entry["kind"] == "records_rejected" for entry in shown["log"])

    # Not beside a running agent.
    with pytest.raises(RequeueError, match="stop the agent"):
        await requeue_rejected(config, state / BUFFER_FILE)
    await first.stop()

    report = await requeue_rejected(config, state / BUFFER_FILE, dry_run=True)
    assert (report.result.requeued, report.dry_run) == (2, True)
    report = await requeue_rejected(config, state / BUFFER_FILE)
    assert (report.result.requeued, report.result.repaired, report.result.still_invalid) == (2, 2, 0)
    stats = read_stats(state / BUFFER_FILE)
    assert stats is not None and stats.rejected_parked == 0 and stats.depth == 2
    # Fresh seqs, above everything the collector has seen (its high-water mark would drop the old ones).
    assert report.result.first_seq > await collector.value("SELECT hw_seq FROM agents WHERE id = %s", identity.agent_id)
    again = await requeue_rejected(config, state / BUFFER_FILE)
    assert again.lines() == ["no records are parked: nothing to do"]

    second = Running(config)
    runs.append(second)
    pipeline = await second.start()
    await eventually(lambda: pipeline.buffer.pending.depth == 0, within=30, what="the re-queued receipts to upload")
    rows = await collector.rows("SELECT txn_id, amount_minor, raw FROM transactions ORDER BY txn_id")
    assert [(r[0], r[1]) for r in rows] == [("2001", 500), ("2002", 500)]
    assert all(r[2].startswith("CAFÉ DU COIN\n") and "\x1b" not in r[2] for r in rows)
    await second.stop()
    status = gather(config)
    assert status["rejected"]["parked"] == 0
    assert not [p for p in status["problems"] if "REFUSED" in p]
    (check,) = [c for c in check_agent(config) if c.area == "rejected"]
    assert check.level == "ok"


async def test_a_record_still_invalid_stays_parked_with_its_reason(tmp_path: Path) -> None:
    state = tmp_path / "state"
    config = agent_config(state, "http://127.0.0.1:9")
    async with Buffer(state / BUFFER_FILE, max_size=1 << 26, commit_interval=0) as buffer:
        (seq,) = await buffer.append([Transaction("till-1", "x", AT, "sale", 100, "EUR", raw="ok")])
        await buffer.reject(seq, "a reason only the collector knows")
        (bad,) = await buffer.append([Count("door", "main", AT, AT, 1, 0)])  # an empty period: never valid
        await buffer.reject(bad, "count.end_ms must be after count.start_ms")
    report = await requeue_rejected(config, state / BUFFER_FILE)
    assert (report.result.requeued, report.result.repaired, report.result.still_invalid) == (1, 0, 1)
    async with Buffer(state / BUFFER_FILE, max_size=1 << 26, commit_interval=0) as buffer:
        ((_, reason, record),) = await buffer.rejected()
    assert isinstance(record, Count) and reason.startswith("still invalid: count.end_ms must be after")
    again = await requeue_rejected(config, state / BUFFER_FILE)
    assert (again.result.requeued, again.result.still_invalid) == (0, 1)
