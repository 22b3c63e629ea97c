"""The storage interface, the same on a SQLite file and a PostgreSQL database.

Each use case is one transaction function run by `write` (or `read`): its writes land together
or not at all, one failing write does not take others with it, concurrent writers never lose
an update, exports stream. And on PostgreSQL what several processes need: an unreachable server
is an incident (retried, refused, cleared) like a locked SQLite file, advisory locks give
background work to one process, NOTIFY wakes the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import pg
from chatlabel.config import ConfigError, parse_config
from chatlabel.service.health import IncidentCleared, IncidentStarted, StorageUnavailable
from chatlabel.service.rounds import exclusive_round
from chatlabel.storage.give_way import RATIO
from chatlabel.storage.health import StorageIncident
from chatlabel.storage.store import Store, make_store

BACKENDS = ("sqlite", "postgresql")
pytestmark = pytest.mark.timeout(60)


def _config(tmp_path: Path, url: str) -> Any:
    return parse_config({"storage": {"url": url}}, tmp_path / "chatlabel.toml")


@contextlib.asynccontextmanager
async def opened(tmp_path: Path, url: str) -> AsyncIterator[Store]:
    db = await make_store(_config(tmp_path, url)).open()
    try:
        yield db
    finally:
        await db.close()


def _table(conn: Any) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, n INTEGER NOT NULL)")


def _put(conn: Any, k: str, n: int) -> int:
    return int(conn.execute("INSERT INTO t (k, n) VALUES (?, ?)", (k, n)).rowcount)


def _rows(conn: Any) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in conn.execute("SELECT k, n FROM t ORDER BY k").fetchall()]


async def test_a_failing_write_rolls_back_alone(tmp_path: Path, storage_url: str) -> None:
    async with opened(tmp_path, storage_url) as db:
        await db.write(_table)

        def two_then_fail(conn: Any) -> None:
            _put(conn, "x", 1)
            _put(conn, "y", 2)
            raise ValueError("changed my mind")

        results = await asyncio.gather(
            db.write(_put, "a", 1, short=True),
            db.write(two_then_fail, short=True),
            db.write(_put, "a", 2, short=True),  # a repeated key: this one write fails
            db.write(_put, "b", 3),
            return_exceptions=True,
        )
        # Both "a" writes run at once (side by side on PostgreSQL): exactly one lands.
        landed = [n for n, r in ((1, results[0]), (2, results[2])) if r == 1]
        failed = [r for r in (results[0], results[2]) if r != 1]
        assert len(landed) == 1 and len(failed) == 1, results
        assert "unique" in str(failed[0]).lower(), failed
        assert isinstance(results[1], ValueError) and results[3] == 1
        assert await db.read(_rows) == [("a", landed[0]), ("b", 3)]


async def test_writes_count_their_rows_and_a_failing_one_undoes_its_transaction(
    tmp_path: Path, storage_url: str
) -> None:
    """On PostgreSQL a transaction's writes go out in a pipeline with the next statement that
    returns rows: their row counts are still right when read, and a write that fails (at the
    next statement, or at COMMIT when it was the last) still undoes the whole transaction."""
    await _writes_count_and_fail_whole(tmp_path, storage_url)


async def test_without_pipeline_mode_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A libpq older than 14 has no pipeline mode: each statement is then sent on its own."""
    from chatlabel.storage.pg_conn import PgConnection

    monkeypatch.setattr(PgConnection, "pipelined", False)
    await _writes_count_and_fail_whole(tmp_path, pg.fresh_database())


async def _writes_count_and_fail_whole(tmp_path: Path, storage_url: str) -> None:

    def bump(conn: Any, first: str) -> tuple[int, int, int, list[tuple[Any, ...]]]:
        changed = conn.execute("UPDATE t SET n = n + 10 WHERE k >= ?", (first,)).rowcount
        none = conn.execute("UPDATE t SET n = n + 100 WHERE k = 'zzz'").rowcount
        conn.execute("UPDATE t SET n = n - 1")  # still in the pipeline when executemany runs
        many = conn.executemany(
            "UPDATE t SET n = n + 1 WHERE k = ?", [("a",), ("b",), ("zzz",)]
        ).rowcount
        return changed, none, many, _rows(conn)

    def clash(conn: Any) -> list[tuple[Any, ...]]:
        conn.execute("UPDATE t SET n = 0 WHERE k = 'a'")
        conn.execute("UPDATE t SET k = 'a' WHERE k = 'b'")  # the primary key: refused
        conn.execute("INSERT INTO t (k, n) VALUES ('c', 3)")
        return _rows(conn)

    def clash_last(conn: Any) -> None:
        conn.execute("UPDATE t SET n = 0 WHERE k = 'a'")
        conn.execute("UPDATE t SET k = 'a' WHERE k = 'b'")

    def change_of_mind(conn: Any) -> None:
        conn.execute("UPDATE t SET n = 0")
        conn.execute("INSERT INTO t (k, n) VALUES ('c', 3)")
        raise RuntimeError("changed my mind")

    async with opened(tmp_path, storage_url) as db:
        await db.write(_table)
        assert await db.write(_put, "a", 1) == 1
        assert await db.write(_put, "b", 2) == 1
        assert await db.write(bump, "a") == (2, 0, 2, [("a", 11), ("b", 12)])
        for fn in (clash, clash_last):
            with pytest.raises(Exception, match="(?i)unique") as refused:
                await db.write(fn)
            assert not isinstance(refused.value, StorageUnavailable)
            assert await db.read(_rows) == [("a", 11), ("b", 12)]
        with pytest.raises(RuntimeError):
            await db.write(change_of_mind)
        assert await db.read(_rows) == [("a", 11), ("b", 12)]
        for i in range(8):  # every pooled connection is fine afterwards
            assert await db.write(_put, f"c{i}", i) == 1
        assert len(await db.read(_rows)) == 10


async def test_concurrent_read_modify_writes_lose_nothing(tmp_path: Path, storage_url: str) -> None:
    """200 increments from 200 concurrent writes, each reading the row and writing it back:
    SQLite's one writer and PostgreSQL's row lock both make the total exact."""
    from chatlabel.storage.dialect import for_update

    async with opened(tmp_path, storage_url) as db:
        await db.write(_table)
        await db.write(_put, "counter", 0)

        def bump(conn: Any) -> None:
            n = conn.execute("SELECT n FROM t WHERE k = 'counter'" + for_update(conn)).fetchone()[0]
            conn.execute("UPDATE t SET n = ? WHERE k = 'counter'", (n + 1,))

        await asyncio.gather(*(db.write(bump, short=True) for _ in range(200)))
        assert await db.read(_rows) == [("counter", 200)]


def _slow_put(conn: Any, k: str, n: int) -> int:
    time.sleep(0.03)  # a write that takes a while, as a model round's chunk can
    return _put(conn, k, n)


async def test_background_writes_give_way_while_others_write(
    tmp_path: Path, storage_url: str
) -> None:
    async with opened(tmp_path, storage_url) as db:
        await db.write(_table)  # someone else's write
        t0 = time.monotonic()
        assert await db.write(_slow_put, "a", 1, background=True) == 1
        gave_way = time.monotonic() - t0
        # Nobody else wrote since: the next background write goes at full speed.
        t0 = time.monotonic()
        assert await db.write(_slow_put, "b", 2, background=True) == 1
        alone = time.monotonic() - t0
        assert gave_way >= (1 + RATIO) * 0.03, gave_way  # it landed, then paused RATIO x as long
        assert alone < gave_way, (alone, gave_way)
        assert await db.read(_rows) == [("a", 1), ("b", 2)]


async def test_reads_and_streamed_batches(tmp_path: Path, storage_url: str) -> None:
    async with opened(tmp_path, storage_url) as db:
        await db.write(_table)

        def many(conn: Any) -> None:
            conn.executemany(
                "INSERT INTO t (k, n) VALUES (?, ?)", [(f"k{i:05}", i) for i in range(5000)]
            )

        await db.write(many)
        got: list[Any] = []
        sizes = []
        async for batch in db.stream_batches(
            "SELECT k, n FROM t WHERE n >= :lo ORDER BY k", {"lo": 10}, 2000
        ):
            sizes.append(len(batch))
            got += batch
        assert sizes == [2000, 2000, 990]
        assert got[0] == ("k00010", 10) and got[-1] == ("k04999", 4999)
        named = [r async for r in db.stream("SELECT k, n FROM t WHERE n < ? ORDER BY k", (3,))]
        assert [(r["k"], r[1]) for r in named] == [("k00000", 0), ("k00001", 1), ("k00002", 2)]


async def test_exclusive_work_runs_in_one_holder_at_a_time(
    tmp_path: Path, storage_url: str, backend: str
) -> None:
    async with opened(tmp_path, storage_url) as one, opened(tmp_path, storage_url) as other:
        async with one.exclusive("dawid-skene") as mine:
            assert mine
            async with other.exclusive("dawid-skene") as theirs:
                # One SQLite file has one `run` (its lock file): nothing to share there.
                assert theirs is (backend == "sqlite")
            async with other.exclusive("reminders") as different:
                assert different
        async with other.exclusive("dawid-skene") as theirs:
            assert theirs, "the lock was not released"


async def test_wake_ups_wait_for_the_commit(tmp_path: Path, storage_url: str, backend: str) -> None:
    async with opened(tmp_path, storage_url) as store:
        await store.write(_table)
        heard: list[str] = []

        def tx(conn: Any, tag: str, fail: bool) -> bool:
            _put(conn, tag, 1)
            store.after_commit(lambda: heard.append(tag))
            # PostgreSQL: nobody is woken before COMMIT (another connection would not see
            # the row yet); SQLite's readers queue behind its one writer, so at once is safe.
            assert heard == ([tag] if backend == "sqlite" else [])
            if fail:
                raise ValueError("rolled back")
            return True

        assert await store.write(tx, "kept", False)
        assert heard == ["kept"]
        heard.clear()
        with pytest.raises(ValueError):
            await store.write(tx, "undone", True)
        assert heard == (["undone"] if backend == "sqlite" else []), "a rollback wakes nobody"
        store.after_commit(lambda: heard.append("outside"))
        assert heard[-1] == "outside"


async def test_a_background_round_runs_in_the_holder_and_survives_its_failures(
    tmp_path: Path, storage_url: str, backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    log = logging.getLogger("chatlabel.test-round")
    ran: list[str] = []

    def failed() -> None:
        log.exception("round failed")

    def mine() -> list[logging.LogRecord]:
        # Only the round's own records: the stores' own warnings are not what is tested.
        return [r for r in caplog.records if r.name == log.name]

    async def work() -> None:
        ran.append("work")

    async def storage_down() -> None:
        raise StorageUnavailable(
            StorageIncident("disk_full", tmp_path / "x.db", time.time(), 1, "disk full")
        )

    async def broken() -> None:
        raise ValueError("a bug in the round")

    async with opened(tmp_path, storage_url) as one, opened(tmp_path, storage_url) as other:
        async with one.exclusive("model"):
            await exclusive_round(other.exclusive, "model", work, failed)
        # Another process holding the round's lock: this one skips it (PostgreSQL only).
        assert ran == (["work"] if backend == "sqlite" else [])
        await exclusive_round(other.exclusive, "model", work, failed)
        assert ran[-1:] == ["work"]
        with caplog.at_level(logging.ERROR, logger="chatlabel.test-round"):
            await exclusive_round(one.exclusive, "model", storage_down, failed)
            assert not mine(), "storage faults are logged by storage, once"
            await exclusive_round(one.exclusive, "model", broken, failed)
        assert [r.getMessage() for r in mine()] == ["round failed"]
        assert mine()[0].exc_info is not None
        async with other.exclusive("model") as free:
            assert free, "a failed round released its lock"


async def test_an_announcement_wakes_the_other_process_only(tmp_path: Path) -> None:
    url = pg.fresh_database()
    async with opened(tmp_path, url) as a, opened(tmp_path, url) as b:
        heard = {"a": 0, "b": 0}
        woke = asyncio.Event()

        def b_heard() -> None:
            heard["b"] += 1
            woke.set()

        a.on_change(lambda: heard.__setitem__("a", heard["a"] + 1))
        b.on_change(b_heard)
        await asyncio.sleep(0.7)  # both listening (each wakes once as it starts listening)
        base = dict(heard)
        woke.clear()
        a.announce()
        await asyncio.wait_for(woke.wait(), 5)  # TimeoutError: never heard the announcement
        assert heard["b"] > base["b"]
        await asyncio.sleep(0.5)
        assert heard["a"] == base["a"], "a process woke itself through the database"


class _Proxy:
    """A TCP forwarder in front of the server: cutting it makes the server unreachable (open
    connections reset, new ones refused), as a network fault or a stopped server would."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.server: asyncio.Server | None = None
        self.port = 0
        self.links: set[asyncio.StreamWriter] = set()

    async def start(self, port: int = 0) -> None:
        self.server = await asyncio.start_server(self._link, "127.0.0.1", port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for w in list(self.links):
            w.transport.abort()
        await self.server.wait_closed()

    async def _link(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            w.close()
            return
        self.links |= {w, uw}

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pump(r, uw), pump(ur, w))
        self.links -= {w, uw}


async def test_an_unreachable_server_is_an_incident_refused_then_cleared(tmp_path: Path) -> None:
    url = pg.fresh_database()
    server_port = int(url.rsplit(":", 1)[1].split("/")[0])
    proxy = _Proxy(server_port)
    await proxy.start()
    via_proxy = url.replace(f":{server_port}/", f":{proxy.port}/")
    events: list[object] = []
    async with opened(tmp_path, via_proxy) as db:
        db.incidents.subscribe(events.append)
        await db.write(_table)
        assert await db.write(_put, "before", 1, short=True) == 1
        await proxy.cut()
        t0 = time.monotonic()
        with pytest.raises(StorageUnavailable) as refused:
            await db.write(_put, "during", 2, short=True)
        took = time.monotonic() - t0
        assert refused.value.cause == "unreachable"
        assert "127.0.0.1" in str(refused.value.database) and "nothing was stored" in str(
            refused.value
        )
        assert 2.9 <= took <= 8, took  # retried for 3 s (each try at most a 3 s connect)
        with pytest.raises(StorageUnavailable):
            await db.write(_put, "during2", 3, short=True)
        assert [type(e) for e in events] == [IncidentStarted]
        await proxy.start(proxy.port)  # the network is back
        assert await db.write(_put, "after", 4, short=True) == 1
        assert [type(e) for e in events] == [IncidentStarted, IncidentCleared]
        cleared = events[1]
        assert isinstance(cleared, IncidentCleared) and cleared.incident.refused == 2
        assert await db.read(_rows) == [("after", 4), ("before", 1)]
    await proxy.cut()


async def test_a_server_unreachable_at_start_is_tried_again_then_a_clear_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`chatlabel run` before the database is up: it keeps trying with backoff (one WARNING)
    and connects when the server answers; one that never does ends in one clear error, not a
    traceback, and a server that refuses chatlabel for good (no such database) fails at once."""
    from chatlabel.storage.pg import PgDatabase
    from chatlabel.storage.pgtemp import free_port
    from chatlabel.storage.schema import UnusableDatabase

    url = pg.fresh_database()
    server_port = int(url.rsplit(":", 1)[1].split("/")[0])
    proxy = _Proxy(server_port)
    port = free_port()
    via_proxy = url.replace(f":{server_port}/", f":{port}/")

    # Nothing listening for 1.5 s, then the server is there: opened, migrated, usable.
    caplog.set_level("INFO", logger="chatlabel.storage")
    db = PgDatabase(via_proxy, open_retry=20)
    late = asyncio.get_running_loop().call_later(
        1.5, lambda: asyncio.ensure_future(proxy.start(port))
    )
    t0 = time.monotonic()
    try:
        await db.open()
        took = time.monotonic() - t0
        assert 1.5 <= took <= 8, took
        await db.write(_table)
        assert await db.write(_put, "up", 1, short=True) == 1
        assert db.incidents.incident is None and not db.incidents.troubled
    finally:
        late.cancel()
        await db.close()
        if proxy.server is not None:
            await proxy.cut()
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "trying again" in warnings[0].getMessage(), warnings
    assert any("answers again" in r.getMessage() for r in caplog.records)

    # Never there: retried for open_retry seconds, then StorageUnavailable naming the server.
    db = PgDatabase(via_proxy, open_retry=1.0)
    t0 = time.monotonic()
    with pytest.raises(StorageUnavailable) as refused:
        await db.open()
    assert 1.0 <= time.monotonic() - t0 <= 6
    assert refused.value.cause == "unreachable"
    assert f"127.0.0.1:{port}" in str(refused.value) and "cannot reach" in str(refused.value)

    # The server answers and refuses: no database of that name. At once, and said so.
    missing = url.rsplit("/", 1)[0] + "/no_such_database"
    db = PgDatabase(missing, open_retry=20)
    t0 = time.monotonic()
    with pytest.raises(UnusableDatabase, match="no_such_database.*does not exist"):
        await db.open()
    assert time.monotonic() - t0 < 5


async def test_a_local_server_is_reached_through_its_unix_socket(tmp_path: Path) -> None:
    url = pg.fresh_database()
    socket_url = pg.server().socket_url(url.rsplit("/", 1)[1])
    async with opened(tmp_path, socket_url) as db:
        await db.write(_table)
        assert await db.write(_put, "a", 1) == 1
        # Over a Unix socket the server has no address for the session (TCP would give one).
        assert await db.read(lambda c: c.execute("SELECT inet_server_addr()").fetchone()[0]) is None
    assert pg.rows(url, "SELECT k, n FROM t") == [("a", 1)]  # the same database, over TCP


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("postgresql://u@/db?host=run/pg", "a socket directory: an absolute path"),
        ("postgresql://u@/db", "postgresql://USER@/DATABASE?host=/SOCKET/DIRECTORY"),
        ("postgresql://u@/?host=/run/pg", "postgresql://USER@HOST:PORT/DATABASE"),
    ],
)
def test_a_socket_url_names_an_absolute_directory_and_a_database(
    tmp_path: Path, url: str, problem: str
) -> None:
    with pytest.raises(ConfigError, match="storage.url") as err:
        _config(tmp_path, url)
    assert problem in str(err.value)
    assert _config(tmp_path, "postgresql://u@/db?host=/run/pg&port=5433").storage.url
