"""Fault test: `chatlabel run` is killed with SIGKILL while 100 people label, then restarted.

Every press the bot acknowledged is in the database exactly once, no item collects more answers
than it needed, and everyone carries on where they were after the restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

import pg
from chatlabel.emulators.telegram import BotApiEmulator

from .bot_process import chatlabel_run
from .conftest import write_jsonl
from .crash_crowd import CrashCrowd

# SIGKILL then a restart, on a SQLite file and on a PostgreSQL database.
BACKENDS = ("sqlite", "postgresql")

USERS = 100
ITEMS = 150
TOKEN = "424242:CRASH-TEST"


def _config(tmp_path: Path, base_url: str, url: str) -> Path:
    cfg = tmp_path / "chatlabel.toml"
    cfg.write_text(
        f"""
[storage]
url = "{url}"

[[project]]
name = "crash"
labels = ["a", "b"]
overlap = 2
max_overlap = 3
lease_seconds = 20
undo_seconds = 5

[project.quality]
qualification = 0
gold_rate = 0.0

[telegram]
token_env = "CRASH_TEST_TOKEN"
base_url = "{base_url}"
""",
        encoding="utf-8",
    )
    return cfg


def bot_process(cfg: Path, log: Path) -> AbstractContextManager[Any]:
    """`chatlabel run` in its own process, as a person would start it."""
    return chatlabel_run(cfg, log, {"CRASH_TEST_TOKEN": TOKEN})


def _rows(db: str, query: str) -> list[tuple[Any, ...]]:
    return pg.rows(db, query)


@pytest.mark.timeout(240)
async def test_sigkill_under_load_loses_nothing(tmp_path: Path, storage_url: str) -> None:
    from chatlabel.app import open_service
    from chatlabel.config import load_config
    from chatlabel.importer import import_file

    async with BotApiEmulator(token=TOKEN) as emu:
        cfg = _config(tmp_path, emu.base_url, storage_url)
        db_path = storage_url
        config = load_config(cfg)
        db, svc = await open_service(config)
        try:
            rows = [{"id": f"i{i}", "text": f"item number {i}"} for i in range(ITEMS)]
            await import_file(svc, "crash", write_jsonl(tmp_path / "items.jsonl", rows))
        finally:
            await db.close()

        users = [emu.user(10_000 + n, f"u{n}") for n in range(USERS)]
        crowd = CrashCrowd(users, lambda acked: len(acked) >= 120)
        acked = crowd.acked

        log = tmp_path / "bot.log"
        with bot_process(cfg, log) as first:
            workers = crowd.start()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(crowd.enough.wait(), 60)
            assert len(acked) >= 120, (
                f"too slow before the crash: {len(acked)} answers\n{log.read_text()[-3000:]}"
            )
            first.send_signal(signal.SIGKILL)
            # Wait in a thread: this event loop also serves the emulator the bot talks to.
            await asyncio.to_thread(first.wait, 10)
        acked_before = len(acked)

        with bot_process(cfg, log) as second:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                settled = _rows(db_path, "SELECT COUNT(*) FROM items WHERE status != 'pending'")[0][
                    0
                ]
                if settled == ITEMS:
                    break
                await asyncio.sleep(0.25)
            crowd.stop.set()
            await asyncio.wait_for(asyncio.gather(*workers), 30)
            second.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(second.wait, 30) == 0, log.read_text()[-3000:]

    assert len(acked) > acked_before, "nobody carried on after the restart"
    answers = _rows(
        db_path,
        """SELECT a.key, i.text FROM answers x
                                JOIN annotators a ON a.id = x.annotator_id
                                JOIN items i ON i.id = x.item_id WHERE x.value IS NOT NULL""",
    )
    recorded = {(int(k.split(":")[1]), t) for k, t in answers}
    assert len(recorded) == len(answers), "an answer was recorded twice"
    lost = [a for a in acked if not any(a[0] == r[0] and a[1].startswith(r[1]) for r in recorded)]
    assert lost == [], f"acknowledged but not recorded: {lost[:5]}"
    over = _rows(
        db_path,
        """SELECT i.ext_id, i.needed, COUNT(x.id) FROM items i
                             JOIN answers x ON x.item_id = i.id AND x.value IS NOT NULL
                             GROUP BY i.id HAVING COUNT(x.id) > i.needed""",
    )
    assert over == []
    assert _rows(db_path, "SELECT COUNT(*) FROM items WHERE status = 'pending'") == [(0,)]
    assert "stopped cleanly" in log.read_text()
