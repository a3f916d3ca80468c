"""`python -m footfall.collector ...`: the same commands as `footfall collector ...`."""

from footfall.collector.cli import app

app(prog_name="footfall collector")
