"""`python -m footfall.agent ...`: the agent's commands without the root `footfall` command."""

from footfall.agent.cli import app

app(prog_name="footfall agent")
