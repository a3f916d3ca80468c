"""The `footfall` console script and `python -m footfall`.

`footfall agent run [--config FILE]` goes straight to the agent (footfall/agent/run.py), so a
gateway's long-running process never imports the CLI framework or the other groups; every
other command line goes through the full command tree in footfall/cli.py.
"""

from __future__ import annotations

import sys


def main() -> None:
    """Console entry point."""
    args = sys.argv[1:]
    if args[:1] == ["agent"]:
        from footfall.agent.run import run_agent, run_config

        config = run_config(args[1:])
        if config is not None:
            sys.exit(run_agent(config))
    from footfall.cli import main as cli_main

    cli_main()
