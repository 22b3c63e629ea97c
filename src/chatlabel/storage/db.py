"""One SQLite file: pragmas, migrations and a single writer, on the event loop or a thread."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from .schema import check_version, migrate

T = TypeVar("T")
Job = tuple[Callable[..., Any], tuple[Any, ...]]
Queued = tuple[Callable[..., Any], tuple[Any, ...], "asyncio.Future[Any]", bool]
log = logging.getLogger("chatlabel.storage")

# Most short writes one group commits on the event loop's thread: bounds how long the loop is
# blocked (~0.3 ms a write) while still sharing a COMMIT among writes that arrive together.
INLINE_GROUP = 32


def _pragmas(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA busy_timeout = 10000")
    conn.execute("PRAGMA foreign_keys = ON")
    # Checkpoints (two fsyncs each) run on the Checkpointer thread, not inside a commit: done in
    # a commit they were the whole p99 of a button press.
    conn.execute("PRAGMA wal_autocheckpoint = 0")


def _inline_pragmas(conn: sqlite3.Connection) -> None:
    """_pragmas for the connection that runs short writes on the event loop's thread."""
    _pragmas(conn)
    # Never wait for a lock on the event loop: if another process is writing, the group goes
    # to aiosqlite's thread instead, which waits there (busy_timeout) for it.
    conn.execute("PRAGMA busy_timeout = 0")
    # The default 2 MiB page cache thrashes on the indexes a press touches at a million items
    # (a press cost 0.55 ms instead of 0.44); 32 MiB does as well as 64. Only here: imports,
    # on the other connection, keep their flat memory.
    conn.execute("PRAGMA cache_size = -32768")


class _Checkpointer(threading.Thread):
    """Copies the WAL back into the database file every `every` seconds, off the write path.

    Once a second rather than four times: each round still slows the writer a little (page
    copies evict its caches; the thread takes the GIL between passes), and a page rewritten
    by many presses is copied once per round. At 1,000 presses/s (100,000 items) the rounds
    then cover 5 % of the time instead of 11 %, and p99 fell from 3.5 ms to 2.4 ms, as low
    as with no checkpoints at all. The WAL holds about a second of writes (~55 MiB then).
    """

    def __init__(self, path: Path, every: float = 1.0, passes: int = 8) -> None:
        super().__init__(name="chatlabel-checkpoint", daemon=True)
        self.path = path
        self.every = every
        self.passes = passes
        self.stopping = threading.Event()
        self.rounds = 0  # checkpoint rounds run, for tests and benchmarks
        self.rewinds = 0  # rounds after which the WAL was (or was free to be) rewound

    def run(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA busy_timeout = 10000")
            while not self.stopping.wait(self.every):
                try:
                    self.checkpoint(conn)
                except sqlite3.Error:
                    log.exception("WAL checkpoint failed; retrying")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        finally:
            conn.close()

    def checkpoint(self, conn: sqlite3.Connection) -> bool:
        """Copy the WAL into the database so that the writer can rewind it; True if it could.

        SQLite rewinds the WAL (writes from its start again) only when a write transaction
        begins while every frame is copied back, and a PASSIVE checkpoint that overlaps a
        COMMIT leaves the new frames behind (and skips syncing the database file). Under a
        steady stream of writes one checkpoint per round therefore never lets the WAL rewind:
        it grew by ~55 MiB/s at 1,000 answers/s, every append allocating new file pages and
        every checkpoint syncing ever more. So after the bulk pass, short passes catch up with
        what was committed meanwhile until one finishes between two commits (frames are only
        appended at COMMIT). None of this blocks the writer.
        """
        self.rounds += 1
        last = -1
        for _ in range(self.passes):
            busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if busy or frames < 0:  # another connection is checkpointing or the WAL is off
                return False
            if frames == 0 or frames < last or (frames == last and copied == frames):
                # Empty, rewound since the last pass, or nothing committed since a pass that
                # copied everything: the writer's next transaction starts the WAL over.
                self.rewinds += 1
                return True
            last = frames
        return False


class Database:
    """The single writer for one chatlabel database file."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._conn: aiosqlite.Connection | None = None
        # The short writes' connection, used only from the event loop's thread.
        self._inline: sqlite3.Connection | None = None
        self._queue: list[Queued] = []
        self._writer: asyncio.Task[None] | None = None
        self._checkpointer: _Checkpointer | None = None

    async def open(self) -> Database:
        """Open the file, set the pragmas and migrate the schema."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        inline: sqlite3.Connection | None = None
        try:
            conn.row_factory = sqlite3.Row
            # Before the pragmas: switching to WAL would already change a refused file.
            await conn._execute(check_version, conn._conn, self.path)
            await conn._execute(_pragmas, conn._conn)
            await conn._execute(migrate, conn._conn)
            inline = sqlite3.connect(self.path, isolation_level=None)
            inline.row_factory = sqlite3.Row
            _inline_pragmas(inline)
        except BaseException:
            if inline is not None:
                inline.close()
            await conn.close()
            raise
        self._conn, self._inline = conn, inline
        self._checkpointer = _Checkpointer(self.path)
        self._checkpointer.start()
        return self

    async def close(self) -> None:
        """Close the connection (an unclosed aiosqlite connection hangs interpreter exit)."""
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)
        if self._inline is not None:
            inline, self._inline = self._inline, None
            inline.close()
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

    async def write(self, fn: Callable[..., T], *args: Any, short: bool = False) -> T:
        """Run fn(sqlite3_conn, *args) in a BEGIN IMMEDIATE transaction, one writer at a time.

        Writes that arrive while one is running are grouped: one COMMIT for the group, each
        write in its own savepoint, so a failing write rolls back alone. The caller hears back
        only after the COMMIT. `short` (a button press: a few indexed statements, well under a
        millisecond) lets a group of only such writes run on the event loop's thread; others
        (imports, batch recomputes) run on aiosqlite's thread so the loop stays responsive.
        """
        if self._conn is None:
            raise RuntimeError("database is not open")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append((fn, args, future, short))
        if self._writer is None or self._writer.done():
            # The single writer task: it alone writes, which is the lock that keeps
            # transactions from interleaving.
            self._writer = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._queue:
            inline = self._inline is not None and self._queue[0][3]
            if inline:
                # A run of short writes from the head of the queue, in arrival order.
                n = 0
                while n < min(len(self._queue), INLINE_GROUP) and self._queue[n][3]:
                    n += 1
                batch, self._queue = self._queue[:n], self._queue[n:]
            else:
                batch, self._queue = self._queue, []
            jobs: list[Job] = [(fn, args) for fn, args, _, _ in batch]
            try:
                results = self._inline_group(jobs) if inline else None
                if results is None:
                    conn = self.conn
                    results = await conn._execute(_group, conn._conn, jobs)
            except BaseException as exc:  # BEGIN or COMMIT failed: nothing in the group landed
                for _, _, future, _ in batch:
                    if not future.done():
                        future.set_exception(exc)
                if not isinstance(exc, Exception):  # cancelled, or Ctrl-C during an inline group
                    raise
                continue
            for (_, _, future, _), (ok, value) in zip(batch, results, strict=True):
                if future.done():  # its caller gave up waiting; the write still happened
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)
            if inline:
                # Let the callers just answered (and everything else on the loop) run before
                # the next group: without this the loop could be held for group after group.
                await asyncio.sleep(0)

    def _inline_group(self, jobs: list[Job]) -> list[tuple[bool, Any]] | None:
        """Run a group on the event loop's thread; None if another process holds the lock.

        A round trip to aiosqlite's thread costs more than a short write itself: each handoff
        wakes a thread, and that thread and the event loop then take turns on the GIL at every
        statement, so under load a write waited for the loop's other work again and again.
        At 1,000 presses/s (100,000 items, same checkpoints): p99 10-21 ms through the
        thread, 5-8 ms inline.
        """
        conn = self._inline
        assert conn is not None
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            # Primary code: BUSY_RECOVERY, BUSY_TIMEOUT and the like go the same way.
            if getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_BUSY:
                return None
            raise
        return _jobs(conn, jobs)

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
    conn.execute("BEGIN IMMEDIATE")
    return _jobs(conn, jobs)


def _jobs(conn: sqlite3.Connection, jobs: list[Job]) -> list[tuple[bool, Any]]:
    """The body of _group, once BEGIN IMMEDIATE has succeeded: savepoints, then COMMIT."""
    out: list[tuple[bool, Any]] = []
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
    try:
        conn.execute("COMMIT")
    except BaseException:
        # A COMMIT that fails can leave the transaction open, and then every later BEGIN on
        # this connection would fail too.
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return out
