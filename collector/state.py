"""What every request handler reaches through `request.app[STATE]`: one object per application, no globals."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from .cache import AnswerCache
from .settings import CollectorSettings
from .store import Store

if TYPE_CHECKING:
    from .ingest import Ingest


@dataclass(slots=True)
class CollectorState:
    """The application's shared parts, built at startup and closed at cleanup (see app.py)."""

    settings: CollectorSettings
    pool: AsyncConnectionPool[Any]
    store: Store
    ingest: Ingest
    cache: AnswerCache = field(default_factory=AnswerCache)


STATE = web.AppKey("footfall_collector", CollectorState)
