"""Storage faults for real: a full disk, a file-size limit and another process's write lock.

Each scenario runs the service over a real SQLite file, breaks storage for real while 16
annotators press buttons, then lets the cause clear. Asserted at the service level: every press
returns or raises StorageUnavailable within 5 s; every answer the service reported as recorded
is in the database and nothing else is; labeling resumes on the same open database; subscribers
hear one "started" and one "cleared" per incident; the log has one line for each, no traceback.

The full disk is a 3 MiB tmpfs when this machine lets the test mount one (it must run as root),
otherwise a file-size limit (RLIMIT_FSIZE) in a child process; the file-size limit also runs on
its own, always. Run as a script, this file is that child: `test_faults_storage.py rlimit DIR`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import resource
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest
from click.testing import CliRunner

from chatlabel.cli import main
from chatlabel.config import Config, parse_config
from chatlabel.importer import import_file
from chatlabel.service import (
    IncidentCleared,
    IncidentStarted,
    LowSpace,
    SpaceRecovered,
    StorageEvent,
    StorageUnavailable,
    Task,
    UserRef,
)
from chatlabel.service.labeling import LabelingService
from chatlabel.storage.db import RETRY_SECONDS, Database
from chatlabel.storage.health import IncidentTracker

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 5.0  # every press must be answered within this many seconds
CROWD = 16
PROJECT = {
    "name": "p",
    "labels": ["a", "b", "c"],
    "overlap": 1,
    "max_overlap": 1,
    "quality": {"qualification": 0, "gold_rate": 0.0},
}
LOCKER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
conn.execute("UPDATE projects SET paused = paused")  # a write in progress, as in a shell
print("locked", flush=True)
sys.stdin.readline()
conn.execute("COMMIT")
conn.close()
"""


# -- the crowd ---------------------------------------------------------------------------------


def _config(folder: Path) -> Config:
    data = {"storage": {"database": str(folder / "chatlabel.db")}, "project": [PROJECT]}
    return parse_config(data, folder / "chatlabel.toml")


class Crowd:
    """Annotators pressing the first label of their item, each press timed."""

    def __init__(self, service: LabelingService) -> None:
        self.service = service
        self.users = [UserRef("telegram", str(i), f"u{i}") for i in range(CROWD)]
        self.tasks: dict[str, Task] = {}
        self.acked: list[int] = []  # assignments the service said it recorded
        self.refusals: list[StorageUnavailable] = []
        self.elapsed: list[float] = []  # every press, seconds
        self.refused_elapsed: list[float] = []

    async def start(self) -> None:
        """Everyone joins and gets an item."""
        for u in self.users:
            await self.service.join(u)
            task = await self.service.next_task(u)
            assert isinstance(task, Task)
            self.tasks[u.key] = task

    async def press(self, user: UserRef) -> bool:
        """Press a label on the user's item; True if recorded, False if refused."""
        task = self.tasks[user.key]
        t0 = time.monotonic()
        call = self.service.answer(user, task.assignment_id, task.choices[0], then_next=True)
        try:
            out = await asyncio.wait_for(call, LIMIT)
        except StorageUnavailable as exc:
            self.refusals.append(exc)
            self.refused_elapsed.append(time.monotonic() - t0)
            self.elapsed.append(self.refused_elapsed[-1])
            return False
        except TimeoutError:
            raise AssertionError(f"a press got no answer within {LIMIT} s") from None
        self.elapsed.append(time.monotonic() - t0)
        assert out.status == "recorded", out
        assert isinstance(out.next, Task)
        self.acked.append(task.assignment_id)
        self.tasks[user.key] = out.next
        return True

    async def round(self, users: list[UserRef]) -> list[bool]:
        """Everyone in `users` presses at once."""
        return list(await asyncio.gather(*(self.press(u) for u in users)))


class _Log(logging.Handler):
    """chatlabel's log records, as (level, message, has a traceback)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[tuple[str, str, bool]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((record.levelname, record.getMessage(), record.exc_info is not None))


@contextlib.contextmanager
def _captured_log() -> Iterator[_Log]:
    logger = logging.getLogger("chatlabel")
    handler, level = _Log(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _event(e: StorageEvent) -> dict[str, Any]:
    if isinstance(e, IncidentStarted | IncidentCleared):
        i = e.incident
        return {
            "type": type(e).__name__,
            "cause": i.cause,
            "refused": i.refused,
            "since": i.since,
            "cleared_at": i.cleared_at,
            "database": str(i.database),
        }
    return {"type": type(e).__name__, "free": e.space.free, "low": e.space.low}


def _stored(path: Path) -> list[int]:
    conn = sqlite3.connect(path)
    try:
        return [r[0] for r in conn.execute("SELECT assignment_id FROM answers")]
    finally:
        conn.close()


def _truncate_wal(path: Path) -> None:
    """Empty the WAL, so the next commit must grow it (a full disk then refuses it)."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=5)
    try:
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert busy == 0
    finally:
        conn.close()


async def _setup(folder: Path) -> tuple[Database, LabelingService, Crowd]:
    cfg = _config(folder)
    db = await Database(cfg.database_path()).open()
    svc = LabelingService(db, cfg, rng=random.Random(0))
    await svc.start()
    items = folder / "items.jsonl"
    items.write_text(
        "".join(json.dumps({"id": f"i{n}", "text": f"t{n}"}) + "\n" for n in range(200))
    )
    await import_file(svc, "p", items)
    crowd = Crowd(svc)
    await crowd.start()
    return db, svc, crowd


def _report(
    mode: str,
    db: Database,
    crowd: Crowd,
    events: list[StorageEvent],
    heard_async: list[str],
    log: _Log,
    same_connections: bool,
    **figures: Any,
) -> dict[str, Any]:
    return {
        "mode": mode,
        "database": str(db.path),
        "causes": [e.cause for e in crowd.refusals],
        "refused_databases": sorted({str(e.database) for e in crowd.refusals}),
        "refused_elapsed": crowd.refused_elapsed,
        "elapsed": crowd.elapsed,
        "acked": crowd.acked,
        "stored": _stored(db.path),
        "events": [_event(e) for e in events],
        "heard_async": heard_async,
        "log": log.records,
        "same_connections": same_connections,
        **figures,
    }


# -- the faults --------------------------------------------------------------------------------


class DiskFault(Protocol):
    """Something that makes the database's files unable to grow, and then lets them."""

    mode: str

    def fill(self) -> None:
        """Break: no more room."""

    def free(self) -> None:
        """Clear: room again."""


class FullTmpfs:
    """A small tmpfs filled to the last byte by a filler file; freed by deleting it."""

    mode = "tmpfs"

    def __init__(self, folder: Path) -> None:
        self.filler = folder / "filler"

    def fill(self) -> None:
        """Write until the filesystem says ENOSPC, in big then single-byte steps."""
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            for step in (1 << 16, 1):
                chunk = b"\0" * step
                with contextlib.suppress(OSError):
                    while True:
                        os.write(fd, chunk)
        finally:
            os.close(fd)

    def free(self) -> None:
        """Delete the filler."""
        self.filler.unlink()


class FileSizeLimit:
    """RLIMIT_FSIZE below one WAL frame: writes past 4 KiB of any file fail with EFBIG."""

    mode = "rlimit"

    def __init__(self) -> None:
        self.saved = resource.getrlimit(resource.RLIMIT_FSIZE)

    def fill(self) -> None:
        """Lower the soft limit (SIGXFSZ ignored, so a write fails instead of killing us)."""
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, self.saved[1]))

    def free(self) -> None:
        """Raise it back."""
        resource.setrlimit(resource.RLIMIT_FSIZE, self.saved)


# -- the scenarios -----------------------------------------------------------------------------


async def disk_scenario(folder: Path, data: Path, fault: DiskFault) -> dict[str, Any]:
    """16 presses, a command and an import on a disk that cannot grow, then freed."""
    big = data / "big.jsonl"  # ~3 MB of text: more than the writer's 2 MiB page cache
    big.write_text(
        "".join(json.dumps({"id": f"b{n}", "text": "x" * 1000}) + "\n" for n in range(3000))
    )
    with _captured_log() as log:
        db, svc, crowd = await _setup(folder)
        try:
            events: list[StorageEvent] = []
            heard_async: list[str] = []

            async def coordinator(e: StorageEvent) -> None:  # as a chat alert would be sent
                await asyncio.sleep(0)
                heard_async.append(type(e).__name__)

            svc.health.subscribe(events.append)
            svc.health.subscribe(coordinator)
            a, b = crowd.users[:8], crowd.users[8:]
            assert all(await crowd.round(crowd.users))  # before: every press lands
            connections = (db._inline, db._conn)

            _truncate_wal(db.path)
            fault.fill()
            low = svc.health.check_space().low  # tmpfs: free space is now 0
            status_full = svc.health.status()
            presses_a = asyncio.ensure_future(crowd.round(a))
            await asyncio.sleep(1.0)
            presses_b = asyncio.ensure_future(crowd.round(b))  # more refusals, same incident
            # A long write (a coordinator pausing a project) is given up on at the next try:
            # another try would redo all its work.
            t0 = time.monotonic()
            try:
                await asyncio.wait_for(svc.set_project_paused("p", False), LIMIT)
            except StorageUnavailable as exc:
                long_refused = (time.monotonic() - t0, exc.cause)
            else:
                raise AssertionError("a long write was stored on a full disk")
            # An import too big for the page cache spills to the WAL half-way through: the
            # error comes from inside the write, not its COMMIT, and nothing of it may stay.
            try:
                await asyncio.wait_for(import_file(svc, "p", big), LIMIT)
            except StorageUnavailable:
                big_refused = True
            else:
                big_refused = False
            reads_work = await svc.current_project(a[0]) == "p"  # reading needs no room
            results = await presses_a + await presses_b
            incident_during = svc.health.incident

            fault.free()
            svc.health.check_space()
            # The same items pressed again (they stayed as they were), then one more each.
            again = await crowd.round(crowd.users)
            more = await crowd.round(crowd.users)
            await svc.set_project_paused("p", False)
            same = (db._inline, db._conn) == connections
            items = await db.read(lambda c: c.execute("SELECT COUNT(*) FROM items").fetchone()[0])
        finally:
            await db.close()
        return _report(
            fault.mode,
            db,
            crowd,
            events,
            heard_async,
            log,
            same,
            during=results,
            after=again + more,
            low_when_full=low,
            free_when_full=status_full.space.free,
            other_refused=1 + big_refused,  # the long write, the import
            big_import_refused=big_refused,
            items_after=items,
            long_refused_after=long_refused[0],
            long_refused_cause=long_refused[1],
            reads_work=reads_work,
            incident_open_during=incident_during is not None,
            incident_open_after=svc.health.incident is not None,
        )


async def lock_scenario(folder: Path) -> dict[str, Any]:
    """Another process holds BEGIN IMMEDIATE past the retry window, then commits."""
    with _captured_log() as log:
        db, svc, crowd = await _setup(folder)
        try:
            events: list[StorageEvent] = []
            heard_async: list[str] = []

            async def coordinator(e: StorageEvent) -> None:
                await asyncio.sleep(0)
                heard_async.append(type(e).__name__)

            svc.health.subscribe(events.append)
            svc.health.subscribe(coordinator)
            a, b = crowd.users[:8], crowd.users[8:]
            assert all(await crowd.round(crowd.users))
            connections = (db._inline, db._conn)

            locker = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                LOCKER,
                str(db.path),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
            assert locker.stdout is not None and locker.stdin is not None
            assert await asyncio.wait_for(locker.stdout.readline(), 10) == b"locked\n"
            t0 = time.monotonic()
            presses_a = asyncio.ensure_future(crowd.round(a))

            async def long_write() -> float:  # a coordinator's command: waits longer for a lock
                t = time.monotonic()
                await asyncio.wait_for(svc.set_project_paused("p", False), LIMIT)
                return time.monotonic() - t

            long = asyncio.ensure_future(long_write())
            await asyncio.sleep(2.0)
            presses_b = asyncio.ensure_future(crowd.round(b))
            during_a = await asyncio.wait_for(presses_a, LIMIT + 1)
            b_waiting = not presses_b.done() and not long.done()
            locker.stdin.write(b"release\n")
            await locker.stdin.drain()
            assert await asyncio.wait_for(locker.wait(), 10) == 0
            held = time.monotonic() - t0
            during_b = await asyncio.wait_for(presses_b, LIMIT + 1)
            long_elapsed = await asyncio.wait_for(long, LIMIT + 1)
            again = await crowd.round(a)  # A's items stayed as they were: pressed again, they land
            more = await crowd.round(crowd.users)
            same = (db._inline, db._conn) == connections
        finally:
            await db.close()
        return _report(
            "lock",
            db,
            crowd,
            events,
            heard_async,
            log,
            same,
            during=during_a,
            during_b=during_b,
            b_waiting_at_release=b_waiting,
            after=again + more,
            held=held,
            long_elapsed=long_elapsed,
            incident_open_after=svc.health.incident is not None,
        )


# -- what every scenario must show ----------------------------------------------------------


def _check(r: dict[str, Any], causes: set[str]) -> None:
    refused = len(r["causes"])
    assert refused > 0, "the fault refused nothing: it was not a fault"
    # Every press answered within the limit, and a refused press was retried for the window.
    assert max(r["elapsed"]) < LIMIT, r["elapsed"]
    assert min(r["refused_elapsed"]) >= RETRY_SECONDS - 0.05, r["refused_elapsed"]
    # One typed exception with the cause and the database.
    assert set(r["causes"]) <= causes and len(set(r["causes"])) == 1, r["causes"]
    assert r["refused_databases"] == [r["database"]]
    # Zero acknowledged answers lost, none stored that was not acknowledged, none twice.
    assert len(r["acked"]) == len(set(r["acked"]))
    assert sorted(r["stored"]) == sorted(r["acked"])
    # Labeling resumed on the same open database, by itself.
    assert all(r["after"]) and r["same_connections"] and not r["incident_open_after"]
    # One incident: started once, cleared once, with the cause and every refusal counted.
    incident = [e for e in r["events"] if e["type"] in ("IncidentStarted", "IncidentCleared")]
    assert [e["type"] for e in incident] == ["IncidentStarted", "IncidentCleared"], incident
    started, cleared = incident
    assert started["cause"] == cleared["cause"] == r["causes"][0]
    assert started["database"] == r["database"]
    assert started["refused"] == 1
    assert cleared["refused"] == refused + r.get("other_refused", 0)
    assert cleared["since"] == started["since"] < cleared["cleared_at"]
    assert r["heard_async"].count("IncidentStarted") == 1
    assert r["heard_async"].count("IncidentCleared") == 1
    # The log: one line as it starts, one as it clears, each naming the database; no traceback.
    assert not [x for x in r["log"] if x[2]], r["log"]
    starts = [x for x in r["log"] if "writes are refused" in x[1]]
    clears = [x for x in r["log"] if "writes work again" in x[1]]
    assert len(starts) == 1 and starts[0][0] == "ERROR" and r["database"] in starts[0][1]
    assert len(clears) == 1 and r["database"] in clears[0][1], r["log"]
    assert f"{cleared['refused']} refused" in clears[0][1]


def _figures(r: dict[str, Any]) -> str:
    return (
        f"{r['mode']}: {len(r['causes'])} refused ({r['causes'][0]}) after "
        f"{min(r['refused_elapsed']):.2f}-{max(r['refused_elapsed']):.2f} s; slowest press "
        f"{max(r['elapsed']):.2f} s; {len(r['acked'])} acknowledged, {len(r['stored'])} stored"
    )


def _mount_tmpfs(folder: Path) -> bool:
    """Mount a 3 MiB tmpfs on `folder`; False where the machine does not allow it."""
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(folder)],
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _in_child(mode: str, folder: Path) -> dict[str, Any]:
    """Run a disk scenario in a child process (a file-size limit must not hit pytest's files)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests")]))
    done = subprocess.run(
        [sys.executable, __file__, mode, str(folder)],
        capture_output=True,
        text=True,
        timeout=40,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return report


def _disk_checks(r: dict[str, Any]) -> None:
    assert not any(r["during"]), "a write was stored while the disk could not grow"
    assert r["incident_open_during"] and r["reads_work"]
    assert r["long_refused_after"] < 1.0 and r["long_refused_cause"] == r["causes"][0]
    assert r["big_import_refused"] and r["items_after"] == 200


# -- the tests ---------------------------------------------------------------------------------


def test_a_full_disk_refuses_presses_within_5_s_and_labeling_resumes(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    if _mount_tmpfs(disk):
        try:
            r = asyncio.run(disk_scenario(disk, tmp_path, FullTmpfs(disk)))
        finally:
            subprocess.run(["umount", "-l", str(disk)], capture_output=True, timeout=10)
        _check(r, {"disk_full"})
        # Free space was seen as low (and announced once), then fine again.
        assert r["low_when_full"] and r["free_when_full"] < 4096
        space = [e["type"] for e in r["events"] if e["type"] in ("LowSpace", "SpaceRecovered")]
        assert space == ["LowSpace", "SpaceRecovered"]
    else:  # no mounting here: the same scenario under a file-size limit, in a child
        r = _in_child("rlimit", tmp_path)
        _check(r, {"disk_full", "io_error"})
    _disk_checks(r)
    print("\n" + _figures(r), f"; long write refused after {r['long_refused_after']:.2f} s")


def test_a_file_size_limit_refuses_presses_within_5_s_and_labeling_resumes(tmp_path: Path) -> None:
    r = _in_child("rlimit", tmp_path)
    # SQLite reports EFBIG as an I/O error (ENOSPC alone is "disk full").
    _check(r, {"io_error", "disk_full"})
    _disk_checks(r)
    print("\n" + _figures(r))


async def test_a_foreign_write_lock_refuses_presses_within_5_s_and_they_land_after(
    tmp_path: Path,
) -> None:
    r = await lock_scenario(tmp_path)
    _check(r, {"locked"})
    assert r["held"] > RETRY_SECONDS, "the lock must outlast the retry window"
    assert not any(r["during"])  # pressed at the start: refused once their window was up
    # Pressed 2 s in: still waiting when the lock went, then recorded without a new press.
    assert r["b_waiting_at_release"] and all(r["during_b"])
    # A long write waits longer for a lock (up to 10 s) and landed when it went.
    assert r["held"] - 0.5 < r["long_elapsed"] < LIMIT
    print(
        "\n" + _figures(r),
        f"; lock held {r['held']:.2f} s; presses made 2 s in landed; long write "
        f"{r['long_elapsed']:.2f} s",
    )


async def test_a_listener_that_fails_does_not_stop_the_others_or_the_writer(
    tmp_path: Path,
) -> None:
    # A real SQLITE_BUSY: another connection holds the write lock, this one may not wait.
    path = tmp_path / "x.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    try:
        other.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        busy = exc
    else:
        raise AssertionError("no SQLITE_BUSY")
    finally:
        holder.close()
        other.close()

    tracker = IncidentTracker(path, clock=lambda: 100.0)
    heard: list[str] = []

    def broken(e: StorageEvent) -> None:
        raise RuntimeError("listener bug")

    async def broken_async(e: StorageEvent) -> None:
        raise RuntimeError("async listener bug")

    tracker.subscribe(broken)
    tracker.subscribe(broken_async)
    unsubscribe = tracker.subscribe(lambda e: heard.append(type(e).__name__))
    with _captured_log() as log:
        errors = [tracker.refuse(busy) for _ in range(3)]
        tracker.recovered()
        tracker.recovered()  # nothing open: no second "cleared"
        unsubscribe()
        tracker.refuse(busy)
        await asyncio.sleep(0.01)  # the async listener's task runs and fails
        await tracker.close()
    assert heard == ["IncidentStarted", "IncidentCleared"]
    assert [e.incident.refused for e in errors] == [1, 2, 3]
    assert all(e.cause == "locked" and e.database == path for e in errors)
    assert isinstance(errors[0].__cause__, sqlite3.OperationalError)
    failures = [m for level, m, tb in log.records if "listener failed" in m and tb]
    assert len(failures) == 6  # each broken listener, at start, clear and the second start


async def test_a_write_whose_caller_stopped_waiting_is_not_retried_behind_its_back(
    tmp_path: Path,
) -> None:
    path = tmp_path / "x.db"
    async with Database(path) as db:
        await db.write(lambda c: c.execute("CREATE TABLE t (k TEXT)"))
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            put = "INSERT INTO t VALUES (?)"
            with pytest.raises(TimeoutError):  # e.g. a handler cancelled at shutdown
                await asyncio.wait_for(
                    db.write(lambda c: c.execute(put, ("gone",)), short=True), 0.5
                )
            waiting = asyncio.ensure_future(
                db.write(lambda c: c.execute(put, ("kept",)), short=True)
            )
            await asyncio.sleep(0.3)
        finally:
            other.execute("COMMIT")
            other.close()
        await asyncio.wait_for(waiting, LIMIT)
        rows = await db.read(lambda c: [r[0] for r in c.execute("SELECT k FROM t")])
        # Retried with the lock gone: only the write someone still waited for; no incident.
        assert rows == ["kept"] and db.incidents.incident is None and not db.incidents.troubled


async def test_low_free_space_is_logged_every_check_and_announced_once(tmp_path: Path) -> None:
    # Thresholds over the whole disk: whatever this machine has free is "low".
    cfg = parse_config(
        {
            "storage": {
                "database": str(tmp_path / "c.db"),
                "min_free_mb": 10**9,
                "min_free_percent": 100,
                "space_check_seconds": 1,
            },
            "project": [PROJECT],
        },
        tmp_path / "c.toml",
    )
    async with Database(cfg.database_path()) as db:
        svc = LabelingService(db, cfg)
        events: list[StorageEvent] = []
        svc.health.subscribe(events.append)
        stop = asyncio.Event()
        with _captured_log() as log:
            watch = asyncio.create_task(svc.health.watch(stop))
            await asyncio.sleep(1.5)  # a check at start, one a second later
            stop.set()
            await asyncio.wait_for(watch, 5)
        warnings = [m for level, m, _ in log.records if level == "WARNING" and "low disk" in m]
        assert len(warnings) == 2 and str(db.path) in warnings[0]
        assert [type(e) for e in events] == [LowSpace]
        status = svc.health.status()
        assert status.space.low and status.database_bytes > 0 and status.space.total > 0
    assert not any(isinstance(e, SpaceRecovered) for e in events)


def test_status_shows_the_database_wal_and_free_space(tmp_path: Path) -> None:
    runner = CliRunner()
    d = tmp_path / "demo"
    assert runner.invoke(main, ["init", str(d), "--items", "5"]).exit_code == 0
    r = runner.invoke(main, ["status", str(d / "chatlabel.toml")])
    assert r.exit_code == 0, r.output
    line = next(x for x in r.output.splitlines() if x.startswith("database "))
    assert "chatlabel.db" in line and ", WAL " in line and " free of " in line


if __name__ == "__main__":  # the child process of the file-size-limit scenario
    _mode, _folder = sys.argv[1], Path(sys.argv[2])
    _folder.mkdir(parents=True, exist_ok=True)
    print(json.dumps(asyncio.run(disk_scenario(_folder, _folder, FileSizeLimit()))))
