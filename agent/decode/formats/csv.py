"""`format = "csv"`: a CSV file (a drop folder's file, or a body), one reading per row, or per row and line.

```toml
[csv]
delimiter = ","
encoding = "utf-8-sig"
# Optional: counting lines (names without "_") are found in the header, e.g. Door1_SUM_IN; each row
# gives one item per line, with `line`, `entries` and `exits` set from those columns.
line_columns = { entries = "{line}_SUM_IN", exits = "{line}_SUM_OUT" }
# Optional: the period's end is `start` + `seconds`, both columns (a local time stays local,
# read later in the site's zone by [time] naive = "site").
end_from = { start = "timestamp", seconds = "period" }
```

A field's path is a column name. Cells that are whole numbers are read as numbers, others as
text. A file whose rows do not fit (a missing column, a bad number) is refused whole.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from footfall.agent.decode.errors import DecodeError
from footfall.agent.decode.formats.named import NamedValues, unknown_keys

_INT = re.compile(r"-?\d{1,18}")


@dataclass(frozen=True, slots=True)
class CsvOptions:
    """`[csv]`, checked."""

    delimiter: str = ","
    encoding: str = "utf-8-sig"
    line_columns: Mapping[str, str] | None = None
    end_from: tuple[str, str] | None = None


class CsvExtractor(NamedValues):
    """CSV with a header row."""

    name = "csv"

    def compile_path(self, path: str) -> str:
        """A path is a column name (any non-empty text)."""
        if not path:
            raise ValueError("must be a column name")
        return path

    def parse_options(self, table: Mapping[str, Any], where: str, add: Callable[[str, str], None]) -> CsvOptions:
        """Read `[csv]`."""
        unknown_keys(table, {"delimiter", "encoding", "line_columns", "end_from"}, where, add)
        delimiter = table.get("delimiter", ",")
        if not isinstance(delimiter, str) or len(delimiter) != 1:
            add(f"{where}.delimiter", "must be one character, e.g. ',' or ';'")
            delimiter = ","
        lines = table.get("line_columns")
        if lines is not None and (
            not isinstance(lines, dict)
            or set(lines) != {"entries", "exits"}
            or not all(isinstance(v, str) and v.count("{line}") == 1 for v in lines.values())
        ):
            add(f"{where}.line_columns", 'must be { entries = "{line}_IN", exits = "{line}_OUT" }')
            lines = None
        end = table.get("end_from")
        end_from = None
        if end is not None:
            if not isinstance(end, dict) or set(end) != {"start", "seconds"}:
                add(f"{where}.end_from", 'must be { start = "timestamp", seconds = "period" }')
            else:
                end_from = (str(end["start"]), str(end["seconds"]))
        return CsvOptions(delimiter, str(table.get("encoding", "utf-8-sig")), lines, end_from)

    def items(self, options: CsvOptions, payload: bytes) -> list[tuple[str, Any]]:
        """Every row (times every line) as an item named `row N` (N counts from 2: the header is row 1)."""
        try:
            text = payload.decode(options.encoding)
        except (UnicodeDecodeError, LookupError) as exc:
            raise DecodeError(f"file is not {options.encoding} text: {exc}") from None
        if text and not text.endswith(("\n", "\r")):
            # Every exporter ends its last row with a line break; without one the file was cut off
            # (a half-copied file), and its last number may be shortened: refuse rather than guess.
            raise DecodeError("the last row has no line break: the file looks cut off")
        reader = csv.DictReader(io.StringIO(text), delimiter=options.delimiter)
        try:
            fieldnames = reader.fieldnames
            rows = list(reader)
        except csv.Error as exc:
            raise DecodeError(f"not CSV: {exc}") from None
        if not fieldnames or len(fieldnames) < 2:
            raise DecodeError(f"no header row with {options.delimiter!r}-separated column names")
        lines: list[str] = []
        if options.line_columns:
            pattern = re.compile(re.escape(options.line_columns["entries"]).replace(r"\{line\}", "([^_]+)"))
            lines = [m.group(1) for name in fieldnames if (m := pattern.fullmatch(name.strip()))]
            if not lines:
                raise DecodeError(f"no column matches {options.line_columns['entries']!r} in the header")
            header = {name.strip() for name in fieldnames}
            for line in lines:
                for template in options.line_columns.values():
                    if template.replace("{line}", line) not in header:
                        raise DecodeError(f"line {line}: no column {template.replace('{line}', line)!r} in the header")
        out: list[tuple[str, Any]] = []
        for number, row in enumerate(rows, start=2):
            if None in row or any(v is None for v in row.values()):
                raise DecodeError(f"row {number}: not as many cells as the header has columns")
            cells: dict[str, Any] = {k.strip(): _cell(v) for k, v in row.items()}
            if options.end_from:
                cells["end"] = _end(cells, options.end_from, number)
            if not lines:
                out.append((f"row {number}", cells))
                continue
            assert options.line_columns is not None
            for line in lines:
                item = dict(cells)
                item["line"] = line
                for field, template in options.line_columns.items():
                    item[field] = cells.get(template.replace("{line}", line), item.get(field))
                out.append((f"row {number} line {line}", item))
        return out


def _cell(value: str) -> Any:
    value = value.strip()
    return int(value) if _INT.fullmatch(value) else value


def _end(cells: Mapping[str, Any], end_from: tuple[str, str], number: int) -> str:
    start, seconds = cells.get(end_from[0]), cells.get(end_from[1])
    if not isinstance(start, str) or type(seconds) is not int:
        raise DecodeError(f"row {number}: needs {end_from[0]} (a time) and {end_from[1]} (seconds) for the end")
    try:
        when = datetime.fromisoformat(start)
    except ValueError:
        raise DecodeError(f"row {number}: {end_from[0]} {start!r} is not a time such as 2026-03-08 10:00:00") from None
    # A local wall time stays local: the period is added on the wall clock and extraction reads
    # the end in the site's zone (an end in a spring-forward gap then lands on the right instant).
    return (when + timedelta(seconds=seconds)).isoformat()
