"""`collector serve` as a process: SIGKILL and restart, who owns the embedded cluster, a database that goes away."""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from footfall.collector.cli import app as collector_cli
from footfall.collector.embedded_pg import EmbeddedPostgres
from footfall.collector.migrate import migrate
from footfall.protocol.signing import HEADER_SERVER_TIME, generate_key, public_key_b64
from typer.testing import CliRunner

from tests.collector.conftest import eventually
from tests.fixtures.collector import CollectorFactory, CollectorProcess, EnrolledAgent, count_record
from tests.fixtures.pg import make_temp_root

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)


def http(url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """A blocking request: (status, parsed JSON)."""
    method = "POST" if body is not None else "GET"
    request = urllib.request.Request(url, data=body, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def cli(*args: str) -> str:
    """Run `footfall collector ARGS` in-process; its stdout (fails the test on a non-zero exit)."""
    result = CliRunner().invoke(collector_cli, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def enroll(url: str, token: str) -> EnrolledAgent:
    key = generate_key()
    payload = json.dumps({"token": token, "public_key": public_key_b64(key), "version": "0.1.0"}).encode()
    status, body = http(url + "/v1/agents/enroll", payload, {"Content-Type": "application/json"})
    assert status == 201, body
    return EnrolledAgent(body["agent_id"], key, body["organization"], body["site"], body["timezone"])


def upload(url: str, agent: EnrolledAgent, seqs: range) -> tuple[int, Any]:
    body = agent.body([count_record(seq, T0 + timedelta(minutes=seq)) for seq in seqs])
    return http(url + "/v1/ingest", body, agent.headers(body))


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A data directory for `serve --data-dir`; any cluster left in it is stopped afterwards."""
    root = Path(make_temp_root("ff-serve-"))
    try:
        yield root / "data"
    finally:
        EmbeddedPostgres(root / "data").stop()
        shutil.rmtree(root, ignore_errors=True)


def test_a_killed_collector_restarts_and_a_replayed_batch_counts_once(
    pg_dsn: str, collector_process: Callable[..., CollectorProcess]
) -> None:
    org = cli("orgs", "create", "Acme", "--database-url", pg_dsn)
    cli("sites", "create", "--org", org, "--id", "lyon", "--timezone", "Europe/Paris", "--database-url", pg_dsn)
    token = cli("tokens", "create", "--site", "lyon", "--database-url", pg_dsn)
    first = collector_process("--database-url", pg_dsn)
    agent = enroll(first.url, token)
    assert upload(first.url, agent, range(1, 51)) == (200, {"accepted": 50, "duplicates": 0, "acked_seq": 50})
    first.kill()
    second = collector_process("--database-url", pg_dsn)
    # The agent never saw the answer and sends the batch again, with more behind it.
    assert upload(second.url, agent, range(1, 81)) == (200, {"accepted": 30, "duplicates": 50, "acked_seq": 80})
    listed = json.loads(cli("agents", "list", "--json", "--database-url", pg_dsn))
    assert [(a["id"], a["hw_seq"]) for a in listed] == [(agent.id, 80)]
    assert second.stop() == 0
    assert "collector_stopping" in second.logs()


def test_the_embedded_cluster_is_owned_by_serve_and_survives_its_sigkill(
    data_dir: Path, collector_process: Callable[..., CollectorProcess]
) -> None:
    first = collector_process("--data-dir", str(data_dir))
    # Admin commands share the running cluster and leave it running.
    org = cli("orgs", "create", "Acme", "--data-dir", str(data_dir))
    cli("sites", "create", "--org", org, "--id", "nyc", "--timezone", "America/New_York", "--data-dir", str(data_dir))
    token = cli("tokens", "create", "--site", "nyc", "--data-dir", str(data_dir))
    assert EmbeddedPostgres(data_dir).is_running()
    agent = enroll(first.url, token)
    assert agent.timezone == "America/New_York"
    assert upload(first.url, agent, range(1, 11))[0] == 200

    rival = collector_process("--data-dir", str(data_dir), wait=False)
    assert rival.proc.wait(timeout=60) == 1
    assert "another collector" in rival.logs() and str(first.proc.pid) in rival.logs()

    first.kill()
    assert EmbeddedPostgres(data_dir).is_running()  # the database outlives its killed owner ...
    second = collector_process("--data-dir", str(data_dir))
    assert "embedded_pg_reused" in second.logs()  # ... and the next collector takes it over
    assert upload(second.url, agent, range(1, 21))[1] == {"accepted": 10, "duplicates": 10, "acked_seq": 20}
    assert second.stop() == 0
    assert not EmbeddedPostgres(data_dir).is_running()  # a clean stop stops the cluster too


def test_serve_refuses_a_bad_config_naming_the_key(
    tmp_path: Path, collector_process: Callable[..., CollectorProcess]
) -> None:
    config = tmp_path / "collector.toml"
    config.write_text('listen = "127.0.0.1:8700"\ntimestamp_windw = "60s"\nmax_body = "1GB"\n')
    process = collector_process("--config", str(config), wait=False)
    assert process.proc.wait(timeout=60) == 1
    logs = process.logs()
    assert "timestamp_windw: unknown key" in logs and "did you mean 'timestamp_window'" in logs
    assert "max_body: must be between 1KiB" in logs


async def test_a_database_that_goes_away_gets_503_then_recovers(collector_factory: CollectorFactory) -> None:
    root = Path(make_temp_root("ff-down-"))
    cluster = EmbeddedPostgres(root / "data", durable=False)
    try:
        cluster.start()
        await migrate(cluster.dsn)
        collector = await collector_factory(dsn=cluster.dsn, database_timeout=0.5, retry_after=3)
        agent = await collector.enroll()
        assert (await collector.upload(agent, [count_record(1, T0)])).status == 200

        cluster.stop()
        down = await collector.upload(agent, [count_record(2, T0)])
        assert (down.status, down.body["error"], down.headers["Retry-After"]) == (503, "unavailable", "3")
        assert HEADER_SERVER_TIME in down.headers
        assert (await collector.get("/v1/health")).status == 503

        cluster.start()

        async def healthy() -> bool:
            return (await collector.get("/v1/health")).status == 200

        await eventually(healthy, within=30, what="the collector to reconnect")
        again = await collector.upload(agent, [count_record(2, T0)])
        assert again.body == {"accepted": 1, "duplicates": 0, "acked_seq": 2}
        assert await collector.value("SELECT count(*) FROM people_counts") == 2
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
