"""A throughput benchmark's report: each figure beside the reference it is judged against, measured in the same run.

A `Figure` is one measured value with its unit; `reference` is the ceiling (or floor) measured
on the same machine in the same run, and `target` the goal as written in the issue: a minimum
or maximum, either absolute (`min_value`, `max_value`) or as a share of the reference
(`min_share`). `FigureReport.table()` prints them aligned; `write()` saves bench-results/NAME.json.
"""

from __future__ import annotations

import json
import os
import resource
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .common import RESULTS


@dataclass
class Figure:
    """One measured value, beside its reference and target."""

    name: str
    value: float
    unit: str
    reference: float | None = None
    reference_name: str = ""
    min_share: float | None = None
    min_value: float | None = None
    max_value: float | None = None
    note: str = ""

    @property
    def share(self) -> float | None:
        """value / reference, when there is a reference."""
        return self.value / self.reference if self.reference else None

    @property
    def target(self) -> str:
        """The goal in words ("" when the figure has none)."""
        parts = []
        if self.min_share is not None:
            parts.append(f">= {self.min_share:.0%} of reference")
        if self.min_value is not None:
            parts.append(f">= {_number(self.min_value)} {self.unit}")
        if self.max_value is not None:
            parts.append(f"< {_number(self.max_value)} {self.unit}")
        return ", ".join(parts)

    @property
    def met(self) -> bool | None:
        """Whether the target is met (None without a target)."""
        checks = []
        if self.min_share is not None:
            checks.append(self.share is not None and self.share >= self.min_share)
        if self.min_value is not None:
            checks.append(self.value >= self.min_value)
        if self.max_value is not None:
            checks.append(self.value < self.max_value)
        return all(checks) if checks else None


@dataclass
class FigureReport:
    """A benchmark's figures, its setup and the machine it ran on."""

    name: str
    figures: list[Figure] = field(default_factory=list)
    setup: dict[str, Any] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)

    def add(self, figure: Figure) -> Figure:
        """Append a figure (and return it)."""
        self.figures.append(figure)
        return figure

    def table(self) -> str:
        """Figures as an aligned text table: value, reference, share, target and whether it is met."""
        headers = ["figure", "value", "reference", "share", "target", "met", "note"]
        cells = []
        for f in self.figures:
            reference = f"{_number(f.reference)} ({f.reference_name})" if f.reference is not None else ""
            share = f"{f.share:.0%}" if f.share is not None else ""
            met = {True: "yes", False: "NO", None: ""}[f.met]
            cells.append([f.name, f"{_number(f.value)} {f.unit}", reference, share, f.target, met, f.note])
        widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
        return "\n".join(
            "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in [headers, *cells]
        )

    def write(self) -> Path:
        """bench-results/NAME.json, with each figure's share, target and verdict spelled out."""
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / f"{self.name}.json"
        data = asdict(self)
        for out, figure in zip(data["figures"], self.figures, strict=True):
            out.update(share=figure.share, target=figure.target, met=figure.met)
        path.write_text(json.dumps(data, indent=2, default=str) + "\n")
        return path


def _number(value: float | None) -> str:
    if value is None:
        return ""
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


@dataclass
class ProcessSample:
    """CPU seconds and resident memory of one process, read from /proc."""

    cpu_s: float
    rss_kib: int


def sample(pid: int) -> ProcessSample:
    """User + system CPU seconds and current RSS of `pid`."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    rss_kib = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss_kib = int(line.split()[1])
    return ProcessSample((int(fields[11]) + int(fields[12])) / ticks, rss_kib)


def own_cpu_s() -> float:
    """CPU seconds this process has used (user + system)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
