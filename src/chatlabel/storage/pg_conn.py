"""A psycopg 3 connection that speaks the subset of sqlite3's API chatlabel's SQL uses.

The transaction functions in storage/ take a connection and call `execute`, `executemany`,
`fetchone`, `fetchall`, `rowcount`, `lastrowid` and index rows by name or position. On
PostgreSQL they get a PgConnection: the same calls over psycopg, with each statement's text
translated once (and cached) from SQLite's spelling:

- placeholders: `?` becomes `%s`, `:name` becomes `%(name)s`, a literal `%` becomes `%%`;
- `INDEXED BY name` (a SQLite planner hint) is dropped: PostgreSQL picks the partial index;
- an INSERT into a table with an `id` column returns it (`RETURNING id`), as lastrowid.

What cannot be translated word for word (exports built in SQL, row locks, upserts that differ)
is written per dialect where it is used, with `dialect.is_pg(conn)`.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Iterator, Sequence
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.adapt import Loader
from psycopg.rows import RowMaker

# Tables whose rows have an `id` (identity) column: an INSERT into one reports it back.
_ID_TABLES = frozenset(
    {
        "projects",
        "items",
        "annotators",
        "assignments",
        "answers",
        "item_reports",
        "comments",
        "announcements",
        "outbox",
    }
)
# A write whose result nobody waits for: an UPDATE, DELETE or INSERT (also after a WITH) with
# no RETURNING of its own. Inside a transaction it is sent along with the next statement.
_WRITE = re.compile(r"^\s*(?:WITH\b.*?\)\s*)?(?:UPDATE|DELETE|INSERT)\b", re.I | re.S)
_TOKEN = re.compile(r"'(?:[^']|'')*'|\"[^\"]*\"|::|\?|:[A-Za-z_]\w*|%|\bINDEXED BY \w+\s*", re.I)
_INSERT = re.compile(r"^\s*INSERT\s+INTO\s+(\w+)", re.I)
_cache: dict[str, str] = {}
_deferrable: dict[str, bool] = {}


def deferrable(q: str) -> bool:
    """True for a translated statement that returns nothing (its row count at most)."""
    known = _deferrable.get(q)
    if known is None:
        tail = q[q.rfind(")") + 1 :]
        known = bool(_WRITE.match(q)) and "RETURNING" not in tail.upper()
        if len(_deferrable) < 4096:
            _deferrable[q] = known
    return known


def translate(sql: str) -> str:
    """SQLite-flavoured SQL as psycopg wants it (cached: the same texts come back every call)."""
    out = _cache.get(sql)
    if out is not None:
        return out

    def sub(m: re.Match[str]) -> str:
        tok = m.group(0)
        if tok[0] in "'\"":
            return tok.replace("%", "%%")
        if tok == "::":
            return tok
        if tok == "?":
            return "%s"
        if tok == "%":
            return "%%"
        if tok[0] == ":":
            return f"%({tok[1:]})s"
        return ""  # INDEXED BY

    out = _TOKEN.sub(sub, sql)
    ins = _INSERT.match(out)
    if ins and ins.group(1).lower() in _ID_TABLES and "RETURNING" not in out.upper():
        out = out.rstrip().rstrip(";") + " RETURNING id"
    if len(_cache) < 4096:  # statements are a fixed set; only odd callers' texts would grow it
        _cache[sql] = out
    return out


class PgRow(tuple[Any, ...]):
    """A row readable by position and by column name, as sqlite3.Row is."""

    __slots__ = ()
    _names: dict[str, int]

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._names[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        """Column names, in order."""
        return list(self._names)


_row_classes: dict[tuple[str, ...], type[PgRow]] = {}


def row_factory(cursor: psycopg.Cursor[Any]) -> RowMaker[Any]:
    """psycopg's row factory: each row a PgRow of this statement's columns."""
    desc = cursor.description
    if desc is None:
        return tuple
    key = tuple(d.name for d in desc)
    cls = _row_classes.get(key)
    if cls is None:
        names: dict[str, int] = {}
        for i, name in enumerate(key):
            names.setdefault(name, i)  # as sqlite3.Row: a repeated name is its first column
        cls = type("Row", (PgRow,), {"__slots__": (), "_names": names})
        if len(_row_classes) < 1024:  # a fixed set of statements: a handful of shapes
            _row_classes[key] = cls
    return cls


class _NumericLoader(Loader):
    """numeric (what SUM of integers gives) as int when whole, else float: as SQLite returns."""

    def load(self, data: Any) -> int | float:
        d = Decimal(bytes(data).decode())
        return int(d) if d == d.to_integral_value() else float(d)


class PgCursor:
    """The result of one statement, read in full: rows, rowcount and lastrowid, as sqlite3's.

    Rows are fetched as the statement runs, so the connection's one cursor is free for the
    next statement at once (no cursor object per statement: they cost more than a query).
    """

    __slots__ = ("_rows", "_pos", "lastrowid", "_rowcount")

    def __init__(self, rows: list[Any], lastrowid: int | None, rowcount: int | None) -> None:
        self._rows = rows
        self._pos = 0
        self.lastrowid = lastrowid
        self._rowcount = rowcount

    @property
    def rowcount(self) -> int:
        """Rows the statement returned or changed."""
        return -1 if self._rowcount is None else self._rowcount

    def fetchone(self) -> Any:
        """The next row, or None."""
        if self._pos >= len(self._rows):
            return None
        self._pos += 1
        return self._rows[self._pos - 1]

    def fetchall(self) -> list[Any]:
        """Every remaining row."""
        rows = self._rows[self._pos :] if self._pos else self._rows
        self._pos = len(self._rows)
        return rows

    def fetchmany(self, size: int) -> list[Any]:
        """Up to `size` more rows."""
        rows = self._rows[self._pos : self._pos + size]
        self._pos += len(rows)
        return rows

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


class _Deferred(PgCursor):
    """A write sent in the transaction's pipeline: no rows; its row count once it is known.

    Reading `rowcount` before the next statement has brought the result back waits for it."""

    __slots__ = ("_owner", "_raw")

    def __init__(self, owner: PgConnection, raw: psycopg.Cursor[Any]) -> None:
        super().__init__(_EMPTY, None, None)
        self._owner: PgConnection | None = owner
        self._raw: psycopg.Cursor[Any] | None = raw

    @property
    def rowcount(self) -> int:
        """Rows the write changed (synchronises the pipeline if still unknown)."""
        if self._owner is not None:
            self._owner.flush()
        return -1 if self._rowcount is None else self._rowcount

    def _settle(self) -> psycopg.Cursor[Any] | None:
        raw, self._raw, self._owner = self._raw, None, None
        if raw is not None:
            self._rowcount = raw.rowcount
        return raw


_EMPTY: list[Any] = []


class PgConnection:
    """One PostgreSQL connection, used by one thread at a time, with sqlite3's calling style."""

    dialect = "postgresql"

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.raw = conn
        conn.adapters.register_loader("numeric", _NumericLoader)
        # Statements run again and again (a button press is the same dozen every time):
        # prepared once per connection, they skip parsing and planning.
        conn.prepare_threshold = 0
        self._cur = conn.cursor()
        # Pipeline mode between begin() and commit()/rollback(): BEGIN and the writes whose
        # results nobody waits for go out with the next statement that returns rows, so a
        # press costs a round trip per read instead of one per statement.
        self._pipe: Any = None  # the pipeline's context manager while a transaction is open
        self._sync: Any = None  # its Pipeline.sync
        self._ctl = conn.cursor()  # BEGIN / COMMIT in the pipeline
        self._pending: list[_Deferred] = []
        self._free: list[psycopg.Cursor[Any]] = []
        self._shapes: dict[str, RowMaker[Any]] = {}  # statement -> its rows' class
        self.trace: list[tuple[str, Any]] | None = None  # (sql, params), for the driver bench

    @classmethod
    def connect(cls, url: str, **kwargs: Any) -> PgConnection:
        """Open a connection (autocommit: transactions are begun and ended explicitly)."""
        return cls(psycopg.connect(url, autocommit=True, **kwargs))

    @property
    def in_transaction(self) -> bool:
        """True between BEGIN and COMMIT/ROLLBACK (or after a failed statement in one)."""
        return self.raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE

    @property
    def closed(self) -> bool:
        """True once the connection is closed or lost."""
        return self.raw.closed or self.raw.broken

    # -- transactions (pipelined) ------------------------------------------------------------

    # False: every statement waits for its answer (a libpq older than 14 has no pipeline mode).
    pipelined = psycopg.Pipeline.is_supported()

    def begin(self) -> None:
        """Start a transaction; pipelined, BEGIN goes out with the first statement."""
        if not self.pipelined:
            self.execute("BEGIN")
            return
        if self.trace is not None:
            self.trace.append(("BEGIN", ()))
        self._start_pipeline()
        self._ctl.execute("BEGIN")

    def commit(self) -> None:
        """COMMIT, with the writes still in the pipeline; their errors are raised here."""
        if self._pipe is None:
            self.execute("COMMIT")
            return
        if self.trace is not None:
            self.trace.append(("COMMIT", ()))
        try:
            self._ctl.execute("COMMIT")
        finally:
            self._end_pipeline(quiet=False)

    def rollback(self) -> None:
        """End the transaction without keeping anything (errors ignored: it is ending)."""
        if self._pipe is not None:
            self._end_pipeline(quiet=True)
        if not self.closed and self.in_transaction:
            with contextlib.suppress(psycopg.Error):
                self.raw.execute("ROLLBACK")

    def flush(self) -> None:
        """Send what the pipeline holds and take every result back (raises the first error)."""
        if self._pipe is None:
            return
        try:
            self._sync()
        finally:
            self._settle()

    def _start_pipeline(self) -> None:
        self._pipe = self.raw.pipeline()
        self._sync = self._pipe.__enter__().sync

    def _end_pipeline(self, *, quiet: bool) -> None:
        pipe, self._pipe = self._pipe, None
        try:
            pipe.__exit__(None, None, None)
        except psycopg.Error:
            if not quiet:
                raise
        finally:
            self._settle()

    def _settle(self) -> None:
        """The pipeline's results are in: note the writes' row counts, free their cursors."""
        if self._pending:
            for d in self._pending:
                raw = d._settle()
                if raw is not None:
                    self._free.append(raw)
            self._pending.clear()

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> PgCursor:
        """Run one statement; params as sqlite3 takes them (a tuple for ?, a dict for :name)."""
        q = translate(sql)
        if self.trace is not None:
            self.trace.append((q, params))
        if self._pipe is not None:
            if deferrable(q):
                raw = self._free.pop() if self._free else self.raw.cursor()
                raw.execute(q, params)
                d = _Deferred(self, raw)
                self._pending.append(d)
                return d
            self._cur.execute(q, params)
            self.flush()
            cur = self._cur
        else:
            cur = self._cur
            cur.execute(q, params)
        if cur.pgresult is None or cur.pgresult.status != psycopg.pq.ExecStatus.TUPLES_OK:
            return PgCursor(_EMPTY, None, cur.rowcount)
        rows = cur.fetchall()
        if q.endswith(" RETURNING id"):
            return PgCursor(_EMPTY, int(rows[0][0]) if rows else None, cur.rowcount)
        shape = self._shapes.get(q)
        if shape is None:
            shape = self._shapes[q] = row_factory(cur)
        return PgCursor(list(map(shape, rows)), None, cur.rowcount)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> PgCursor:
        """Run one statement for each parameter row (in one pipeline); rowcount is the total."""
        q = translate(sql)
        if q.endswith(" RETURNING id"):
            q = q[: -len(" RETURNING id")]
        if self._pipe is None:
            self._cur.executemany(q, rows)
            return PgCursor(_EMPTY, None, self._cur.rowcount)
        # In a transaction's pipeline: the writes before it are sent and checked first, then
        # executemany runs its own pipeline (whose row count psycopg totals), then ours again.
        self._end_pipeline(quiet=False)
        try:
            self._cur.executemany(q, rows)
        finally:
            self._start_pipeline()
        return PgCursor(_EMPTY, None, self._cur.rowcount)

    def close(self) -> None:
        """Close the connection."""
        self.raw.close()
