"""PostgreSQL storage: the same write/read interface as db.Database, for several processes.

Each use case is still one transaction function `fn(conn, *args)`, run on a PgConnection (the
sqlite3 calling style over psycopg 3) by a small pool of worker threads, one connection each.
There is no single writer and no group commit here: PostgreSQL runs transactions side by
side, and the functions lock the rows they read and then change (storage.dialect). What stays
the same for the caller:

- `write(fn, *args, short=...)` runs fn in one transaction and returns its result only after
  COMMIT; an exception from fn rolls back everything it wrote (as its savepoint does on SQLite).
- Two transactions that collide (a serialization failure, a deadlock) are run again, quietly.
- A server that cannot be reached, a full disk, a lock timeout: retried with backoff for 3 s (a
  press) or 10 s (a long write), then one StorageUnavailable; incidents open and clear as on
  SQLite and reach the same subscribers (storage.health).

Across processes: `announce()` sends NOTIFY so other processes' push loops wake at once
(LISTEN runs on a connection of its own), and `exclusive(name)` holds an advisory lock so
background work (Dawid-Skene recomputes, reminders, retraining) runs in one process at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
import threading
import time
import zlib
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import psycopg
import psycopg.errors

from .give_way import GiveWay
from .health import (
    RETRY_FIRST,
    RETRY_MAX,
    RETRY_SECONDS,
    RETRY_SECONDS_LONG,
    IncidentTracker,
    fault_cause,
)
from .pg_conn import PgConnection, row_factory
from .pg_schema import migrate

T = TypeVar("T")
log = logging.getLogger("chatlabel.storage")

# A collision (serialization failure, deadlock) is run again at once, this many times at most.
COLLISION_TRIES = 20
# How long a statement may wait for a row lock before it is a "locked" fault (retried).
LOCK_TIMEOUT_MS = 2000
# How long connecting may take before the server counts as unreachable (one try).
CONNECT_TIMEOUT = 3
# Opening keeps trying a server it cannot reach (a database host restarting, a network not up
# yet when the bot starts) for this long, backing off to OPEN_RETRY_MAX between tries, then
# gives up with one clear error (StorageUnavailable) instead of a crash to be restarted.
OPEN_RETRY_SECONDS = 60.0
OPEN_RETRY_FIRST, OPEN_RETRY_MAX = 0.25, 5.0
# A server that answers but refuses chatlabel (no such database or role, a wrong password,
# pg_hba.conf) will not change its mind by itself: no retrying then.
_REFUSED_FOR_GOOD = (
    "does not exist",
    "authentication failed",
    "no password supplied",
    "pg_hba.conf",
    "permission denied",
)
CHANNEL = "chatlabel_work"  # the NOTIFY channel that wakes other processes' push loops
_COLLISIONS = (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected)


def lock_key(name: str) -> int:
    """A stable 64-bit advisory-lock key for a name ("dawid-skene", "reminders", ...)."""
    return (0x636C << 32) | zlib.crc32(name.encode())


class _CommitUnknown(Exception):
    """The connection broke during COMMIT: the transaction may or may not have landed."""


class PgDatabase:
    """A PostgreSQL database shared by any number of chatlabel processes."""

    dialect = "postgresql"
    path = None  # no local file: no WAL, no free-space watch, no run lock

    def __init__(
        self,
        url: str,
        *,
        password: str | None = None,
        pool_size: int = 4,
        open_retry: float = OPEN_RETRY_SECONDS,
    ) -> None:
        self.url = url
        self.open_retry = open_retry
        self.label = _redact(url)
        self._kwargs: dict[str, Any] = {
            "connect_timeout": CONNECT_TIMEOUT,
            "application_name": "chatlabel",
            "options": f"-c lock_timeout={LOCK_TIMEOUT_MS}",
        }
        if password:
            self._kwargs["password"] = password
        self.pool_size = pool_size
        self.incidents = IncidentTracker(self.label)
        self.give_way = GiveWay()
        self._pool: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._conns: list[PgConnection] = []
        self._conns_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        # NOTIFY: this process's token (its own notifications are ignored), the listeners,
        # and the coalescing of announcements (at most one NOTIFY in flight at a time).
        self._token = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._on_change: list[Callable[[], None]] = []
        self._listener: threading.Thread | None = None
        self._stopping = threading.Event()
        self._announce_wanted = False
        self._announcing: asyncio.Task[None] | None = None

    # -- connections -----------------------------------------------------------------------

    def connect(self) -> PgConnection:
        """A new connection to the database (the caller closes it)."""
        return PgConnection.connect(self.url, **self._kwargs)

    def connect_args(self) -> tuple[str, dict[str, Any]]:
        """(url, keyword arguments) of PgConnection.connect: for another process to connect
        with (a model's worker reads its training data itself)."""
        return self.url, dict(self._kwargs)

    def _conn(self) -> PgConnection:
        """This worker thread's connection, opened (again) when missing or broken."""
        conn: PgConnection | None = getattr(self._local, "conn", None)
        if conn is not None and conn.closed:
            with contextlib.suppress(Exception):
                conn.close()
            conn = None
        if conn is None:
            conn = self.connect()
            self._local.conn = conn
            with self._conns_lock:
                self._conns = [c for c in self._conns if not c.closed] + [conn]
        return conn

    async def open(self) -> PgDatabase:
        """Connect, check the schema version and migrate; start listening for other processes."""
        self._loop = asyncio.get_running_loop()
        self._pool = ThreadPoolExecutor(self.pool_size, thread_name_prefix="chatlabel-pg")
        try:
            await self._connect_and_migrate()
        except BaseException:
            await self.close()
            raise
        self._listener = threading.Thread(target=self._listen, name="chatlabel-listen", daemon=True)
        self._listener.start()
        return self

    async def _connect_and_migrate(self) -> None:
        """Connect and migrate; an unreachable server is tried again with backoff for
        `open_retry` seconds (one WARNING, then one INFO when it answers), then
        StorageUnavailable. A server that refuses chatlabel for good: UnusableDatabase at once."""
        from .schema import UnusableDatabase

        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.open_retry
        delay = OPEN_RETRY_FIRST
        while True:
            try:
                await self._in_thread(self._setup)
            except psycopg.Error as exc:
                if fault_cause(exc) is None:
                    raise
                detail = " ".join(str(exc).split())
                if any(words in detail for words in _REFUSED_FOR_GOOD):
                    raise UnusableDatabase(
                        f"database {self.label} refused the connection: {detail}"
                    ) from None
                now = loop.time()
                if now >= deadline:
                    raise self.incidents.refuse(exc) from exc
                if not self.incidents.troubled:
                    log.warning(
                        "database %s cannot be reached (%s): trying again for up to %.0f s",
                        self.label,
                        detail,
                        deadline - now,
                    )
                self.incidents.failed(exc)
                await asyncio.sleep(min(delay, max(0.0, deadline - now)))
                delay = min(delay * 2, OPEN_RETRY_MAX)
                continue
            if self.incidents.troubled:
                log.info("database %s answers again", self.label)
                self.incidents.recovered()
            return

    def _setup(self) -> None:
        migrate(self._conn(), self.label)  # checks the version first, under its lock

    async def close(self) -> None:
        """Close every connection and stop the listener."""
        self._stopping.set()
        if self._announcing is not None:
            await asyncio.gather(self._announcing, return_exceptions=True)
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await asyncio.to_thread(pool.shutdown, True)
        with self._conns_lock:
            conns, self._conns = self._conns, []
        for c in conns:
            with contextlib.suppress(Exception):
                c.close()
        if self._listener is not None:
            await asyncio.to_thread(self._listener.join, 5)
            self._listener = None
        await self.incidents.close()

    async def __aenter__(self) -> PgDatabase:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        if self._pool is None:
            raise RuntimeError("database is not open")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, fn, *args)

    # -- transactions ----------------------------------------------------------------------

    def _transaction(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        """fn in one transaction on this thread's connection; collisions are run again.

        What fn hands to `after_commit` runs once its COMMIT is answered (a run that rolls
        back, or is run again, drops its own)."""
        conn = self._conn()
        tries = 0
        while True:
            tries += 1
            after: list[Callable[[], None]] = []
            self._local.after = after
            try:
                conn.begin()
                result = fn(conn, *args)
                try:
                    conn.commit()  # with the writes still in the pipeline: their errors land here
                except psycopg.OperationalError as exc:
                    if conn.closed:
                        # The answer to COMMIT never came: it may have landed. Not tried again,
                        # so nothing is done twice; the caller hears it is unavailable.
                        raise _CommitUnknown(str(exc)) from exc
                    raise
            except _COLLISIONS:
                _rollback(conn)
                if tries >= COLLISION_TRIES:
                    raise
                time.sleep(random.uniform(0, 0.002 * tries))  # let the other one finish
                continue
            except _CommitUnknown:
                raise
            except BaseException:
                _rollback(conn)
                raise
            finally:
                self._local.after = None
            for call in after:
                call()
            return result

    def after_commit(self, fn: Callable[[], None]) -> None:
        """After this thread's transaction commits: another connection reading sooner (this
        process's push loop, or another process woken by NOTIFY) would not see its change."""
        pending: list[Callable[[], None]] | None = getattr(self._local, "after", None)
        if pending is None:
            fn()
        else:
            pending.append(fn)

    def _read(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        conn = self._conn()
        try:
            return fn(conn, *args)
        finally:
            if conn.in_transaction and not conn.closed:
                _rollback(conn)

    async def write(
        self, fn: Callable[..., T], *args: Any, short: bool = False, background: bool = False
    ) -> T:
        """Run fn(conn, *args) in one transaction; its result once committed.

        A fault that may pass (server unreachable, disk full, a lock held too long) is retried
        with backoff for RETRY_SECONDS (a `short` write: a button press) or RETRY_SECONDS_LONG;
        then StorageUnavailable, and nothing of the write was stored. A `background` write
        (nobody waits for it) gives way to the others (give_way.py).
        """
        return await self.give_way.run(
            self._run(self._transaction, fn, args, short), background=background
        )

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run fn(conn, *args) for reading (each statement sees the latest commits)."""
        return await self._run(self._read, fn, args, True)

    async def _run(
        self, how: Callable[..., T], fn: Callable[..., Any], args: tuple[Any, ...], short: bool
    ) -> T:
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        delay = RETRY_FIRST
        incidents = self.incidents
        while True:
            try:
                result = await self._in_thread(how, fn, args)
            except _CommitUnknown as exc:
                incidents.failed(exc.__cause__ or exc)
                raise incidents.refuse(exc.__cause__ or exc) from exc
            except Exception as exc:
                cause = fault_cause(exc)
                if cause is None:
                    raise
                incidents.failed(exc)
                now = loop.time()
                if deadline is None:
                    deadline = now + (RETRY_SECONDS if short else RETRY_SECONDS_LONG)
                if now >= deadline or cause in ("disk_full", "io_error") and not short:
                    raise incidents.refuse(exc) from exc
                await asyncio.sleep(min(delay, max(0.0, deadline - now)))
                delay = min(delay * 2, RETRY_MAX)
                continue
            if incidents.troubled:
                incidents.recovered()
            return result

    async def stream_batches(
        self,
        sql: str,
        params: tuple[Any, ...] | dict[str, Any] = (),
        batch: int = 2000,
        *,
        named: bool = False,
    ) -> AsyncIterator[list[Any]]:
        """Yield a query's rows in lists of `batch`, from one snapshot on a connection of its own.

        A server-side cursor: a million rows never sit in memory at once.
        """
        from .pg_conn import translate

        conn = await asyncio.to_thread(
            psycopg.connect, self.url, row_factory=row_factory, **self._kwargs
        )
        try:
            conn.read_only = True
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            cur = conn.cursor(name="chatlabel_export")
            cur.itersize = batch
            await asyncio.to_thread(cur.execute, translate(sql), params)
            while True:
                rows = await asyncio.to_thread(cur.fetchmany, batch)
                if not rows:
                    break
                yield rows if named else [tuple(r) for r in rows]
        finally:
            await asyncio.to_thread(conn.close)

    async def stream(
        self, sql: str, params: tuple[Any, ...] = (), batch: int = 2000
    ) -> AsyncIterator[Any]:
        """Yield the rows of a query from a separate connection."""
        async for rows in self.stream_batches(sql, params, batch, named=True):
            for row in rows:
                yield row

    # -- several processes -----------------------------------------------------------------

    def on_change(self, callback: Callable[[], None]) -> None:
        """Call `callback` (on the event loop) when another process announces new work."""
        self._on_change.append(callback)

    def announce(self) -> None:
        """Tell other processes that work may have appeared (coalesced; safe from any thread)."""
        loop = self._loop
        if loop is None or self._stopping.is_set():
            return
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if here is loop:
            self._schedule_announce()
        else:
            loop.call_soon_threadsafe(self._schedule_announce)

    def _schedule_announce(self) -> None:
        self._announce_wanted = True
        if self._announcing is None or self._announcing.done():
            self._announcing = asyncio.ensure_future(self._announce_loop())

    async def _announce_loop(self) -> None:
        # One NOTIFY for every burst of announcements: a press that frees a slot, an import.
        while self._announce_wanted and not self._stopping.is_set():
            self._announce_wanted = False
            try:
                await self._in_thread(self._notify)
            except Exception as exc:  # a lost NOTIFY only delays a push to the next round
                log.debug("NOTIFY failed: %s", exc)
                return
            await asyncio.sleep(0.02)

    def _notify(self) -> None:
        self._conn().execute("SELECT pg_notify(?, ?)", (CHANNEL, self._token))

    def _listen(self) -> None:
        """LISTEN on a connection of its own; wake this process's waiters on others' NOTIFYs."""
        backoff = 0.5
        failing = False
        while not self._stopping.is_set():
            try:
                conn = psycopg.connect(self.url, autocommit=True, **self._kwargs)
            except psycopg.Error as exc:
                if not failing:
                    log.warning("%s: cannot listen for other processes (%s)", self.label, exc)
                failing = True
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, 10)
                continue
            if failing:
                log.info("%s: listening for other processes again", self.label)
            failing, backoff = False, 0.5
            try:
                conn.execute(f"LISTEN {CHANNEL}")
                # Work may have appeared while we were not listening.
                self._wake()
                while not self._stopping.is_set():
                    if any(n.payload != self._token for n in conn.notifies(timeout=0.5)):
                        self._wake()
            except psycopg.Error as exc:
                if not self._stopping.is_set():
                    log.warning("%s: lost the LISTEN connection (%s)", self.label, exc)
                    failing = True
            finally:
                with contextlib.suppress(Exception):
                    conn.close()

    def _wake(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        for cb in self._on_change:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(cb)

    @contextlib.asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[bool]:
        """Hold the advisory lock `name` while the block runs; yields False if another has it.

        A session lock on a connection of its own: if this process dies, the server ends the
        session and the lock goes with it, so another process takes the work over.
        """
        try:
            conn = await asyncio.to_thread(self.connect)
        except psycopg.Error as exc:
            if fault_cause(exc) is None:
                raise
            yield False
            return
        try:
            got = await asyncio.to_thread(
                lambda: conn.execute("SELECT pg_try_advisory_lock(?)", (lock_key(name),)).fetchone()
            )
            yield bool(got and got[0])
        finally:
            await asyncio.to_thread(conn.close)  # ends the session: the lock is released


def _rollback(conn: PgConnection) -> None:
    conn.rollback()


def _redact(url: str) -> str:
    """The URL without a password (one should never be in it, but never log one)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    user = f"{parts.username}@" if parts.username else ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{user}{host}{port}"))
