"""/me with streaks, milestones, /top and /leaderboard on|off, on Telegram and Slack."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatlabel.conversation import Catalog
from tests import telegram_harness as th
from tests.volunteer_drivers import PLATFORMS, Person, when, world

pytestmark = pytest.mark.timeout(90)

EN = Catalog().texts("en")
DAY = 86400.0


def said(p: Person, text: str) -> int:
    """How many of the person's messages say `text`."""
    return sum(text in t for t in p.texts())


async def answer(p: Person, label: str = "cat") -> None:
    """Answer the person's latest open item (a fresh one after /start when the day changed)."""
    item = (await p.wait(p.open_items))[-1]
    before = len(p.messages())
    await p.press(item, label)
    await p.wait(lambda: p.captions(item) == ["↩️ Undo"] and len(p.messages()) > before)


async def fresh_item(p: Person) -> None:
    """Come back another day: /start brings an item (yesterday's lease ran out)."""
    before = len(p.open_items())
    await p.start()
    await p.wait(lambda: len(p.open_items()) > before)


async def me(p: Person, command: str = "me") -> str:
    """The reply to /me (or /stats)."""
    seen = len(p.texts())
    await p.command(command)
    await p.wait(lambda: any(t.startswith("📊") for t in p.texts()[seen:]))
    return [t for t in p.texts()[seen:] if t.startswith("📊")][-1]


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_me_shows_days_streaks_and_share_and_milestones_arrive_once(
    platform: str, tmp_path: Path
) -> None:
    solo = th.project(overlap=1, max_overlap=1, timezone="Europe/Berlin")
    items = [{"id": f"t{n:02}", "text": f"Animal number {n}"} for n in range(24)]
    async with world(platform, tmp_path, [solo], when("2024-05-06 10:00")) as w:
        await w.add_items("animals", items)
        ann = w.person(1, "Ann")
        await ann.start()
        ten = EN("milestone.answers", n=10)
        for n in range(10):
            await answer(ann)
            assert said(ann, ten) == (n == 9)  # at the tenth answer, not before
        figures = await me(ann)
        assert figures.splitlines() == [
            "📊 Animals",
            "Answers: 10 (skipped 0)",
            "Agrees with the verdict: 100% of 10 settled items",
            "Active on 1 day",
            "Streak: 1 day in a row (best 1)",
            "Your share of the project: 100% of all answers",
        ]
        assert await me(ann, "stats") == figures  # /stats is another name for /me

        w.clock.now = when("2024-05-07 09:00")  # the next day: a streak of two
        await fresh_item(ann)
        await answer(ann)
        assert "Streak: 2 days in a row (best 2)" in await me(ann)
        w.clock.now = when("2024-05-09 09:00")  # a day missed: the streak is broken
        assert "Streak: 0 days in a row (best 2)" in await me(ann)
        for day in range(9, 16):  # seven days in a row, from the 9th to the 15th
            w.clock.now = when(f"2024-05-{day:02} 09:00")
            await fresh_item(ann)
            await answer(ann)
        week = EN("milestone.streak", n=7)
        assert said(ann, week) == 1
        figures = await me(ann)
        assert "Active on 9 days" in figures and "Streak: 7 days in a row (best 7)" in figures
        assert "Answers: 18 (skipped 0)" in figures and "Rank" not in figures  # no leaderboard
        await ann.command("top")
        await ann.wait(lambda: said(ann, EN("top.off", title="Animals")))


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_top_ranks_agreed_answers_and_names_only_who_opted_in(
    platform: str, tmp_path: Path
) -> None:
    board = th.project(overlap=2, max_overlap=2, leaderboard=True)
    items = [{"id": f"t{n}", "text": f"Animal number {n}"} for n in range(5)]
    async with world(platform, tmp_path, [board], when("2024-05-06 10:00")) as w:
        await w.add_items("animals", items)
        ann, bob, cid = w.person(1, "Ann"), w.person(2, "Bob"), w.person(3, "Cid")
        for p in (ann, bob):  # both say cat to t0..t2: three agreed answers each
            await p.start()
            for _ in range(3):
                await answer(p)
        await cid.start()  # Ann and Bob hold t3 now: Cid gets t4, which waits for a second answer
        await answer(cid, "dog")

        await ann.command("leaderboard", "on")
        await ann.wait(lambda: said(ann, EN("top.shown")))
        seen = len(bob.texts())
        await bob.command("top")
        top = await bob.wait(lambda: [t for t in bob.texts()[seen:] if t.startswith("🏆")])
        assert top[0].splitlines() == [
            "🏆 Animals",
            "1. Ann — 3",
            "1. someone (you) — 3",
            "3. someone — 0",
            "",
            EN("top.how"),
            EN("top.hidden", command=bob_command(platform, "leaderboard on")),
        ]
        assert "Rank: 1 of 3" in await me(bob)
        assert "Rank: 3 of 3" in await me(cid)

        await ann.command("leaderboard", "off")
        await ann.wait(lambda: said(ann, EN("top.hidden_now")))
        seen = len(ann.texts())
        await ann.command("top")
        top = await ann.wait(lambda: [t for t in ann.texts()[seen:] if t.startswith("🏆")])
        assert "1. someone (you) — 3" in top[0] and "Ann" not in top[0]
        await ann.command("leaderboard")
        usage = EN(
            "top.usage",
            on=bob_command(platform, "leaderboard on"),
            off=bob_command(platform, "leaderboard off"),
        )
        await ann.wait(lambda: said(ann, usage))


def bob_command(platform: str, name: str) -> str:
    """How a command is typed on the platform."""
    return f"/{name}" if platform == "telegram" else f"/label {name}"
