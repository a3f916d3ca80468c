"""What every benchmark shares: percentiles, the report (a table and JSON), and a private PostgreSQL cluster."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parents[1] / "bench-results"


@dataclass
class Row:
    """One measured operation: latencies in milliseconds."""

    name: str
    runs: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    note: str = ""


@dataclass
class Report:
    """A benchmark's rows, its setup figures and the machine it ran on."""

    name: str
    rows: list[Row] = field(default_factory=list)
    setup: dict[str, Any] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)

    def table(self) -> str:
        """The rows as an aligned text table."""
        headers = ["operation", "runs", "p50 ms", "p99 ms", "max ms", "note"]
        cells = [[r.name, str(r.runs), f"{r.p50_ms:.2f}", f"{r.p99_ms:.2f}", f"{r.max_ms:.2f}", r.note]
                 for r in self.rows]
        widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
        lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
                 for row in [headers, *cells]]
        return "\n".join(lines)

    def write(self) -> Path:
        """bench-results/NAME.json."""
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / f"{self.name}.json"
        path.write_text(json.dumps(asdict(self), indent=2, default=str) + "\n")
        return path


def percentile(samples: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation."""
    if len(samples) == 1:
        return samples[0]
    return statistics.quantiles(samples, n=100, method="inclusive")[max(0, min(98, round(q) - 1))]


async def measure(name: str, runs: int, operation: Callable[[int], Awaitable[Any]], note: str = "",
                  warmup: int = 2) -> Row:
    """Time `operation(i)` `runs` times after `warmup` untimed calls."""
    for i in range(warmup):
        await operation(i)
    samples: list[float] = []
    for i in range(runs):
        start = time.perf_counter()
        await operation(i)
        samples.append((time.perf_counter() - start) * 1000)
    return Row(name, runs, percentile(samples, 50), percentile(samples, 99), max(samples), note)


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor()
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpus": os.cpu_count(), "cpu": cpu, "memory_gib": round(memory_gib, 1), "python": platform.python_version(),
            "system": platform.platform()}
