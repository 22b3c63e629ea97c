"""The coordinators' daily digest on Telegram and Slack, and background loops through storage
faults."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from chatlabel.conversation import Catalog
from chatlabel.conversation.render import record_text
from chatlabel.importer import import_file
from tests import telegram_harness as th
from tests.conftest import write_jsonl
from tests.test_faults_storage_chat import foreign_lock
from tests.volunteer_drivers import PLATFORMS, Person, World, when, world

pytestmark = pytest.mark.timeout(60)

EN = Catalog().texts("en")
ITEMS = [{"id": f"t{n}", "text": f"Animal number {n}"} for n in range(6)]


def digests(p: Person) -> list[str]:
    return [t for t in p.texts() if "🗓 Animals: today" in t]


async def answer(p: Person) -> None:
    item = (await p.wait(p.open_items))[-1]
    await p.press(item, "cat")
    await p.wait(lambda: p.captions(item) == ["↩️ Undo"])


async def rows(w: World) -> int:
    return len(await w.rows("SELECT id FROM outbox WHERE kind = 'digest'"))


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_the_digest_comes_once_a_day_at_its_hour(platform: str, tmp_path: Path) -> None:
    project = th.project(overlap=1, max_overlap=1, timezone="Europe/Berlin", digest={"at": "18:00"})
    async with world(platform, tmp_path, [project], when("2024-05-06 10:00")) as w:
        await w.add_items("animals", ITEMS)
        ann, bob, boss = w.person(1, "Ann"), w.person(2, "Bob"), w.coordinator()
        await boss.command("help")  # the coordinator has a chat with the bot
        for p in (ann, bob):
            await p.start()
            await answer(p)
        await answer(ann)  # three items settled today

        w.clock.now = when("2024-05-06 17:55")
        await w.tick()
        assert await rows(w) == 0 and digests(boss) == []
        w.clock.now = when("2024-05-06 18:05")
        await w.tick()
        await boss.wait(lambda: digests(boss))
        shown = digests(boss)[0]
        assert EN("digest.settled", n=3) in shown
        assert EN("digest.none_suspended") in shown
        assert "Time to finish at the last hour's pace:" in shown
        # The progress chart comes with it: a photo on Telegram, a file on Slack.
        chart = [m for m in boss.messages() if "🗓 Animals: today" in boss.text_of(m)][0]
        if platform == "telegram":
            assert chart.kind == "photo"
        else:
            assert [f["name"] for f in chart.files] == ["animals-digest.png"]

        w.clock.now = when("2024-05-06 23:00")  # once a day
        await w.tick()
        assert await rows(w) == 1

        # The next day: nothing settled, Bob suspended by a coordinator.
        assert await w.service.suspend("animals", bob.key, "spam")
        w.clock.now = when("2024-05-07 18:01")
        await w.tick()
        await boss.wait(lambda: len(digests(boss)) == 2)
        assert EN("digest.settled", n=0) in digests(boss)[1]
        assert EN("digest.suspended", n=1, names="Bob") in digests(boss)[1]


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_the_digest_says_what_the_model_settled_and_when_routing_is_off(
    platform: str, tmp_path: Path
) -> None:
    model = {"kind": "import", "auto_threshold": 0.9, "audit_rate": 0.0}
    project = th.project(timezone="Europe/Berlin", digest={"at": "18:00"}, model=model)
    async with world(platform, tmp_path, [project], when("2024-05-06 10:00")) as w:
        confident = [
            {"id": "c1", "text": "Meow.", "suggestion": "cat", "suggestion_score": 0.97},
            {"id": "c2", "text": "Woof.", "suggestion": "dog", "suggestion_score": 0.95},
        ]
        await import_file(w.service, "animals", write_jsonl(tmp_path / "items.jsonl", confident))
        ann, boss = w.person(1, "Ann"), w.coordinator()
        await boss.command("help")
        await ann.start()
        item = (await ann.wait(ann.open_items))[-1]
        await ann.press(item, "✅ Yes")  # one check settles it
        await ann.wait(lambda: ann.captions(item) == ["↩️ Undo"])

        w.clock.now = when("2024-05-06 18:05")
        await w.tick()
        await boss.wait(lambda: digests(boss))
        shown = digests(boss)[0]
        assert EN("digest.settled", n=1) in shown
        assert f"{EN('digest.model', n=1)} {EN('model.unscored')}" in shown
        assert "routing is off" not in shown

        # The next day routing is off: the digest says so, and how to switch it on again; and
        # gold items came with suggestions, one right of two: the model's record.
        assert await w.service.set_routing("animals", False)
        gold = [
            {"id": "g1", "text": "Purr.", "gold": "cat", "suggestion": "cat"},
            {"id": "g2", "text": "Bark.", "gold": "dog", "suggestion": "cat"},
        ]
        await import_file(w.service, "animals", write_jsonl(tmp_path / "gold.jsonl", gold))
        w.clock.now = when("2024-05-07 18:01")
        await w.tick()
        await boss.wait(lambda: len(digests(boss)) == 2)
        shown = digests(boss)[1]
        assert (
            f"{EN('digest.model', n=0)} {EN('model.record', record=record_text(EN, 1, 2))}" in shown
        )
        assert "⏸ Animals: one-check routing is off" in shown and "routing on" in shown


async def test_background_loops_ride_out_a_storage_fault(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A write lock held by another program past the storage's retries: the scheduler and the
    sender skip their rounds quietly and deliver everything once the database is writable."""
    project = th.project(reminders={"after": "1h", "quiet_hours": ""})
    async with world("telegram", tmp_path, [project], when("2024-05-06 10:00")) as w:
        await w.add_items("animals", ITEMS)
        ann, cid = w.person(1, "Ann"), w.person(3, "Cid")
        await ann.start()
        await answer(ann)
        w.clock.now = when("2024-05-06 12:00")
        sender = w.transport.conversation.sender
        stop = asyncio.Event()
        caplog.set_level(logging.INFO)
        schedule: asyncio.Task[None] | None = None
        await sender.lock.acquire()  # the sender is held until the fault is in place
        try:
            await w.service.tick()  # Ann's reminder is queued
            w.clock.now = when("2024-05-06 12:20")
            await cid.start()
            await answer(cid)
            w.clock.now = when("2024-05-06 13:30")  # Cid's is due now: the scheduler meets it
            async with foreign_lock(w.service.db.path):
                schedule = asyncio.create_task(w.service.run_schedule(stop, interval=0.2))
                sender.lock.release()  # the sender's loop tries now, and fails for a while
                try:
                    await asyncio.sleep(3.5)  # past the storage's 3 s retry window at least once
                finally:
                    await sender.lock.acquire()
                assert not schedule.done()
                assert await w.rows("SELECT state FROM outbox") == [("pending",)]
            sender.lock.release()
            for p in (ann, cid):  # both delivered once writes work again
                await p.wait(lambda p=p: any("are waiting for answers" in t for t in p.texts()), 10)
        finally:
            if sender.lock.locked():
                sender.lock.release()
            stop.set()
            if schedule is not None:
                await asyncio.wait_for(schedule, 5)
        assert schedule is not None and schedule.exception() is None
        tracebacks = [r for r in caplog.records if r.exc_info and r.name.startswith("chatlabel")]
        assert tracebacks == []
