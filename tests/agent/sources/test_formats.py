"""Format details the adapter cases do not reach: Modbus value types and orders."""

from __future__ import annotations

import struct

import pytest
from footfall.agent.decode.formats.modbus import ModbusExtractor, ModbusOptions, Register, decode_value


def _options(**kw: object) -> ModbusOptions:
    return ModbusOptions(registers={}, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("words", "kind", "options", "want"),
    [
        ([0x0001, 0x1170], "u32", {}, 70000),
        ([0x1170, 0x0001], "u32", {"word_order": "little"}, 70000),
        ([0x0100, 0x7011], "u32", {"byte_order": "little"}, 70000),
        ([0xFFFF, 0xFFFE], "s32", {}, -2),
        ([0xFFFE], "s16", {}, -2),
        ([0xFFFE], "u16", {}, 65534),
        (list(struct.unpack(">HH", struct.pack(">f", 12.5))), "float32", {}, 12.5),
    ],
)
def test_register_values(words: list[int], kind: str, options: dict[str, object], want: float) -> None:
    assert decode_value(words, Register(0, kind), _options(**options)) == want


def test_scale_and_block_merging() -> None:
    problems: list[str] = []
    parsed = ModbusExtractor().parse_options(
        {
            "base": 1,
            "registers": {
                "entries": {"address": 1, "type": "u32"},
                "exits": {"address": 3, "type": "u32"},
                "temperature": {"address": 11, "type": "s16", "scale": 0.1, "function": "input"},
            },
        },
        "modbus",
        lambda key, message: problems.append(f"{key}: {message}"),
    )
    assert not problems
    assert parsed.blocks() == [("holding", 0, 4), ("input", 10, 1)]
    assert parsed.modulus == 1 << 32
    assert decode_value([0xFF38], parsed.registers["temperature"], parsed) == pytest.approx(-20.0)


def test_register_map_problems_name_their_key() -> None:
    problems: list[str] = []
    ModbusExtractor().parse_options(
        {"word_order": "middle", "registers": {"entries": {"address": -1}, "exits": {"address": 2, "type": "u64"}}},
        "modbus",
        lambda key, message: problems.append(f"{key}: {message}"),
    )
    assert any(p.startswith("modbus.word_order: must be big or little") for p in problems)
    assert any(p.startswith("modbus.registers.entries.address:") for p in problems)
    assert any(p.startswith("modbus.registers.exits: type must be one of") for p in problems)
