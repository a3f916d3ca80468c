"""What the formats whose items are flat maps of named values share: a path is one name."""

from __future__ import annotations

import re
from typing import Any

from footfall.agent.decode.formats.tree import ABSENT

_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,128}")


class NamedValues:
    """Mixin: an item is a dict, a field's path is one of its keys."""

    def compile_path(self, path: str) -> str:
        """A path is a name: letters, digits, `_`, `-`, `.`."""
        if not _NAME.fullmatch(path):
            raise ValueError(f"must be a name such as entries (letters, digits, _ . -), got {path!r}")
        return path

    def get(self, item: Any, path: str) -> Any:
        """The named value, or ABSENT."""
        return item.get(path, ABSENT) if isinstance(item, dict) else ABSENT


def unknown_keys(table: Any, allowed: set[str], where: str, add: Any) -> None:
    """Report each key of `table` that is not in `allowed`."""
    for key in table:
        if key not in allowed:
            add(f"{where}.{key}", f"unknown key; allowed here: {', '.join(sorted(allowed))}")
