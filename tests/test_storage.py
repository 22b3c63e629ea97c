"""The single writer: short writes on the event loop, groups, foreign locks, failed commits."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from chatlabel.storage.db import Database

pytestmark = pytest.mark.timeout(30)


def _table(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, n INTEGER NOT NULL)")


def _put(conn: sqlite3.Connection, k: str, n: int) -> int:
    return conn.execute("INSERT INTO t (k, n) VALUES (?, ?)", (k, n)).rowcount


def _rows(path: Path) -> list[tuple[str, int]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT k, n FROM t ORDER BY k").fetchall()
    finally:
        conn.close()


async def test_a_failing_short_write_rolls_back_alone(tmp_path: Path) -> None:
    async with Database(tmp_path / "db.sqlite") as db:
        await db.write(_table)
        # Arriving together, these share one group and one COMMIT; "b" repeats a key and fails.
        results = await asyncio.gather(
            db.write(_put, "a", 1, short=True),
            db.write(_put, "a", 2, short=True),
            db.write(_put, "b", 3, short=True),
            db.write(_put, "c", 4),  # a long write: the group behind it goes to the thread
            db.write(_put, "d", 5, short=True),
            return_exceptions=True,
        )
        assert results[0] == 1 and results[2:] == [1, 1, 1]
        assert isinstance(results[1], sqlite3.IntegrityError)
    assert _rows(tmp_path / "db.sqlite") == [("a", 1), ("b", 3), ("c", 4), ("d", 5)]


async def test_a_foreign_lock_sends_short_writes_to_the_thread(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    async with Database(path) as db:
        await db.write(_table)
        other = sqlite3.connect(path, isolation_level=None)  # another process, say the CLI
        other.execute("BEGIN IMMEDIATE")
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        tick = asyncio.create_task(ticker())
        write = asyncio.create_task(db.write(_put, "x", 1, short=True))
        await asyncio.sleep(0.5)
        assert not write.done()  # waiting for the lock...
        assert ticks >= 20  # ...without holding up the event loop
        other.execute("COMMIT")
        other.close()
        assert await asyncio.wait_for(write, 10) == 1
        tick.cancel()
    assert _rows(path) == [("x", 1)]


async def test_a_failed_commit_does_not_wedge_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"

    def schema(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        conn.execute("CREATE TABLE child (id INTEGER PRIMARY KEY, p INTEGER REFERENCES parent)")

    def orphan(conn: sqlite3.Connection) -> None:
        # A deferred foreign key is checked at COMMIT, so the COMMIT itself fails.
        conn.execute("PRAGMA defer_foreign_keys = ON")
        conn.execute("INSERT INTO child (p) VALUES (42)")

    async with Database(path) as db:
        await db.write(schema)
        for short in (True, False):
            with pytest.raises(sqlite3.IntegrityError):
                await db.write(orphan, short=short)
            await db.write(
                lambda c: c.execute("INSERT INTO parent (id) VALUES (NULL)"), short=short
            )
        assert await db.read(lambda c: c.execute("SELECT COUNT(*) FROM child").fetchone()[0]) == 0
        assert await db.read(lambda c: c.execute("SELECT COUNT(*) FROM parent").fetchone()[0]) == 2


async def test_the_wal_starts_over_under_steady_writes(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    async with Database(path) as db:
        await db.write(_table)
        checkpointer = db._checkpointer
        assert checkpointer is not None
        n = 0
        loop = asyncio.get_running_loop()
        # Writes go on the whole time; at least two and a half checkpoint rounds, and up to
        # eight seconds when the machine is busy (a round then takes longer to find a gap).
        start = loop.time()
        while loop.time() < start + 2.6 or (checkpointer.rewinds == 0 and loop.time() < start + 8):
            await db.write(_put, f"k{n}", n, short=True)  # up to ~1,000/s, as a busy bot's
            n += 1
            await asyncio.sleep(0.001)
        assert checkpointer.rounds >= 2
        assert checkpointer.rewinds >= 1, "the WAL never started over"
    assert len(_rows(path)) == n
