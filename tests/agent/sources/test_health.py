"""Per-device health in a running pipeline: written to status.json, shown by `footfall agent status`."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from footfall.agent.config.load import parse_config
from footfall.agent.pipeline import Pipeline
from footfall.agent.status import gather, render

from tests.agent.conftest import eventually
from tests.agent.sources.conftest import Pty, new_pty
from tests.agent.sources.test_serial import pc


async def test_a_broken_device_is_down_in_status_and_the_others_run(tmp_path: Path, ptys: list[Pty]) -> None:
    pty = new_pty(ptys, tmp_path / "ttyGOOD")
    config = parse_config(
        {
            "agent": {"state_dir": str(tmp_path / "state")},
            "buffer": {"commit_interval": "10ms"},
            "http_push": {"listen": "127.0.0.1:0"},
            "sources": [
                {
                    "name": "good",
                    "transport": "serial",
                    "adapter": "terabee-evo",
                    "port": str(pty.link),
                    "reconnect_min": "50ms",
                },
                {
                    "name": "unplugged",
                    "transport": "serial",
                    "adapter": "terabee-evo",
                    "port": str(tmp_path / "ttyGONE"),
                    "reconnect_min": "50ms",
                    "reconnect_max": "200ms",
                },
                {
                    "name": "dead-modbus",
                    "transport": "modbus",
                    "adapter": "generic-modbus-counter",
                    "host": "127.0.0.1",
                    "port": 9,
                    "reconnect_min": "50ms",
                    "reconnect_max": "200ms",
                },
                {
                    "name": "entrance",
                    "transport": "http_push",
                    "adapter": "generic-json-counter",
                    "path": "/push/entrance",
                },
            ],
        }
    )
    pipeline = Pipeline(config)
    async with asyncio.timeout(90):  # start and stop are unbounded awaits: fail here, with a traceback, if one hangs
        await pipeline.start()
        try:
            good = next(i for i in pipeline.intakes if i.source.name == "good")
            await eventually(lambda: good.health.connected, what="the good port")
            pty.write(b"\xff\x00noise" + pc(5, 1) + pc(9, 2))
            await eventually(lambda: good.health.accepted == 2, what="readings from the good device")
            await pipeline.write_status()
        finally:
            await pipeline.stop()
    status = json.loads((tmp_path / "state" / "status.json").read_text())
    by_name = {s["name"]: s for s in status["sources"]}
    assert by_name["good"]["accepted"] == 2 and by_name["good"]["garbage"] >= 7
    assert by_name["unplugged"]["state"] == "down" and "does not exist" in by_name["unplugged"]["last_error"]
    assert by_name["dead-modbus"]["state"] == "down" and "refused" in by_name["dead-modbus"]["last_error"]
    text = render(gather(config))
    assert "unplugged: down" in text and "USB adapter unplugged?" in text
    assert "good: " in text and "garbage thrown away" in text
