"""Operator faults: a database from a newer chatlabel, two `run`s on one database, another
process polling the same bot token, and a backup taken while the bot is writing.

Everything runs the real CLI (`python -m chatlabel`) or the real service on real SQLite files.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .bot_process import chatlabel_run

pytestmark = pytest.mark.timeout(60)


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The installed command line, as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "chatlabel", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def write_config(tmp: Path, extra: str = "") -> Path:
    """A one-project config whose database is tmp/chatlabel.db."""
    cfg = tmp / "chatlabel.toml"
    cfg.write_text(
        '[storage]\ndatabase = "chatlabel.db"\n\n'
        '[[project]]\nname = "p"\nlabels = ["a", "b"]\n' + extra,
        encoding="utf-8",
    )
    return cfg


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- a database from a newer chatlabel --------------------------------------------------------


@pytest.mark.parametrize("journal", ["wal", "delete"])
def test_a_newer_database_is_refused_in_one_line_and_left_byte_identical(
    tmp_path: Path, journal: str
) -> None:
    cfg = write_config(tmp_path)
    items = tmp_path / "items.jsonl"
    items.write_text('{"id": "n1", "text": "hello"}\n', encoding="utf-8")
    db = tmp_path / "chatlabel.db"
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA journal_mode = {journal}")
    conn.execute("CREATE TABLE future (x)")
    conn.execute("INSERT INTO future VALUES ('from chatlabel 9')")
    conn.execute("PRAGMA user_version = 99")
    conn.commit()
    conn.close()
    before = sha(db)
    commands = [
        ("status", str(cfg)),
        ("import", str(cfg), str(items)),
        ("export", str(cfg)),
        ("run", str(cfg)),
        ("backup", str(cfg), "-o", str(tmp_path / "copy.db")),
    ]
    # Every command on a rollback-journal file (the old code's WAL switch changed its header);
    # one on a WAL file, as a newer chatlabel would leave it.
    for args in commands if journal == "delete" else commands[:1]:
        r = cli(*args)
        assert r.returncode == 1, (args, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in r.stderr, (args, r.stderr)
        assert str(db) in lines[0] and "newer chatlabel" in lines[0], lines[0]
        assert "schema version 99" in lines[0]
        # Not even the journal mode: the first thing the old code did was switch it to WAL.
        assert sha(db) == before, args
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("chatlabel.db")) == [
            "chatlabel.db"
        ]
    assert not (tmp_path / "copy.db").exists()


def test_a_file_that_is_not_a_database_is_refused_in_one_line(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    db = tmp_path / "chatlabel.db"
    db.write_bytes(b"these are not the pages you are looking for\n" * 200)
    before = sha(db)
    r = cli("status", str(cfg))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert "not a chatlabel database" in r.stderr
    assert sha(db) == before


# -- `chatlabel run` in its own process -------------------------------------------------------

TOKEN = "515151:OPERATOR-TEST"


def telegram_config(tmp: Path, base_url: str, extra: str = "") -> Path:
    """A config with one project and a [telegram] section pointing at the emulator."""
    return write_config(
        tmp, f'\n[telegram]\ntoken_env = "OPERATOR_TEST_TOKEN"\nbase_url = "{base_url}"\n' + extra
    )


def bot_process(cfg: Path, log: Path) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
    """`chatlabel run CONFIG` in its own process, output to `log`; killed if still running."""
    return chatlabel_run(cfg, log, {"OPERATOR_TEST_TOKEN": TOKEN})


def logged(log: Path) -> str:
    """What the bot has logged so far."""
    return log.read_text(errors="replace")


async def until_logged(
    log: Path,
    text: str,
    proc: subprocess.Popen[bytes],
    timeout: float = 20,  # noqa: ASYNC109
) -> None:
    """Wait until the bot's log shows `text` (fails early if the process exits)."""
    deadline = time.monotonic() + timeout
    while text not in logged(log):
        if proc.poll() is not None and text not in logged(log):
            raise AssertionError(f"exited {proc.returncode} before {text!r}:\n{logged(log)}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {text!r} within {timeout}s:\n{logged(log)}")
        await asyncio.sleep(0.05)


def peak_rss(pid: int) -> int:
    """The process's peak resident memory so far (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


MiB = 1024 * 1024


async def test_a_large_video_is_streamed_from_disk_not_read_whole(tmp_path: Path) -> None:
    from chatlabel.emulators.telegram import BotApiEmulator

    size = 45 * MiB  # under Telegram's 50 MB: accepted at import, then sent as it is
    video = tmp_path / "data" / "clip.mp4"
    video.parent.mkdir()
    with video.open("wb") as f:
        f.write(b"\0\0\0\x18ftypmp42")
        f.write(os.urandom(MiB))  # some content to check, the rest sparse zeros
        f.truncate(size)
    items = tmp_path / "data" / "items.jsonl"
    items.write_text('{"id": "v1", "text": "Which animal runs?", "video": "clip.mp4"}\n')
    async with BotApiEmulator(token=TOKEN) as emu:
        cfg = telegram_config(tmp_path, emu.base_url)
        assert cli("import", str(cfg), str(items)).returncode == 0
        log = tmp_path / "bot.log"
        with bot_process(cfg, log) as proc:
            await until_logged(log, "chatlabel running", proc)
            before = peak_rss(proc.pid)
            user = emu.user(77, "Runner")
            await user.send("/start")
            item = await user.wait_for_message(lambda m: m.kind == "video", timeout=20)
            grew = peak_rss(proc.pid) - before
            print(f"\nsending a {size // MiB} MiB video: bot peak RSS grew by {grew / MiB:.1f} MiB")
            [upload] = emu.uploads
            assert upload.method == "sendVideo" and upload.size == size
            stored = emu.files[upload.file_id].data
            assert hashlib.sha256(stored).digest() == hashlib.sha256(video.read_bytes()).digest()
            assert item.content.startswith("Which animal runs?")
            # Read whole (to hash it, then to upload it) the file cost 45-90 MiB on top.
            assert grew < 16 * MiB, f"peak RSS grew by {grew / MiB:.1f} MiB"
            proc.terminate()
            # Waited for off the loop: the emulator on it must answer the bot's last calls.
            assert await asyncio.to_thread(proc.wait, 15) == 0


# -- one `chatlabel run` per database, one poller per token ------------------------------------


async def test_a_second_run_on_the_same_database_exits_naming_the_first(tmp_path: Path) -> None:
    import socket

    from chatlabel.emulators.telegram import BotApiEmulator

    async with BotApiEmulator(token=TOKEN) as emu:
        cfg = telegram_config(tmp_path, emu.base_url)
        first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
        with bot_process(cfg, first_log) as first:
            await until_logged(first_log, "chatlabel running", first)
            getme_before = len(emu.calls_to("getMe"))
            db = tmp_path / "chatlabel.db"
            with bot_process(cfg, second_log) as second:
                code = await asyncio.to_thread(second.wait, 30)
            out = logged(second_log)
            assert code == 1, out
            lines = out.strip().splitlines()
            assert len(lines) == 1 and "Traceback" not in out, out
            assert f"{db}: in use by another chatlabel run" in lines[0]
            assert f"host {socket.gethostname()}, pid {first.pid}" in lines[0]
            assert "chatlabel.db.lock" in lines[0]
            # The second never reached Telegram: no getMe, no polling of its own.
            assert len(emu.calls_to("getMe")) == getme_before
            assert first.poll() is None  # and the first carries on
            user = emu.user(5, "Still")
            await user.send("/start")
            await user.wait_for(lambda: len(user.messages) >= 2, timeout=10)
            first.terminate()
            assert await asyncio.to_thread(first.wait, 15) == 0
        assert not (tmp_path / "chatlabel.db.lock").exists()  # a clean stop lets go of it


async def test_a_lock_left_by_a_killed_run_is_taken_over(tmp_path: Path) -> None:
    from chatlabel.emulators.telegram import BotApiEmulator

    async with BotApiEmulator(token=TOKEN) as emu:
        cfg = telegram_config(tmp_path, emu.base_url)
        log = tmp_path / "bot.log"
        with bot_process(cfg, log) as killed:
            await until_logged(log, "chatlabel running", killed)
            killed.kill()  # SIGKILL: no chance to clean up
            await asyncio.to_thread(killed.wait, 10)
        lock = tmp_path / "chatlabel.db.lock"
        assert str(killed.pid) in lock.read_text()  # left behind, naming a dead process
        with bot_process(cfg, log) as again:
            await until_logged(log, "took over the lock", again)
            await until_logged(log, "chatlabel running", again)
            assert str(again.pid) in lock.read_text()
            again.terminate()
            assert await asyncio.to_thread(again.wait, 15) == 0
    # A lock file written by hand for a pid that does not exist is no obstacle either.
    lock.write_text('{"host": "elsewhere", "pid": 4194999, "since": "yesterday"}\n')
    r = cli("status", str(cfg))  # only `run` takes the lock
    assert r.returncode == 0, r.stderr


async def test_another_process_polling_the_token_stops_run_with_a_clear_message(
    tmp_path: Path,
) -> None:
    from chatlabel.emulators.telegram import BotApiEmulator
    from chatlabel.emulators.telegram_model import ApiError

    conflict = ApiError(
        409,
        "Conflict: terminated by other getUpdates request; make sure that only one bot "
        "instance is running",
    )
    async with BotApiEmulator(token=TOKEN) as emu:
        cfg = telegram_config(tmp_path, emu.base_url)
        log = tmp_path / "bot.log"
        emu.fail_next("getUpdates", conflict, times=1000)  # someone else keeps polling
        with bot_process(cfg, log) as proc:
            started = time.monotonic()
            code = await asyncio.to_thread(proc.wait, 20)
            took = time.monotonic() - started
        out = logged(log)
        assert code == 1, out
        assert "another process is receiving this bot's updates" in out
        assert "OPERATOR_TEST_TOKEN" in out and TOKEN not in out
        assert "Traceback" not in out
        assert out.strip().splitlines()[-1].startswith("Error: Telegram says another process")
        # It stopped at the first Conflict instead of retrying: one or two polls, not dozens.
        polls = [c for c in emu.calls_to("getUpdates") if c.status == 409]
        assert 1 <= len(polls) <= 2, len(polls)
        print(f"\n409 Conflict: run exited 1 after {took:.1f} s and {len(polls)} refused poll(s)")


# -- backup while running -------------------------------------------------------------------------


async def test_a_backup_under_load_holds_every_acknowledged_answer(tmp_path: Path) -> None:
    """40 annotators answer as fast as the service lets them; a backup is taken meanwhile."""
    import random

    from chatlabel.config import parse_config
    from chatlabel.service.labeling import LabelingService
    from chatlabel.service.types import Task, UserRef
    from chatlabel.storage.backup import backup
    from chatlabel.storage.db import Database

    cfg = parse_config(
        {
            "storage": {"database": str(tmp_path / "live.db")},
            "project": [{"name": "p", "labels": ["a", "b", "c"], "overlap": 3, "max_overlap": 3,
                         "quality": {"qualification": 0, "gold_rate": 0.0}}],
        },
        tmp_path / "chatlabel.toml",
    )  # fmt: skip
    db = await Database(cfg.database_path()).open()
    try:
        svc = LabelingService(db, cfg, rng=random.Random(1))
        await svc.start()
        pid = svc.pids["p"]
        filler = "x" * 400  # about 40 MiB of items: a backup that takes a while

        def fill(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO items (project_id, ext_id, text, needed, seq, created_at) "
                "VALUES (?, ?, ?, 3, ?, 0)",
                ((pid, f"i{n}", f"{n} {filler}", n) for n in range(80_000)),
            )

        await db.write(fill)
        people = [UserRef("telegram", str(1000 + n), f"p{n}") for n in range(40)]
        for u in people:
            await svc.join(u)
        acked: list[int] = []  # answer ids, in the order their commits were acknowledged
        stop = asyncio.Event()

        async def annotate(u: UserRef) -> None:
            while not stop.is_set():
                task = await svc.next_task(u)
                assert isinstance(task, Task)
                out = await svc.answer(u, task.assignment_id, random.choice("abc"))
                assert out.ok and out.answer_id is not None
                acked.append(out.answer_id)

        workers = [asyncio.create_task(annotate(u)) for u in people]
        await asyncio.sleep(0.5)
        before = set(acked)  # acknowledged before the backup began
        copy = tmp_path / "copy.db"
        summary = await asyncio.to_thread(backup, cfg.database_path(), copy)
        during = len(acked) - len(before)
        stop.set()
        await asyncio.gather(*workers)
        total = len(acked)
    finally:
        await db.close()
    print(
        f"\nbackup of {summary.bytes / MiB:.0f} MiB in {summary.seconds:.2f} s under load: "
        f"{len(before)} answers acknowledged before it, {during} committed while it ran"
    )
    assert during > 0, "the writers were not running while the backup was taken"
    conn = sqlite3.connect(copy)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        in_copy = {r[0] for r in conn.execute("SELECT id FROM answers")}
        assert before <= in_copy, f"{len(before - in_copy)} acknowledged answers missing"
        assert len(in_copy) <= total
        assert summary.counts["answers"] == len(in_copy)
        assert summary.counts["items"] == 80_000
        # Consistent, not a mix of moments: each item's counters match its answers.
        assert conn.execute(
            "SELECT COUNT(*) FROM items i WHERE n_answers != (SELECT COUNT(*) FROM answers x "
            "WHERE x.item_id = i.id)"
        ).fetchone() == (0,)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    finally:
        conn.close()


async def test_chatlabel_backup_while_run_serves_and_a_restore(tmp_path: Path) -> None:
    from chatlabel.emulators.telegram import BotApiEmulator

    items = tmp_path / "items.jsonl"
    items.write_text("".join(f'{{"id": "i{n}", "text": "item {n}"}}\n' for n in range(30)))
    async with BotApiEmulator(token=TOKEN) as emu:
        cfg = telegram_config(tmp_path, emu.base_url)
        assert cli("import", str(cfg), str(items)).returncode == 0
        log = tmp_path / "bot.log"
        with bot_process(cfg, log) as proc:
            await until_logged(log, "chatlabel running", proc)
            user = emu.user(11, "Ann")
            await user.send("/start")
            pressed: set[int] = set()

            async def press_one() -> None:
                item = await user.wait_for_message(
                    lambda m: (
                        m.message_id not in pressed
                        and any(b.get("callback_data", "").startswith("a:") for b in m.buttons)
                    ),
                    timeout=10,
                )
                pressed.add(item.message_id)
                await user.wait_for_answer(await user.press(item, "a"), timeout=10)

            for _ in range(5):
                await press_one()
            copy = tmp_path / "backups" / "copy.db"
            copy.parent.mkdir()
            r = await asyncio.to_thread(cli, "backup", str(cfg), "-o", str(copy))
            assert r.returncode == 0, r.stderr
            assert f"to {copy}" in r.stdout and "integrity check ok" in r.stdout
            assert "5 answers" in r.stdout and "30 items" in r.stdout
            await press_one()  # the bot went on serving
            proc.terminate()
            assert await asyncio.to_thread(proc.wait, 15) == 0
        assert sorted(p.name for p in copy.parent.iterdir()) == ["copy.db"]  # no leftovers
        # Restore: with the bot stopped, the copy replaces the database file.
        db = tmp_path / "chatlabel.db"
        for extra in ("-wal", "-shm"):
            (tmp_path / f"chatlabel.db{extra}").unlink(missing_ok=True)
        db.write_bytes(copy.read_bytes())
        conn = sqlite3.connect(db)
        assert conn.execute("SELECT COUNT(*) FROM answers").fetchone() == (5,)
        conn.close()
        with bot_process(cfg, log) as again:
            await until_logged(log, "chatlabel running", again)
            pressed.update(m.message_id for m in user.messages)  # only what comes from now on
            await user.send("/start")
            await press_one()
            again.terminate()
            assert await asyncio.to_thread(again.wait, 15) == 0
        conn = sqlite3.connect(db)
        assert conn.execute("SELECT COUNT(*) FROM answers").fetchone() == (6,)
        conn.close()
