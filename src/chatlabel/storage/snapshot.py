"""The database read from another process (a model's worker), in one read-only snapshot."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .store import Store

# How another process reaches a store's database; picklable, so it can cross to a worker:
# ("sqlite", file) or ("postgresql", url, PgConnection.connect's keyword arguments).
Where = tuple[Any, ...]


def where(store: Store) -> Where:
    """How a worker process reaches `store`'s database."""
    if store.dialect == "postgresql":
        return ("postgresql", *store.connect_args())  # type: ignore[attr-defined]
    assert store.path is not None
    return ("sqlite", str(store.path))


@contextmanager
def read_only(place: Where) -> Iterator[Any]:
    """A connection of its own whose reads all see one snapshot; closed afterwards.

    SQLite: the file opened read-only, in one WAL read transaction. PostgreSQL: one
    REPEATABLE READ READ ONLY transaction (the same guarantee)."""
    conn: Any
    if place[0] == "postgresql":
        from .pg_conn import PgConnection  # psycopg only where PostgreSQL is used

        conn = PgConnection.connect(place[1], **place[2])
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    else:
        conn = sqlite3.connect(f"{Path(place[1]).resolve().as_uri()}?mode=ro", uri=True)
        conn.execute("BEGIN")
    try:
        yield conn
    finally:
        conn.close()
