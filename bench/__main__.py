"""`python -m bench [NAME ...] [options]`: run the named benchmarks (all when none is named)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from types import ModuleType

from . import agent_buffer, api, backlog, flash, footprint, ingest, storeday

# name -> module; a new benchmark is a module with NAME, ABOUT, add_arguments and run, and an entry here.
BENCHMARKS: dict[str, ModuleType] = {
    m.NAME: m for m in (agent_buffer, ingest, backlog, footprint, flash, storeday, api)
}


def main(argv: list[str]) -> int:
    """Parse the command line, run the benchmarks, print and save their reports."""
    parser = argparse.ArgumentParser(prog="scripts/bench", description="footfall benchmarks; results in bench-results/")
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help="benchmarks to run: " + ", ".join(f"{n} ({m.ABOUT})" for n, m in BENCHMARKS.items()))
    for module in BENCHMARKS.values():
        module.add_arguments(parser.add_argument_group(module.NAME))
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    for name in args.names or list(BENCHMARKS):
        report = asyncio.run(BENCHMARKS[name].run(args))
        print(f"\n== {name} ==")
        for key, value in report.setup.items():
            print(f"{key}: {value}")
        print(report.table())
        print(f"written to {report.write()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
