"""XML bodies: `format = "xml"` (Brickstream reports, Hikvision ISAPI event notifications).

Parsed with defusedxml, which refuses a DTD, entity declarations and external references
outright: a device never needs them, and they are how XML bodies attack parsers (billion
laughs, external entity reads). Namespaces are dropped from element and attribute names
(`<EventNotificationAlert xmlns="http://www.hikvision.com/ver20/XMLSchema">` reads as
`EventNotificationAlert`), because vendors change them between firmware versions while the
names stay.

`[xml] items` lists element paths from the root element (`ReportData/Report/Object/Count`;
`.` is the root element itself); every step iterates, and each element found is a level that
field paths can climb with `../`. `[xml] root` (optional) is the root element's expected name:
another root is refused with a message naming both. Values are text; counts and times written
as digits are read as numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring
from footfall.agent.decode.errors import DecodeError
from footfall.agent.decode.formats.json import parse_items
from footfall.agent.decode.formats.tree import Node, TreePath, compile_xml, get_xml, iterate_xml


@dataclass(frozen=True, slots=True)
class XmlOptions:
    """`[xml]` options."""

    items: tuple[tuple[str, TreePath], ...]
    root: str


def _local(name: str) -> str:
    return name.rsplit("}", 1)[-1]


def parse_xml(payload: bytes) -> Element:
    """The root element, namespaces dropped; DecodeError for malformed or unsafe XML."""
    try:
        root = fromstring(payload, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise DecodeError(f"XML with a DTD, entities or external references is refused: {exc}") from None
    except ParseError as exc:
        raise DecodeError(f"body is not XML: {exc}") from None
    except (ValueError, LookupError) as exc:
        # expat raises these for an unknown or impossible declared encoding.
        raise DecodeError(f"body is not readable XML: {exc}") from None
    for element in root.iter():
        element.tag = _local(str(element.tag))
        if any("}" in key for key in element.attrib):
            element.attrib = {_local(k): v for k, v in element.attrib.items()}
    return root


class XmlExtractor:
    """XML documents, items found by element paths."""

    name = "xml"
    textual = True

    def parse_options(self, table: Mapping[str, Any], where: str, add: Callable[[str, str], None]) -> XmlOptions:
        """Read `[xml]`: `items` (default `["."]`, the root element) and `root`."""
        items = parse_items(table, where, add, self.compile_path, default=".", extra=("root",))
        root = table.get("root", "")
        if not isinstance(root, str):
            add(f"{where}.root", "must be the root element's name, such as Metrics")
            root = ""
        return XmlOptions(items, root)

    def compile_path(self, path: str) -> TreePath:
        """`a/b/@attr`, `../@Date`, `/Properties/Timezone`, `item[@k=v]/count` (formats/tree.py)."""
        return compile_xml(path)

    def items(self, options: XmlOptions, payload: bytes) -> list[tuple[str, Any]]:
        """Parse the body and find its items."""
        element = parse_xml(payload)
        if options.root and element.tag != options.root:
            raise DecodeError(f"the root element is <{element.tag}>, expected <{options.root}>")
        root = Node(element, None, "")
        for _, path in options.items:
            nodes = list(iterate_xml(root, path))
            if nodes or _head_present(root, path):
                return [(node.label, node) for node in nodes]
        raise DecodeError(f"none of {[text for text, _ in options.items]} is in <{element.tag}>")

    def get(self, item: Node, path: TreePath) -> Any:
        """The text at the path from the item, or ABSENT."""
        return get_xml(item, path)


def _head_present(root: Node, path: TreePath) -> bool:
    """An items path whose last step finds nothing is still present if its parent element exists."""
    if not path.steps:
        return True
    head = path.steps[:-1]
    while head and head[-1][0] != "key":
        head = head[:-1]
    return not head or bool(list(iterate_xml(root, TreePath(path.text, path.up, head))))
