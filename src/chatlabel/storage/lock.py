"""One `chatlabel run` per database: an exclusive lock file next to the SQLite file.

Two bots on one database would both push items, answer the same people twice and fight over
the single writer. The lock is an advisory `flock` on `<database>.lock`, which the kernel
releases when its holder dies in any way (a SIGKILL too), so a lock left by a dead process is
simply taken over. The file says who holds it (host, pid, since when) for the refusal message.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # not on POSIX: the lock file only records the holder
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("chatlabel.storage")


class DatabaseInUse(Exception):
    """Another running chatlabel holds the database; the message names its host and pid."""


def lock_path(database: Path) -> Path:
    """The lock file that goes with a database file."""
    return database.with_name(database.name + ".lock")


def _holder(fd: int) -> dict[str, Any]:
    """What a lock file says about its holder ({} when empty or unreadable)."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        data = json.loads(os.read(fd, 4096) or b"{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _describe(holder: dict[str, Any]) -> str:
    host, pid = holder.get("host", "an unknown host"), holder.get("pid", "unknown")
    since = f", since {holder['since']}" if holder.get("since") else ""
    return f"host {host}, pid {pid}{since}"


class RunLock:
    """The exclusive lock of one running chatlabel on one database."""

    def __init__(self, database: Path) -> None:
        self.database = Path(database)
        self.path = lock_path(self.database)
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        """Take the lock, or raise DatabaseInUse naming who holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                os.close(fd)
                raise DatabaseInUse(
                    f"{self.database}: in use by another chatlabel run ({_describe(holder)}; "
                    f"lock file {self.path}): stop that one first"
                ) from None
            except BaseException:
                os.close(fd)
                raise
            # The holder before us unlinks the file as it stops: if that happened between our
            # open and our flock, we hold a lock on a file nobody else will see. Start over.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        previous = _holder(fd)
        if previous:
            log.warning(
                "took over the lock of %s left by a chatlabel that is no longer running (%s)",
                self.database,
                _describe(previous),
            )
        me = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "since": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        }
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(me).encode() + b"\n")
        self._fd = fd
        return self

    def release(self) -> None:
        """Give the lock up (and remove the file); safe to call twice."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        # Unlinked while still locked, so nobody can lock the old file after we let go.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        os.close(fd)
