"""Storage faults: which SQLite errors pass, the incidents they open, and the disk beside the file.

A locked database, a full disk or an I/O error usually clears by itself (a shell closes its
transaction, someone frees space), so the writer retries such a write for a few seconds and
then gives up on it with one StorageUnavailable. An incident is the stretch of time in which
writes are given up on: it opens with the first refusal and closes with the next write that
lands. Subscribers hear of it once when it starts and once when it clears.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import sqlite3
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

log = logging.getLogger("chatlabel.storage")

Cause = Literal["locked", "disk_full", "io_error", "unreachable"]

# The same on SQLite and PostgreSQL. A write that fails for a passing cause (a lock, a full
# disk, an I/O error, an unreachable server) is tried again for this long after it first met
# the fault; then its caller hears StorageUnavailable. A press must be answered within 5 s in
# all, round trips included.
RETRY_SECONDS = 3.0
# Long writes (imports, batch recomputes, coordinator commands) wait longer for a lock, as the
# old 10 s busy timeout let them. On a full disk or an I/O error they are given up on at once:
# another try would redo all their work, and a full disk seldom clears within seconds.
RETRY_SECONDS_LONG = 10.0
# Sleep between tries: 10 ms, doubling to 250 ms (SQLite's own busy handler sleeps up to 100).
RETRY_FIRST, RETRY_MAX = 0.01, 0.25

# Primary result codes (the low byte of the extended code Python reports) of errors that a
# retry can outlive. Everything else (constraints, a bad schema, misuse) is a bug or bad input
# and is raised at once.
_CAUSES: dict[int, Cause] = {
    sqlite3.SQLITE_BUSY: "locked",
    sqlite3.SQLITE_LOCKED: "locked",
    sqlite3.SQLITE_FULL: "disk_full",  # ENOSPC, and a quota
    sqlite3.SQLITE_IOERR: "io_error",  # EIO, and EFBIG past a file-size limit (RLIMIT_FSIZE)
    sqlite3.SQLITE_CANTOPEN: "io_error",  # the WAL or its index could not be opened
}

_WORDS: dict[Cause, str] = {
    "locked": "locked by another connection",
    "disk_full": "disk full",
    "io_error": "I/O error",
    "unreachable": "cannot reach the database server",
}

# PostgreSQL's SQLSTATEs of errors a retry can outlive (by class, or exactly). Serialization
# failures and deadlocks are not here: the storage reruns those transactions at once.
_PG_CLASSES: dict[str, Cause] = {"08": "unreachable", "57": "unreachable"}
_PG_STATES: dict[str, Cause] = {
    "53100": "disk_full",
    "53300": "unreachable",  # too many connections: the server cannot take this one now
    "58030": "io_error",
    "55P03": "locked",  # lock_not_available (lock_timeout)
    "57014": "locked",  # query_canceled (statement_timeout) while waiting for a lock
}


def fault_cause(exc: BaseException) -> Cause | None:
    """The passing cause behind an SQLite error, or None for errors a retry cannot fix."""
    if isinstance(exc, sqlite3.OperationalError):
        code = getattr(exc, "sqlite_errorcode", None)
        return None if code is None else _CAUSES.get(code & 0xFF)
    return _pg_cause(exc)


def _pg_cause(exc: BaseException) -> Cause | None:
    """The passing cause behind a psycopg error (None when psycopg is not even installed)."""
    psycopg = sys.modules.get("psycopg")
    if psycopg is None or not isinstance(exc, psycopg.Error):
        return None
    state = getattr(exc, "sqlstate", None)
    if state is None:
        # No answer from a server at all: refused, reset, a timeout connecting.
        return "unreachable" if isinstance(exc, psycopg.OperationalError) else None
    return _PG_STATES.get(state) or _PG_CLASSES.get(state[:2])


@dataclass(frozen=True)
class StorageIncident:
    """A stretch of time in which the database refused writes."""

    cause: Cause
    database: Path | str  # the SQLite file, or the PostgreSQL URL without its password
    since: float  # wall-clock time of the first failed attempt
    refused: int  # calls given up on so far (writes; reads fail rarely and count too)
    detail: str  # SQLite's own words, e.g. "database or disk is full"
    cleared_at: float | None = None  # wall-clock time of the write that landed again


class StorageUnavailable(Exception):
    """A call given up on after retrying for a passing cause: nothing of it was stored."""

    def __init__(self, incident: StorageIncident) -> None:
        super().__init__(
            f"database {incident.database} is unavailable ({_WORDS[incident.cause]}: "
            f"{incident.detail}); nothing was stored"
        )
        self.incident = incident

    @property
    def cause(self) -> Cause:
        """locked | disk_full | io_error."""
        return self.incident.cause

    @property
    def database(self) -> Path | str:
        """The database file (or a PostgreSQL database's URL, without password)."""
        return self.incident.database


@dataclass(frozen=True)
class DiskSpace:
    """Free space on the filesystem that holds the database."""

    folder: Path
    free: int  # bytes this process may still use
    total: int  # bytes the filesystem holds
    threshold: int  # under this many free bytes the space is low (0 = never)

    @property
    def low(self) -> bool:
        """True when free space is under the threshold."""
        return self.free < self.threshold


@dataclass(frozen=True)
class IncidentStarted:
    """The first call was given up on: storage is failing."""

    incident: StorageIncident


@dataclass(frozen=True)
class IncidentCleared:
    """A write landed again; `incident` has its final refused count and cleared_at."""

    incident: StorageIncident


@dataclass(frozen=True)
class LowSpace:
    """Free space beside the database fell under the threshold."""

    space: DiskSpace


@dataclass(frozen=True)
class SpaceRecovered:
    """Free space beside the database is back over the threshold."""

    space: DiskSpace


StorageEvent = IncidentStarted | IncidentCleared | LowSpace | SpaceRecovered
# Called on the event loop's thread, from the writer: it must not block. A coroutine it
# returns runs as a task of its own, so sending a chat message never holds up a write.
Listener = Callable[[StorageEvent], Awaitable[None] | None]


class IncidentTracker:
    """One database's incidents and the listeners that hear of them; event-loop thread only."""

    def __init__(self, database: Path | str, clock: Callable[[], float] = time.time) -> None:
        self.database = database
        self.clock = clock
        self.incident: StorageIncident | None = None
        # True from the first failed attempt until a write lands: while it is set, the writer
        # runs every group the careful way (retries, and a clean connection before each try).
        self.troubled = False
        self._first: tuple[Cause, float, str] | None = None  # first failure not refused yet
        self._listeners: list[Listener] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` with every StorageEvent from now on; returns the unsubscribe call."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def failed(self, exc: BaseException) -> Cause:
        """Note a failed attempt (nothing is announced until a call is given up on)."""
        cause = fault_cause(exc) or "io_error"
        if self._first is None:
            self._first = (cause, self.clock(), str(exc))
        self.troubled = True
        return cause

    def refuse(self, exc: BaseException) -> StorageUnavailable:
        """Give up on one call: open the incident on the first refusal, count the others."""
        cause = self.failed(exc)
        if self.incident is None:
            _, since, _ = self._first or (cause, self.clock(), "")
            self.incident = StorageIncident(cause, self.database, since, 1, str(exc))
            log.error(
                "database %s: %s (%s) since %s; writes are refused until it clears",
                self.database,
                _WORDS[cause],
                exc,
                _hms(since),
            )
            self.emit(IncidentStarted(self.incident))
        else:
            self.incident = replace(self.incident, refused=self.incident.refused + 1)
        err = StorageUnavailable(self.incident)
        err.__cause__ = exc
        return err

    def recovered(self) -> None:
        """A write landed: close the incident, if one is open."""
        first, self._first, self.troubled = self._first, None, False
        if self.incident is None:
            if first is not None:
                log.debug("database %s: %s passed, no write refused", self.database, first[0])
            return
        done = replace(self.incident, cleared_at=self.clock())
        self.incident = None
        log.info(
            "database %s: writes work again after %s for %.0f s; %d refused",
            self.database,
            _WORDS[done.cause],
            (done.cleared_at or done.since) - done.since,
            done.refused,
        )
        self.emit(IncidentCleared(done))

    def emit(self, event: StorageEvent) -> None:
        """Tell every listener; one that fails is logged and does not stop the others."""
        for listener in list(self._listeners):
            try:
                result = listener(event)
                if inspect.isawaitable(result):
                    task = asyncio.ensure_future(_guarded(result))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
            except Exception:
                log.exception("a storage event listener failed on %s", type(event).__name__)

    async def close(self) -> None:
        """Cancel listener tasks still running (at shutdown the platforms are gone already)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def _guarded(result: Awaitable[None]) -> None:
    try:
        await result
    except Exception:
        log.exception("a storage event listener failed")


def _hms(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


MIB = 1 << 20


def disk_space(folder: Path, min_free_mb: float, min_free_percent: float) -> DiskSpace:
    """Free space where `folder` lives; low under the smaller of the two thresholds."""
    st = os.statvfs(folder)
    total = st.f_blocks * st.f_frsize
    threshold = int(min(min_free_mb * MIB, total * min_free_percent / 100))
    return DiskSpace(folder, st.f_bavail * st.f_frsize, total, threshold)


def file_size(path: Path) -> int:
    """A file's size in bytes, 0 when it does not exist (a WAL between runs)."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def human_bytes(n: int) -> str:
    """A byte count for people: 812 KiB, 12.3 MiB, 41.2 GiB."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit in ("B", "KiB") else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
