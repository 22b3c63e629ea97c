"""Duplicate delivery: a redelivered update, a button hammered at once, a Slack payload posted twice.

Telegram redelivers updates whose offset was not confirmed (after a restart, a crash or a
timed-out getUpdates); people double-tap; Slack retries. Each must count once: one answer, one
next item. Related tests elsewhere: two taps in test_telegram_ops.py
(test_stale_forged_and_double_presses_change_nothing), three clicks at once and a Slack event
retry in test_slack_bot.py (test_stale_forged_and_repeated_presses_change_nothing,
test_redelivered_dm_event_counts_once_and_other_events_are_acked).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from chatlabel.emulators.telegram import BotApiEmulator, ChatMessage, SimUser
from tests.slack_harness import click, items, make_bot, open_items
from tests.slack_harness import project as slack_project
from tests.telegram_harness import Bench, is_item, next_item, project, running_bot

pytestmark = pytest.mark.timeout(30)

ITEMS = [{"id": f"t{n}", "text": f"Animal sound number {n}."} for n in range(1, 6)]
NOTES = [{"id": f"n{n}", "text": f"Describe picture {n}."} for n in range(1, 4)]
RECORDED = "Already recorded, thanks!"


def update_id_of(
    emu: BotApiEmulator,
    *,
    query: str | None = None,
    message: int | None = None,
    chat: int | None = None,
) -> int:
    """The update_id the bot received for a callback query id, or for a user's message."""
    for call in emu.calls_to("getUpdates"):
        for update in call.result or []:
            cq = update.get("callback_query")
            if query is not None and cq is not None and cq["id"] == query:
                return int(update["update_id"])
            msg = update.get("message")
            if (
                message is not None
                and msg is not None
                and msg["message_id"] == message
                and msg["chat"]["id"] == chat
            ):
                return int(update["update_id"])
    raise AssertionError(f"the bot never received update for query={query} message={message}")


def items_shown(user: SimUser) -> list[ChatMessage]:
    """Every item message in the chat (answered or not)."""
    return [m for m in user.messages if m.content.startswith(("Animal sound", "Describe"))]


async def settle(b: Bench, seconds: float = 0.4) -> None:
    """Let the bot work through whatever is queued (the harness push timer is 0.2 s)."""
    await b.emu.signal.wait_until(lambda: not b.emu.pending_updates, 5)
    await asyncio.sleep(seconds)


# -- Telegram: redelivered updates ----------------------------------------------------------------


async def test_a_redelivered_button_press_counts_once(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as b:
        await b.add_items("animals", ITEMS)
        ann = b.user(1)
        item = await b.start(ann)
        query = await ann.press(item, "cat")
        assert await ann.wait_for_answer(query) is None
        nxt = await next_item(ann, item.message_id)
        await settle(b)
        sends = len(b.emu.calls_to("sendMessage"))

        b.emu.redeliver(update_id_of(b.emu, query=query))  # as after a restart
        await b.emu.signal.wait_until(lambda: len(b.emu.calls_to("answerCallbackQuery")) >= 2, 5)
        await settle(b)
        assert await b.answers() == [("t1", "cat")]
        assert len(b.emu.calls_to("sendMessage")) == sends  # no second next item
        assert [m.message_id for m in ann.messages if is_item(m)] == [nxt.message_id]
        states = await b.query("SELECT state FROM assignments ORDER BY id")
        assert states == [("answered",), ("pending",)]


async def test_a_redelivered_text_answer_counts_once(tmp_path: Path) -> None:
    """A free-text answer delivered twice must not become the answer to the next item too."""
    notes = project("notes", kind="text", labels=[], overlap=1, max_overlap=1)
    async with running_bot(tmp_path, [notes]) as b:
        await b.add_items("notes", NOTES)
        ann = b.user(1)
        item = await b.start(ann)
        said = await ann.send("a red bus")
        await ann.wait_for(lambda: item.content.endswith("✅ a red bus"))
        second = await next_item(ann, item.message_id)
        await settle(b)

        b.emu.redeliver(update_id_of(b.emu, message=said.message_id, chat=ann.id))
        await b.emu.signal.wait_until(lambda: not b.emu.pending_updates, 5)
        await settle(b)
        assert await b.answers() == [("n1", "a red bus")]
        assert (
            is_item(second) and second.content == "Describe picture 2.\n\n✍️ Reply with your answer."
        )
        assert len(items_shown(ann)) == 2


async def test_a_redelivered_start_shows_the_same_item_not_a_new_one(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as b:
        await b.add_items("animals", ITEMS)
        ann = b.user(1)
        said = await ann.send("/start")
        await next_item(ann)
        await settle(b)
        b.emu.redeliver(update_id_of(b.emu, message=said.message_id, chat=ann.id))
        await settle(b)
        leased = await b.query("SELECT COUNT(*) FROM assignments")
        assert leased == [(1,)]  # the same item again at most, never a second lease
        assert {m.content for m in items_shown(ann)} == {"Animal sound number 1."}


# -- Telegram: one button, many presses at once ---------------------------------------------------


async def test_twenty_concurrent_presses_of_one_button_record_one_answer(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as b:
        await b.add_items("animals", ITEMS)
        ann = b.user(1)
        item = await b.start(ann)
        queries = await asyncio.gather(*(ann.press(item, "cat") for _ in range(20)))
        toasts = [await ann.wait_for_answer(q) for q in queries]
        assert toasts.count(None) == 1 and toasts.count(RECORDED) == 19, toasts
        nxt = await next_item(ann, item.message_id)
        await settle(b)
        assert await b.answers() == [("t1", "cat")]
        assert [m.message_id for m in ann.messages if is_item(m)] == [nxt.message_id]
        assert item.content == "Animal sound number 1.\n\n✅ cat"


async def test_different_buttons_of_one_item_pressed_at_once_record_one_outcome(
    tmp_path: Path,
) -> None:
    async with running_bot(tmp_path) as b:
        await b.add_items("animals", ITEMS)
        ann = b.user(1)
        item = await b.start(ann)
        labels = ["dog", "cat", "bird", "Skip"] * 5
        queries = await asyncio.gather(*(ann.press(item, label) for label in labels))
        toasts = [await ann.wait_for_answer(q) for q in queries]
        assert toasts[0] is None and toasts[1:] == [RECORDED] * 19
        await next_item(ann, item.message_id)
        await settle(b)
        assert await b.answers() == [("t1", "dog")]  # the first press wins
        assert len([m for m in ann.messages if is_item(m)]) == 1
        assert await b.query("SELECT answers, skips FROM members") == [(1, 0)]


async def test_many_annotators_hammering_their_buttons_at_once(tmp_path: Path) -> None:
    async with running_bot(tmp_path, [project(overlap=3, max_overlap=3)]) as b:
        await b.add_items("animals", ITEMS)
        users = [b.user(100 + n) for n in range(3)]
        first = {u.id: await b.start(u) for u in users}
        presses = [u.press(first[u.id], "bird") for u in users for _ in range(10)]
        await asyncio.gather(*presses)
        for u in users:
            await next_item(u, first[u.id].message_id)
        await settle(b)
        answers = await b.answers()
        assert sorted(answers) == [("t1", "bird")] * 3
        assert await b.query("SELECT status, n_answers FROM verdicts") == [("resolved", 3)]
        for u in users:
            assert len([m for m in u.messages if is_item(m)]) == 1


# -- Slack ----------------------------------------------------------------------------------------


@pytest.fixture
async def stack() -> AsyncIterator[contextlib.AsyncExitStack]:
    async with contextlib.AsyncExitStack() as s:
        yield s


async def _joined(bot: Any, uid: str) -> Any:
    user = bot.emu.user(uid, name=uid.lower())
    assert (await user.slash("/label")).status == 200
    await user.wait_for(lambda: open_items(user))
    return user


SLACK_ITEMS = [{"id": f"m{n}", "text": f"Message {n}"} for n in range(1, 5)]


async def test_slack_the_same_action_payload_posted_twice_counts_once(
    stack: Any, tmp_path: Path
) -> None:
    bot = await make_bot(stack, tmp_path, items={"triage": SLACK_ITEMS})
    ann = await _joined(bot, "U1")
    payload = click(ann, open_items(ann)[0], "spam")
    first = await ann.press_raw(payload)
    assert first.status == 200
    await ann.wait_for(lambda: len(items(ann)) == 2)
    await asyncio.sleep(0.2)
    posted = len(bot.emu.calls_to("chat.postMessage"))
    before = await bot.state()

    again = await ann.press_raw(copy.deepcopy(payload))  # Slack's retry, minutes later
    assert again.status == 200
    await ann.wait_for(lambda: any("Already recorded" in m.text for m in ann.ephemerals))
    await asyncio.sleep(0.2)
    assert await bot.state() == before
    assert len(bot.emu.calls_to("chat.postMessage")) == posted  # no second next item
    assert [a[1:] for a in await bot.answers()] == [("m1", "spam")]


async def test_slack_twenty_clicks_at_once_on_one_item_record_one_answer(
    stack: Any, tmp_path: Path
) -> None:
    bot = await make_bot(stack, tmp_path, items={"triage": SLACK_ITEMS})
    ann = await _joined(bot, "U1")
    current = copy.deepcopy(open_items(ann)[0])
    labels = ["ham", "spam", "unsure", "Skip"] * 5
    replies = await asyncio.gather(*(ann.press_raw(click(ann, current, x)) for x in labels))
    assert [r.status for r in replies] == [200] * 20
    await ann.wait_for(lambda: len(items(ann)) == 2)
    await ann.wait_for(
        lambda: len([m for m in ann.ephemerals if "Already recorded" in m.text]) == 19
    )
    await asyncio.sleep(0.3)
    answers = await bot.answers()
    assert len(answers) == 1 and answers[0][1] == "m1"
    assert len(items(ann)) == 2 and len(open_items(ann)) == 1
    assert await bot.rows("SELECT state FROM assignments ORDER BY id") in (
        [("answered",), ("pending",)],
        [("skipped",), ("pending",)],
    )


async def test_slack_a_modal_answer_submitted_twice_counts_once(stack: Any, tmp_path: Path) -> None:
    notes = slack_project("notes", title="Captions", kind="text", labels=[])
    bot = await make_bot(stack, tmp_path, notes, items={"notes": NOTES})
    ann = await _joined(bot, "U1")
    await ann.press(open_items(ann)[0], "cl.write")
    view = await ann.wait_for(lambda: ann.views[-1] if ann.views else None)
    submitted = {
        **copy.deepcopy(view),
        "state": {
            "values": {"cl.answer": {"text": {"type": "plain_text_input", "value": "a red bus"}}}
        },
    }
    payload = {"type": "view_submission", **ann._sender(), "response_urls": [], "view": submitted}
    first = await ann.press_raw(payload)
    assert first.status == 200
    await ann.wait_for(lambda: len(items(ann)) == 2)
    await asyncio.sleep(0.2)
    second = await ann.press_raw({**payload, "trigger_id": "again"})
    assert second.status == 200
    await ann.wait_for(lambda: any("Already recorded" in m.text for m in ann.ephemerals))
    await asyncio.sleep(0.2)
    assert [a[1:] for a in await bot.answers()] == [("n1", "a red bus")]
    assert len(items(ann)) == 2 and len(open_items(ann)) == 1
    assert await bot.rows("SELECT state FROM assignments ORDER BY id") == [
        ("answered",),
        ("pending",),
    ]
