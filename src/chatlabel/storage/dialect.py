"""Which SQL dialect a transaction function is talking to, and the clauses that differ.

SQLite runs one writer at a time, so a row read in a transaction cannot change under it.
PostgreSQL runs many transactions at once (several workers, several processes), so the rows a
use case reads and then changes are locked as they are read: `FOR UPDATE` on the row, and
`FOR UPDATE SKIP LOCKED` where any free row will do (the next item from the queue), so two
people never wait on each other for the same queue head. On SQLite these clauses are empty.
"""

from __future__ import annotations

from typing import Any


def is_pg(conn: Any) -> bool:
    """True for a PostgreSQL connection (storage.pg_conn), False for sqlite3's."""
    return getattr(conn, "dialect", "sqlite") == "postgresql"


def for_update(conn: Any, of: str = "", *, skip_locked: bool = False) -> str:
    """` FOR UPDATE [OF ...] [SKIP LOCKED]` on PostgreSQL; nothing on SQLite."""
    if not is_pg(conn):
        return ""
    return " FOR UPDATE" + (f" OF {of}" if of else "") + (" SKIP LOCKED" if skip_locked else "")
