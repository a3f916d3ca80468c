"""JSON bodies: `format = "json"`.

`[json] items` lists where the readings are; the first path present in the body wins. A path
that leads to an array yields one item per element; to an object, one item; `[*]` iterates at
any depth, so `content.element[*].measurement[*]` gives one item per measurement, each able to
read its element with `../` (formats/tree.py has the path language). `items = ["counts", "$"]`
accepts both `{"counts": [{...}, {...}]}` and a bare `{...}`.

Paths are a small syntax of our own rather than jmespath: a path here only has to name one
value, and it must tell "absent" from `null` so that a missing field gets an error naming it.
jmespath answers None for both, and would be one more dependency on every gateway.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from footfall.agent.decode.errors import DecodeError, show
from footfall.agent.decode.formats.tree import ABSENT, Node, TreePath, compile_json, get_json, iterate_json


@dataclass(frozen=True, slots=True)
class JsonOptions:
    """`[json]` options."""

    items: tuple[tuple[str, TreePath], ...]


def parse_items(
    table: Mapping[str, Any], where: str, add: Callable[[str, str], None], compile_path: Callable[[str], TreePath],
    *, default: str, extra: tuple[str, ...] = (),
) -> tuple[tuple[str, TreePath], ...]:
    """Read an `items` list of paths (shared by the json, form and xml sections)."""
    for key in table:
        if key not in ("items", *extra):
            add(f"{where}.{key}", f"unknown key; allowed here: {', '.join(('items', *extra))}")
    raw = table.get("items", [default])
    if not isinstance(raw, list) or not raw or not all(isinstance(p, str) for p in raw):
        add(f"{where}.items", f'must be a non-empty list of paths such as ["counts", "{default}"]')
        return ()
    compiled: list[tuple[str, TreePath]] = []
    for index, path in enumerate(raw):
        try:
            compiled.append((path, compile_path(path)))
        except ValueError as exc:
            add(f"{where}.items[{index}]", str(exc))
    return tuple(compiled)


def present(root: Node, path: TreePath) -> bool:
    """Whether an items path leads somewhere in this document (its part before the first iteration exists)."""
    head: list[Any] = []
    for step in path.steps:
        if step[0] in ("all", "match"):
            break
        head.append(step)
    return get_json(root, TreePath(path.text, path.up, tuple(head))) is not ABSENT


def json_items(root: Node, paths: tuple[tuple[str, TreePath], ...]) -> list[tuple[str, Node]]:
    """The items of the first path present; each must be a JSON object."""
    for _, path in paths:
        if not present(root, path):
            continue
        items = [(node.label, node) for node in iterate_json(root, path)]
        for label, node in items:
            if not isinstance(node.value, dict):
                raise DecodeError(f"{label or 'body'}: expected a JSON object, got {show(node.value)}")
        return items
    raise DecodeError(f"none of {[text for text, _ in paths]} is in the body")


def parse_json(payload: bytes, what: str = "body") -> Any:
    """JSON text (UTF-8, a BOM allowed) into Python values; DecodeError saying why not."""
    try:
        return json.loads(payload.decode("utf-8-sig") if isinstance(payload, bytes) else payload)
    except UnicodeDecodeError as exc:
        raise DecodeError(f"{what} is not UTF-8 text: {exc}") from None
    except json.JSONDecodeError as exc:
        raise DecodeError(f"{what} is not JSON: {exc}") from None
    except RecursionError:
        raise DecodeError(f"{what} nests too deeply to be a device's JSON") from None


class JsonExtractor:
    """JSON bodies, with nested items and paths up to the enclosing item or the root."""

    name = "json"
    textual = False

    def parse_options(self, table: Mapping[str, Any], where: str, add: Callable[[str, str], None]) -> JsonOptions:
        """Read `[json]`: only `items` (default `["$"]`, the whole body)."""
        return JsonOptions(parse_items(table, where, add, self.compile_path, default="$"))

    def compile_path(self, path: str) -> TreePath:
        """`a.b[0]["odd.key"]`, `../up`, `/from.root`, `value[label=fw].value`; `$` is the whole item."""
        return compile_json(path)

    def items(self, options: JsonOptions, payload: bytes) -> list[tuple[str, Any]]:
        """Parse the body and find its items."""
        return list(json_items(Node(parse_json(payload), None, ""), options.items))

    def get(self, item: Node, path: TreePath) -> Any:
        """The value at the path from the item; ABSENT as soon as a step is missing."""
        return get_json(item, path)
