"""Edited messages and things the bot cannot take, on Telegram and Slack (issue 17 item 9).

An edited free-text answer becomes the new answer while Undo is still offered (the item is
settled again); later, or for a message that was no answer, the person is told it changed
nothing. A photo or a file gets "send text or use the buttons".
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.slack_harness import make_bot, shown
from tests.slack_harness import project as slack_project
from tests.telegram_harness import next_item, project, running_bot

pytestmark = pytest.mark.timeout(30)

NOW = "✏️ Your answer is now: "
TOO_LATE = "That answer can't be changed any more"
NO_ANSWER = "that message wasn't an answer"
UNSUPPORTED = "I can only take text and button presses"


async def test_telegram_an_edited_text_answer_changes_it_while_undo_is_offered(
    tmp_path: Path,
) -> None:
    notes = project("notes", kind="text", labels=[], overlap=1, max_overlap=1, undo_seconds=60)
    async with running_bot(tmp_path, [notes]) as b:
        await b.add_items(
            "notes", [{"id": "n1", "text": "Describe 1"}, {"id": "n2", "text": "Describe 2"}]
        )
        ann = b.user(1)
        item = await b.start(ann)
        said = await ann.send("a red bus")
        await ann.wait_for(lambda: item.content.endswith("✅ a red bus"))
        second = await next_item(ann, item.message_id)
        assert await b.query("SELECT label FROM verdicts") == [("a red bus",)]

        edit = await ann.edit(said, "a blue bus")
        await ann.wait_for(lambda: NOW + "a blue bus" in ann.messages[-1].content)
        assert await b.answers() == [("n1", "a blue bus")]
        assert item.content.endswith("✅ a blue bus")  # the item shows it, Undo still there
        assert [x["text"] for x in item.buttons] == ["↩️ Undo"]
        assert await b.query("SELECT label FROM verdicts") == [("a blue bus",)]  # settled again

        # The same edit delivered again changes nothing and says nothing.
        replies = len(ann.messages)
        b.emu.redeliver(edit)
        await b.emu.signal.wait_until(lambda: not b.emu.pending_updates, 2)
        await asyncio.sleep(0.3)
        assert len(ann.messages) == replies
        # Editing a message that was no answer, and a photo: told so.
        hello = await ann.send("/help")
        await ann.wait_for(lambda: len(ann.messages) > replies)
        await ann.edit(hello, "/stats")
        await ann.wait_for(lambda: NO_ANSWER in ann.messages[-1].content)
        await ann.send_photo()
        await ann.wait_for(lambda: UNSUPPORTED in ann.messages[-1].content)

        # Once the undo window has closed, an edit is refused and the answer stays.
        b.clock.advance(61)
        await ann.edit(said, "a green bus")
        await ann.wait_for(lambda: TOO_LATE in ann.messages[-1].content)
        assert await b.answers() == [("n1", "a blue bus")]
        assert second.content.startswith("Describe 2")  # the next item was never disturbed


@pytest.fixture
async def stack() -> AsyncIterator[contextlib.AsyncExitStack]:
    async with contextlib.AsyncExitStack() as s:
        yield s


async def test_slack_an_edited_dm_answer_changes_it_and_a_file_gets_a_hint(
    stack: contextlib.AsyncExitStack, tmp_path: Path
) -> None:
    notes = slack_project("notes", title="Captions", kind="text", labels=[], overlap=1)
    bot = await make_bot(
        stack, tmp_path, notes, items={"notes": [{"id": "n1", "text": "Describe 1"}]}
    )
    ann = bot.emu.user("U1")
    await ann.slash("/label")
    await ann.wait_for(lambda: any("Describe 1" in m.text for m in ann.messages))
    item = next(m for m in ann.messages if "Describe 1" in m.text)
    await ann.say("a red bus")
    await ann.wait_for(lambda: "✅ a red bus" in shown(item))
    said = next(m for m in bot.emu.history(ann.dm_channel) if m.user == "U1")

    assert (await ann.edit(said, "a blue bus")).status == 200
    await ann.wait_for(lambda: any(NOW + "a blue bus" in m.text for m in ann.ephemerals))
    await ann.wait_for(lambda: "✅ a blue bus" in shown(item))
    assert await bot.answers() == [("slack:T0001/U1", "n1", "a blue bus")]
    assert await bot.rows("SELECT label FROM verdicts") == [("a blue bus",)]

    # A file: the hint, once even when Slack delivers the event twice.
    event = {
        "type": "message",
        "subtype": "file_share",
        "channel": ann.dm_channel,
        "channel_type": "im",
        "user": "U1",
        "text": "",
        "ts": bot.emu.workspace.next_ts(),
        "files": [{"id": "F1", "name": "cat.jpg"}],
    }
    assert (await ann.send_event(event, event_id="Ev1")).status == 200
    await ann.wait_for(lambda: [m for m in ann.ephemerals if UNSUPPORTED in m.text])
    assert (await ann.send_event(event, event_id="Ev1")).status == 200  # a redelivery
    await asyncio.sleep(0.3)
    assert len([m for m in ann.ephemerals if UNSUPPORTED in m.text]) == 1
