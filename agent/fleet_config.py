"""Configuration pushed by the fleet (protocol/SPEC.md section 10): checked, kept, and used across restarts.

A pushed configuration is a complete agent.toml text. It is checked with the very loader that
reads the local file (`parse_config` with the adapter profiles), relative paths resolving from
the local file's folder so they mean the same thing in both, and refused when:
- it is not valid (every problem, each naming its key, goes back to the fleet admin);
- it moves `[agent] state_dir`: the buffer, key and identity live there, and the agent
  would otherwise start over with an empty buffer;
- (checked by the heartbeat, which can reach the network) its collector URL does not answer.

Once applied it is kept under the state directory, so a restarted agent runs it again:
- `fleet-config.toml`: the text of the version running;
- `fleet-config.json`: its version and SHA-256, when it was applied, and the last version
  refused with the reason (so a refused version is not fetched again at every heartbeat).
Both are written by `private_file.write_private` (atomic, mode 0600 whatever the umask): the
text may carry device tokens, webhook secrets and broker passwords, and a refusal's reason may
quote a value.

The local agent.toml stays the technician's file and the fallback: `footfall agent run` uses
the fleet's version when there is one that still loads, and says so; delete the two files to
go back to the local file.
"""

from __future__ import annotations

import json
import logging
import tomllib
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from footfall.agent.config.load import parse_config
from footfall.agent.config.reader import ConfigError
from footfall.agent.config.sections import AgentConfig
from footfall.agent.decode.profile_load import load_profiles
from footfall.agent.private_file import write_private
from footfall.protocol.fleet import text_sha256

from footfall.logs import event

log = logging.getLogger("footfall.agent.fleet_config")

CONFIG_FILE = "fleet-config.toml"
STATE_FILE = "fleet-config.json"


class ConfigRefused(Exception):
    """A pushed configuration this agent will not run; the message says why, for the fleet admin."""


@dataclass(frozen=True, slots=True)
class FleetConfigState:
    """Which fleet configuration this agent runs, and the last one it refused."""

    applied_version: int = 0
    applied_sha256: str = ""
    applied_at_ms: int = 0
    rejected_version: int = 0
    rejected_error: str = ""
    # Set when the stored version no longer loads (after an upgrade, say): the local file runs instead.
    fallback_reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


def read_state(state_dir: Path) -> FleetConfigState:
    """The stored state; an empty one when there is none or it cannot be read (logged)."""
    path = Path(state_dir) / STATE_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return FleetConfigState()
    except (OSError, ValueError) as exc:
        event(log, "fleet_state_unreadable", logging.WARNING, path=str(path), error=str(exc))
        return FleetConfigState()
    names = FleetConfigState.__dataclass_fields__
    known = {k: v for k, v in data.items() if k in names} if isinstance(data, dict) else {}
    try:
        return FleetConfigState(**known)
    except TypeError:
        return FleetConfigState()


def write_state(state_dir: Path, state: FleetConfigState) -> None:
    """Store the state atomically, mode 0600."""
    write_private(Path(state_dir) / STATE_FILE, json.dumps(state.as_dict(), indent=2) + "\n")


def validate(text: str, local: AgentConfig) -> AgentConfig:
    """The configuration `text` describes, checked as agent.toml is; ConfigRefused with every problem otherwise."""
    base = local.path.parent if local.path is not None else Path.cwd()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigRefused(f"not valid TOML: {exc}") from None
    try:
        config = parse_config(
            data, where="the pushed configuration", base=base, adapters=load_profiles, path=local.path
        )
    except ConfigError as exc:
        raise ConfigRefused(str(exc)) from None
    if config.agent.state_dir.resolve() != local.agent.state_dir.resolve():
        raise ConfigRefused(
            f"agent.state_dir: the pushed configuration moves the state directory to {config.agent.state_dir}, "
            f"but this agent's buffer, key and identity are in {local.agent.state_dir}; leave state_dir out "
            "of pushed configurations (or set it to the agent's own)"
        )
    return config


def store_applied(state_dir: Path, version: int, text: str, state: FleetConfigState, now_ms: int) -> FleetConfigState:
    """Keep the text of an applied version and record it; returns the new state."""
    write_private(Path(state_dir) / CONFIG_FILE, text)
    new = replace(
        state,
        applied_version=version,
        applied_sha256=text_sha256(text),
        applied_at_ms=now_ms,
        rejected_version=0 if state.rejected_version == version else state.rejected_version,
        rejected_error="" if state.rejected_version == version else state.rejected_error,
        fallback_reason="",
    )
    write_state(state_dir, new)
    return new


def store_rejected(state_dir: Path, version: int, reason: str, state: FleetConfigState) -> FleetConfigState:
    """Record a refused version and why; returns the new state."""
    new = replace(state, rejected_version=version, rejected_error=reason)
    write_state(state_dir, new)
    return new


def effective_config(local: AgentConfig) -> tuple[AgentConfig, FleetConfigState]:
    """The configuration to run: the fleet's stored version if there is one that still loads, else the local file."""
    state_dir = local.agent.state_dir
    state = read_state(state_dir)
    if not state.applied_version:
        return local, state
    try:
        text = (state_dir / CONFIG_FILE).read_text(encoding="utf-8")
        return validate(text, local), state
    except (OSError, ConfigRefused) as exc:
        reason = f"fleet configuration v{state.applied_version} no longer loads ({exc}); running the local file"
        event(log, "fleet_config_fallback", logging.WARNING, version=state.applied_version, error=str(exc))
        return local, replace(state, fallback_reason=reason)

