"""The collector's settings: defaults, an optional TOML file, then command-line flags, checked once at start.

`collector.toml` (every key optional; these are the defaults):

```toml
listen = "127.0.0.1:8700"          # host:port the HTTP API listens on
database_url = ""                  # a libpq URL or DSN; "" = an embedded cluster under data_dir
data_dir = "./footfall-data"       # the embedded cluster's home (relative to this file)
timestamp_window = "300s"          # how far a request's signing time may be from the collector's clock
max_body = "8MiB"                  # the largest upload body (413 above; the protocol's limit is 8 MiB)
pool_size = 10                     # database connections
database_timeout = "5s"            # how long a request waits for a connection before answering 503
retry_after = "5s"                 # the Retry-After sent with a 503
log_level = "info"                 # debug, info, warning or error
log_format = "logfmt"              # logfmt or json
raw_retention = ""                 # drop raw partitions older than this (such as "400d"); "" = keep forever
```

Every problem in the file is reported at once, each naming its key; unknown keys are errors
(with a "did you mean"), so a typo never silently falls back to a default. This module
imports nothing of the database stack: the CLI reads settings before it needs psycopg.
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from footfall.protocol.envelope import MAX_BODY_BYTES
from footfall.protocol.signing import DEFAULT_WINDOW_S

from footfall.units import parse_duration, parse_size

from .errors import CollectorError

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("logfmt", "json")


class SettingsError(CollectorError):
    """Settings that cannot be used; the message lists every problem, each naming its key."""

    def __init__(self, where: str, problems: list[str]) -> None:
        self.where = where
        self.problems = problems
        count = f"{len(problems)} problem" + ("s" if len(problems) != 1 else "")
        super().__init__(f"{where} has {count}:\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass(frozen=True, slots=True)
class CollectorSettings:
    """Everything `serve` needs to know; see the module docstring for each key."""

    listen: str = "127.0.0.1:8700"
    database_url: str = ""
    data_dir: Path = Path("footfall-data")
    timestamp_window: float = float(DEFAULT_WINDOW_S)
    max_body: int = MAX_BODY_BYTES
    pool_size: int = 10
    database_timeout: float = 5.0
    retry_after: float = 5.0
    log_level: str = "info"
    log_format: str = "logfmt"
    # Seconds; 0 keeps raw rows forever. Rollups are always kept (collector/partitions.py).
    raw_retention: float = 0.0

    @property
    def host(self) -> str:
        """The listen address's host."""
        return split_listen(self.listen)[0]

    @property
    def port(self) -> int:
        """The listen address's port."""
        return split_listen(self.listen)[1]


def split_listen(value: str) -> tuple[str, int]:
    """`127.0.0.1:8700` -> ("127.0.0.1", 8700); `[::1]:8700` works too."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"must be host:port such as 127.0.0.1:8700 or 0.0.0.0:8700, got {value!r}")
    return host.strip("[]"), int(port)


def _listen(value: Any, _: Path) -> str:
    split_listen(_text(value, _))
    return str(value)


def _text(value: Any, _: Path) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, got {value!r}")
    return value


def _path(value: Any, base: Path) -> Path:
    if not isinstance(value, str | Path):
        raise ValueError(f"must be a string, got {value!r}")
    if not str(value):
        raise ValueError("must not be empty")
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _duration(value: Any, _: Path) -> float:
    if not isinstance(value, str | int | float):
        raise ValueError(f"must be a duration such as 30s or 5m, got {value!r}")
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(f"must be more than zero, got {value!r}")
    return seconds


def _retention(value: Any, base: Path) -> float:
    if value in ("", 0):
        return 0.0
    seconds = _duration(value, base)
    if seconds < 31 * 86400:
        raise ValueError(f"must be at least 31d (whole months of raw rows are dropped), got {value!r}")
    return seconds


def _body(value: Any, _: Path) -> int:
    if not isinstance(value, str | int):
        raise ValueError(f"must be a size such as 512KiB or 8MiB, got {value!r}")
    size = parse_size(value)
    if not 1024 <= size <= MAX_BODY_BYTES:
        raise ValueError(f"must be between 1KiB and the protocol's limit of 8MiB, got {value!r}")
    return size


def _pool(value: Any, _: Path) -> int:
    if type(value) is not int or not 1 <= value <= 1000:
        raise ValueError(f"must be a whole number from 1 to 1000, got {value!r}")
    return value


def _choice(allowed: tuple[str, ...]) -> Callable[[Any, Path], str]:
    def convert(value: Any, base: Path) -> str:
        if _text(value, base) not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}, got {value!r}" + _suggest(str(value), allowed))
        return str(value)

    return convert


# Key -> how a TOML value (or a flag's string) becomes the setting. A new setting is a field and an entry.
_CONVERTERS: Mapping[str, Callable[[Any, Path], Any]] = {
    "listen": _listen,
    "database_url": _text,
    "data_dir": _path,
    "timestamp_window": _duration,
    "max_body": _body,
    "pool_size": _pool,
    "database_timeout": _duration,
    "retry_after": _duration,
    "log_level": _choice(LOG_LEVELS),
    "log_format": _choice(LOG_FORMATS),
    "raw_retention": _retention,
}


def load_settings(path: str | Path | None = None, **overrides: Any) -> CollectorSettings:
    """Defaults, then the TOML file at `path` (if any), then `overrides` (flags; None means not given)."""
    settings = CollectorSettings()
    if path is not None:
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SettingsError(str(path), ["file not found; pass --config with the collector.toml path"]) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SettingsError(str(path), [f"cannot read the file: {exc}"]) from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(str(path), [f"not valid TOML: {exc}"]) from None
        settings = _apply(settings, data, str(path), path.parent)
    given = {k: v for k, v in overrides.items() if v is not None}
    return _apply(settings, given, "the command line", Path.cwd(), flags=True)


def _apply(
    settings: CollectorSettings, data: Mapping[str, Any], where: str, base: Path, *, flags: bool = False
) -> CollectorSettings:
    problems: list[str] = []
    values: dict[str, Any] = {}
    known = [f.name for f in fields(CollectorSettings)]
    for key, value in data.items():
        if key not in _CONVERTERS:
            problems.append(f"{key}: unknown key; allowed: {', '.join(known)}" + _suggest(key, known))
            continue
        try:
            values[key] = _CONVERTERS[key](value, base)
        except ValueError as exc:
            name = "--" + key.replace("_", "-") if flags else key
            problems.append(f"{name}: {exc}")
    if problems:
        raise SettingsError(where, problems)
    return replace(settings, **values)


def _suggest(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
