"""`python -m footfall.agent ...`: the agent's commands without the root `footfall` command.

`run [--config FILE]` goes straight to the agent, without the CLI framework (see agent/run.py).
"""

import sys

from footfall.agent.run import run_agent, run_config

config = run_config(sys.argv[1:])
if config is not None:
    sys.exit(run_agent(config))

from footfall.agent.cli import app  # noqa: E402 (only when the command is not a plain `run`)

app(prog_name="footfall agent")
