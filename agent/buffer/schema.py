"""The buffer's tables, how its connection is opened (guarantee 1), and the upgrade from version 1.

The layout is described in the package docstring (agent/buffer/__init__.py). Opening sets WAL
with `synchronous=FULL` and creates what is missing in one transaction: a new file gets every
table, and a version-1 file (written before held readings existed) gets the `pending` table and
the meta rows it lacked (`wall_high_ms`, `restamped`, `suspect`), keeping its records and seqs.
A file written by a newer agent is refused rather than guessed at.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from footfall.agent.buffer.errors import BufferError
from footfall.agent.buffer.ledger import Ledger

SCHEMA_VERSION = 2
# Entries of the `state` table that belong to the agent itself, beside counter state.
QUARANTINE_KEY = "agent.quarantine"  # the damaged files moved aside (recovery.py)
CLOCK_KEY = "agent.clock"  # the clock keeper's state across restarts (agent/clock.py)
SALVAGED_KEY = "agent.salvaged"  # the files `salvage` already put back, by SHA-256 (salvage.py)
_TABLES = """
CREATE TABLE IF NOT EXISTS records (seq INTEGER PRIMARY KEY, taken_ms INTEGER NOT NULL, kind TEXT NOT NULL,
                                    body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS rejected (seq INTEGER PRIMARY KEY, taken_ms INTEGER NOT NULL, rejected_ms INTEGER NOT NULL,
                                     reason TEXT NOT NULL, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS seen (scope TEXT NOT NULL, key TEXT NOT NULL, expires_ms INTEGER NOT NULL,
                                 PRIMARY KEY (scope, key)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS seen_expiry ON seen (expires_ms);
CREATE TABLE IF NOT EXISTS pending (id INTEGER PRIMARY KEY, boot TEXT NOT NULL, offset_ms INTEGER NOT NULL,
                                    taken_ms INTEGER NOT NULL, body BLOB NOT NULL);
"""


def connect(path: Path) -> tuple[sqlite3.Connection, Ledger]:
    """The writing connection to the buffer at `path` (created or upgraded as needed), and its ledger."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=True)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=5000")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise BufferError(
                f"{path} has schema version {version}, newer than this agent's ({SCHEMA_VERSION}); upgrade footfall"
            )
        conn.execute("BEGIN IMMEDIATE")
        for statement in _TABLES.split(";"):
            if statement.strip():
                conn.execute(statement)
        for key, value in Ledger().as_meta().items():
            conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", (key, value))
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
        ledger = read_ledger(conn)
    except BaseException:
        conn.close()
        raise
    return conn, ledger


def read_ledger(conn: sqlite3.Connection) -> Ledger:
    """The ledger as committed in the `meta` table."""
    return Ledger.from_meta(dict(conn.execute("SELECT key, value FROM meta").fetchall()))


def write_ledger(conn: sqlite3.Connection, ledger: Ledger, since: Ledger | None = None) -> None:
    """Store the numbers of `ledger` that changed since `since` (all of them when None), in the open transaction."""
    changed = ledger.as_meta() if since is None else ledger.changed_since(since)
    for key, value in changed.items():
        conn.execute("UPDATE meta SET value = ? WHERE key = ?", (value, key))

