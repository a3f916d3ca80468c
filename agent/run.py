"""`footfall agent run` itself: check the config, run the pipeline until SIGTERM or Ctrl-C, return an exit status.

It imports no CLI framework. The `footfall` command (footfall/entry.py) and `python -m
footfall.agent` call `run_agent` directly when the command line is exactly `agent run` with at
most a `--config` (see `run_config`), so the process that runs on a gateway for months does not
carry typer, click and pydantic (about 7 MiB of its resident memory); any other command line,
`--help` included, goes through the full CLI, whose `run` command calls the same function.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from footfall.agent.config.load import DEFAULT_CONFIG_PATH, load_config
from footfall.agent.config.reader import ConfigError, Problem
from footfall.agent.config.sections import AgentConfig
from footfall.agent.decode.profile_load import load_profiles

from footfall.logs import configure


def load_checked(path: Path) -> AgentConfig:
    """The config at `path`, with each source checked against its adapter; ConfigError listing every problem."""
    from footfall.agent.intake import source_problems

    config = load_config(path, adapters=load_profiles)
    profiles = load_profiles(config.agent.adapter_dirs)
    problems = [
        Problem(f"sources[{index}]", f"(source {source.name!r}) {problem}")
        for index, source in enumerate(config.sources)
        if source.adapter in profiles
        for problem in source_problems(source, profiles[source.adapter])
    ]
    if problems:
        raise ConfigError(str(config.path or "agent.toml"), problems)
    return config


def run_agent(path: Path) -> int:
    """Run the agent of the config at `path` until a signal; 0 after a clean stop, 1 with the reason on stderr."""
    from footfall.agent.buffer import BufferError
    from footfall.agent.fleet_config import effective_config
    from footfall.agent.identity import IdentityError
    from footfall.agent.pipeline import run_until_signalled
    from footfall.agent.sources.base import SourceError

    try:
        local = load_checked(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    # A configuration pushed by the fleet and applied earlier runs instead of the local file.
    config, fleet_state = effective_config(local)
    configure(config.agent.log_level, config.agent.log_format)
    try:
        asyncio.run(run_until_signalled(config, local_config=local, fleet_state=fleet_state))
    except (ConfigError, IdentityError, BufferError, SourceError) as exc:
        print(f"footfall agent: {exc}", file=sys.stderr)
        return 1
    return 0


def run_config(args: Sequence[str]) -> Path | None:
    """The config path when `args` are exactly `run`, `run --config FILE`, `run -c FILE` or `run --config=FILE`."""
    if not args or args[0] != "run":
        return None
    rest = list(args[1:])
    if not rest:
        return DEFAULT_CONFIG_PATH
    if len(rest) == 2 and rest[0] in ("--config", "-c") and not rest[1].startswith("-"):
        return Path(rest[1])
    if len(rest) == 1 and rest[0].startswith("--config=") and len(rest[0]) > len("--config="):
        return Path(rest[0].split("=", 1)[1])
    return None
