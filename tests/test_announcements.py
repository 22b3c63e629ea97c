"""Announcements on Telegram and Slack: a preview with Send, one copy per member through the
outbox, progress, cancel, and a crash mid-broadcast that still delivers each copy once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from chatlabel.config import Access, Config, Project, Slack, Storage, Telegram
from chatlabel.conversation import Catalog
from chatlabel.emulators.slack import SlackApiEmulator
from chatlabel.emulators.telegram import BotApiEmulator
from chatlabel.importer import import_file
from chatlabel.service.labeling import LabelingService
from chatlabel.service.reports import Reports
from chatlabel.service.types import UserRef
from chatlabel.service.volunteer_types import OutboxItem
from chatlabel.storage.db import Database
from chatlabel.transports.slack import SlackTransport
from chatlabel.transports.telegram import TelegramTransport
from tests import slack_harness as sh
from tests import telegram_harness as th
from tests.volunteer_drivers import PLATFORMS, Person, World, when, world

pytestmark = pytest.mark.timeout(60)

EN = Catalog().texts("en")
ITEMS = [{"id": f"t{n}", "text": f"Animal number {n}"} for n in range(4)]
TEXT = "Tea at five in the lab, everyone is welcome!"
COPY = f"📣 Animals\n\n{TEXT}"


def copies(p: Person) -> int:
    return sum(COPY in t for t in p.texts())


async def outbox(w: World, kind: str) -> list[tuple[Any, ...]]:
    return await w.rows(
        "SELECT recipient, state FROM outbox WHERE kind = ? ORDER BY recipient", kind
    )


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_an_announcement_reaches_every_member_once(platform: str, tmp_path: Path) -> None:
    async with world(platform, tmp_path, [th.project()], when("2024-05-06 10:00")) as w:
        await w.add_items("animals", ITEMS)
        ann, bob, cid, boss = w.person(1), w.person(2), w.person(3), w.coordinator()
        for p in (ann, bob, cid):
            await p.start()
            await p.wait(p.open_items)
        await cid.command("mute")  # no announcements for Cid
        await cid.wait(lambda: any(t.startswith("🔕") for t in cid.texts()))

        await boss.command("announce", f"animals {TEXT}")
        preview = await boss.wait(
            lambda: next((m for m in boss.messages() if "Preview:" in boss.text_of(m)), None)
        )
        assert "this goes to 2 members of Animals." in boss.text_of(preview)
        assert TEXT in boss.text_of(preview)
        assert boss.captions(preview) == ["📣 Send to 2", "Cancel"]
        assert await outbox(w, "announcement") == []  # a preview sends nothing

        await boss.press(preview, "📣 Send to 2")
        await ann.wait(lambda: copies(ann) == 1)
        await bob.wait(lambda: copies(bob) == 1)
        done = EN("announce.done", title="Animals", n=2, failed=0, skipped=0)
        await boss.wait(lambda: any(done in t for t in boss.texts()))
        assert copies(cid) == 0
        assert copies(boss) == 1  # no copy for its author: only the preview, now with progress
        assert [s for _, s in await outbox(w, "announcement")] == ["sent", "sent"]

        # Progress on demand; a second Send sends nothing more.
        await boss.command("announce")
        sent = "✅ Sent: 2 of 2 delivered (0 could not be reached)."
        await boss.wait(lambda: any(sent in t for t in boss.texts()))
        with contextlib.suppress(Exception):  # the button went with the edit on some platforms
            await boss.press(preview, "📣 Send to 2")
        await w.flush()
        assert copies(ann) == copies(bob) == 1 and len(await outbox(w, "announcement")) == 2


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_announce_cancel_stops_the_copies_not_yet_sent(platform: str, tmp_path: Path) -> None:
    async with world(platform, tmp_path, [th.project()], when("2024-05-06 10:00")) as w:
        await w.add_items("animals", ITEMS)
        ann, bob, boss = w.person(1), w.person(2), w.coordinator()
        for p in (ann, bob):
            await p.start()
            await p.wait(p.open_items)
        await boss.command("announce", TEXT)  # one project: its name may be left out
        preview = await boss.wait(
            lambda: next((m for m in boss.messages() if "Preview:" in boss.text_of(m)), None)
        )
        async with w.transport.conversation.sender.lock:  # the sender is busy elsewhere
            await boss.press(preview, "📣 Send to 2")
            await boss.wait(lambda: "📤 Sending: 0 of 2" in boss.text_of(preview))
            await boss.command("announce", "cancel")
            stopped = "Animals: Cancelled: nothing was sent."
            await boss.wait(lambda: any(stopped in t for t in boss.texts()))
        await w.flush()
        assert copies(ann) == copies(bob) == 0
        assert [s for _, s in await outbox(w, "announcement")] == ["cancelled", "cancelled"]
        assert await outbox(w, "announced") == []  # a cancelled one sends no "done"


# -- a crash in the middle of a broadcast --------------------------------------------------------

BOSS = {"telegram": UserRef("telegram", str(th.COORDINATOR_ID)), "slack": UserRef("slack", "UBOSS")}
MEMBERS = 6


class Crowd:
    """A platform's emulator and the members who joined, to count their copies."""

    def __init__(self, platform: str, emu: Any) -> None:
        self.platform = platform
        self.emu = emu
        self.people: list[Any] = []
        self.rows: list[tuple[Any, ...]] = []  # (state, error) of each copy, in the end

    def copies(self) -> list[int]:
        if self.platform == "telegram":
            return [sum(COPY in m.content for m in p.messages) for p in self.people]
        return [sum(COPY in sh.shown(m) for m in p.messages) for p in self.people]


async def launch(platform: str, emu: Any, service: LabelingService, tmp: Path) -> Any:
    """A bot for `service` on the platform's emulator, started (a process of its own, in effect)."""
    if platform == "telegram":
        tg = TelegramTransport(
            service, Reports(service), Telegram(base_url=emu.base_url), emu.token,
            media_cache=tmp / "cache",
        )  # fmt: skip
        tg.max_rate, tg.push_interval, tg.inbound = 1000.0, 0.2, (1000.0, 1000.0)
        tg.retry_delays = (0.05, 0.1)
        await tg.start()
        return tg
    assert service.config.slack is not None
    sl = SlackTransport(
        service, Reports(service), service.config.slack, emu.token, sh.SECRET,
        media_cache=tmp / "cache", inbound=(1000.0, 1000.0),
    )  # fmt: skip
    await sl.start()
    emu.configure_bot(sl.url, sh.SECRET)
    return sl


@contextlib.asynccontextmanager
async def emulator(platform: str) -> AsyncIterator[Any]:
    emu: Any = BotApiEmulator() if platform == "telegram" else SlackApiEmulator()
    async with emu:
        yield emu


def config(platform: str, tmp: Path, emu: Any) -> Config:
    boss = BOSS[platform].key
    return Config(
        storage=Storage(database=tmp / "chatlabel.db"),
        project=[Project(**th.project())],
        access=Access(coordinators=[boss]),
        telegram=Telegram(base_url=emu.base_url) if platform == "telegram" else None,
        slack=Slack(port=0, base_url=emu.base_url) if platform == "slack" else None,
    )


Stall = Callable[[LabelingService, asyncio.Event], None]


def stall_claims(service: LabelingService, stuck: asyncio.Event) -> None:
    """The 4th copy is never claimed: the process dies between two copies."""
    claim, n = service.outbox_claim, [0]

    async def claim_or_hang(item: OutboxItem) -> OutboxItem | None:
        n[0] += 1
        if n[0] == 4:
            stuck.set()
            await asyncio.Event().wait()
        return await claim(item)

    service.outbox_claim = claim_or_hang  # type: ignore[method-assign]


def stall_marks(service: LabelingService, stuck: asyncio.Event) -> None:
    """The platform accepts the 4th copy, and the process dies before writing "sent"."""
    sent, n = service.outbox_sent, [0]

    async def mark_or_hang(item: OutboxItem, ref: str | None) -> None:
        n[0] += 1
        if n[0] == 4:
            stuck.set()
            await asyncio.Event().wait()
        await sent(item, ref)

    service.outbox_sent = mark_or_hang  # type: ignore[method-assign]


async def broadcast_with_a_crash(platform: str, tmp: Path, stall: Stall) -> Crowd:
    """Members join, an announcement goes out, the process dies at the 4th copy, a new process
    starts on the same database file; what each member got in the end."""
    clock = th.FakeClock()
    async with emulator(platform) as emu:
        cfg = config(platform, tmp, emu)
        crowd = Crowd(platform, emu)
        db = await Database(cfg.database_path()).open()
        first = LabelingService(db, cfg, clock=clock, rng=random.Random(1))
        await first.start()
        bot = await launch(platform, emu, first, tmp)
        try:
            data = tmp / "items.jsonl"
            data.write_text("".join(json.dumps(r) + "\n" for r in ITEMS), encoding="utf-8")
            await import_file(first, "animals", data)
            for n in range(MEMBERS):
                crowd.people.append(await _join(platform, emu, n))
            bot.conversation.sender.concurrency = 1  # one copy at a time: a clean cut
            stuck = asyncio.Event()
            stall(first, stuck)
            draft = await first.draft_announcement("animals", BOSS[platform], TEXT)
            await first.send_announcement(draft.id)
            await asyncio.wait_for(stuck.wait(), 10)
        finally:
            bot.outbox_grace = 0.01  # the "crash": nothing in flight gets to finish
            await bot.stop()
            await db.close()
        # A new process on the same file: fresh service, fresh bot, nothing in memory.
        db = await Database(cfg.database_path()).open()
        try:
            second = LabelingService(db, cfg, clock=clock, rng=random.Random(2))
            await second.start()
            bot = await launch(platform, emu, second, tmp)
            try:
                crowd.rows = await _settled(second, MEMBERS)
            finally:
                await bot.stop()
        finally:
            await db.close()
        return crowd


async def _join(platform: str, emu: Any, n: int) -> Any:
    if platform == "telegram":
        sim = emu.user(100 + n, f"M{n}")
        await sim.send("/start")
        await sim.wait_for(lambda: any(th.is_item(m) for m in sim.messages))
        return sim
    sim = emu.user(f"U{100 + n}", name=f"m{n}")
    await sim.slash("/label", "")
    await sim.wait_for(lambda: sh.open_items(sim))
    return sim


async def _settled(service: LabelingService, n: int) -> list[tuple[Any, ...]]:
    """Wait until every copy of the announcement is settled; their (state, error)."""

    async def states() -> list[tuple[Any, ...]]:
        sql = "SELECT state, error FROM outbox WHERE kind = 'announcement' ORDER BY id"
        return await service.db.read(lambda c: [tuple(r) for r in c.execute(sql)])

    for _ in range(200):
        got = await states()
        if len(got) == n and all(s not in ("pending", "sending") for s, _ in got):
            return got
        await asyncio.sleep(0.05)
    raise AssertionError(f"copies not settled: {await states()}")


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_a_crash_between_two_copies_delivers_each_exactly_once(
    platform: str, tmp_path: Path
) -> None:
    crowd = await broadcast_with_a_crash(platform, tmp_path, stall_claims)
    assert crowd.copies() == [1] * MEMBERS
    assert crowd.rows == [("sent", None)] * MEMBERS


async def test_a_copy_slack_accepted_before_a_crash_is_found_not_resent(tmp_path: Path) -> None:
    # Slack keeps the copy's handle as message metadata: the new process finds it in the DM.
    crowd = await broadcast_with_a_crash("slack", tmp_path, stall_marks)
    assert crowd.copies() == [1] * MEMBERS
    assert crowd.rows[3] == ("sent", "found after a restart")
    assert crowd.rows[:3] + crowd.rows[4:] == [("sent", None)] * (MEMBERS - 1)


async def test_a_copy_telegram_accepted_before_a_crash_is_sent_again(tmp_path: Path) -> None:
    # Telegram cannot say whether it got a message: an announcement errs on the side of a
    # second copy for the one person whose copy was in flight (docs/reliability.md).
    crowd = await broadcast_with_a_crash("telegram", tmp_path, stall_marks)
    assert sorted(crowd.copies()) == [1] * (MEMBERS - 1) + [2]
    assert crowd.copies()[3] == 2  # the fourth, in flight at the crash
    assert crowd.rows == [("sent", None)] * MEMBERS
