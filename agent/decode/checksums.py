"""Checksums that device frames carry, by the names profiles use. Pure functions of bytes.

`crc8` is CRC-8/SMBUS (polynomial 0x07, init 0): it reproduces the CRC bytes of the
Terabee Evo command table (`00 55 08 00 00 00 00` -> 0x7C, `00 61 01` -> 0xE7), which is
how we know the sensor uses it. The CRC-16 variants are the common catalogue ones
(reveng names in parentheses); `sum8` and `xor8` are the simple running checks of ASCII
and legacy binary protocols.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType


def _crc8_bitwise(byte: int) -> int:
    crc = byte
    for _ in range(8):
        crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


# One lookup per byte instead of eight shifts: a serial line at full speed is framed in real time.
_CRC8_TABLE = bytes(_crc8_bitwise(i) for i in range(256))


def _crc8(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc = _CRC8_TABLE[crc ^ byte]
    return crc


def _crc16_reflected(data: bytes, init: int, xorout: int) -> int:
    crc = init
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc ^ xorout


def _crc16_ccitt(data: bytes) -> int:
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def _xor(data: bytes) -> int:
    out = 0
    for byte in data:
        out ^= byte
    return out


# name -> (function, width in bytes)
CHECKSUMS: Mapping[str, tuple[Callable[[bytes], int], int]] = MappingProxyType(
    {
        "crc8": (_crc8, 1),
        "sum8": (lambda data: sum(data) & 0xFF, 1),
        "xor8": (_xor, 1),
        "crc16-modbus": (lambda data: _crc16_reflected(data, 0xFFFF, 0), 2),  # (CRC-16/MODBUS)
        "crc16-arc": (lambda data: _crc16_reflected(data, 0, 0), 2),  # (CRC-16/ARC)
        "crc16-maxim": (lambda data: _crc16_reflected(data, 0, 0xFFFF), 2),  # (CRC-16/MAXIM-DOW, 1-Wire)
        "crc16-ccitt": (_crc16_ccitt, 2),  # (CRC-16/IBM-3740, "CCITT-FALSE")
    }
)


def compute(name: str, data: bytes) -> int:
    """The checksum `name` of `data`; KeyError for an unknown name."""
    return CHECKSUMS[name][0](data)


def width(name: str) -> int:
    """How many bytes the checksum `name` takes in a frame."""
    return CHECKSUMS[name][1]
