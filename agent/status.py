"""`footfall agent status`: what the agent is doing, in plain words, whether it runs or not.

It reads the status file the running pipeline rewrites every few seconds and the buffer file
opened read-only (so the buffer's numbers are true even when the agent is stopped).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from footfall.agent.buffer import BufferStats, read_stats, rejected_by_source
from footfall.agent.config.sections import AgentConfig
from footfall.agent.fleet_config import read_state
from footfall.agent.identity import IdentityError, load_identity
from footfall.agent.pipeline import BUFFER_FILE, STATUS_EVERY_S, STATUS_FILE

from footfall.units import format_duration

# The status file counts as live while it is younger than this many rewrite periods.
_STALE_PERIODS = 3


def gather(config: AgentConfig, now: float | None = None) -> dict[str, Any]:
    """The status as a dict: `running`, `agent`, `buffer`, `upload`, `sources`, `rejected`, `problems`."""
    now = time.time() if now is None else now
    state_dir = config.agent.state_dir
    out: dict[str, Any] = {"state_dir": str(state_dir), "running": False, "problems": []}
    try:
        identity = load_identity(state_dir)
        out["agent"] = {
            "agent_id": identity.agent_id,
            "organization": identity.organization,
            "site": identity.site,
            "collector_url": config.collector.url or identity.collector_url,
            "timezone": identity.timezone,
        }
    except IdentityError as exc:
        out["agent"] = None
        out["problems"].append(str(exc))
    live: dict[str, Any] = {}
    try:
        live = json.loads((state_dir / STATUS_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        if (state_dir / STATUS_FILE).is_symlink():
            out["problems"].append("the agent has not run since the gateway started (its status is on tmpfs)")
        else:
            out["problems"].append("the agent has never run with this state directory")
    except (OSError, ValueError) as exc:
        out["problems"].append(f"cannot read {state_dir / STATUS_FILE}: {exc}")
    updated = live.get("updated_at_ms", 0) / 1000
    out["updated_at_ms"] = live.get("updated_at_ms", 0)
    out["running"] = (
        bool(live.get("running")) and _alive(live.get("pid")) and now - updated < _STALE_PERIODS * STATUS_EVERY_S
    )
    out["pid"] = live.get("pid") if out["running"] else None
    try:
        stats = read_stats(state_dir / BUFFER_FILE, config.buffer.max_size)
    except sqlite3.DatabaseError as exc:
        stats = None
        out["problems"].append(
            f"the buffer file is damaged ({exc}): the agent moves it aside at its next start and starts a fresh one"
        )
    out["buffer"] = stats.as_dict() if stats else None
    out["upload"] = live.get("upload")
    out["sources"] = live.get("sources", [])
    out["http_push"] = live.get("http_push")
    out["heartbeat"] = live.get("heartbeat") if out["running"] else None
    out["metrics"] = live.get("metrics") if out["running"] else None
    # The fleet configuration state is on disk whether or not the agent runs.
    out["config"] = {"path": str(config.path or ""), **read_state(state_dir).as_dict(),
                     **({"fallback_reason": live["config"].get("fallback_reason", "")} if live.get("config") else {})}
    out["clock"] = live.get("clock")
    out["transports"] = live.get("transports", {})
    out["watchdog"] = live.get("watchdog")
    for entry in (stats.quarantined if stats else [])[-3:]:
        if entry.get("lost_last", 0) >= entry.get("lost_first", 1):
            out["problems"].append(
                f"the buffer was damaged ({entry['reason']}) and moved to {entry['file'] or '-'}; records seq "
                f"{entry['lost_first']}-{entry['lost_last']} were not yet uploaded: "
                f"`footfall agent buffer salvage {entry['file']}` recovers what it can"
            )
    out["rejected"] = _rejected(state_dir / BUFFER_FILE, stats, out["sources"])
    out["problems"] += _rejected_problems(out["rejected"], out["sources"], now)
    clock = out["clock"] or {}
    if out["running"] and clock and clock.get("state") != "ok":
        held = stats.held if stats else 0
        out["problems"].append(
            f"the clock is not trusted ({clock.get('detail') or clock.get('reason')}): {held} readings timed by "
            "the agent are held until it is; check NTP (timedatectl) and the uplink"
        )
    if not out["running"] and live:
        out["problems"].append(f"the agent is not running (last status {format_duration(now - updated)} ago)")
    upload = out["upload"] or {}
    if upload.get("state") == "re-enroll":
        out["problems"].append("the collector refuses this agent: re-enroll with `footfall agent enroll --force`")
    return out


def _rejected(buffer_file: Path, stats: BufferStats | None, sources: list[dict[str, Any]]) -> dict[str, Any]:
    """Records the collector refused: how many are parked, from which source, and the sources refused whole."""
    outages = [s["name"] for s in sources if s.get("rejected") and s["rejected"] >= s.get("records", 0)]
    by_source: dict[str, int] = {}
    if stats is not None and stats.rejected_parked:
        try:
            by_source = rejected_by_source(buffer_file)
        except sqlite3.DatabaseError:
            by_source = {}
    return {
        "parked": stats.rejected_parked if stats else 0,
        "refusals": stats.rejected if stats else 0,
        "reason": stats.rejected_reason if stats else "",
        "at_ms": stats.rejected_at_ms if stats else 0,
        "by_source": by_source,
        "outages": outages,
    }


def _rejected_problems(rejected: dict[str, Any], sources: list[dict[str, Any]], now: float) -> list[str]:
    """Refused records are an alarm, not a detail: one in a thousand is a bug, all of a source an outage."""
    out: list[str] = []
    for source in sources:
        if source["name"] in rejected["outages"]:
            out.append(
                f"source {source['name']}: the collector refused EVERY record it made since the agent started "
                f"({source['rejected']}): nothing of it is counted, an outage; reason: {source.get('last_rejected')}"
            )
    if rejected["parked"]:
        where = ", ".join(f"{n} {c}" for n, c in sorted(rejected["by_source"].items(), key=lambda kv: -kv[1]))
        out.append(
            f"{rejected['parked']} records REFUSED by the collector are parked on this gateway and were never "
            f"counted (by source: {where or '?'}); newest {_ago(rejected['at_ms'], now)}: {rejected['reason']}. "
            "Fix the cause (often: upgrade the agent), then run `footfall agent buffer requeue-rejected` with "
            "the agent stopped"
        )
    return out


def render(status: dict[str, Any], now: float | None = None) -> str:
    """The status as short plain-English lines."""
    now = time.time() if now is None else now
    lines: list[str] = []
    agent = status.get("agent")
    if agent:
        lines.append(
            f"agent {agent['agent_id']} ({agent['organization']} / {agent['site']}), collector {agent['collector_url']}"
        )
    else:
        lines.append("agent: not enrolled")
    lines.append(f"running (pid {status['pid']})" if status["running"] else "NOT running")
    buffer = status.get("buffer")
    if buffer is None:
        lines.append("buffer: none yet")
    else:
        waiting = f"{buffer['depth']} records waiting ({_size(buffer['bytes'])} of {_size(buffer['max_size'])})"
        if buffer["depth"]:
            waiting += f"; oldest unsent taken {_ago(buffer['oldest_taken_ms'], now)}"
        lines.append("buffer: " + waiting)
        if buffer["dropped_records"]:
            lines.append(
                f"buffer: {buffer['dropped_records']} records DROPPED because the buffer was full (see gap events)"
            )
        if buffer.get("rejected_parked"):
            lines.append(
                f"buffer: {buffer['rejected_parked']} records REFUSED by the collector, parked and not counted "
                f"({buffer['rejected']} refusals in all)"
            )
        elif buffer["rejected"]:
            lines.append(f"buffer: {buffer['rejected']} records were refused by the collector; none is parked now")
        if buffer.get("held"):
            lines.append(f"buffer: {buffer['held']} readings HELD until the clock is trusted")
        if buffer.get("restamped") or buffer.get("suspect"):
            lines.append(
                f"buffer: {buffer.get('restamped', 0)} records re-stamped after a clock fix, "
                f"{buffer.get('suspect', 0)} sent flagged suspect"
            )
        last = buffer["last_ack_ms"]
        lines.append("last successful upload: " + (_ago(last, now) if last else "never"))
    upload = status.get("upload")
    if upload:
        state = {
            "idle": "up to date",
            "sending": "sending",
            "backing_off": "retrying",
            "re-enroll": "REFUSED, re-enroll",
        }.get(upload["state"], upload["state"])
        line = f"uploads: {state}; {upload['uploaded_records']} records sent"
        if upload["last_error"]:
            line += f"; last error {_ago(upload['last_error_ms'], now)}: {upload['last_error']}"
        lines.append(line)
    elif status["running"]:
        lines.append("uploads: off (not enrolled)")
    clock = status.get("clock")
    if clock:
        if clock.get("state") == "ok":
            line = f"clock: ok ({clock.get('source')})"
        else:
            line = f"clock: NOT trusted ({clock.get('reason')}): {clock.get('detail')}"
        lines.append(line)
    sources = status.get("sources") or []
    lines.append(f"sources: {len(sources)}" if sources else "sources: none reported")
    for s in sources:
        seen = f"last reading {_ago(s['last_reading_ms'], now)}" if s["last_reading_ms"] else "no reading yet"
        line = (
            f"  {s['name']}: {s['state']}, {seen}; {s['accepted']} taken, {s['dropped']} resends dropped, "
            f"{s['errors']} errors ({s['transport']}, {s['adapter']})"
        )
        if s.get("garbage"):
            line += f"; {s['garbage']} garbage thrown away"
        if s.get("reconnects"):
            line += f"; reconnected {s['reconnects']} times"
        if s.get("rejected"):
            line += f"; {s['rejected']} of its {s.get('records', 0)} records REFUSED by the collector"
        if s["last_error"] and s["state"] != "ok":
            line += f"\n    last error ({s['last_error_stage']}, {_ago(s['last_error_ms'], now)}): {s['last_error']}"
        lines.append(line)
    for name, transport in (status.get("transports") or {}).items():
        if transport.get("state") == "retrying":
            lines.append(
                f"  {name}: cannot start, retrying ({transport['attempts']} attempts): {transport['last_error']}"
            )
    lines.extend(_fleet_lines(status, now))
    for problem in status.get("problems", []):
        lines.append(f"problem: {problem}")
    return "\n".join(lines)


def _fleet_lines(status: dict[str, Any], now: float) -> list[str]:
    """Heartbeat, configuration and key lines."""
    lines: list[str] = []
    beat = status.get("heartbeat")
    if beat and beat.get("state") != "off":
        interval = beat["interval_s"]
        every = "every " + (format_duration(interval) if interval >= 1 else f"{interval * 1000:.0f}ms")
        if beat["state"] == "ok":
            line = f"heartbeat: ok, last {_ago(beat['last_success_ms'], now)} ({every})"
        elif beat["state"] == "starting":
            line = f"heartbeat: starting ({every})"
        else:
            last = _ago(beat["last_success_ms"], now) if beat["last_success_ms"] else "never"
            word = "REFUSED by the collector" if beat["state"] == "refused" else "FAILING (uploads go on)"
            line = f"heartbeat: {word}; last success {last}; {beat['last_error']}"
        lines.append(line)
        if beat.get("clock_offset_s") is not None:
            offset = beat["clock_offset_s"]
            lines.append(
                f"clock: {abs(offset):.1f}s {'behind' if offset > 0 else 'ahead of'} the collector's"
                + ("  <- check NTP (footfall agent doctor)" if abs(offset) >= 10 else "")
            )
        if beat.get("key_rotated_ms"):
            lines.append(f"key: rotated {_ago(beat['key_rotated_ms'], now)} at the fleet's request")
        if beat.get("rotation_error"):
            lines.append(f"key: rotation FAILED, retried at the next heartbeat: {beat['rotation_error']}")
    elif status["running"] and beat is not None:
        lines.append("heartbeat: off (not enrolled)")
    config = status.get("config") or {}
    if config.get("applied_version") and not config.get("fallback_reason"):
        lines.append(
            f"config: fleet version {config['applied_version']} (applied {_ago(config['applied_at_ms'], now)}); "
            f"local file {config['path']} is the fallback"
        )
    else:
        lines.append(f"config: local file {config.get('path') or '?'}")
    if config.get("fallback_reason"):
        lines.append(f"config: {config['fallback_reason']}")
    if config.get("rejected_version"):
        lines.append(f"config: fleet version {config['rejected_version']} REFUSED: {config['rejected_error']}")
    metrics = status.get("metrics")
    if metrics and metrics.get("listen"):
        lines.append(f"metrics: http://{metrics['listen'].rsplit(':', 1)[0]}:{metrics['port']}/metrics")
    return lines


def _alive(pid: Any) -> bool:
    if type(pid) is not int or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _ago(ms: int, now: float) -> str:
    return f"{format_duration(max(0.0, now - ms / 1000))} ago"


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"
