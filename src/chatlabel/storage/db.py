"""One SQLite file behind one aiosqlite connection: pragmas, migrations and a single writer."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from .schema import migrate

T = TypeVar("T")
Job = tuple[Callable[..., Any], tuple[Any, ...]]
log = logging.getLogger("chatlabel.storage")


def _pragmas(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA busy_timeout = 10000")
    conn.execute("PRAGMA foreign_keys = ON")
    # Checkpoints (two fsyncs each) run on the Checkpointer thread, not inside a commit: done in
    # a commit they were the whole p99 of a button press.
    conn.execute("PRAGMA wal_autocheckpoint = 0")


class _Checkpointer(threading.Thread):
    """Copies the WAL back into the database file every `every` seconds, off the write path."""

    def __init__(self, path: Path, every: float = 0.25) -> None:
        super().__init__(name="chatlabel-checkpoint", daemon=True)
        self.path = path
        self.every = every
        self.stopping = threading.Event()

    def run(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA busy_timeout = 10000")
            while not self.stopping.wait(self.every):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error:
                    log.exception("WAL checkpoint failed; retrying")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        finally:
            conn.close()


class Database:
    """The single writer for one chatlabel database file."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._conn: aiosqlite.Connection | None = None
        self._queue: list[tuple[Callable[..., Any], tuple[Any, ...], asyncio.Future[Any]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._checkpointer: _Checkpointer | None = None

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
        self._checkpointer = _Checkpointer(self.path)
        self._checkpointer.start()
        return self

    async def close(self) -> None:
        """Close the connection (an unclosed aiosqlite connection hangs interpreter exit)."""
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()
        if self._checkpointer is not None:
            self._checkpointer.stopping.set()
            await asyncio.to_thread(self._checkpointer.join)
            self._checkpointer = None

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
        """Run fn(sqlite3_conn, *args) in a BEGIN IMMEDIATE transaction, one writer at a time.

        Writes that arrive while one is running are grouped: one hop to the connection's thread
        and one COMMIT for the group, each write in its own savepoint, so a failing write rolls
        back alone. The caller hears back only after the COMMIT.
        """
        if self._conn is None:
            raise RuntimeError("database is not open")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append((fn, args, future))
        if self._writer is None or self._writer.done():
            # The single writer task: it alone touches the connection for writes, which is the
            # lock that keeps transactions from interleaving.
            self._writer = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        conn = self.conn
        while self._queue:
            batch, self._queue = self._queue, []
            jobs: list[Job] = [(fn, args) for fn, args, _ in batch]
            try:
                results = await conn._execute(_group, conn._conn, jobs)
            except BaseException as exc:  # the COMMIT itself failed: nothing in the group landed
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            for (_, _, future), (ok, value) in zip(batch, results, strict=True):
                if future.done():  # its caller gave up waiting; the write still happened
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run fn(sqlite3_conn, *args) for reading, in one hop to the connection's thread."""
        conn = self.conn
        return await conn._execute(fn, conn._conn, *args)

    async def stream(
        self, sql: str, params: tuple[Any, ...] = (), batch: int = 2000
    ) -> AsyncIterator[sqlite3.Row]:
        """Yield the rows of a query from a separate read-only connection."""
        async for rows in self.stream_batches(sql, params, batch, named=True):
            for row in rows:
                yield row

    async def stream_batches(
        self,
        sql: str,
        params: tuple[Any, ...] | dict[str, Any] = (),
        batch: int = 2000,
        *,
        named: bool = False,
    ) -> AsyncIterator[list[Any]]:
        """Yield a query's rows in lists of `batch` (plain tuples unless `named`).

        A separate read-only connection, so a long export never holds up the writer.
        """
        # as_uri() escapes spaces, '?' and '#' that would otherwise end the file name.
        async with aiosqlite.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True) as ro:
            if named:
                ro.row_factory = sqlite3.Row
            async with ro.execute(sql, params) as cur:
                while rows := await cur.fetchmany(batch):
                    yield list(rows)


def _group(conn: sqlite3.Connection, jobs: list[Job]) -> list[tuple[bool, Any]]:
    """Several writes in one transaction, each in its own savepoint; one COMMIT for all."""
    out: list[tuple[bool, Any]] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        for fn, args in jobs:
            conn.execute("SAVEPOINT job")
            try:
                result = fn(conn, *args)
            except Exception as exc:
                conn.execute("ROLLBACK TO job")
                conn.execute("RELEASE job")
                out.append((False, exc))
                continue
            conn.execute("RELEASE job")
            out.append((True, result))
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return out
