"""Copy a chatlabel database between SQLite and PostgreSQL, verified by counts and digests.

`chatlabel migrate-db CONFIG --to URL`: the source is the database the config names (brought
up to this chatlabel's schema first), the target must be empty. Every table is copied in
primary-key order inside one transaction on the target (all or nothing; COPY on PostgreSQL),
identity counters are moved past the copied ids, and then both sides are read again: each
table's row count and a SHA-256 digest over its rows (in key order, values normalised so that
SQLite's 5 and PostgreSQL's 5.0 in a REAL column read alike) must match, or the copy is
reported as failed.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .schema import UnusableDatabase

BATCH = 5000
# Parents before children, so foreign keys hold at every row. Tables a later migration adds
# are copied after these, in the order the schema creates them.
_ORDER = (
    "projects",
    "annotators",
    "items",
    "members",
    "assignments",
    "answers",
    "verdicts",
    "media_files",
)
_SKIP = {"chatlabel_schema", "sqlite_sequence", "sqlite_stat1", "sqlite_stat4"}


class TransferError(Exception):
    """A copy that was refused or did not verify; the message says which and why."""


@dataclass
class TableReport:
    """One table's figures on both sides."""

    rows: int
    source_digest: str
    target_digest: str = ""
    target_rows: int = -1

    @property
    def ok(self) -> bool:
        """Same count, same digest."""
        return self.rows == self.target_rows and self.source_digest == self.target_digest


@dataclass
class TransferReport:
    """What a copy did."""

    source: str
    target: str
    version: int
    seconds: float = 0.0
    tables: dict[str, TableReport] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Every table verified."""
        return all(t.ok for t in self.tables.values())


# -- the two sides ------------------------------------------------------------------------


class _Side:
    """One database, read or written table by table (synchronous: run in a thread)."""

    label: str

    def tables(self) -> list[str]:
        """chatlabel's tables here, parents first."""
        raise NotImplementedError

    def columns(self, table: str) -> list[str]:
        """A table's stored columns (generated ones are left out: they are recomputed)."""
        raise NotImplementedError

    def key(self, table: str) -> list[str]:
        """The primary key's columns (the order rows are copied and digested in)."""
        raise NotImplementedError

    def rows(self, table: str, cols: list[str]) -> Iterator[list[tuple[Any, ...]]]:
        """A table's rows in key order, in batches."""
        raise NotImplementedError

    def count(self, table: str) -> int:
        """Rows in a table."""
        raise NotImplementedError

    def close(self) -> None:
        """Close the connection."""
        raise NotImplementedError


def _order(names: list[str]) -> list[str]:
    known = [t for t in _ORDER if t in names]
    return known + [t for t in names if t not in known and t not in _SKIP]


class _Sqlite(_Side):
    def __init__(self, path: Path) -> None:
        self.label = str(path)
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA foreign_keys = ON")

    def tables(self) -> list[str]:
        rows = self.conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY rowid"
        ).fetchall()
        return _order([r[0] for r in rows])

    def columns(self, table: str) -> list[str]:
        # table_xinfo's `hidden`: 0 a stored column, 2/3 a generated one.
        info = self.conn.execute(f"PRAGMA table_xinfo({table})").fetchall()
        return [r[1] for r in info if r[6] == 0]

    def key(self, table: str) -> list[str]:
        info = self.conn.execute(f"PRAGMA table_info({table})").fetchall()
        return [r[1] for r in sorted(info, key=lambda r: r[5]) if r[5]] or ["rowid"]

    def rows(self, table: str, cols: list[str]) -> Iterator[list[tuple[Any, ...]]]:
        order = ", ".join(self.key(table))
        cur = self.conn.execute(f"SELECT {', '.join(cols)} FROM {table} ORDER BY {order}")
        while batch := cur.fetchmany(BATCH):
            yield batch

    def count(self, table: str) -> int:
        return int(self.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])

    def close(self) -> None:
        self.conn.close()


def _pg_kwargs(password: str | None) -> dict[str, Any]:
    """How migrate-db connects to a PostgreSQL side: an unreachable one fails in 10 s."""
    return {"connect_timeout": 10, **({"password": password} if password else {})}


class _Postgres(_Side):
    def __init__(self, url: str, password: str | None) -> None:
        import psycopg

        from .pg import _redact

        self.label = _redact(url)
        self.conn = psycopg.connect(url, autocommit=True, **_pg_kwargs(password))

    def tables(self) -> list[str]:
        rows = self.conn.execute(
            """SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE c.relkind = 'r' AND n.nspname = current_schema() ORDER BY c.oid"""
        ).fetchall()
        return _order([r[0] for r in rows])

    def columns(self, table: str) -> list[str]:
        rows = self.conn.execute(
            """SELECT column_name FROM information_schema.columns
               WHERE table_schema = current_schema() AND table_name = %s
                 AND is_generated = 'NEVER' ORDER BY ordinal_position""",
            (table,),
        ).fetchall()
        return [r[0] for r in rows]

    def key(self, table: str) -> list[str]:
        rows = self.conn.execute(
            """SELECT a.attname FROM pg_index i
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
               WHERE i.indrelid = %s::regclass AND i.indisprimary
               ORDER BY array_position(i.indkey, a.attnum)""",
            (table,),
        ).fetchall()
        return [r[0] for r in rows]

    def rows(self, table: str, cols: list[str]) -> Iterator[list[tuple[Any, ...]]]:
        order = ", ".join(self.key(table))
        with self.conn.transaction(), self.conn.cursor(name=f"copy_{table}") as cur:
            cur.itersize = BATCH
            cur.execute(f"SELECT {', '.join(cols)} FROM {table} ORDER BY {order}")
            while batch := cur.fetchmany(BATCH):
                yield batch

    def count(self, table: str) -> int:
        row = self.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        self.conn.close()


# -- digests ------------------------------------------------------------------------------


def _norm(v: Any) -> bytes:
    """A value as both databases give it back: numbers by value, text as UTF-8, NULL apart."""
    if v is None:
        return b"\x00N"
    if isinstance(v, bool):
        v = int(v)
    if isinstance(v, int | float):
        f = float(v)
        return b"\x00n" + (str(int(f)) if f.is_integer() else repr(f)).encode()
    if isinstance(v, bytes | memoryview):
        return b"\x00b" + bytes(v)
    return b"\x00s" + str(v).encode()


def digest(side: _Side, table: str, cols: list[str]) -> tuple[int, str]:
    """(rows, SHA-256 hex) of a table's rows in key order."""
    h = hashlib.sha256()
    n = 0
    for batch in side.rows(table, cols):
        for row in batch:
            h.update(b"\x01".join(_norm(v) for v in row) + b"\x02")
        n += len(batch)
    return n, h.hexdigest()


# -- the copy -----------------------------------------------------------------------------


def _open(url: str, password: str | None) -> _Side:
    if url.startswith("sqlite:///"):
        return _Sqlite(Path(url[len("sqlite:///") :]))
    return _Postgres(url, password)


def _check_empty(target: _Side) -> None:
    for t in target.tables():
        if t in _SKIP:
            continue
        if target.count(t):
            raise TransferError(
                f"{target.label}: the target is not empty ({t} has rows): "
                "migrate-db copies only into an empty database"
            )


def transfer(
    source_url: str,
    target_url: str,
    *,
    password: str | None = None,
    target_password: str | None = None,
    progress: Callable[[str, int], None] | None = None,
    verify: bool = True,
) -> TransferReport:
    """Copy every table from source to an empty target, then verify; TransferError if not.

    `verify=False` (benchmarks building a throwaway copy) skips the digests, not the counts."""
    from .pg import _redact
    from .pg_conn import PgConnection
    from .pg_schema import migrate as pg_migrate
    from .schema import MIGRATIONS
    from .schema import check_version as sqlite_version
    from .schema import migrate as sqlite_migrate

    started = time.monotonic()
    src = _open(source_url, password)
    try:
        if isinstance(src, _Sqlite):
            sqlite_version(src.conn, src.label)
            sqlite_migrate(src.conn)
        version = len(MIGRATIONS)
        # The target: the same schema version, created empty, then checked empty.
        if target_url.startswith("sqlite:///"):
            path = Path(target_url[len("sqlite:///") :])
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, isolation_level=None)
            try:
                sqlite_version(conn, path)
                conn.execute("PRAGMA journal_mode = WAL")
                sqlite_migrate(conn)
            finally:
                conn.close()
        else:
            pg = PgConnection.connect(target_url, **_pg_kwargs(target_password))
            try:
                pg_migrate(pg, _redact(target_url))
            except UnusableDatabase as exc:
                raise TransferError(str(exc)) from None
            finally:
                pg.close()
        dst = _open(target_url, target_password)
        try:
            _check_empty(dst)
            report = TransferReport(src.label, dst.label, version)
            tables = [t for t in src.tables() if t not in _SKIP]
            missing = [t for t in tables if t not in dst.tables()]
            if missing:
                raise TransferError(f"{dst.label}: no table {', '.join(missing)} in the target")
            _copy(src, dst, tables, progress)
            for t in tables:
                cols = src.columns(t)
                if verify:
                    n, d = digest(src, t, cols)
                    tn, td = digest(dst, t, cols)
                else:
                    n, tn, d, td = src.count(t), dst.count(t), "", ""
                report.tables[t] = TableReport(n, d, td, tn)
            report.seconds = time.monotonic() - started
            if not report.ok:
                bad = [t for t, r in report.tables.items() if not r.ok]
                raise TransferError(
                    f"{dst.label}: the copy does not match the source in {', '.join(bad)}"
                )
            return report
        finally:
            dst.close()
    finally:
        src.close()


def _copy(
    src: _Side, dst: _Side, tables: list[str], progress: Callable[[str, int], None] | None
) -> None:
    """Every table, in one transaction on the target."""
    if isinstance(dst, _Postgres):
        with dst.conn.transaction():
            for t in tables:
                cols = src.columns(t)
                n = 0
                with dst.conn.cursor().copy(f"COPY {t} ({', '.join(cols)}) FROM STDIN") as cp:
                    for batch in src.rows(t, cols):
                        for row in batch:
                            cp.write_row(row)
                        n += len(batch)
                        if progress:
                            progress(t, n)
                if "id" in cols and t != "verdicts":
                    # Identity columns count on from the copied ids.
                    dst.conn.execute(
                        f"""SELECT setval(pg_get_serial_sequence('{t}', 'id'),
                                   COALESCE((SELECT MAX(id) FROM {t}), 0) + 1, false)"""
                    )
        return
    assert isinstance(dst, _Sqlite)
    conn = dst.conn
    conn.execute("BEGIN IMMEDIATE")
    try:
        for t in tables:
            cols = src.columns(t)
            sql = f"INSERT INTO {t} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
            n = 0
            for batch in src.rows(t, cols):
                conn.executemany(sql, batch)
                n += len(batch)
                if progress:
                    progress(t, n)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
