"""Which SQL dialect a transaction function is talking to, and the clauses that differ.

SQLite runs one writer at a time, so a row read in a transaction cannot change under it.
PostgreSQL runs many transactions at once (several workers, several processes), so the rows a
use case reads and then changes are locked as they are read: `FOR UPDATE` on the row, and
`FOR UPDATE SKIP LOCKED` where any free row will do (the next item from the queue), so two
people never wait on each other for the same queue head. On SQLite these clauses are empty.
"""

from __future__ import annotations

from typing import Any


def name_of(conn: Any) -> str:
    """A connection's dialect: "postgresql" (storage.pg_conn) or "sqlite" (sqlite3's)."""
    return getattr(conn, "dialect", "sqlite")


def is_pg(conn: Any) -> bool:
    """True for a PostgreSQL connection (storage.pg_conn), False for sqlite3's."""
    return name_of(conn) == "postgresql"


def for_update(conn: Any, of: str = "", *, skip_locked: bool = False) -> str:
    """` FOR UPDATE [OF ...] [SKIP LOCKED]` on PostgreSQL; nothing on SQLite."""
    if not is_pg(conn):
        return ""
    return " FOR UPDATE" + (f" OF {of}" if of else "") + (" SKIP LOCKED" if skip_locked else "")


# The SQL fragments exports and reports spell differently per dialect. They take the dialect's
# name (a Store's `dialect`), as export queries are built before any connection is at hand.


def iso_time(dialect: str, seconds: str) -> str:
    """Epoch seconds as UTC ISO 8601 text with milliseconds: `2027-01-15T08:00:05.277+00:00`."""
    if dialect == "postgresql":
        return (
            f"to_char(to_timestamp({seconds}) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS')"
            " || '+00:00'"
        )
    return f"strftime('%Y-%m-%dT%H:%M:%f', {seconds}, 'unixepoch') || '+00:00'"


def lines_of(dialect: str, text: str, order_by: str) -> str:
    """An aggregate joining `text` with newlines (SQLite: in the order it reads the rows)."""
    if dialect == "postgresql":
        return f"string_agg({text}, chr(10) ORDER BY {order_by})"
    # SQLite before 3.44 takes no ORDER BY in an aggregate; its scan reads rows in rowid order.
    return f"GROUP_CONCAT({text}, char(10))"


def distinct_list(dialect: str, text: str) -> str:
    """An aggregate joining the distinct values of `text` with commas."""
    if dialect == "postgresql":
        return f"string_agg(DISTINCT {text}, ',')"
    return f"GROUP_CONCAT(DISTINCT {text})"  # SQLite: DISTINCT takes no separator; ',' is its own


def json_object(dialect: str, pairs: str) -> str:
    """A JSON object's text from `'key', value, ...` pairs, the keys in the order given."""
    if dialect == "postgresql":
        return f"json_build_object({pairs})::text"
    return f"json_object({pairs})"


def json_of(dialect: str, text: str) -> str:
    """JSON text as a JSON value inside json_object (not a string holding it)."""
    return f"({text})::json" if dialect == "postgresql" else f"json({text})"


def json_bool(dialect: str, condition: str) -> str:
    """A condition as a JSON true or false inside json_object (SQLite has no boolean type)."""
    if dialect == "postgresql":
        return f"({condition})"
    return f"json(CASE WHEN {condition} THEN 'true' ELSE 'false' END)"


def json_number(dialect: str, text: str) -> str:
    """A number held as text as a JSON number: a whole one without a decimal point."""
    if dialect == "postgresql":
        return (
            f"CASE WHEN ({text})::numeric = trunc(({text})::numeric)"
            f" THEN to_json(({text})::numeric::bigint) ELSE to_json(({text})::float8) END"
        )
    return (
        f"CASE WHEN CAST({text} AS INTEGER) = CAST({text} AS REAL)"
        f" THEN CAST({text} AS INTEGER) ELSE CAST({text} AS REAL) END"
    )


def rounded(dialect: str, number: str, digits: int) -> str:
    """A float rounded to `digits` decimals (PostgreSQL rounds double precision via numeric)."""
    if dialect == "postgresql":
        return f"round(({number})::numeric, {digits})::float8"
    return f"ROUND({number}, {digits})"
