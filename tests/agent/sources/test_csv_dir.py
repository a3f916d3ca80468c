"""CSV drop folder: a half-written file is never read, each file is taken once, a crash between commit and move."""

from __future__ import annotations

import asyncio
import os
import tracemalloc
from pathlib import Path
from zoneinfo import ZoneInfo

from footfall.agent.buffer import Buffer
from footfall.agent.config.transports import CsvDirOptions
from footfall.agent.sources.csv_dir import CsvDirSource
from footfall.protocol.records import Count

from tests.agent.conftest import eventually
from tests.agent.sources.conftest import make_intake, records_of, stopped

HEAD = "record_id;timestamp;period;status;Door1_SUM_IN;Door1_SUM_OUT\n"
BERLIN = ZoneInfo("Europe/Berlin")


def rows(*items: tuple[int, str, int, int]) -> str:
    """HELLA rows: (record_id, local time, in, out) of 15 minutes."""
    return "".join(f"{rid};{ts};900;0;{a};{b}\n" for rid, ts, a, b in items)


def folder_options(path: Path, **extra: object) -> CsvDirOptions:
    """Fast scans."""
    values: dict[str, object] = {"settle": 0.3, "scan_interval": 0.05, "reconnect_min": 0.05, "reconnect_max": 0.2}
    values.update(extra)
    return CsvDirOptions(path=path, **values)  # type: ignore[arg-type]


async def test_a_half_written_file_is_read_only_once_settled(tmp_path: Path, store: Buffer) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    intake = make_intake(store, "aps", "csv_dir", "hella-aps-csv", folder_options(drop), zone=BERLIN)
    source = CsvDirSource([intake])
    await source.start()
    target = drop / "2026-03-08.csv"
    try:
        content = HEAD + rows((1, "2026-03-08 11:00:00", 1, 1), (2, "2026-03-08 11:15:00", 2, 2))
        pieces = [content[i : i + 12] for i in range(0, len(content), 12)]
        with target.open("w") as writer:
            for piece in pieces:  # a slow writer: a piece every 0.1 s, always within the settle period
                writer.write(piece)
                writer.flush()
                await asyncio.sleep(0.1)
                assert intake.health.received == 0, "a file still being written must not be read"
        await eventually((drop / "done" / target.name).exists, what="the file taken and moved")
    finally:
        await stopped(source)
    counts = await records_of(store, Count)
    assert [(c.entries, c.exits) for c in counts] == [(1, 1), (2, 2)]
    assert intake.health.received == 1 and intake.health.errors == 0


async def test_rename_into_place_needs_no_settle(tmp_path: Path, store: Buffer) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    intake = make_intake(store, "aps", "csv_dir", "hella-aps-csv", folder_options(drop, settle=0.0), zone=BERLIN)
    source = CsvDirSource([intake])
    await source.start()
    try:
        temp = drop / "export.csv.tmp"
        temp.write_text(HEAD + rows((1, "2026-03-08 11:00:00", 4, 3)))
        os.replace(temp, drop / "export.csv")
        # The file is moved after its commit: wait for both, not just the count.
        await eventually(
            lambda: intake.health.accepted == 1 and (drop / "done" / "export.csv").exists(), what="the renamed file"
        )
    finally:
        await stopped(source)
    assert not temp.exists()


async def test_a_crash_between_commit_and_move_does_not_count_twice(tmp_path: Path, store: Buffer) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "done").write_text("a file where the done folder should be: the move will fail")
    options = folder_options(drop, settle=0.0)
    intake = make_intake(store, "aps", "csv_dir", "hella-aps-csv", options, zone=BERLIN)
    source = CsvDirSource([intake])
    (drop / "a.csv").write_text(HEAD + rows((1, "2026-03-08 11:00:00", 5, 5), (2, "2026-03-08 11:15:00", 6, 6)))
    await source.start()
    try:
        await eventually(lambda: intake.health.state == "down", what="the failed move")
    finally:
        await stopped(source)
    assert len(await records_of(store, Count)) == 2, "committed before the move failed"
    assert (drop / "a.csv").exists(), "the file is still there, as after a crash"

    # The agent restarts (a new transport and intake over the same buffer) once the folder is fixed.
    (drop / "done").unlink()
    restarted = make_intake(store, "aps", "csv_dir", "hella-aps-csv", options, zone=BERLIN)
    source = CsvDirSource([restarted])
    await source.start()
    try:
        await eventually((drop / "done" / "a.csv").exists, what="the file moved")
    finally:
        await stopped(source)
    assert [(c.entries, c.exits) for c in await records_of(store, Count)] == [(5, 5), (6, 6)]
    assert restarted.health.dropped == 2 and restarted.health.accepted == 0


async def test_a_refused_file_goes_to_failed_and_others_continue(tmp_path: Path, store: Buffer) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    intake = make_intake(store, "aps", "csv_dir", "hella-aps-csv", folder_options(drop, settle=0.0), zone=BERLIN)
    source = CsvDirSource([intake])
    (drop / "1-bad.csv").write_bytes(b"\x00\x01\x02 garbage \xff")
    (drop / "2-good.csv").write_text(HEAD + rows((1, "2026-03-08 11:00:00", 1, 0)))
    await source.start()
    try:
        await eventually((drop / "done" / "2-good.csv").exists, what="the good file")
        await eventually((drop / "failed" / "1-bad.csv").exists, what="the bad file set aside")
    finally:
        await stopped(source)
    assert [(c.entries, c.exits) for c in await records_of(store, Count)] == [(1, 0)]
    assert intake.health.errors == 1


async def test_a_file_whose_name_is_not_utf8_goes_to_failed_and_the_next_files_are_taken(
    tmp_path: Path, store: Buffer
) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    # Latin-1 from an old Windows exporter: sorts before the good file, and must not stop it.
    bad = drop / os.fsdecode(b"caf\xe9-2026-03-08.csv")
    bad.write_bytes((HEAD + rows((1, "2026-03-08 11:00:00", 9, 9))).encode())
    (drop / "d-2026-03-08.csv").write_text(HEAD + rows((1, "2026-03-08 11:15:00", 1, 0)))
    intake = make_intake(store, "aps", "csv_dir", "hella-aps-csv", folder_options(drop, settle=0.0), zone=BERLIN)
    source = CsvDirSource([intake])
    await source.start()
    try:
        await eventually((drop / "done" / "d-2026-03-08.csv").exists, what="the file after it")
        await eventually(lambda: b"caf\xe9-2026-03-08.csv" in os.listdir(os.fsencode(drop / "failed")),
                         what="the badly named file set aside")
    finally:
        await stopped(source)
    reason = (drop / "failed" / os.fsdecode(b"caf\xe9-2026-03-08.csv.reason")).read_text()
    assert "not UTF-8" in reason and "rename" in reason
    assert [(c.entries, c.exits) for c in await records_of(store, Count)] == [(1, 0)]
    assert intake.health.state != "down" and intake.health.reconnects == 0, "the folder was never given up"
    assert "caf\\xe9" in intake.health.last_error


async def refused_reading(drop: Path, store: Buffer, **options: object) -> tuple[str, int]:
    """Scan `drop` once, traced: the reason the only file was refused, and the peak of memory allocated meanwhile."""
    intake = make_intake(store, "aps", "csv_dir", "hella-aps-csv", folder_options(drop, settle=0.0, **options))
    source = CsvDirSource([intake])
    tracemalloc.start()
    try:
        assert await source.scan(source.devices[0]) == 0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    (refused,) = [p for p in (drop / "failed").iterdir() if p.suffix != ".reason"]
    assert await records_of(store) == [] and intake.health.errors == 1
    return refused.with_name(refused.name + ".reason").read_text(), peak


async def test_a_file_over_max_file_size_is_refused_without_being_read(tmp_path: Path, store: Buffer) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    with (drop / "export.csv").open("wb") as f:
        f.truncate(150 * 1024 * 1024)  # sparse: 150 MiB that cost no disk
    reason, peak = await refused_reading(drop, store)
    assert "150 MiB" in reason and "max_file_size (4 MiB)" in reason
    assert peak < 1024 * 1024, f"{peak} bytes allocated to refuse it"


async def test_a_line_over_max_line_is_refused_after_reading_little_more_than_it(tmp_path: Path, store: Buffer) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    with (drop / "export.csv").open("wb") as f:
        f.write(HEAD.encode())
        f.truncate(40 * 1024 * 1024)  # one line of 40 MiB, within a raised file bound
    reason, peak = await refused_reading(drop, store, max_file_size=64 * 1024 * 1024)
    assert "max_line (64 KiB)" in reason
    assert peak < 1024 * 1024, f"{peak} bytes allocated to refuse it"
