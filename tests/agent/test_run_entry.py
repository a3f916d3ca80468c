"""`footfall agent run` goes straight to the agent: the long-running process carries no CLI framework.

Both entry points (the `footfall` command and `python -m footfall.agent`) are run for real in a
child process whose agent stops at once (its state directory is unusable); what it imported is
printed on the way out.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from footfall.agent.config.load import DEFAULT_CONFIG_PATH
from footfall.agent.run import run_config

REPO = Path(__file__).resolve().parents[2]
# What the gateway's process must not carry (typer pulls click and pydantic at run time).
HEAVY = ("typer", "click", "pydantic", "rich", "footfall.collector", "footfall.cli")
REPORT = (
    "import atexit, sys\n"
    f"atexit.register(lambda: print('LOADED', sorted(m for m in {HEAVY!r} if m in sys.modules),"
    " 'footfall.agent.pipeline' in sys.modules))\n"
)


@pytest.mark.parametrize(
    ("args", "config"),
    [
        (["run"], DEFAULT_CONFIG_PATH),
        (["run", "--config", "a.toml"], Path("a.toml")),
        (["run", "-c", "a.toml"], Path("a.toml")),
        (["run", "--config=a.toml"], Path("a.toml")),
        (["run", "--help"], None),
        (["run", "--config"], None),
        (["run", "--config", "a.toml", "--verbose"], None),
        (["status"], None),
        ([], None),
    ],
)
def test_only_a_plain_run_takes_the_short_way(args: list[str], config: Path | None) -> None:
    assert run_config(args) == config


def _config(tmp_path: Path) -> Path:
    (tmp_path / "not-a-folder").write_text("")
    path = tmp_path / "agent.toml"
    path.write_text(
        '[agent]\nstate_dir = "not-a-folder/state"\n[http_push]\nlisten = "127.0.0.1:0"\n'
        '[[sources]]\nname = "door"\ntransport = "http_push"\nadapter = "generic-json-counter"\npath = "/p"\n'
    )
    return path


@pytest.mark.parametrize("entry", ["footfall.entry", "footfall.agent"])
def test_agent_run_imports_no_cli_framework(entry: str, tmp_path: Path) -> None:
    config = _config(tmp_path)
    if entry == "footfall.entry":
        start = f"sys.argv = ['footfall', 'agent', 'run', '--config', {str(config)!r}]\n" \
                "from footfall.entry import main\nmain()\n"
    else:
        start = f"sys.argv = ['footfall agent', 'run', '--config', {str(config)!r}]\n" \
                "import runpy\nrunpy.run_module('footfall.agent', run_name='__main__')\n"
    done = subprocess.run(
        [sys.executable, "-c", REPORT + start], capture_output=True, text=True, timeout=60, check=False, cwd=REPO
    )
    assert done.returncode == 1 and "footfall agent:" in done.stderr, done.stdout + done.stderr
    assert "LOADED [] True" in done.stdout, done.stdout


def test_anything_else_still_gets_the_full_command(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "footfall", "agent", "run", "--help"],
        capture_output=True, text=True, timeout=60, check=False, cwd=REPO,
    )
    assert done.returncode == 0 and "--config" in done.stdout, done.stdout + done.stderr
