"""`format = "modbus"`: a register map, and the values it gives from the registers a poll read.

The modbus transport reads the blocks the map needs and hands them over as one frame, a
small JSON document of the raw 16-bit words: `{"unit": 1, "registers": {"holding": {"0": 12,
"1": 34}}}` (function -> address as on the wire -> word). This module turns words into values:

```toml
[modbus]
function = "holding"        # holding (FC 3) or input (FC 4)
base = 0                    # 1 when the device's manual numbers registers from 1 (40001 = address 0)
word_order = "big"          # a 32-bit value's high word first (big) or low word first (little)
byte_order = "big"          # each word's high byte first (big, the Modbus standard) or swapped
[modbus.registers]
entries = { address = 0, type = "u32" }      # also: function, scale
exits = { address = 2, type = "u32" }
```

Types: u16, s16, u32, s32, float32. `scale` multiplies the value (a count must stay whole).
For a cumulative counter the wrap modulus follows the count registers' type (u16: 65536, u32:
4294967296), so a source that overrides `type` in `adapter_options` gets the right wrap.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from footfall.agent.decode.errors import DecodeError
from footfall.agent.decode.formats.named import NamedValues, unknown_keys

Function = Literal["holding", "input"]
_WORDS = {"u16": 1, "s16": 1, "u32": 2, "s32": 2, "float32": 2}
# Longest block read in one request (the protocol allows 125 registers).
MAX_BLOCK = 125


@dataclass(frozen=True, slots=True)
class Register:
    """One named value of the map."""

    address: int
    type: str = "u16"
    function: Function = "holding"
    scale: float = 1.0

    @property
    def words(self) -> int:
        """How many 16-bit registers the value takes."""
        return _WORDS[self.type]


@dataclass(frozen=True, slots=True)
class ModbusOptions:
    """`[modbus]`, checked: the register map with wire addresses."""

    registers: Mapping[str, Register]
    word_order: Literal["big", "little"] = "big"
    byte_order: Literal["big", "little"] = "big"
    modulus: int | None = None

    def blocks(self) -> list[tuple[Function, int, int]]:
        """The (function, start, count) reads that cover every register, neighbours merged."""
        spans = sorted((r.function, r.address, r.address + r.words) for r in self.registers.values())
        out: list[tuple[Function, int, int]] = []
        for function, start, stop in spans:
            if out and out[-1][0] == function and start <= out[-1][1] + out[-1][2] and stop - out[-1][1] <= MAX_BLOCK:
                prev = out[-1]
                out[-1] = (function, prev[1], max(prev[1] + prev[2], stop) - prev[1])
            else:
                out.append((function, start, stop - start))
        return out


class ModbusExtractor(NamedValues):
    """Register words -> named values; one reading per poll."""

    name = "modbus"

    def parse_options(self, table: Mapping[str, Any], where: str, add: Callable[[str, str], None]) -> ModbusOptions:
        """Read `[modbus]`."""
        unknown_keys(table, {"function", "base", "word_order", "byte_order", "type", "registers"}, where, add)
        function = table.get("function", "holding")
        if function not in ("holding", "input"):
            add(f"{where}.function", f"must be holding or input, got {function!r}")
            function = "holding"
        base = table.get("base", 0)
        if base not in (0, 1):
            add(f"{where}.base", "must be 0 (addresses as sent) or 1 (the manual counts from 1)")
            base = 0
        orders = {}
        for key in ("word_order", "byte_order"):
            orders[key] = table.get(key, "big")
            if orders[key] not in ("big", "little"):
                add(f"{where}.{key}", f"must be big or little, got {orders[key]!r}")
                orders[key] = "big"
        default_type = table.get("type", "")
        if default_type and default_type not in _WORDS:
            add(f"{where}.type", f"must be one of {', '.join(_WORDS)}")
            default_type = ""
        registers: dict[str, Register] = {}
        raw = table.get("registers", {})
        if not isinstance(raw, dict) or not raw:
            add(f"{where}.registers", "must map names to registers, e.g. entries = { address = 0, type = 'u32' }")
            raw = {}
        for name, written in raw.items():
            at = f"{where}.registers.{name}"
            spec = {"address": written} if type(written) is int else written
            if not isinstance(spec, dict):
                add(at, "must be { address = 0, type = 'u16' } or an address")
                continue
            unknown_keys(spec, {"address", "type", "function", "scale"}, at, add)
            address = spec.get("address")
            kind = spec.get("type", default_type or "u16")
            fn = spec.get("function", function)
            scale = spec.get("scale", 1)
            if type(address) is not int or not base <= address <= 65535 + base:
                add(f"{at}.address", f"must be a register number {base}-{65535 + base}")
                continue
            if kind not in _WORDS or fn not in ("holding", "input") or not isinstance(scale, int | float):
                add(at, f"type must be one of {', '.join(_WORDS)}, function holding or input, scale a number")
                continue
            registers[name] = Register(address - base, kind, fn, float(scale))
        return ModbusOptions(registers, orders["word_order"], orders["byte_order"], _modulus(registers))

    def items(self, options: ModbusOptions, payload: bytes) -> list[tuple[str, Any]]:
        """The named values of one poll."""
        try:
            doc = json.loads(payload)
            words: dict[str, dict[str, int]] = doc["registers"]
        except (ValueError, KeyError, TypeError, RecursionError):
            raise DecodeError(f"not a modbus register frame: {payload[:60]!r}") from None
        item: dict[str, Any] = {}
        for name, register in options.registers.items():
            block = words.get(register.function, {})
            try:
                regs = [int(block[str(register.address + i)]) for i in range(register.words)]
            except (KeyError, ValueError, TypeError):
                raise DecodeError(f"{name}: register {register.address} ({register.function}) was not read") from None
            item[name] = decode_value(regs, register, options)
        return [("registers", item)]


def decode_value(regs: list[int], register: Register, options: ModbusOptions) -> int | float:
    """Words as read -> the value, by type, byte order, word order and scale."""
    if options.byte_order == "little":
        regs = [((w & 0xFF) << 8) | (w >> 8) for w in regs]
    if options.word_order == "little":
        regs = regs[::-1]
    data = b"".join(w.to_bytes(2, "big") for w in regs)
    value: int | float
    if register.type == "float32":
        value = struct.unpack(">f", data)[0]
    else:
        value = int.from_bytes(data, "big", signed=register.type.startswith("s"))
    if register.scale != 1:
        scaled = value * register.scale
        value = int(scaled) if float(scaled).is_integer() else scaled
    return value


def _modulus(registers: Mapping[str, Register]) -> int | None:
    """The wrap of unscaled unsigned count registers `entries`/`exits`, when they agree."""
    widths = {registers[n].words for n in ("entries", "exits") if n in registers}
    kinds_ok = all(
        registers[n].type in ("u16", "u32") and registers[n].scale == 1 for n in ("entries", "exits") if n in registers
    )
    if len(widths) != 1 or not kinds_ok:
        return None
    return 1 << (16 * widths.pop())
