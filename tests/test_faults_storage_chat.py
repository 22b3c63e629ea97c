"""Storage faults as people live them: the real bots over the emulators, storage broken for real.

A foreign write lock (another process in BEGIN IMMEDIATE past the retry window) on Telegram and
on Slack, and a full disk (a 3 MiB tmpfs, or a file-size limit where mounting is not allowed)
on Telegram. Asserted: every press is answered within 5 s with the "couldn't save, nothing
lost" note in the person's language and the item stays as it was; nothing acknowledged is
lost; pressing again after the cause clears works; coordinators get exactly one alert and one
all-clear per incident.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from chatlabel.conversation import Catalog
from tests import slack_harness as sh
from tests import telegram_harness as th
from tests.test_faults_storage import LOCKER, FileSizeLimit, FullTmpfs, _mount_tmpfs

pytestmark = pytest.mark.timeout(60)

LIMIT = 5.0
EN = Catalog().texts("en")
REFUSED = EN("press.storage")
ITEMS = [{"id": f"t{n}", "text": f"Animal sound number {n}."} for n in range(20)]


@contextlib.asynccontextmanager
async def foreign_lock(db_path: Path) -> AsyncIterator[None]:
    """Another process holds the database's write lock until the block ends."""
    locker = await asyncio.create_subprocess_exec(
        sys.executable, "-c", LOCKER, str(db_path),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    assert locker.stdout is not None and locker.stdin is not None
    try:
        assert await asyncio.wait_for(locker.stdout.readline(), 10) == b"locked\n"
        yield
    finally:
        locker.stdin.write(b"release\n")
        await locker.stdin.drain()
        assert await asyncio.wait_for(locker.wait(), 10) == 0


@contextlib.contextmanager
def small_disk(folder: Path) -> Iterator[str]:
    """A folder on a 3 MiB tmpfs if this machine lets us mount one; says which fault to use."""
    folder.mkdir()
    mounted = _mount_tmpfs(folder)
    try:
        yield "tmpfs" if mounted else "rlimit"
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True, timeout=10)


@contextlib.asynccontextmanager
async def disk_full(folder: Path, mode: str) -> AsyncIterator[None]:
    """No room for the database to grow until the block ends."""
    fault = FullTmpfs(folder) if mode == "tmpfs" else FileSizeLimit()
    fault.fill()
    try:
        yield
    finally:
        fault.free()


def alerts(boss: th.SimUser) -> tuple[list[str], list[str]]:
    """The coordinator's storage alerts so far: (down, up)."""
    texts = [m.content for m in boss.messages]
    return [t for t in texts if t.startswith("⚠️ Since")], [t for t in texts if t.startswith("✅")]


async def telegram_round(
    people: list[th.SimUser], items: list[th.ChatMessage]
) -> list[tuple[str | None, float]]:
    """Everyone presses "cat" on their item at once: (toast, seconds to the answer)."""

    async def one(u: th.SimUser, item: th.ChatMessage) -> tuple[str | None, float]:
        t0 = time.monotonic()
        query = await u.press(item, "cat")
        toast = await u.wait_for_answer(query, timeout=LIMIT + 1)
        return toast, time.monotonic() - t0

    return list(await asyncio.gather(*(one(u, i) for u, i in zip(people, items, strict=True))))


async def telegram_incident(
    folder: Path, fault: Callable[[th.Bench], contextlib.AbstractAsyncContextManager[None]]
) -> str:
    """Presses during a fault are refused politely; after it they land; one alert each way.

    Returns the coordinator's alert."""
    async with th.running_bot(folder, [th.project(overlap=1, max_overlap=1)]) as b:
        await b.add_items("animals", ITEMS)
        boss = b.user(th.COORDINATOR_ID, "Boss")
        await b.start(boss)
        people = [b.user(n) for n in range(1, 5)]
        items = [await b.start(u) for u in people]
        # An empty WAL: the next commit must grow a file (a full disk then refuses it).
        await b.db.read(lambda c: c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall())
        async with fault(b):
            during = await telegram_round(people, items)
            await boss.wait_for(lambda: len(alerts(boss)[0]) == 1, timeout=LIMIT)
        assert [t for t, _ in during] == [REFUSED] * len(people)
        assert max(s for _, s in during) < LIMIT
        # Nothing was stored, and each item stays as it was: its buttons still work.
        assert await b.answers() == []
        assert all(
            th.is_item(u.chat.messages[i.message_id]) for u, i in zip(people, items, strict=True)
        )
        after = await telegram_round(people, items)
        assert [t for t, _ in after] == [None] * len(people)
        for u, item in zip(people, items, strict=True):
            await th.next_item(u, item.message_id)
        await boss.wait_for(lambda: len(alerts(boss)[1]) == 1, timeout=LIMIT)
        await asyncio.sleep(0.3)
        down, up = alerts(boss)
        assert len(down) == 1 and len(up) == 1, (down, up)
        refused = int(re.search(r"Meanwhile (\d+) saves were refused", up[0]).group(1))  # type: ignore[union-attr]
        assert refused >= len(people), up[0]  # the presses, and the bot's own writes (pushes)
        assert sorted(v for _, v in await b.answers()) == ["cat"] * len(people)
        return down[0]


async def test_telegram_a_foreign_write_lock(tmp_path: Path) -> None:
    alert = await telegram_incident(tmp_path, lambda b: foreign_lock(b.db.path))
    assert "another program holds the database's write lock" in alert


async def test_telegram_a_full_disk(tmp_path: Path) -> None:
    folder = tmp_path / "disk"
    with small_disk(folder) as mode:
        alert = await telegram_incident(folder, lambda b: disk_full(folder, mode))
    cause = "the disk is full" if mode == "tmpfs" else "the disk reports errors"
    assert cause in alert, (mode, alert)


async def test_slack_a_foreign_write_lock(tmp_path: Path) -> None:
    async with contextlib.AsyncExitStack() as stack:
        bot = await sh.make_bot(
            stack, tmp_path, sh.project(overlap=1, max_overlap=1),
            items={"triage": [{"id": f"m{n}", "text": f"Message {n}"} for n in range(20)]},
        )  # fmt: skip
        boss = bot.emu.user("UBOSS", name="boss")
        people = [bot.emu.user(f"U{n}") for n in range(1, 4)]
        for u in people:
            await u.slash("/label")
            await u.wait_for(lambda u=u: sh.open_items(u))
        firsts = [sh.open_items(u)[0] for u in people]

        def down() -> list[str]:
            return [m.text for m in boss.messages if m.text.startswith("⚠️ Since")]

        def up() -> list[str]:
            return [m.text for m in boss.messages if m.text.startswith("✅")]

        async with foreign_lock(bot.db.path):
            t0 = time.monotonic()
            for u, item in zip(people, firsts, strict=True):
                await u.press(item, "spam")
            for u in people:
                await u.wait_for(lambda u=u: any(REFUSED in m.text for m in u.ephemerals), LIMIT)
            assert time.monotonic() - t0 < LIMIT
            await boss.wait_for(lambda: len(down()) == 1, LIMIT)
        assert await bot.answers() == []
        # Still the same item with its buttons: pressing again now works.
        for u, item in zip(people, firsts, strict=True):
            assert item.button_texts[-2:] == ["Skip", "Report"]
            await u.press(item, "spam")
            await u.wait_for(lambda u=u: len(sh.items(u)) == 2)
        await boss.wait_for(lambda: len(up()) == 1, LIMIT)
        await asyncio.sleep(0.3)
        assert len(down()) == 1 and len(up()) == 1
        assert sorted(a[2] for a in await bot.answers()) == ["spam"] * len(people)
