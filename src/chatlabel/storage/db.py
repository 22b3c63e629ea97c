"""One SQLite file: pragmas, migrations and a single writer, on the event loop or a thread."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from .give_way import GiveWay
from .health import (
    RETRY_FIRST,
    RETRY_MAX,
    RETRY_SECONDS,
    RETRY_SECONDS_LONG,
    IncidentTracker,
    fault_cause,
)
from .schema import check_version, migrate

T = TypeVar("T")
Job = tuple[Callable[..., Any], tuple[Any, ...]]
Queued = tuple[Callable[..., Any], tuple[Any, ...], "asyncio.Future[Any]", bool]
log = logging.getLogger("chatlabel.storage")

# Most short writes one group commits on the event loop's thread: bounds how long the loop is
# blocked (~0.3 ms a write) while still sharing a COMMIT among writes that arrive together.
INLINE_GROUP = 32

# What aiosqlite's thread waits for another process's lock in one try (the retries above do
# the rest): a try never holds the writer for more than a small part of RETRY_SECONDS.
THREAD_BUSY_MS = 250


def pragmas(conn: sqlite3.Connection) -> None:
    """Set up a connection as chatlabel runs it: WAL, synchronous=NORMAL, foreign keys."""
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA busy_timeout = 10000")
    conn.execute("PRAGMA foreign_keys = ON")
    # Checkpoints (two fsyncs each) run on the Checkpointer thread, not inside a commit: done in
    # a commit they were the whole p99 of a button press.
    conn.execute("PRAGMA wal_autocheckpoint = 0")


def inline_pragmas(conn: sqlite3.Connection) -> None:
    """The pragmas of the connection that runs short writes on the event loop's thread."""
    pragmas(conn)
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
            failing = False
            while not self.stopping.wait(self.every):
                try:
                    self.checkpoint(conn)
                except sqlite3.Error as exc:
                    # A full disk fails every round: one line when it starts, not one a second.
                    if not failing:
                        log.warning("%s: WAL checkpoints fail (%s); retrying", self.path, exc)
                    failing = True
                else:
                    if failing:
                        log.info("%s: WAL checkpoints work again", self.path)
                    failing = False
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            except sqlite3.Error as exc:  # the WAL stays and is replayed at the next open
                log.warning("%s: last WAL checkpoint failed (%s)", self.path, exc)
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

    dialect = "sqlite"

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.label = str(self.path)
        self._conn: aiosqlite.Connection | None = None
        # The short writes' connection, used only from the event loop's thread.
        self._inline: sqlite3.Connection | None = None
        self._queue: list[Queued] = []
        self._writer: asyncio.Task[None] | None = None
        self._checkpointer: _Checkpointer | None = None
        # Passing faults (lock, full disk, I/O error): retries, incidents and their listeners.
        self.incidents = IncidentTracker(self.path)
        self.give_way = GiveWay()
        # Per write met by a fault: when its retries end (loop time). Only the careful path
        # reads or writes it, so the normal path pays nothing for it.
        self._deadlines: dict[asyncio.Future[Any], float] = {}

    async def open(self) -> Database:
        """Open the file, set the pragmas and migrate the schema."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        inline: sqlite3.Connection | None = None
        try:
            conn.row_factory = sqlite3.Row
            # Before the pragmas: switching to WAL would already change a refused file.
            await conn._execute(check_version, conn._conn, self.path)
            await conn._execute(pragmas, conn._conn)
            await conn._execute(migrate, conn._conn)
            # After the migrations (they may wait the full busy timeout for another process).
            await conn._execute(_set_busy_timeout, conn._conn, THREAD_BUSY_MS)
            inline = sqlite3.connect(self.path, isolation_level=None)
            inline.row_factory = sqlite3.Row
            inline_pragmas(inline)
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
        await self.incidents.close()

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

    async def write(
        self, fn: Callable[..., T], *args: Any, short: bool = False, background: bool = False
    ) -> T:
        """Run fn(sqlite3_conn, *args) in a BEGIN IMMEDIATE transaction, one writer at a time.

        Writes that arrive while one is running are grouped: one COMMIT for the group, each
        write in its own savepoint, so a failing write rolls back alone. The caller hears back
        only after the COMMIT. `short` (a button press: a few indexed statements, well under a
        millisecond) lets a group of only such writes run on the event loop's thread; others
        (imports, batch recomputes) run on aiosqlite's thread so the loop stays responsive.

        A lock, a full disk or an I/O error is retried (RETRY_SECONDS for a short write); then
        StorageUnavailable, and nothing of the write was stored. A `background` write (nobody
        waits for it) gives way to the others (give_way.py).
        """
        if self._conn is None:
            raise RuntimeError("database is not open")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append((fn, args, future, short))
        if self._writer is None or self._writer.done():
            # The single writer task: it alone writes, which is the lock that keeps
            # transactions from interleaving.
            self._writer = asyncio.create_task(self._drain())
        return await self.give_way.run(future, background=background)

    async def _drain(self) -> None:
        incidents = self.incidents
        while self._queue:
            if incidents.troubled:
                # Storage failed lately: every group goes the careful way until a write lands.
                await self._careful([], None)
                continue
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
                    results = await conn._execute(run_group, conn._conn, jobs)
            except BaseException as exc:  # BEGIN or COMMIT failed: nothing in the group landed
                if fault_cause(exc) is not None:  # a lock, a full disk: try again for a while
                    await self._careful(batch, exc)
                    continue
                for _, _, future, _ in batch:
                    if not future.done():
                        future.set_exception(exc)
                if not isinstance(exc, Exception):  # cancelled, or Ctrl-C during an inline group
                    raise
                continue
            _deliver(batch, results)
            if inline:
                # Let the callers just answered (and everything else on the loop) run before
                # the next group: without this the loop could be held for group after group.
                await asyncio.sleep(0)

    async def _careful(self, batch: list[Queued], exc: BaseException | None) -> None:
        """Run writes while storage fails: retry with backoff until they land or time is up.

        Each write gets RETRY_SECONDS from when it first met the fault (writes that arrive
        meanwhile join in), then its caller hears StorageUnavailable. Before each try the
        connection is rolled back clean, so a try that failed half-way cannot wedge the next.
        The first write that lands closes the incident; the rest go back to the normal path.
        """
        loop = asyncio.get_running_loop()
        incidents = self.incidents
        deadlines = self._deadlines = {f: d for f, d in self._deadlines.items() if not f.done()}
        pending = list(batch)
        delay = RETRY_FIRST
        try:
            while True:
                if exc is not None:
                    cause = incidents.failed(exc)
                    now = loop.time()
                    keep = []
                    for q in pending:
                        future, short = q[2], q[3]
                        if future.done():  # its caller stopped waiting: nothing to answer
                            continue
                        until = deadlines.setdefault(
                            future, now + (RETRY_SECONDS if short else RETRY_SECONDS_LONG)
                        )
                        if now >= until or (not short and cause != "locked"):
                            future.set_exception(incidents.refuse(exc))
                        else:
                            keep.append(q)
                    pending = keep
                    if pending or self._queue:
                        soonest = min((deadlines[q[2]] for q in pending), default=now + delay)
                        await asyncio.sleep(max(0.0, min(delay, soonest - now)))
                        delay = min(delay * 2, RETRY_MAX)
                pending += self._queue  # writes that arrived meanwhile wait with the others
                self._queue = []
                pending = [q for q in pending if not q[2].done()]
                if not pending:
                    return
                inline = self._inline
                n = len(pending)
                if inline is not None and pending[0][3]:
                    n = 0
                    while n < min(len(pending), INLINE_GROUP) and pending[n][3]:
                        n += 1
                tried = pending[:n]
                jobs: list[Job] = [(fn, args) for fn, args, _, _ in tried]
                try:
                    if inline is not None and tried[0][3]:
                        # busy_timeout is 0 here: a lock fails the try at once, the loop runs on.
                        results = _careful_group(inline, jobs)
                    else:
                        conn = self.conn
                        results = await conn._execute(_careful_group, conn._conn, jobs)
                except Exception as e:
                    if fault_cause(e) is not None:
                        exc = e
                        continue
                    for q in tried:  # not the disk's fault: these writes fail as they would
                        if not q[2].done():
                            q[2].set_exception(e)
                    pending, exc = pending[n:], None
                    continue
                _deliver(tried, results)
                for q in tried:
                    deadlines.pop(q[2], None)
                incidents.recovered()
                # The rest keep their deadlines (in `deadlines`) should the fault come back.
                self._queue = pending[n:] + self._queue
                return
        except BaseException as e:  # cancelled, or Ctrl-C during an inline try
            for q in pending:
                if q[2].done():
                    continue
                if isinstance(e, asyncio.CancelledError):
                    q[2].cancel()
                else:
                    q[2].set_exception(e)
            raise

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

    # -- what several processes need (one process per SQLite file: nothing to do) ----------

    def announce(self) -> None:
        """Other processes need no wake-up: one `run` per SQLite file (storage.lock)."""

    def on_change(self, callback: Callable[[], None]) -> None:
        """No other process writes work into this file while `run` holds it."""

    def after_commit(self, fn: Callable[[], None]) -> None:
        """At once: readers of this file queue behind its one writer, so none runs before the
        COMMIT of the transaction calling this."""
        fn()

    @contextlib.asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[bool]:
        """Background work needs no lock across processes here: always granted."""
        yield True

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run fn(sqlite3_conn, *args) for reading, in one hop to the connection's thread.

        Raises StorageUnavailable for an I/O error (reads in WAL mode wait for no lock and need
        no space), counted into the incident, not retried.
        """
        conn = self.conn
        try:
            return await conn._execute(fn, conn._conn, *args)
        except sqlite3.OperationalError as exc:
            if fault_cause(exc) is None:
                raise
            raise self.incidents.refuse(exc) from exc

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


def _set_busy_timeout(conn: sqlite3.Connection, ms: int) -> None:
    conn.execute(f"PRAGMA busy_timeout = {int(ms)}")


def _deliver(batch: list[Queued], results: list[tuple[bool, Any]]) -> None:
    """Hand each caller of a committed group its result or its own write's error."""
    for (_, _, future, _), (ok, value) in zip(batch, results, strict=True):
        if future.done():  # its caller gave up waiting; the write still happened
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


def _rollback(conn: sqlite3.Connection) -> None:
    """Roll back what a failed group left open; the group's own error is the one raised."""
    if conn.in_transaction:
        # If this fails too, the careful path rolls back again before its next try.
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def _careful_group(conn: sqlite3.Connection, jobs: list[Job]) -> list[tuple[bool, Any]]:
    """run_group on a connection a failed try may have left inside a transaction."""
    _rollback(conn)
    return run_group(conn, jobs)


def run_group(conn: sqlite3.Connection, jobs: list[Job]) -> list[tuple[bool, Any]]:
    """Several writes in one transaction, each in its own savepoint; one COMMIT for all."""
    conn.execute("BEGIN IMMEDIATE")
    return _jobs(conn, jobs)


def _jobs(conn: sqlite3.Connection, jobs: list[Job]) -> list[tuple[bool, Any]]:
    """The body of run_group, once BEGIN IMMEDIATE has succeeded: savepoints, then COMMIT."""
    out: list[tuple[bool, Any]] = []
    try:
        for fn, args in jobs:
            conn.execute("SAVEPOINT job")
            try:
                result = fn(conn, *args)
            except Exception as exc:
                if fault_cause(exc) is not None:
                    # The disk or a lock, not this write; SQLite may have rolled back the whole
                    # transaction already, so the group ends here and is tried again.
                    raise
                conn.execute("ROLLBACK TO job")
                conn.execute("RELEASE job")
                out.append((False, exc))
                continue
            conn.execute("RELEASE job")
            out.append((True, result))
    except BaseException:
        # After SQLITE_FULL or an I/O error SQLite may have rolled back already; a ROLLBACK
        # then fails, and its error must not hide the one that says what happened.
        _rollback(conn)
        raise
    try:
        conn.execute("COMMIT")
    except BaseException:
        # A COMMIT that fails can leave the transaction open, and then every later BEGIN on
        # this connection would fail too.
        _rollback(conn)
        raise
    return out
