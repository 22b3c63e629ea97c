"""A throwaway PostgreSQL server for the tests, and fresh databases on it.

The server (the binaries from Debian's `postgresql` package) starts the first time a test asks
for it and stops when the session ends. Where the binaries are missing, those tests fail with
a message saying what to install: they are never skipped.
"""

from __future__ import annotations

import itertools
import threading

import pytest

from chatlabel.storage.pgtemp import ServerMissing, TempServer

_server: TempServer | None = None
_lock = threading.Lock()
_names = itertools.count(1)
TEMPLATE = "chatlabel_template"


def server() -> TempServer:
    """The session's server, started on first use (fsync off: a crash of the machine is not
    what these tests are about, and it makes them several times faster)."""
    global _server
    with _lock:
        if _server is None:
            try:
                srv = TempServer(
                    settings={
                        "fsync": "off",
                        "synchronous_commit": "off",
                        "full_page_writes": "off",
                        "max_connections": "300",
                        "shared_buffers": "128MB",
                    }
                ).start()
            except ServerMissing as exc:
                pytest.fail(f"PostgreSQL tests need the server: {exc}", pytrace=False)
            srv.create_database(TEMPLATE)
            _migrate_template(srv.url(TEMPLATE))
            _server = srv
        return _server


def _migrate_template(url: str) -> None:
    from chatlabel.storage.pg_conn import PgConnection
    from chatlabel.storage.pg_schema import migrate

    conn = PgConnection.connect(url)
    try:
        migrate(conn, url)
    finally:
        conn.close()


def fresh_database(*, migrated: bool = True) -> str:
    """The URL of a new, empty database (with chatlabel's schema, unless `migrated` is False)."""
    srv = server()
    name = f"t{next(_names)}"
    return srv.create_database(name, template=TEMPLATE if migrated else None)


def stop_server() -> None:
    """Stop the session's server, if one was started."""
    global _server
    with _lock:
        if _server is not None:
            _server.stop()
            _server = None


def rows(url: str, query: str) -> list[tuple[object, ...]]:
    """A query's rows from either backend, read-only, from outside the bot (SQL in SQLite's
    spelling: `?` placeholders are not used here)."""
    if url.startswith("sqlite:///"):
        import sqlite3
        from pathlib import Path

        path = Path(url[len("sqlite:///") :])
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
        try:
            return conn.execute(query).fetchall()
        finally:
            conn.close()
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        return [tuple(r) for r in conn.execute(query).fetchall()]
