"""Online backup: a consistent copy of the live database while `chatlabel run` keeps writing.

SQLite's backup API copies the pages of one snapshot: everything committed before the copy
started, nothing half-written. In WAL mode readers do not block the writer, so the bot keeps
recording answers meanwhile. The copy is written under a temporary name, checked, switched to
a plain rollback journal (one self-contained file) and only then renamed into place.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from .schema import check_version

# What the summary counts in the copy: the tables an operator recognises.
_COUNTED = ("projects", "items", "annotators", "answers", "verdicts")


class BackupError(Exception):
    """A backup that could not be made; the message names the file and why."""


@dataclass(frozen=True)
class BackupSummary:
    """What a backup copied."""

    source: Path
    target: Path
    bytes: int
    pages: int
    seconds: float
    schema_version: int
    counts: dict[str, int]


def backup(database: Path, target: Path) -> BackupSummary:
    """Copy `database` to `target` with the online backup API; the copy is checked first."""
    database, target = Path(database), Path(target)
    if not database.is_file():
        raise BackupError(f"{database}: no database here (nothing to back up)")
    if target.resolve() in {database.resolve(), *(_companions(database.resolve()))}:
        raise BackupError(f"{target}: that is the database itself; choose another file")
    started = time.monotonic()
    part = target.with_name(f".{target.name}.part")
    part.unlink(missing_ok=True)
    source = sqlite3.connect(database, timeout=10)
    try:
        version = check_version(source, database)  # a newer chatlabel's file: refused, untouched
        copy = sqlite3.connect(part)
        try:
            # pages=-1: one step, one read snapshot, so the copy is consistent; in WAL mode the
            # writer goes on committing while it is read.
            source.backup(copy, pages=-1)
            copy.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
            verdict = copy.execute("PRAGMA integrity_check").fetchone()[0]
            if verdict != "ok":
                raise BackupError(f"{target}: the copy failed its integrity check: {verdict}")
            counts = {
                t: int(copy.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0])
                for t in _tables(copy)
            }
            pages = int(copy.execute("PRAGMA page_count").fetchone()[0])
        finally:
            copy.close()
        _fsync(part)
        os.replace(part, target)
        _fsync(target.parent)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    finally:
        source.close()
    return BackupSummary(
        database, target, target.stat().st_size, pages, time.monotonic() - started, version, counts
    )


def _tables(conn: sqlite3.Connection) -> list[str]:
    """The counted tables present in a database (an empty one has none yet)."""
    present = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    return [t for t in _COUNTED if t in present]


def _companions(database: Path) -> list[Path]:
    """The files SQLite keeps next to a database."""
    return [database.with_name(database.name + s) for s in ("-wal", "-shm", "-journal")]


def _fsync(path: Path) -> None:
    """Flush a file (or a folder's entry list) to disk, so the rename is durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError):  # some file systems cannot fsync a folder
            os.fsync(fd)
    finally:
        os.close(fd)
