"""One SQLite file behind one aiosqlite connection: pragmas, migrations and a single writer."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from .schema import migrate

T = TypeVar("T")


def _pragmas(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA busy_timeout = 10000")
    conn.execute("PRAGMA foreign_keys = ON")


class Database:
    """The single writer for one chatlabel database file."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._conn: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    async def open(self) -> Database:
        """Open the file, set the pragmas and migrate the schema."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            await conn._execute(_pragmas, conn._conn)
            await conn._execute(migrate, conn._conn)
        except BaseException:
            await conn.close()
            raise
        self._conn = conn
        return self

    async def close(self) -> None:
        """Close the connection (an unclosed aiosqlite connection hangs interpreter exit)."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()

    async def __aenter__(self) -> Database:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def conn(self) -> aiosqlite.Connection:
        """The open connection."""
        if self._conn is None:
            raise RuntimeError("database is not open")
        return self._conn

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run fn(sqlite3_conn, *args) as one BEGIN IMMEDIATE transaction, one at a time."""
        conn = self.conn
        async with self._lock:
            # One hop to the connection's thread for the whole transaction: a use case costs
            # one thread switch, not one per statement (the hop dominates small transactions).
            return await conn._execute(_transaction, conn._conn, fn, args)

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run fn(sqlite3_conn, *args) for reading, in one hop to the connection's thread."""
        conn = self.conn
        return await conn._execute(fn, conn._conn, *args)

    async def stream(
        self, sql: str, params: tuple[Any, ...] = (), batch: int = 2000
    ) -> AsyncIterator[sqlite3.Row]:
        """Yield the rows of a query in batches from a separate read-only connection."""
        # as_uri() escapes spaces, '?' and '#' that would otherwise end the file name.
        async with aiosqlite.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True) as ro:
            ro.row_factory = sqlite3.Row
            async with ro.execute(sql, params) as cur:
                while rows := await cur.fetchmany(batch):
                    for row in rows:
                        yield row


def _transaction(conn: sqlite3.Connection, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn, *args)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result
