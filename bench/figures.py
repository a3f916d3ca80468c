"""A report of figures (a value with its unit and a note) rather than latencies; same interface as common.Report."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .common import RESULTS


@dataclass
class Figure:
    """One measured quantity."""

    name: str
    value: float
    unit: str
    note: str = ""


@dataclass
class FigureReport:
    """A benchmark's figures, its setup and the machine; printed by bench/__main__.py like a Report."""

    name: str
    figures: list[Figure] = field(default_factory=list)
    setup: dict[str, Any] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)

    def add(self, name: str, value: float, unit: str, note: str = "") -> None:
        """Record one figure."""
        self.figures.append(Figure(name, value, unit, note))

    def table(self) -> str:
        """The figures as an aligned text table."""
        headers = ["figure", "value", "unit", "note"]
        cells = [[f.name, _number(f.value), f.unit, f.note] for f in self.figures]
        widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(headers)]
        return "\n".join(
            "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in [headers, *cells]
        )

    def write(self) -> Path:
        """bench-results/NAME.json."""
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / f"{self.name}.json"
        path.write_text(json.dumps(asdict(self), indent=2, default=str) + "\n")
        return path


def _number(value: float) -> str:
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.2f}"
