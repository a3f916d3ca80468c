"""Every adapter case with a truth, end to end: device bytes -> agent pipeline -> collector -> API.

Table-driven over every `firmware-adapters/<adapter>/cases/<case>/` that has a `truth.json`
(format: tests/fixtures/adapter_cases.py), so a new profile's cases are covered as soon as they
carry one. For each case: a real collector on a fresh database, a site in the case's time zone
and a real enrollment; then the real agent `Pipeline` (config, profiles, buffer, intake, http_push
server, uploader). The case's inputs are POSTed to the agent over loopback HTTP with their
headers, exactly as the device or webhook would (a case whose source is a device transport, one
with `adapter_options`, gets its frames handed to the same pipeline's intake, as its transport
would); each answer must be the
one the case expects (200, 400 for malformed, 401 for a bad signature). Once the uploader has
drained the buffer, the API's footfall totals for the case's dates, and for POS cases the rows
and net amount of the `transactions` table, must equal the truth; so must the hours the truth
lists (their entries, exits and completeness, from the metrics API).
"""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp
import pytest
from footfall.agent.config.sections import (
    AgentConfig,
    AgentSection,
    BufferSection,
    CollectorSection,
    HttpPushSection,
    UploadSection,
)
from footfall.agent.identity import enroll
from footfall.agent.pipeline import Pipeline
from footfall.agent.sources.base import Frame, FrameRefused
from footfall.agent.sources.http_push import HttpPushServer

from tests.agent.conftest import eventually
from tests.fixtures.adapter_cases import Case, case_folders, load_case
from tests.fixtures.collector import RunningCollector

CASES = [folder for folder in case_folders() if (folder / "truth.json").is_file()]
PUSH_PATH = "/push/device"


def test_the_shipped_cases_have_truths() -> None:
    adapters = {folder.parent.parent.name for folder in CASES}
    assert {"square-webhook", "lightspeed-webhook", "brickstream-xml", "hikvision-isapi-realtime"} <= adapters


def expected_status(want: dict[str, object]) -> int:
    """The HTTP answer a frame of the case must get."""
    if "error" in want:
        return int(want.get("status", 400))  # type: ignore[call-overload]
    return 200


async def deliver(case: Case, pipeline: Pipeline) -> None:
    """Every input of the case, as its transport would deliver it; each answer as the case expects."""
    intake = pipeline.intakes[0]
    over_http = intake.source.transport == "http_push"
    server = pipeline.sources.get("http_push")
    assert isinstance(server, HttpPushServer) or not over_http
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
        for frame in case.frames:
            want = frame.want
            if not over_http:
                meta = frame.meta(f"http://127.0.0.1{PUSH_PATH}")
                if "error" in want:
                    with pytest.raises(FrameRefused):
                        await intake(Frame(intake.source.name, frame.payload, int(time.time() * 1000), meta))
                else:
                    await intake(Frame(intake.source.name, frame.payload, int(time.time() * 1000), meta))
                continue
            assert isinstance(server, HttpPushServer)
            url = f"http://127.0.0.1:{server.port}{PUSH_PATH}"
            async with session.post(url, data=frame.payload, headers=frame.headers) as response:
                body = await response.text()
                assert response.status == expected_status(want), f"{frame.name}: {response.status} {body}"


@pytest.mark.parametrize("folder", CASES, ids=[f"{c.parent.parent.name}/{c.name}" for c in CASES])
async def test_case_reaches_the_api_exactly(folder: Path, tmp_path: Path, collector: RunningCollector) -> None:
    case = load_case(folder)
    truth = case.truth
    assert truth is not None
    org = await collector.create_org()
    site = await collector.create_site(org, timezone=case.timezone or "UTC")
    token = await collector.create_token(site, org)
    api_key = await collector.create_api_key(org)
    state = tmp_path / "state"
    await enroll(state, collector.url, token)
    config = AgentConfig(
        agent=AgentSection(state_dir=state),
        collector=CollectorSection(url=collector.url, timeout=10.0),
        buffer=BufferSection(commit_interval=0.01),
        upload=UploadSection(max_age=0.02, backoff_initial=0.05, backoff_max=0.5),
        http_push=HttpPushSection(listen="127.0.0.1:0"),
        sources=(case.source(PUSH_PATH),),
    )
    pipeline = Pipeline(config)
    await pipeline.start()
    try:
        await deliver(case, pipeline)
        await eventually(lambda: pipeline.buffer.pending.depth == 0, within=30, what="the uploader to drain")
    finally:
        await pipeline.stop()

    answer = await collector.get(
        f"/v1/sites/{site}/footfall",
        key=api_key,
        params={"from": truth["from"], "to": truth["to"], "granularity": "day"},
    )
    assert answer.status == 200, answer.body
    assert answer.body["totals"] == {"entries": truth["entries"], "exits": truth["exits"]}
    if "hours" in truth:
        hourly = await collector.get(
            f"/v1/sites/{site}/metrics",
            key=api_key,
            params={"from": truth["from"], "to": truth["to"], "granularity": "hour", "metrics": "entries,exits"},
        )
        assert hourly.status == 200, hourly.body
        by_start = {b["start"]: b for b in hourly.body["buckets"]}
        for start, want in truth["hours"].items():
            assert {k: by_start[start][k] for k in want} == want, start
    if "transactions" in truth:
        rows = await collector.rows(
            "SELECT count(*), coalesce(sum(CASE kind WHEN 'sale' THEN amount_minor ELSE -amount_minor END), 0) "
            "FROM transactions"
        )
        assert {"count": rows[0][0], "net_minor": int(rows[0][1])} == truth["transactions"]
