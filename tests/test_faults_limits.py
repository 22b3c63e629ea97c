"""Telegram's and Slack's limits, emulated: the bot paces itself so that nothing is refused.

With the emulator's flood limits on (Telegram: 3 sends and edits per chat and 30 new messages
for the bot per second, with growing retry_after; see emulators/telegram_flood.py), a crowd
labels at the platform's pace with zero 429s; a forced 429 storm slows it but strands nobody.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image

from chatlabel.emulators.slack import SlackLimits, SlackMessage
from chatlabel.emulators.telegram import ApiError, Faults, FloodLimits
from chatlabel.transports.slack_pacing import slack_limits
from chatlabel.transports.telegram import TelegramTransport
from tests.crowd import Annotator, SlackAnnotator, percentile
from tests.slack_harness import make_bot, shown
from tests.slack_harness import open_items as open_items_of
from tests.slack_harness import project as slack_project
from tests.telegram_harness import next_item, project, running_bot

pytestmark = pytest.mark.timeout(60)

CHAT_LIMIT = TelegramTransport.chat_limit  # the transport's default
NOTHING = "That's everything for now"


async def test_the_emulated_flood_limits_refuse_with_growing_retry_after() -> None:
    now = [0.0]
    flood = FloodLimits(clock=lambda: now[0])
    for _ in range(3):
        flood.check("sendMessage", 7)
    with pytest.raises(ApiError) as first:
        flood.check("editMessageText", "7")
    assert first.value.status == 429 and first.value.parameters == {"retry_after": 1}
    flood.check("answerCallbackQuery", 7)  # not counted
    flood.check("sendMessage", 8)  # another chat is not affected
    now[0] = 0.5
    with pytest.raises(ApiError) as during:  # calling during the penalty makes it longer
        flood.check("sendMessage", 7)
    assert during.value.parameters == {"retry_after": 2}
    now[0] = 3.0
    for _ in range(3):
        flood.check("sendMessage", 7)
    with pytest.raises(ApiError) as again:  # over again soon after: longer still
        flood.check("sendMessage", 7)
    assert again.value.parameters == {"retry_after": 4}
    # The whole bot: 30 new messages a second, edits not counted.
    now[0] = 100.0
    for chat in range(30):
        flood.check("sendMessage", 1000 + chat)
    flood.check("editMessageText", 2000)
    with pytest.raises(ApiError):
        flood.check("sendPhoto", 2001)
    assert flood.refused == {"chat": 3, "overall": 1}


async def _crowd(tmp_path: Path, people: int, seconds: float, **bot: object) -> dict[str, float]:
    """`people` annotators label for `seconds` against emulated limits; figures of the run."""
    rows = [{"id": f"i{n}", "text": f"Item number {n}."} for n in range(400)]
    crowd_project = project(overlap=people, max_overlap=people, undo_seconds=1)
    async with running_bot(tmp_path, [crowd_project], **bot) as b:  # type: ignore[arg-type]
        b.emu.flood = FloodLimits()
        await b.add_items("animals", rows)
        annotators = [Annotator(b.user(7000 + n, f"p{n}")) for n in range(people)]
        stop = asyncio.Event()
        tasks = [asyncio.create_task(a.run(stop)) for a in annotators]
        await asyncio.sleep(1.0)  # everyone has joined
        answers_before = len(await b.answers())
        started = time.monotonic()
        await asyncio.sleep(seconds)
        answers = len(await b.answers()) - answers_before
        elapsed = time.monotonic() - started
        counted = [
            c
            for c in b.emu.calls
            if started <= c.time < started + elapsed
            and c.method.startswith(("send", "edit"))
            and c.ok
        ]
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
        waits = [w for a in annotators for w in a.waits]
        return {
            "answers/s": answers / elapsed,
            "messages/s": len(counted) / elapsed,
            "429": sum(1 for c in b.emu.calls if c.status == 429),
            "refused": dict(b.emu.flood.refused),
            "p50": percentile(waits, 50),
            "p99": percentile(waits, 99),
        }


async def test_telegram_a_crowd_labels_at_the_platforms_pace_with_no_429(tmp_path: Path) -> None:
    paced = await _crowd(tmp_path / "paced", 12, 4.0, max_rate=30.0, chat_limit=CHAT_LIMIT)
    print(f"\nTelegram, 12 annotators, flood limits on, paced: {paced}")
    assert paced["429"] == 0
    # Each answer is an edit and a new message in the person's chat, so 3 calls per chat per
    # second allow 1.5 answers a second per person; the pacer keeps a margin.
    assert paced["answers/s"] >= 0.6 * 12 * 1.5
    assert paced["messages/s"] >= 0.6 * 12 * 3


async def test_telegram_a_429_storm_slows_the_crowd_but_strands_nobody(tmp_path: Path) -> None:
    rows = [{"id": f"i{n}", "text": f"Item number {n}."} for n in range(24)]
    async with running_bot(
        tmp_path, [project(overlap=2, max_overlap=2)], max_rate=30.0, chat_limit=CHAT_LIMIT
    ) as b:
        b.emu.flood = FloodLimits()
        await b.add_items("animals", rows)
        annotators = [Annotator(b.user(7100 + n, f"s{n}")) for n in range(8)]
        stop = asyncio.Event()
        tasks = [asyncio.create_task(a.run(stop)) for a in annotators]
        await asyncio.sleep(0.5)
        # Two seconds in which Telegram answers every call with 429 (retry after 1 s).
        b.emu.faults = Faults(rate_429=1.0, retry_after=1, seed=1)
        await asyncio.sleep(2.0)
        b.emu.faults = None
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if len(await b.answers()) >= 48 and all(a.told_nothing_left() for a in annotators):
                    break
                await asyncio.sleep(0.1)
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), 5)
        assert len(await b.answers()) == 48, "every item answered twice"
        assert all(a.told_nothing_left() for a in annotators)
        refused = sum(1 for c in b.emu.calls if c.status == 429)
        assert refused >= 8
        # The flood limits themselves were never hit: the storm's 429s were waited out.
        assert not b.emu.flood.refused
        print(f"\nTelegram 429 storm: {refused} calls refused, nobody stranded")


async def test_telegram_one_person_flooding_does_not_slow_anyone_else(tmp_path: Path) -> None:
    """Issue 10 item 4: 300 messages from one person, under the 30 messages/s limit; everyone
    else's press -> next item stays under a second at p99."""
    rows = [{"id": f"i{n}", "text": f"Item number {n}."} for n in range(200)]
    async with running_bot(
        tmp_path, [project(overlap=10, max_overlap=10)], max_rate=30.0, chat_limit=CHAT_LIMIT
    ) as b:
        b.transport.conversation.inbound_rate = 1.0  # the production flood control
        b.transport.conversation.inbound_burst = 8.0
        b.emu.flood = FloodLimits()
        await b.add_items("animals", rows)
        annotators = [Annotator(b.user(7200 + n, f"c{n}"), think=0.8) for n in range(8)]
        stop = asyncio.Event()
        tasks = [asyncio.create_task(a.run(stop)) for a in annotators]
        await asyncio.sleep(1.0)
        flooder = b.user(7299, "flood")
        for n in range(300):
            await flooder.send(f"hello {n}" if n % 3 else "/stats")
        await asyncio.sleep(5.0)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
        waits = [w for a in annotators for w in a.waits]
        p50, p99 = percentile(waits, 50), percentile(waits, 99)
        replies = len(flooder.messages)
        print(
            f"\nflood: 300 messages from one person, {len(waits)} presses by 8 others: "
            f"press -> next item p50 {p50:.3f} s, p99 {p99:.3f} s; the flooder got {replies} replies"
        )
        assert len(waits) >= 30
        assert p99 < 1.0
        assert replies <= 8 + 1  # the burst, and one "slow down"
        assert sum(1 for c in b.emu.calls if c.status == 429) == 0


async def test_telegram_failed_pushes_strand_nobody(tmp_path: Path) -> None:
    """Issue 17 item 1: three people wait for work; new items arrive; the push to one gets
    "chat not found", to another a 429 past its retries, to the third a 502. The first is
    marked unreachable and their item goes to others; the other two get work."""
    async with running_bot(
        tmp_path, [project(overlap=1, max_overlap=1)], retry_delays=(0.01, 0.01)
    ) as b:
        gone, limited, flaky = b.user(7301, "gone"), b.user(7302, "limited"), b.user(7303, "flaky")
        for u in (gone, limited, flaky):
            await u.send("/start")
            await u.wait_for(lambda u=u: any(NOTHING in m.content for m in u.messages))
        b.emu.fail_next("sendMessage", ApiError.bad_request("chat not found"), chat_id=gone.id)
        b.emu.fail_next("sendMessage", ApiError.too_many_requests(1), 3, chat_id=limited.id)
        b.emu.fail_next("sendMessage", ApiError(502, "Bad Gateway"), chat_id=flaky.id)
        await b.add_items("animals", [{"id": f"i{n}", "text": f"Item {n}."} for n in range(3)])
        imported = time.monotonic()
        # The chat held back by 429s holds up nobody else's push.
        await flaky.wait_for(lambda: any(m.buttons for m in flaky.messages), timeout=5)
        assert time.monotonic() - imported < 1.5
        workers = [Annotator(limited), Annotator(flaky)]
        stop = asyncio.Event()
        tasks = [asyncio.create_task(a.run(stop, start=False)) for a in workers]
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if len(await b.answers()) == 3 and all(a.told_nothing_left() for a in workers):
                    break
                await asyncio.sleep(0.1)
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), 5)
        assert all(a.presses for a in workers)  # both got work
        assert all(a.told_nothing_left() for a in workers)
        assert await b.query("SELECT key, blocked FROM annotators ORDER BY key") == [
            ("telegram:7301", 1),
            ("telegram:7302", 0),
            ("telegram:7303", 0),
        ]
        # The unreachable person's item went to someone who could see it: all three answered.
        assert sorted(x for x, _ in await b.answers()) == ["i0", "i1", "i2"]
        assert await b.query("SELECT COUNT(*) FROM assignments WHERE state = 'pending'") == [(0,)]
        failed = [(c.method, c.status) for c in b.emu.calls if c.status != 200]
        assert failed.count(("sendMessage", 429)) == 3
        assert ("sendMessage", 502) in failed and ("sendMessage", 400) in failed


# -- Slack -----------------------------------------------------------------------------------


@pytest.fixture
async def stack() -> AsyncIterator[contextlib.AsyncExitStack]:
    async with contextlib.AsyncExitStack() as s:
        yield s


async def test_slack_a_crowd_labels_within_the_method_tiers_with_no_429(
    stack: contextlib.AsyncExitStack, tmp_path: Path
) -> None:
    """Slack's tiers on (chat.update 50 a minute per workspace, chat.postMessage about one a
    second per channel and 300 a minute): no 429, and no answer costs a chat.update."""
    rows = [{"id": f"m{n}", "text": f"Message number {n}."} for n in range(300)]
    bot = await make_bot(
        stack,
        tmp_path,
        slack_project(overlap=8, max_overlap=8, undo_seconds=1),
        items={"triage": rows},
        limits=slack_limits(),
    )
    bot.emu.limits = SlackLimits()
    people = [SlackAnnotator(bot.emu.user(f"U{n:03d}", name=f"u{n}")) for n in range(8)]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(p.run(stop)) for p in people]
    await asyncio.sleep(1.0)
    before = len(await bot.answers())
    started = time.monotonic()
    await asyncio.sleep(4.0)
    answers = len(await bot.answers()) - before
    elapsed = time.monotonic() - started
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    await asyncio.sleep(1.5)  # the undo windows close: their edits go out too
    refused = [c.method for c in bot.emu.calls if c.status == 429]
    updates = len(bot.emu.calls_to("chat.update"))
    replaced = sum(1 for p in bot.emu.response_posts if p.payload.get("replace_original"))
    rate = answers / elapsed
    print(
        f"\nSlack, 8 annotators, tiers on, paced: {rate:.1f} answers/s, 429s {len(refused)}, "
        f"chat.update {updates}, edits through response_url {replaced}"
    )
    assert refused == []
    assert all(s == 200 for p in people for s in p.statuses)
    # Each answer posts the next item: chat.postMessage's per-workspace budget (300 a minute,
    # paced at 90 %) is what limits a crowd this size.
    assert rate >= 0.6 * 270 / 60
    assert updates == 0 and replaced >= 2 * answers


# -- media Telegram refuses -------------------------------------------------------------------


async def test_telegram_photos_too_narrow_or_too_big_are_fitted_not_refused(
    tmp_path: Path,
) -> None:
    """Telegram refuses photos whose sides add up past 10,000 px or differ more than 20
    times (the emulator does too); such pictures are padded or scaled to fit, and shown."""
    sizes = {"line.png": (2000, 60), "tower.png": (50, 1600), "huge.png": (9000, 3000)}
    for name, size in sizes.items():
        Image.new("RGB", size, (200, 30, 30)).save(tmp_path / name)
    rows = [
        {"id": name, "text": f"Look at {name}.", "media_kind": "image",
         "media_path": str(tmp_path / name)}
        for name in sizes
    ]  # fmt: skip
    big = project(max_image_side=10000)  # keeps the 9000 x 3000 picture that size
    async with running_bot(tmp_path, [big]) as b:
        await b.add_items("animals", rows)
        ann = b.user(7400)
        item = await b.start(ann)
        shown = []
        for n in range(3):
            assert item.kind == "photo", item.describe()
            width, height = item.media.files[-1].width, item.media.files[-1].height  # type: ignore[union-attr]
            shown.append((item.content.split(".")[0], width, height))
            await ann.press(item, "cat")
            if n < 2:
                item = await next_item(ann, item.message_id)
        await ann.wait_for(lambda: NOTHING in ann.messages[-1].content)
        refused = [c.error for c in b.emu.calls if c.method == "sendPhoto" and not c.ok]
        assert refused == []
        for _, width, height in shown:
            assert width + height <= 10_000 and max(width, height) <= 20 * min(width, height)
        assert [s[0] for s in shown] == ["Look at line", "Look at tower", "Look at huge"]
        assert shown[0][1:] == (2000, 100)  # the line crop, padded to a ratio of 20
        assert len(await b.answers()) == 3


async def test_telegram_a_refused_upload_is_permanent_and_the_item_is_skipped(
    tmp_path: Path,
) -> None:
    """A 413 (bots upload at most 50 MB) is not retried, and an item whose media cannot be
    shown is never offered without it: it is skipped for that person."""
    (tmp_path / "song.mp3").write_bytes(b"ID3" + b"\0" * 64)
    rows = [
        {"id": "a1", "text": "Which animal sings?", "media_kind": "audio",
         "media_path": str(tmp_path / "song.mp3")},
        {"id": "t1", "text": "Which animal purrs?"},
    ]  # fmt: skip
    async with running_bot(tmp_path) as b:
        await b.add_items("animals", rows)
        b.emu.fail_next("sendAudio", ApiError(413, "Request Entity Too Large"))
        ann = b.user(7401)
        item = await b.start(ann)
        assert item.kind == "text" and item.content.startswith("Which animal purrs?")
        assert [c.status for c in b.emu.calls_to("sendAudio")] == [413]  # tried once
        assert not [m for m in ann.messages if "sings" in m.content]
        await ann.press(item, "cat")
        await ann.wait_for(lambda: NOTHING in ann.messages[-1].content)
        # Someone else, whose upload goes through, gets the item with its audio.
        other = b.user(7402)
        first = await b.start(other)  # the fuller item first
        await other.press(first, "dog")
        audio = await next_item(other, first.message_id)
        assert audio.kind == "audio" and audio.content.startswith("Which animal sings?")


# -- many labels -----------------------------------------------------------------------------


async def test_telegram_a_0_to_100_scale_fits_its_limits_page_by_page(tmp_path: Path) -> None:
    """101 choices: every page stays within Telegram's 100 buttons and 8 a row, and the last
    page's choice is recorded."""
    scale = project("scale", kind="rating", labels=[str(n) for n in range(101)])
    async with running_bot(tmp_path, [scale]) as b:
        await b.add_items("scale", [{"id": "s1", "text": "How loud?"}])
        ann = b.user(7500)
        item = await b.start(ann)
        for page in range(1, 6):
            rows = item.reply_markup["inline_keyboard"]  # type: ignore[index]
            assert len(item.buttons) <= 100 and all(len(r) <= 8 for r in rows)
            assert f"{page}/5" in [x["text"] for x in item.buttons]
            if page < 5:
                await ann.press(item, "▶")
                await ann.wait_for(lambda p=page: f"{p + 1}/5" in [x["text"] for x in item.buttons])
        assert [x["text"] for x in item.buttons] == [
            "96",
            "97",
            "98",
            "99",
            "100",
            "◀",
            "5/5",
            "Skip",
            "Report",
        ]
        await ann.press(item, "100")
        await ann.wait_for(lambda: item.content.endswith("✅ 100"))
        assert await b.answers() == [("s1", "100")]
        refused = [c.error for c in b.emu.calls if c.method.startswith(("send", "edit"))]
        assert [e for e in refused if e] == []  # nothing the bot sent was refused


def _checkboxes_with(msg: SlackMessage, label: str) -> tuple[str, str]:
    """The action_id of the checkboxes element offering `label`, and that option's value."""
    for block in msg.blocks:
        for element in block.get("elements", []):
            for option in element.get("options", []):
                if option["text"]["text"] == label:
                    return element["action_id"], option["value"]
    raise AssertionError(f"no checkbox {label!r}")


def _ticked(msg: SlackMessage) -> set[str]:
    return {
        o["text"]["text"]
        for b in msg.blocks
        for e in b.get("elements", [])
        for o in e.get("initial_options", [])
    }


async def test_slack_ticks_on_different_pages_all_count(
    stack: contextlib.AsyncExitStack, tmp_path: Path
) -> None:
    """30 tags take two pages of checkboxes; Slack sends the ticks of the page shown, and a
    tick on the second page must not untick the first page's."""
    labels = [f"tag{n:02d}" for n in range(30)]
    tags = slack_project("tags", title="Tags", kind="multi", labels=labels)
    bot = await make_bot(stack, tmp_path, tags, items={"tags": [{"id": "t1", "text": "A"}]})
    ann = bot.emu.user("U1")
    await ann.slash("/label")
    msg = await ann.wait_for(lambda: next(iter(ann.messages[-1:]), None))
    await ann.wait_for(lambda: "Done" in ann.messages[-1].button_texts)
    msg = ann.messages[-1]
    assert len(msg.blocks) <= 50 and "Skip" in msg.button_texts
    action, value = _checkboxes_with(msg, "tag03")
    await ann.press(msg, action, selected=[value])
    await ann.wait_for(lambda: _ticked(msg) == {"tag03"})
    await ann.press(msg, "▶")
    await ann.wait_for(lambda: "2/2" in msg.button_texts)
    action, value = _checkboxes_with(msg, "tag27")
    await ann.press(msg, action, selected=[value])
    await ann.wait_for(lambda: _ticked(msg) == {"tag27"})
    rows = await bot.rows("SELECT draft FROM assignments")
    assert json.loads(rows[0][0]) == ["tag03", "tag27"]
    await ann.press(msg, "Done")
    await ann.wait_for(lambda: "That's everything for now" in ann.messages[-1].text)
    assert await bot.answers() == [("slack:T0001/U1", "t1", '["tag03", "tag27"]')]


# -- Slack Enterprise Grid ----------------------------------------------------------------------


@pytest.mark.parametrize("socket_mode", [False, True])
async def test_slack_enterprise_grid_people_keep_one_identity(
    stack: contextlib.AsyncExitStack, tmp_path: Path, socket_mode: bool
) -> None:
    """An org-wide app in an Enterprise Grid organisation: a command names the workspace it
    was typed in, an interaction names none (`team` is null) but the person's own in
    user.team_id, an event the workspace again. One rule (the organisation) keeps one key."""
    notes = slack_project("notes", title="Captions", kind="text", labels=[])
    bot = await make_bot(
        stack,
        tmp_path,
        slack_project(),
        notes,
        items={
            "triage": [{"id": "m1", "text": "WIN A PRIZE"}, {"id": "m2", "text": "Lunch?"}],
            "notes": [{"id": "n1", "text": "Describe it"}],
        },
        enterprise_id="E0001",
        socket_mode=socket_mode,
    )
    ann = bot.emu.user("U1", name="ann", team="T0002")  # their own workspace is another one
    assert (await ann.slash("/label", "start triage")).status == 200
    first = await ann.wait_for(lambda: next(iter(open_items_of(ann)), None))
    await ann.press(first, "spam")  # an interaction: team null, user.team_id T0002
    await ann.wait_for(lambda: len(open_items_of(ann)) == 1 and open_items_of(ann)[0] != first)
    await ann.press(open_items_of(ann)[0], "Skip")
    await ann.wait_for(lambda: "That's everything for now" in ann.messages[-1].text)
    assert not [m.text for m in ann.ephemerals if "isn't yours" in m.text]
    # An event (a typed answer) and the App Home find the same person.
    await ann.slash("/label", "start notes")
    await ann.wait_for(lambda: "Describe it" in ann.messages[-1].text)
    assert (await ann.say("a red bus")).status == 200
    await ann.wait_for(lambda: "That's everything for now" in ann.messages[-1].text)
    await ann.open_home()
    home = await ann.wait_for(lambda: ann.home_view)
    assert "Answers: 1" in shown(home)  # their own figures: it knows them
    assert await bot.rows("SELECT key FROM annotators") == [("slack:E0001/U1",)]
    assert [(k, i, v) for k, i, v in await bot.answers()] == [
        ("slack:E0001/U1", "m1", "spam"),
        ("slack:E0001/U1", "m2", None),
        ("slack:E0001/U1", "n1", "a red bus"),
    ]
