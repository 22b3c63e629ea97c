"""Reminders on Telegram and Slack: after the idle time, never in quiet hours or after /mute, at
most max_per_day, through the outbox; the service's clock is moved by hand."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from chatlabel.conversation import Catalog
from chatlabel.service.labeling import LabelingService
from tests import telegram_harness as th
from tests.volunteer_drivers import PLATFORMS, Person, World, when, world

pytestmark = pytest.mark.timeout(60)

EN = Catalog().texts("en")
ITEMS = [{"id": f"t{n}", "text": f"Animal number {n}"} for n in range(8)]
CONTINUE = EN("reminder.continue")


def animals(**reminders: Any) -> dict[str, Any]:
    settings = {"after": "2h", "every": "8h", "max_per_day": 1, "quiet_hours": "22:00-08:00"}
    settings.update(reminders)
    return th.project("animals", timezone="Europe/Berlin", reminders=settings)


def reminders(p: Person) -> list[str]:
    return [t for t in p.texts() if "are waiting for answers" in t]


async def queued(w: World, p: Person) -> list[tuple[Any, ...]]:
    """The person's reminder rows in the outbox: (state, error)."""
    return await w.rows(
        "SELECT state, error FROM outbox WHERE kind = 'reminder' AND recipient = ? ORDER BY id",
        p.key,
    )


async def answer_one(p: Person) -> None:
    """Start (or continue) and answer the open item; the next one follows."""
    if not p.open_items():
        await p.start()
    item = (await p.wait(p.open_items))[-1]
    await p.press(item, "cat")
    await p.wait(lambda: "✅ cat" in p.text_of(item))  # recorded, at the clock's time


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_a_reminder_after_the_idle_time_never_in_quiet_hours(
    platform: str, tmp_path: Path
) -> None:
    async with world(platform, tmp_path, [animals()], when("2024-05-06 10:00")) as w:
        await w.add_items("animals", ITEMS)
        ann = w.person(1, "Ann")
        await answer_one(ann)

        w.clock.now = when("2024-05-06 11:30")  # idle 1.5 h of the 2 h
        await w.tick()
        assert await queued(w, ann) == [] and reminders(ann) == []

        w.clock.now = when("2024-05-06 12:05")
        await w.tick()
        await ann.wait(lambda: reminders(ann))
        assert reminders(ann)[0].startswith("👋 8 items in Animals are waiting for answers.")
        assert "/mute" in reminders(ann)[0] or "/label mute" in reminders(ann)[0]

        w.clock.now = when("2024-05-06 15:00")  # within `every` (8 h): nothing more
        await w.tick()
        w.clock.now = when("2024-05-06 22:30")  # past `every`, but quiet hours in Berlin
        await w.tick()
        w.clock.now = when("2024-05-07 07:55")
        await w.tick()
        assert len(reminders(ann)) == 1 and len(await queued(w, ann)) == 1

        w.clock.now = when("2024-05-07 08:05")  # the quiet hours are over
        await w.tick()
        await ann.wait(lambda: len(reminders(ann)) == 2)
        assert await queued(w, ann) == [("sent", None), ("sent", None)]

        # Continue brings an item back (the one held before expired long ago).
        note = [m for m in ann.messages() if CONTINUE in ann.captions(m)][-1]
        items_before = len(ann.open_items())
        await ann.press(note, CONTINUE)
        await ann.wait(lambda: len(ann.open_items()) > items_before)


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_mute_pause_and_the_daily_cap(platform: str, tmp_path: Path) -> None:
    project = animals(every="1h", max_per_day=2, quiet_hours="")
    async with world(platform, tmp_path, [project], when("2024-05-06 09:00")) as w:
        await w.add_items("animals", ITEMS)
        ann, bob, cid = w.person(1, "Ann"), w.person(2, "Bob"), w.person(3, "Cid")
        for p in (ann, bob, cid):
            await answer_one(p)
        await bob.command("mute")
        await bob.wait(lambda: any(t.startswith("🔕 No more reminders") for t in bob.texts()))
        await cid.command("pause")
        await cid.wait(lambda: any(t.startswith("Paused.") for t in cid.texts()))

        for hour in ("11:05", "12:10", "13:15", "14:20"):
            w.clock.now = when(f"2024-05-06 {hour}")
            await w.tick()
        await ann.wait(lambda: len(reminders(ann)) == 2)
        assert len(await queued(w, ann)) == 2  # two a day, whatever the ticks
        assert reminders(bob) == [] and await queued(w, bob) == []  # muted
        assert reminders(cid) == [] and await queued(w, cid) == []  # paused

        await bob.command("unmute")
        await bob.wait(lambda: any(EN("mute.unmuted") == t for t in bob.texts()))
        w.clock.now = when("2024-05-06 15:30")
        await w.tick()
        await bob.wait(lambda: len(reminders(bob)) == 1)
        assert len(reminders(ann)) == 2  # still her two

        # The next day: her third in a row without an answer is the last (max_ignored = 3).
        for hour in ("09:00", "10:05", "11:10"):
            w.clock.now = when(f"2024-05-07 {hour}")
            await w.tick()
        await ann.wait(lambda: len(reminders(ann)) == 3)
        assert len(await queued(w, ann)) == 3


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_a_queued_reminder_is_dropped_when_it_no_longer_fits(
    platform: str, tmp_path: Path
) -> None:
    async with world(platform, tmp_path, [animals()], when("2024-05-06 10:00")) as w:
        await w.add_items("animals", ITEMS)
        ann, bob = w.person(1, "Ann"), w.person(2, "Bob")
        await answer_one(ann)
        await answer_one(bob)
        w.clock.now = when("2024-05-06 21:50")
        async with w.transport.conversation.sender.lock:  # the sender is behind
            await w.service.tick()
            # Ann comes back first; Bob's reminder would now land in the quiet hours.
            w.clock.now = when("2024-05-06 21:55")
            seen = len(ann.open_items())
            await ann.start()  # her old item's lease ran out: /start brings a fresh one
            await ann.wait(lambda: len(ann.open_items()) > seen)
            await answer_one(ann)
            w.clock.now = when("2024-05-06 22:01")
        await w.flush()
        assert await queued(w, ann) == [("dropped", "came_back")]
        assert await queued(w, bob) == [("dropped", "expired")]
        assert reminders(ann) == [] and reminders(bob) == []


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_reminder_times_survive_a_restart(platform: str, tmp_path: Path) -> None:
    async with world(platform, tmp_path, [animals()], when("2024-05-06 10:00")) as w:
        await w.add_items("animals", ITEMS)
        ann = w.person(1, "Ann")
        await answer_one(ann)
        w.clock.now = when("2024-05-06 12:05")
        await w.tick()
        await ann.wait(lambda: reminders(ann))
        # A new process: a fresh service on the same database remembers nothing in memory.
        again = LabelingService(w.service.db, w.service.config, clock=w.clock, rng=random.Random(1))
        await again.start()
        w.clock.now = when("2024-05-06 13:00")
        assert (await again.tick()).reminders == 0
        w.clock.now = when("2024-05-07 08:10")  # a new day, past `every`: the next is due
        assert (await again.tick()).reminders == 1
