"""footfall's benchmarks, run by `scripts/bench [NAME ...]` (`python -m bench`); one module per benchmark.

Each module has `NAME`, a one-line `ABOUT`, `add_arguments(parser)` and `run(args) -> Report`;
bench/__main__.py lists them in BENCHMARKS, prints each report as a table and writes it as JSON
to bench-results/NAME.json. Timing lives here and never in a test assertion.
"""
