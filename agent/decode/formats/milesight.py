"""`format = "milesight"`: Milesight VS1xx people counters' JSON reports (MQTT or HTTP).

A report carries one kind of data, named by its key, and a `time_info` beside it:
- `line_periodic_data[]`: per-interval counts per line, `time_info.start_time`/`end_time`;
- `line_total_data[]`: running totals per line (`total.in_counted`/`out_counted`), at `time_info.time`;
- `line_trigger_data[]`: one message per crossing, running totals since the last report.

`[milesight] data = "periodic"` (the default) reads periodic reports, `"total"` reads the
cumulative totals (for a device that only sends those: profile counter = "cumulative"); the
other kinds of report give no reading (taken and dropped quietly, not errors), because the
same people are in every kind and counting two kinds would count them twice.

Each item is flat: `line` (its `line_name`, or the number of the line), `entries`, `exits`,
`start`, `end` (periodic) or `at` (total). Times carry their UTC offset; a time without one is
read with the fixed offset of `time_info.time_zone` ("UTC+8:00 ...", not an IANA name) plus
one hour when `dst_status` is on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from footfall.agent.decode.errors import DecodeError
from footfall.agent.decode.formats.named import NamedValues, unknown_keys

_ZONE = re.compile(r"UTC\s*([+-])\s*(\d{1,2})(?::?(\d{2}))?")


@dataclass(frozen=True, slots=True)
class MilesightOptions:
    """`[milesight]`."""

    data: Literal["periodic", "total"] = "periodic"


class MilesightExtractor(NamedValues):
    """Milesight VS1xx JSON reports."""

    name = "milesight"

    def parse_options(self, table: Mapping[str, Any], where: str, add: Callable[[str, str], None]) -> MilesightOptions:
        """Read `[milesight]`: only `data`."""
        unknown_keys(table, {"data"}, where, add)
        data = table.get("data", "periodic")
        if data not in ("periodic", "total"):
            add(f"{where}.data", f"must be periodic or total, got {data!r}")
            data = "periodic"
        return MilesightOptions(data)

    def items(self, options: MilesightOptions, payload: bytes) -> list[tuple[str, Any]]:
        """One item per line of the report kind the profile reads; none for other kinds."""
        try:
            body = json.loads(payload.decode("utf-8-sig"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DecodeError(f"body is not JSON: {exc}") from None
        except RecursionError:
            raise DecodeError("body is not JSON we can read: nested too deeply") from None
        if not isinstance(body, dict):
            raise DecodeError("body: expected a JSON object")
        key = "line_periodic_data" if options.data == "periodic" else "line_total_data"
        lines = body.get(key)
        if lines is None:
            return []
        info = body.get("time_info")
        if not isinstance(lines, list) or not isinstance(info, dict):
            raise DecodeError(f"{key} must be a list and time_info an object")
        offset = _offset(info)
        out: list[tuple[str, Any]] = []
        for index, entry in enumerate(lines):
            where = f"{key}[{index}]"
            if not isinstance(entry, dict):
                raise DecodeError(f"{where}: expected an object")
            total = entry.get("total")
            counts: dict[str, Any] = total if isinstance(total, dict) else {}
            name = entry.get("line_name") or entry.get("line") or index + 1
            item: dict[str, Any] = {"line": name}
            if options.data == "periodic":
                item["entries"], item["exits"] = counts.get("in"), counts.get("out")
                item["start"] = _time(info.get("start_time"), offset)
                item["end"] = _time(info.get("end_time"), offset)
            else:
                item["entries"], item["exits"] = counts.get("in_counted"), counts.get("out_counted")
                item["at"] = _time(info.get("time"), offset)
            out.append((where, {k: v for k, v in item.items() if v is not None}))
        return out


def _offset(info: Mapping[str, Any]) -> timezone | None:
    match = _ZONE.search(str(info.get("time_zone", "")))
    if match is None:
        return None
    minutes = int(match.group(2)) * 60 + int(match.group(3) or 0)
    if info.get("dst_status") in (True, 1, "1", "on", "enable", "true"):
        minutes += 60 if match.group(1) == "+" else -60
    return timezone(timedelta(minutes=minutes if match.group(1) == "+" else -minutes))


def _time(value: Any, offset: timezone | None) -> Any:
    """An ISO time with offset as is; without one, given the report's zone label's offset."""
    if not isinstance(value, str) or offset is None:
        return value
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return value
    return when.replace(tzinfo=offset).isoformat() if when.tzinfo is None else value
