"""Both schemas hold the same uniqueness rules: what cannot happen twice on SQLite cannot on
PostgreSQL either (a redelivered answer, two open leases of one item for one person, ...)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pg
from chatlabel.storage import pg_schema, schema
from chatlabel.storage.pg_conn import PgConnection

Key = tuple[str, tuple[str, ...], bool]  # table, columns, partial (a WHERE clause)


def sqlite_unique_keys(path: Path) -> set[Key]:
    conn = sqlite3.connect(path)
    try:
        schema.migrate(conn)
        keys: set[Key] = set()
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        for table in tables:
            for _, name, unique, origin, partial in conn.execute(f"PRAGMA index_list({table})"):
                if not unique or origin == "pk":
                    continue
                cols = tuple(r[2] for r in conn.execute(f"PRAGMA index_info({name})"))
                keys.add((table, cols, bool(partial)))
        return keys
    finally:
        conn.close()


def pg_unique_keys(url: str) -> set[Key]:
    conn = PgConnection.connect(url)
    try:
        pg_schema.migrate(conn, url)
        rows = conn.execute(
            """SELECT t.relname, x.indpred IS NOT NULL,
                      array_agg(a.attname ORDER BY k.ord)
               FROM pg_index x
               JOIN pg_class t ON t.oid = x.indrelid
               JOIN pg_namespace n ON n.oid = t.relnamespace
               CROSS JOIN LATERAL unnest(x.indkey) WITH ORDINALITY AS k(attnum, ord)
               JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
               WHERE x.indisunique AND NOT x.indisprimary AND n.nspname = current_schema()
               GROUP BY x.indexrelid, t.relname, x.indpred"""
        ).fetchall()
        return {(r[0], tuple(r[2]), bool(r[1])) for r in rows}
    finally:
        conn.close()


def test_both_schemas_hold_the_same_unique_keys(tmp_path: Path) -> None:
    on_sqlite = sqlite_unique_keys(tmp_path / "schema.db")
    on_pg = pg_unique_keys(pg.fresh_database(migrated=False))
    assert on_sqlite, "no unique keys found: the query is wrong"
    assert on_sqlite == on_pg, (
        f"only on SQLite: {sorted(on_sqlite - on_pg)}; only on PostgreSQL: {sorted(on_pg - on_sqlite)}"
    )
