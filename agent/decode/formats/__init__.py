"""Wire formats: one module per format (json, form, xml, ...), each an `Extractor`, and the registry of them.

A format turns a frame's bytes into items and reads a value at a path inside an item;
`tree.py` is the path language the document formats share, `named.py` what the flat-map
formats (binary, modbus, csv, milesight) share. What a value then means (a time, a count, an
amount) is decode/fields.py's business, the same for every format. A new format is one module
here and one entry in `default_extractors`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from footfall.agent.decode.formats.binary import BinaryExtractor
from footfall.agent.decode.formats.csv import CsvExtractor
from footfall.agent.decode.formats.escpos import EscposExtractor
from footfall.agent.decode.formats.form import FormExtractor
from footfall.agent.decode.formats.json import JsonExtractor
from footfall.agent.decode.formats.milesight import MilesightExtractor
from footfall.agent.decode.formats.modbus import ModbusExtractor
from footfall.agent.decode.formats.xml import XmlExtractor


class Extractor(Protocol):
    """A wire format: bytes into items, and a value at a path inside an item."""

    name: str

    def parse_options(self, table: Mapping[str, Any], where: str, add: Callable[[str, str], None]) -> Any:
        """The format's own profile section (e.g. `[json]`), problems reported through `add(key, message)`."""
        ...

    def compile_path(self, path: str) -> Any:
        """A field path in this format's syntax, checked once at load; ValueError says what is wrong."""
        ...

    def items(self, options: Any, payload: bytes) -> list[tuple[str, Any]]:
        """The frame's items as (where, item); DecodeError when the bytes are not this format."""
        ...

    def get(self, item: Any, path: Any) -> Any:
        """The value at a compiled path inside an item, or ABSENT."""
        ...


def default_extractors() -> dict[str, Extractor]:
    """A fresh registry of the format extractors this agent knows, by the name a profile's `format` gives."""
    return {
        "json": JsonExtractor(),
        "form": FormExtractor(),
        "xml": XmlExtractor(),
        "binary": BinaryExtractor(),
        "escpos": EscposExtractor(),
        "modbus": ModbusExtractor(),
        "csv": CsvExtractor(),
        "milesight": MilesightExtractor(),
    }
