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
from collections.abc import Iterator
from pathlib import Path

import pytest

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
    for args in (
        ("status", str(cfg)),
        ("import", str(cfg), str(items)),
        ("export", str(cfg)),
        ("run", str(cfg)),
    ):
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


@contextlib.contextmanager
def bot_process(cfg: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`chatlabel run CONFIG` in its own process, output to `log`; killed if still running."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "chatlabel", "run", str(cfg)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "OPERATOR_TEST_TOKEN": TOKEN},
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


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
