"""Paths into a parsed document (JSON values or XML elements), shared by the json, form and xml formats.

A document is a tree. `[json] items` / `[xml] items` name where the readings are, and may
iterate at several levels (`content.element[*].measurement[*]`, `ReportData/Report/Object/Count`):
each level's element becomes a `Node` whose `parent` is the node of the level above, so a
field path can read the item itself (`from`), its enclosing item (`../element-name`, JSON; or
`../@Name`, XML), or the document (`/sensor-time.timezone`; `/Properties/Timezone`).

Two spellings of the same steps:

| step | JSON | XML |
|---|---|---|
| a key / child element | `a.b`, `["odd key"]` | `a/b` |
| an array element | `[0]` | `b[0]` (the first `<b>`) |
| every element (items only) | `[*]` | every step of an items path iterates |
| the element whose key has a value | `value[label=fw]` | `item[@direction=in]`, `item[name=x]` |
| an attribute | | `@Enters` |
| the enclosing item | `../` (repeatable) | `../` |
| the document root | leading `/` | leading `/` (the root element) |
| the whole item | `$` | `.` |

`[k=v]` compares text: numbers and booleans as JSON writes them (`[RegisterId=0]`). In a field
path it picks the first match; in an items path, every match. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from xml.etree.ElementTree import Element


class _Absent:
    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()

Step = tuple[Any, ...]  # ("key", name) | ("index", i) | ("all",) | ("match", key, value) | ("attr", name)


@dataclass(frozen=True, slots=True)
class TreePath:
    """A compiled path: how many levels up it starts (`up`, -1 = the root), then its steps."""

    text: str
    up: int
    steps: tuple[Step, ...]


@dataclass(frozen=True, slots=True)
class Node:
    """One item of a document, with the item it was found in (`parent`) and its place (`label`)."""

    value: Any
    parent: Node | None
    label: str

    @property
    def root(self) -> Node:
        """The document's root node."""
        node = self
        while node.parent is not None:
            node = node.parent
        return node


def _prefix(path: str) -> tuple[int, str]:
    """Strip a leading `/` (root: -1) or `../` steps (how many)."""
    if path.startswith("/"):
        return -1, path[1:]
    up = 0
    while path.startswith("../"):
        up += 1
        path = path[3:]
    if path == "..":
        return up + 1, ""
    return up, path


_JSON_TOKEN = re.compile(
    r'\.?(?P<key>[A-Za-z0-9_\-@:$]+)|\[(?P<index>\d+)\]|\[(?P<all>\*)\]|\["(?P<quoted>[^"\]]*)"\]'
    r"|\[(?P<mkey>[A-Za-z0-9_\-@:]+)=(?P<mval>[^\]]*)\]"
)


def compile_json(path: str) -> TreePath:
    """`a.b[0]["odd.key"][*][label=fw]`, with an optional `/` or `../` prefix; `$` is the whole item."""
    if not isinstance(path, str) or not path:
        raise ValueError('a path cannot be empty; write "$" for the whole item')
    up, text = _prefix(path)
    if text.startswith("$"):
        text = text[1:]
    steps: list[Step] = []
    pos = 0
    while pos < len(text):
        match = _JSON_TOKEN.match(text, pos)
        if match is None:
            raise ValueError(
                f"cannot read path {path!r} at character {pos + len(path) - len(text)}: use keys joined by dots, "
                '[0] for an array element, [*] for every element, [key=value] to pick one, ["odd key"] for other keys'
            )
        groups = match.groupdict()
        if groups["key"] is not None:
            steps.append(("key", groups["key"]))
        elif groups["index"] is not None:
            steps.append(("index", int(groups["index"])))
        elif groups["all"] is not None:
            steps.append(("all",))
        elif groups["quoted"] is not None:
            steps.append(("key", groups["quoted"]))
        else:
            steps.append(("match", groups["mkey"], groups["mval"]))
        pos = match.end()
    return TreePath(path, up, tuple(steps))


_XML_STEP = re.compile(
    r"(?P<tag>[A-Za-z_][\w.\-]*)(?:\[(?:(?P<index>\d+)|(?P<attr>@)?(?P<mkey>[A-Za-z_][\w.\-]*)=(?P<mval>[^\]]*))\])?$"
)


def compile_xml(path: str) -> TreePath:
    """`a/b[0]/c[@k=v]/@attr`, with an optional `/` or `../` prefix; `.` is the item itself."""
    if not isinstance(path, str) or not path:
        raise ValueError('a path cannot be empty; write "." for the item itself')
    up, text = _prefix(path)
    steps: list[Step] = []
    parts = [p for p in text.split("/")] if text not in ("", ".") else []
    for index, part in enumerate(parts):
        if part.startswith("@") and index == len(parts) - 1 and re.fullmatch(r"@[A-Za-z_][\w.\-:]*", part):
            steps.append(("attr", part[1:]))
            continue
        match = _XML_STEP.match(part)
        if match is None:
            raise ValueError(
                f"cannot read XML path {path!r} at {part!r}: use element names joined by /, @name for an "
                "attribute (last), name[0] for the first such element, name[@attr=value] or name[child=value] "
                "to pick one"
            )
        steps.append(("key", match.group("tag")))
        if match.group("index") is not None:
            steps.append(("index", int(match.group("index"))))
        elif match.group("mkey") is not None:
            key = ("@" if match.group("attr") else "") + match.group("mkey")
            steps.append(("match", key, match.group("mval")))
    return TreePath(path, up, tuple(steps))


def _text(value: Any) -> str:
    """A value as `[k=v]` compares it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)


def _children(value: Any, key: str) -> list[Any]:
    """Every child called `key`: an XML element's child elements, or a JSON object's one value."""
    if isinstance(value, Element):
        return [child for child in value if child.tag == key]
    if isinstance(value, dict) and key in value:
        return [value[key]]
    return []


def _matches(element: Any, key: str, wanted: str) -> bool:
    if isinstance(element, Element):
        if key.startswith("@"):
            found = element.get(key[1:])
            return found is not None and found.strip() == wanted
        child = element.find(key)
        return child is not None and (child.text or "").strip() == wanted
    return isinstance(element, dict) and key in element and _text(element[key]) == wanted


def _start(node: Node, path: TreePath) -> Node | None:
    if path.up < 0:
        return node.root
    for _ in range(path.up):
        if node.parent is None:
            return None
        node = node.parent
    return node


def get_json(node: Node, path: TreePath) -> Any:
    """The one value at `path` from `node`, or ABSENT."""
    start = _start(node, path)
    if start is None:
        return ABSENT
    value = start.value
    for step in path.steps:
        kind = step[0]
        if kind == "key":
            found = _children(value, step[1])
            if not found:
                return ABSENT
            value = found[0]
        elif kind == "index":
            if not isinstance(value, list) or step[1] >= len(value):
                return ABSENT
            value = value[step[1]]
        elif kind == "match":
            if not isinstance(value, list):
                return ABSENT
            picked = [e for e in value if _matches(e, step[1], step[2])]
            if not picked:
                return ABSENT
            value = picked[0]
        else:  # "all" only makes sense in an items path
            return ABSENT
    return value


def get_xml(node: Node, path: TreePath) -> Any:
    """The one value at `path` from `node`, or ABSENT: an element's stripped text, or an attribute's.

    A tag step followed by `[0]` or `[k=v]` chooses among all the children of that tag.
    """
    start = _start(node, path)
    if start is None:
        return ABSENT
    value: Any = start.value
    steps = list(path.steps)
    i = 0
    while i < len(steps):
        step = steps[i]
        following = steps[i + 1] if i + 1 < len(steps) else None
        if step[0] == "key":
            found = _children(value, step[1])
            if following is not None and following[0] == "index":
                found = found[following[1] : following[1] + 1]
                i += 1
            elif following is not None and following[0] == "match":
                found = [e for e in found if _matches(e, following[1], following[2])]
                i += 1
            if not found:
                return ABSENT
            value = found[0]
        elif step[0] == "attr":
            if not isinstance(value, Element) or step[1] not in value.attrib:
                return ABSENT
            return value.attrib[step[1]].strip()
        else:
            return ABSENT
        i += 1
    if isinstance(value, Element):
        return (value.text or "").strip()
    return value


def iterate_json(root: Node, path: TreePath) -> Iterator[Node]:
    """The items at an items path: each `[*]` (and a final array) makes a level; `[k=v]` keeps every match."""
    start = _start(root, path)
    if start is None:
        return
    # (node of the current level, value reached so far from it, label so far)
    frontier: list[tuple[Node, Any, str]] = [(start, start.value, start.label)]
    for step in path.steps:
        nxt: list[tuple[Node, Any, str]] = []
        for node, value, label in frontier:
            kind = step[0]
            if kind == "key":
                if isinstance(value, dict) and step[1] in value:
                    nxt.append((node, value[step[1]], _join(label, step[1])))
            elif kind == "index":
                if isinstance(value, list) and step[1] < len(value):
                    nxt.append((node, value[step[1]], f"{label}[{step[1]}]"))
            elif kind in ("all", "match"):
                if isinstance(value, list):
                    for i, element in enumerate(value):
                        if kind == "match" and not _matches(element, step[1], step[2]):
                            continue
                        where = f"{label}[{i}]"
                        nxt.append((Node(element, node, where), element, where))
            else:
                raise ValueError(f"step {step} is not allowed in a JSON items path")
        frontier = nxt
    for node, value, label in frontier:
        if isinstance(value, list):
            for i, element in enumerate(value):
                yield Node(element, node, f"{label}[{i}]")
        elif value is node.value:
            yield node
        else:
            yield Node(value, node, label)


def iterate_xml(root: Node, path: TreePath) -> Iterator[Node]:
    """The elements at an items path: every step iterates the matching children, and each is a level."""
    start = _start(root, path)
    if start is None:
        return
    frontier: list[Node] = [start]
    steps = list(path.steps)
    i = 0
    while i < len(steps):
        step = steps[i]
        if step[0] != "key":
            raise ValueError("an XML items path names elements only (no @attribute)")
        following = steps[i + 1] if i + 1 < len(steps) else None
        nxt: list[Node] = []
        for node in frontier:
            children = _children(node.value, step[1])
            picked = list(enumerate(children))
            if following is not None and following[0] == "index":
                picked = picked[following[1] : following[1] + 1]
            elif following is not None and following[0] == "match":
                picked = [(n, c) for n, c in picked if _matches(c, following[1], following[2])]
            for n, child in picked:
                nxt.append(Node(child, node, _join(node.label, f"{step[1]}[{n}]", sep="/")))
        if following is not None and following[0] in ("index", "match"):
            i += 1
        frontier = nxt
        i += 1
    yield from frontier


def _join(label: str, part: str, sep: str = ".") -> str:
    return f"{label}{sep}{part}" if label else part
