"""What each adapter profile needs and does, in words: `footfall agent adapters` prints it.

A technician choosing a profile needs to know, without reading TOML: how the device must send
(transport, format), what the numbers mean (per interval, cumulative since power-on and where it
wraps, cumulative since local midnight), how its times are read, how resends are recognised,
and what the source must give it (params, a secret).
"""

from __future__ import annotations

from typing import Any

from footfall.agent.decode.profile import Profile

_NAIVE = {
    "reject": "times must carry a UTC offset",
    "site": "local time without offset is read in the site's zone",
    "utc": "times without offset are UTC",
    "offset": "local time plus the device's own offset",
}


def counting(profile: Profile) -> str:
    """The count semantics in words."""
    if profile.reading == "transaction":
        return "transactions (sale, refund, void)"
    if profile.reading != "count":
        return profile.reading
    if profile.counter == "interval":
        return "per interval"
    wrap = f", wraps at {profile.modulus}" if profile.modulus else ""
    filed = "; filed at the push" if profile.delta_at == "end" else ""
    if profile.counter == "daily_cumulative":
        return f"cumulative since local midnight{wrap}{filed}"
    return f"cumulative since power-on or reset{wrap}{filed}"


def time_convention(profile: Profile) -> str:
    """How the profile reads the device's times."""
    if profile.time.source == "agent":
        return "the device sends no time: a reading's time is when the agent received it (UTC)"
    fmt = profile.time.format
    if fmt in ("epoch_s", "epoch_ms"):
        return f"{fmt} (UTC)"
    rule = _NAIVE[profile.time.naive]
    if profile.time.naive == "offset":
        rule += f" ({profile.time.offset}" + (f" + DST {profile.time.dst}" if profile.time.dst else "") + ")"
    elif profile.time.naive == "site":
        rule += f"; DST flag {profile.time.dst}" if profile.time.dst else f"; repeated hour: {profile.time.ambiguous}"
    return f"{fmt}: {rule}"


def resends(profile: Profile) -> str:
    """How resends are recognised."""
    if profile.reading == "count" and profile.counter != "interval":
        how = "a reading not newer than the last one taken"
    elif profile.reading == "count" and profile.dedupe.by == "end":
        how = "a period not ending after the line's latest"
    elif profile.reading == "transaction":
        how = "a (terminal, kind, id) already taken"
    else:
        how = "a period (line, start) already taken"
    if profile.event_id is not None:
        how += f"; an event id ({profile.event_id.path}) already taken"
    return how


def transport(profile: Profile) -> str:
    """The transport a profile is made for: serial when it frames a byte stream, modbus for a register map."""
    if profile.framing is not None:
        return "serial"
    if profile.format == "modbus":
        return "modbus"
    return "http_push" if profile.signature else "any"


def describe(profile: Profile) -> dict[str, Any]:
    """One profile as a JSON-ready dict."""
    needs: list[str] = []
    for name, spec in profile.params.items():
        needs.append(f"params.{name}" + ("" if spec.default is None else " (optional)"))
    if profile.signature is not None:
        needs.append(f"secret ({profile.signature.scheme} signature)")
    return {
        "name": profile.name,
        "description": profile.description,
        "file": profile.source,
        "transport": transport(profile),
        "format": profile.format,
        "reading": profile.reading,
        "counting": counting(profile),
        "time": time_convention(profile),
        "resends": resends(profile),
        "ignores": [f"{rule.path} not in {list(rule.values)}" for rule in profile.where if rule.values],
        "needs": needs,
        "params": {
            name: {"doc": spec.doc, "required": spec.default is None, "default": spec.default}
            for name, spec in profile.params.items()
        },
    }


def render(profiles: list[Profile]) -> str:
    """A human listing: one block per profile."""
    blocks = []
    for profile in profiles:
        info = describe(profile)
        lines = [f"{info['name']}  ({info['format']}, {info['reading']}, transport {info['transport']})"]
        if info["description"]:
            lines.append(f"    {info['description']}")
        lines.append(f"    counts:  {info['counting']}")
        lines.append(f"    time:    {info['time']}")
        lines.append(f"    resends: {info['resends']}")
        lines.append(f"    needs:   {', '.join(info['needs']) or 'nothing beyond the transport settings'}")
        for name, param in info["params"].items():
            default = "required" if param["required"] else f"default {param['default']!r}"
            lines.append(f"      params.{name}: {param['doc']} ({default})")
        lines.append(f"    file:    {info['file']}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
