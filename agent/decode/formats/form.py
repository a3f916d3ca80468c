"""Form-encoded bodies whose fields hold JSON: `format = "form"` (Lightspeed X-Series webhooks).

The body `application/x-www-form-urlencoded` becomes one JSON-like object, field name to value
(the last one when a field repeats); the fields listed in `[form] json` (default `["payload"]`)
hold JSON text and are parsed. Then it is a JSON document: `[form] items` and the field paths
use the JSON path syntax (`payload`, `/type`, ...), so Lightspeed's
`type=sale.update&payload={"id": ...}` reads with `items = ["payload"]` and `kind` from `status`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from footfall.agent.decode.errors import DecodeError
from footfall.agent.decode.formats.json import json_items, parse_items, parse_json
from footfall.agent.decode.formats.tree import Node, TreePath, compile_json, get_json


@dataclass(frozen=True, slots=True)
class FormOptions:
    """`[form]` options."""

    items: tuple[tuple[str, TreePath], ...]
    json_fields: tuple[str, ...]


class FormExtractor:
    """`application/x-www-form-urlencoded` bodies with JSON inside some fields."""

    name = "form"
    textual = False

    def parse_options(self, table: Mapping[str, Any], where: str, add: Callable[[str, str], None]) -> FormOptions:
        """Read `[form]`: `items` (default `["payload"]`) and `json`, the fields that hold JSON."""
        items = parse_items(table, where, add, self.compile_path, default="payload", extra=("json",))
        raw = table.get("json", ["payload"])
        if not isinstance(raw, list) or not all(isinstance(f, str) and f for f in raw):
            add(f"{where}.json", 'must be a list of field names such as ["payload"]')
            raw = []
        return FormOptions(items, tuple(raw))

    def compile_path(self, path: str) -> TreePath:
        """JSON path syntax (formats/tree.py)."""
        return compile_json(path)

    def items(self, options: FormOptions, payload: bytes) -> list[tuple[str, Any]]:
        """Decode the form, parse its JSON fields, find the items."""
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError(f"body is not UTF-8 text: {exc}") from None
        try:
            pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text))
        except ValueError as exc:
            raise DecodeError(f"body is not form-encoded (name=value&...): {exc}") from None
        document: dict[str, Any] = dict(pairs)
        for name in options.json_fields:
            if name not in document:
                raise DecodeError(f"form field {name!r} is missing; the body has {sorted(document) or 'no fields'}")
            document[name] = parse_json(document[name].encode(), f"form field {name!r}")
        return list(json_items(Node(document, None, ""), options.items))

    def get(self, item: Node, path: TreePath) -> Any:
        """The value at the path from the item."""
        return get_json(item, path)
