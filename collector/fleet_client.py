"""The HTTP client behind `footfall fleet ...`: where the collector is, which key to use, and what failures mean.

Imports aiohttp only (never the database stack), so it runs on any admin laptop.

Where the collector URL and the API key come from, first found wins: the `--collector` and
`--key` flags; the environment (`FOOTFALL_COLLECTOR`, `FOOTFALL_KEY`; the older
`FOOTFALL_COLLECTOR_URL` and `FOOTFALL_API_KEY` too); the file named by `--config-file` or
`$FOOTFALL_FLEET_CONFIG`, by default `~/.config/footfall/fleet.toml`:

```toml
collector = "https://collector.example.com"
key = "ffk_…"                     # or: key_file = "/path/to/a/file/holding/the/key"
```

Exit codes (the same for every `footfall fleet` command, so scripts can rely on them):
0 done; 1 the collector refused the request (the message says why); 2 bad usage (a flag,
a missing URL or key, an unreadable file); 3 the collector cannot be reached or failed (5xx);
4 the key is unknown, revoked or not a fleet_admin key; 5 no such agent, site, token or
configuration; 6 (`config push --wait`) an agent refused the configuration; 7 (`--wait`) timed
out before every agent reported.
"""

from __future__ import annotations

import json
import os
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_AUTH = 4
EXIT_NOT_FOUND = 5
EXIT_REJECTED = 6
EXIT_TIMEOUT = 7
EXIT_CODES = {
    EXIT_OK: "done",
    EXIT_REFUSED: "the collector refused the request",
    EXIT_USAGE: "bad usage: a flag, a missing URL or key, an unreadable file",
    EXIT_UNREACHABLE: "the collector cannot be reached, or failed (5xx)",
    EXIT_AUTH: "the key is unknown, revoked or not a fleet_admin key",
    EXIT_NOT_FOUND: "no such agent, site, token or configuration",
    EXIT_REJECTED: "config push --wait: an agent refused the configuration",
    EXIT_TIMEOUT: "config push --wait: timed out before every agent reported",
}
COLLECTOR_ENV = ["FOOTFALL_COLLECTOR", "FOOTFALL_COLLECTOR_URL"]
KEY_ENV = ["FOOTFALL_KEY", "FOOTFALL_API_KEY"]
CONFIG_ENV = "FOOTFALL_FLEET_CONFIG"
TIMEOUT_S = 30.0


class FleetError(Exception):
    """A fleet command cannot do what was asked; `exit_code` is one of the EXIT_* codes."""

    def __init__(self, message: str, exit_code: int = EXIT_REFUSED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True, slots=True)
class Target:
    """Which collector to talk to, with which key."""

    url: str
    key: str


def default_config_file() -> Path:
    """`$XDG_CONFIG_HOME/footfall/fleet.toml` (or under ~/.config)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "footfall" / "fleet.toml"


def resolve_target(collector: str | None, key: str | None, config_file: Path | None) -> Target:
    """Flags and environment first (typer has read both), then the config file; FleetError(2) if still missing."""
    path = config_file or default_config_file()
    settings: dict[str, Any] = {}
    if (not collector or not key) and (config_file is not None or path.exists()):
        settings = _read_config(path)
    url = collector or settings.get("collector") or ""
    secret = key or settings.get("key") or ""
    if not secret and settings.get("key_file"):
        key_file = Path(str(settings["key_file"])).expanduser()
        try:
            secret = key_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise FleetError(f"{path}: key_file {key_file}: {exc.strerror or exc}", EXIT_USAGE) from None
    if not url:
        raise FleetError(
            f"which collector? pass --collector URL, set FOOTFALL_COLLECTOR, or put collector = \"…\" in {path}",
            EXIT_USAGE,
        )
    if not secret:
        raise FleetError(
            "a fleet_admin API key is needed: pass --key ffk_…, set FOOTFALL_KEY (or FOOTFALL_API_KEY), "
            f"or put key = \"…\" in {path}",
            EXIT_USAGE,
        )
    return Target(url.rstrip("/"), secret)


def _read_config(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FleetError(f"no fleet config file at {path}", EXIT_USAGE) from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise FleetError(f"cannot read {path}: {exc}", EXIT_USAGE) from None
    unknown = set(data) - {"collector", "key", "key_file"}
    if unknown:
        raise FleetError(f"{path}: unknown keys {sorted(unknown)}; allowed: collector, key, key_file", EXIT_USAGE)
    if "key" in data and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise FleetError(f"{path} holds an API key and other users can read it: chmod 600 {path}", EXIT_USAGE)
    return data


class FleetClient:
    """JSON over HTTP to the collector's admin API; failures become FleetError with the right exit code."""

    def __init__(self, target: Target, *, timeout: float = TIMEOUT_S) -> None:
        self.target = target
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> FleetClient:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            headers={"Authorization": f"Bearer {self.target.key}"},
        )
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()

    async def get(self, path: str, params: dict[str, str] | None = None) -> Any:
        """GET a JSON document."""
        return await self.request("GET", path, params=params)

    async def post(self, path: str, payload: dict[str, Any] | None = None) -> Any:
        """POST a JSON object; the JSON answer."""
        return await self.request("POST", path, payload=payload if payload is not None else {})

    async def request(
        self, method: str, path: str, *, params: dict[str, str] | None = None, payload: Any = None
    ) -> Any:
        """One request; the parsed JSON answer of a 2xx, FleetError otherwise."""
        assert self._session is not None, "use FleetClient as an async context manager"
        url = self.target.url + path
        try:
            async with self._session.request(method, url, params=params, json=payload) as response:
                text = await response.text()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise FleetError(
                f"cannot reach the collector at {self.target.url}: {exc or type(exc).__name__}", EXIT_UNREACHABLE
            ) from None
        try:
            body = json.loads(text) if text else None
        except ValueError:
            body = None
        if 200 <= status < 300:
            return body
        message = body.get("message") if isinstance(body, dict) else text[:200]
        code = body.get("error") if isinstance(body, dict) else ""
        detail = f"{method} {path} answered {status}" + (f" {code}" if code else "") + f": {message}"
        if status in (401, 403):
            raise FleetError(detail, EXIT_AUTH)
        if status == 404:
            raise FleetError(detail, EXIT_NOT_FOUND)
        if status >= 500:
            raise FleetError(detail, EXIT_UNREACHABLE)
        raise FleetError(detail, EXIT_REFUSED)
