"""Reading TOML tables into declared dataclasses, every problem collected and named by its full key.

A config section is a frozen dataclass whose fields carry their kind (duration, size, path,
...), a one-line doc and their bounds in `metadata` (`meta`); `TableReader.build` reads any of
them from a TOML table. It never stops at the first problem: each one is recorded with its full
key (`sources[2].adapter`) and what is allowed, so a technician fixes the file in one pass.
Unknown keys are problems, with a "did you mean" when one is close: a typo must not silently
fall back to a default. `agent.toml` (config/load.py) and adapter profiles
(decode/profile_load.py) are read with it, so both report problems the same way.
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Callable, Collection, Mapping
from dataclasses import MISSING, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from footfall.protocol.records import name_problem

from footfall.units import parse_duration, parse_size


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a config file: the full key and what to do about it."""

    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}" if self.key else self.message


class ConfigError(Exception):
    """A config (or adapter profile) that cannot be used; `problems` lists every reason at once."""

    def __init__(self, where: str, problems: list[Problem]) -> None:
        self.where = where
        self.problems = problems
        count = f"{len(problems)} problem" + ("s" if len(problems) != 1 else "")
        super().__init__(f"{where} has {count}:\n" + "\n".join(f"  - {p}" for p in problems))


def meta(kind: str, doc: str, **rules: Any) -> dict[str, Any]:
    """A config field's metadata: its kind (how a TOML value is read), a one-line doc and validation rules."""
    return {"kind": kind, "doc": doc, **rules}


class TableReader:
    """Builds dataclasses declared with `meta` from TOML tables, collecting problems instead of stopping.

    Adapter profiles (decode/profile_load.py) use it too, so both files report problems the same way.
    """

    def __init__(self, base: Path) -> None:
        self.base = base
        self.problems: list[Problem] = []

    def add(self, key: str, message: str) -> None:
        """Record a problem of `key`."""
        self.problems.append(Problem(key, message))

    def unknown(self, key: str, where: str, allowed: Collection[str], label: str = "") -> None:
        """Record an unknown key of the table at `where`, with what is allowed there (and a close match)."""
        full = f"{where}.{key}" if where else key
        self.add(full, f"unknown key{label}; allowed here: {', '.join(allowed)}" + suggest(key, allowed))

    def build(self, cls: type[Any], table: Mapping[str, Any], where: str, label: str = "") -> Any:
        """An instance of `cls` from `table`, or None when a value was wrong (the problem is recorded)."""
        hints = typing.get_type_hints(cls)
        known = [f.name for f in fields(cls) if f.metadata.get("kind") != "options"]
        for key in table:
            if key not in known:
                self.unknown(key, where, known, label)
        values: dict[str, Any] = {}
        ok = True
        for f in fields(cls):
            kind = str(f.metadata.get("kind"))
            if kind == "options":
                continue
            key = f"{where}.{f.name}"
            if f.name not in table:
                if f.default is MISSING and f.default_factory is MISSING:
                    self.add(key, f"required{label}: {f.metadata['doc']}")
                    ok = False
                continue
            try:
                values[f.name] = self._convert(kind, table[f.name], f.metadata, hints[f.name])
            except ValueError as exc:
                self.add(key, f"{exc}{label}")
                ok = False
        return cls(**values) if ok else None

    def value(self, kind: str, value: Any) -> Any:
        """One value read as `kind` (a `meta` kind such as "paths"); ValueError says what is wrong."""
        return self._convert(kind, value, {}, None)

    def _convert(self, kind: str, value: Any, rules: Mapping[str, Any], hint: Any) -> Any:
        converter = _CONVERTERS[kind]
        result = converter(self, value, rules, hint)
        if "min" in rules and result < rules["min"]:
            raise ValueError(f"must be at least {rules['min']}, got {value!r}")
        if "max" in rules and result > rules["max"]:
            raise ValueError(f"must be at most {rules['max']}, got {value!r}")
        if rules.get("positive") and result <= 0:
            raise ValueError(f"must be more than zero, got {value!r}")
        return result



def _str(_: TableReader, value: Any, __: Mapping[str, Any], ___: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, got {type_name(value)} {value!r}")
    return value


def _name(r: TableReader, value: Any, rules: Mapping[str, Any], hint: Any) -> str:
    text = _str(r, value, rules, hint)
    problem = name_problem(text)  # a source's name is its records' sensor name: the protocol's rule
    if problem is not None:
        raise ValueError(f"{problem}, got {value!r}")
    return text


def _int(_: TableReader, value: Any, __: Mapping[str, Any], ___: Any) -> int:
    if type(value) is not int:
        raise ValueError(f"must be a whole number, got {type_name(value)} {value!r}")
    return value


def _bool(_: TableReader, value: Any, __: Mapping[str, Any], ___: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {value!r}")
    return value


def _duration(_: TableReader, value: Any, __: Mapping[str, Any], ___: Any) -> float:
    try:
        return parse_duration(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(
            str(exc) if isinstance(exc, ValueError) else f"must be a duration such as 30s, got {value!r}"
        ) from None


def _size(_: TableReader, value: Any, __: Mapping[str, Any], ___: Any) -> int:
    try:
        return parse_size(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(
            str(exc) if isinstance(exc, ValueError) else f"must be a size such as 1MiB, got {value!r}"
        ) from None


def _path(r: TableReader, value: Any, rules: Mapping[str, Any], hint: Any) -> Path:
    text = _str(r, value, rules, hint)
    if not text:
        raise ValueError("must not be empty")
    path = Path(text).expanduser()
    return path if path.is_absolute() else r.base / path


def _paths(r: TableReader, value: Any, rules: Mapping[str, Any], hint: Any) -> tuple[Path, ...]:
    if not isinstance(value, list):
        raise ValueError(f'must be a list of folders such as ["/etc/footfall/adapters"], got {type_name(value)}')
    return tuple(_path(r, item, rules, hint) for item in value)


def _params(_: TableReader, value: Any, __: Mapping[str, Any], ___: Any) -> Mapping[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(v, str | int) and not isinstance(v, bool) for v in value.values()
    ):
        raise ValueError(f'must be a table of the adapter\'s settings such as {{ location_id = "L1" }}, got {value!r}')
    return MappingProxyType({str(k): str(v) for k, v in value.items()})


def _choice(r: TableReader, value: Any, rules: Mapping[str, Any], hint: Any) -> str:
    allowed = typing.get_args(hint)
    text = _str(r, value, rules, hint)
    if text not in allowed:
        raise ValueError(f"must be one of {', '.join(allowed)}, got {value!r}" + suggest(text, allowed))
    return text


def _zone(r: TableReader, value: Any, rules: Mapping[str, Any], hint: Any) -> str:
    text = _str(r, value, rules, hint)
    if text:
        try:
            ZoneInfo(text)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown IANA time zone {text!r}; use a name such as Europe/Paris or America/New_York"
            ) from None
    return text


def _url(r: TableReader, value: Any, rules: Mapping[str, Any], hint: Any) -> str:
    text = _str(r, value, rules, hint)
    if text:
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"must be an http:// or https:// URL such as https://collector.example.com, got {value!r}")
    return text.rstrip("/")


def _listen(r: TableReader, value: Any, rules: Mapping[str, Any], hint: Any) -> str:
    text = _str(r, value, rules, hint)
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"must be host:port such as 127.0.0.1:8088 or 0.0.0.0:8088, got {value!r}")
    return text


def _optional_listen(r: TableReader, value: Any, rules: Mapping[str, Any], hint: Any) -> str:
    return _listen(r, value, rules, hint) if value != "" else ""


def _route(r: TableReader, value: Any, rules: Mapping[str, Any], hint: Any) -> str:
    text = _str(r, value, rules, hint)
    if not text.startswith("/") or any(c in text for c in "?#{} ") or len(text) > 200:
        raise ValueError(f"must be a URL path starting with / such as /push/entrance, got {value!r}")
    return text


def _table_value(_: TableReader, value: Any, __: Mapping[str, Any], ___: Any) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"must be a table such as {{ key = value }}, got {type_name(value)}")
    return MappingProxyType(dict(value))


def _strs(_: TableReader, value: Any, __: Mapping[str, Any], ___: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f'must be a non-empty list of strings such as ["a/+/b"], got {value!r}')
    return tuple(value)


def _date(r: TableReader, value: Any, rules: Mapping[str, Any], hint: Any) -> str:
    text = _str(r, value, rules, hint)
    if text:
        try:
            datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(
                f"must be a date such as 2026-11-01 or a time such as 2026-11-01T06:00Z, got {value!r}"
            ) from None
    return text


def date_ms(text: str) -> int:
    """A `date` value as Unix milliseconds (UTC when it has no offset)."""
    when = datetime.fromisoformat(text)
    return int((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp() * 1000)


_CONVERTERS: dict[str, Callable[[TableReader, Any, Mapping[str, Any], Any], Any]] = {
    "table": _table_value,
    "strs": _strs,
    "str": _str,
    "name": _name,
    "int": _int,
    "bool": _bool,
    "duration": _duration,
    "size": _size,
    "path": _path,
    "paths": _paths,
    "choice": _choice,
    "params": _params,
    "zone": _zone,
    "url": _url,
    "listen": _listen,
    "optional_listen": _optional_listen,
    "route": _route,
    "date": _date,
}


def suggest(word: str, choices: Collection[str]) -> str:
    """' (did you mean ...?)' when one of `choices` is close to `word`, else ''."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def type_name(value: Any) -> str:
    """What a TOML value is, as a message says it: "a table", "an array", ..."""
    return {
        dict: "a table",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
    }.get(type(value), type(value).__name__)


def split_listen(listen: str) -> tuple[str, int]:
    """`host:port` -> (host, port); IPv6 hosts may be written in brackets."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)
