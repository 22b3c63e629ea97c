"""The Slack bot end to end: real Bolt over HTTP, signed requests, the loopback Slack API."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from slack_sdk.errors import SlackApiError
from slack_sdk.models.blocks import Block

from chatlabel.config import Access, Config, ConfigError, Model, Quality, Slack
from chatlabel.conversation import Catalog
from chatlabel.emulators.slack import SlackApiEmulator, SlackFaults
from chatlabel.emulators.slack_user import sign
from chatlabel.service.labeling import LabelingService
from chatlabel.service.reports import Reports
from chatlabel.storage.db import Database
from chatlabel.transports.slack import SlackTransport
from tests.slack_harness import (
    SECRET,
    Bot,
    checkbox_values,
    click,
    items,
    make_bot,
    open_items,
    project,
    shown,
)

NOT_ALLOWED = Catalog().texts("en")("command.not_allowed")

pytestmark = pytest.mark.timeout(30)

MESSAGES = [
    {"id": "m1", "text": "WIN A PRIZE NOW"},
    {"id": "m2", "text": "Lunch at noon?"},
    {"id": "m3", "text": "Cheap pills!!!"},
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # SLACK_* switch Bolt's modes; proxies are set on purpose by the one test that needs them.
    for key in list(os.environ):
        if key.startswith("SLACK_") or key.lower() in ("http_proxy", "https_proxy", "no_proxy"):
            monkeypatch.delenv(key)


@pytest.fixture
async def stack() -> AsyncIterator[contextlib.AsyncExitStack]:
    async with contextlib.AsyncExitStack() as s:
        yield s


async def joined(bot: Bot, uid: str, text: str = "") -> Any:
    """A user who typed the slash command and now sees their first item."""
    user = bot.emu.user(uid, name=uid.lower())
    reply = await user.slash("/label", text)
    assert reply.status == 200
    await user.wait_for(lambda: open_items(user))
    return user


async def test_slash_command_joins_and_labels(stack: Any, tmp_path: Path) -> None:
    bot = await make_bot(stack, tmp_path, items={"triage": MESSAGES})
    ann = await joined(bot, "U1")
    welcome = ann.messages[0]
    assert "Welcome to Spam triage" in shown(welcome)
    assert "Is this message spam?" in shown(welcome)
    first = items(ann)[0]
    assert "WIN A PRIZE NOW" in shown(first)
    assert first.button_texts == ["spam", "ham", "unsure", "Skip", "Report"]

    await ann.press(first, "spam")
    await ann.wait_for(lambda: len(items(ann)) == 2)
    answered = bot.emu.message(first.channel, first.ts)
    assert answered is not None
    assert answered.button_texts == ["↩️ Undo"] and "✅ spam" in shown(answered)
    assert "WIN A PRIZE NOW" in shown(answered)  # the item stays readable

    second = items(ann)[1]
    assert "Lunch at noon?" in shown(second)
    await ann.press(second, "Skip")
    await ann.wait_for(lambda: len(items(ann)) == 3)
    assert "⏭ Skipped" in shown(bot.emu.message(second.channel, second.ts))  # type: ignore[arg-type]
    await ann.press(items(ann)[2], "ham")
    await ann.wait_for(lambda: "That's everything for now" in ann.messages[-1].text)

    assert await bot.answers() == [
        ("slack:T0001/U1", "m1", "spam"),
        ("slack:T0001/U1", "m2", None),
        ("slack:T0001/U1", "m3", "ham"),
    ]
    assert await bot.rows("SELECT key, address, name FROM annotators") == [
        ("slack:T0001/U1", "DU1", "u1")
    ]
    # Every message the bot sent passes Slack's Block Kit checks (the fake validates them too).
    for call in bot.emu.calls_to("chat.postMessage") + bot.emu.calls_to("chat.update"):
        blocks = call.args.get("blocks") or []
        for raw in json.loads(blocks) if isinstance(blocks, str) else blocks:
            Block.parse(raw).validate_json()  # type: ignore[union-attr]


async def test_app_home_start_button_and_coordinator_home(stack: Any, tmp_path: Path) -> None:
    bot = await make_bot(stack, tmp_path, items={"triage": MESSAGES})
    ann = bot.emu.user("U1")
    assert (await ann.open_home()).status == 200
    home = await ann.wait_for(lambda: ann.home_view)
    assert "You haven't started yet: send /label start." in shown(home)
    assert "Projects" not in shown(home)  # progress is for coordinators
    await ann.press(home, "▶️ Start labeling")
    await ann.wait_for(lambda: open_items(ann))
    await ann.press(open_items(ann)[0], "spam")
    await ann.wait_for(lambda: len(items(ann)) == 2)

    await ann.open_home()
    await ann.wait_for(lambda: "Answers: 1" in shown(ann.home_view or {}))

    boss = bot.emu.user("UBOSS")
    await boss.open_home()
    home = await boss.wait_for(lambda: boss.home_view)
    assert "📈 Spam triage" in shown(home) and "u1: 1" in shown(home)
    await boss.press(home, "⬇️ Export triage")
    done = await boss.wait_for(lambda: [m for m in boss.messages if m.files])
    assert bot.exports == ["triage"]
    assert bot.emu.files[done[0].files[0]["id"]].content == b'{"id": "m1", "label": "spam"}\n'

    # A home Export button pressed by someone else is refused (the view is theirs to forge).
    forged = copy.deepcopy(home)
    await ann.open_home()
    mine = await ann.wait_for(lambda: ann.home_view)
    forged_press = {
        "type": "block_actions",
        "user": {"id": "U1", "username": "u1", "team_id": "T0001"},
        "team": {"id": "T0001"},
        "container": {"type": "view", "view_id": mine["id"]},
        "view": mine,
        "trigger_id": "1.1.x",
        "actions": [
            next(
                e
                for b in forged["blocks"]
                for e in b.get("elements", [])
                if str(e.get("value", "")).startswith("x:")  # the Export button
            )
            | {"block_id": "x", "action_ts": "1"}
        ],
    }
    assert (await ann.press_raw(forged_press)).status == 200
    await ann.wait_for(lambda: any(NOT_ALLOWED in m.text for m in ann.ephemerals))
    assert bot.exports == ["triage"]


async def test_invite_only_project_refuses_without_code(stack: Any, tmp_path: Path) -> None:
    bot = await make_bot(
        stack,
        tmp_path,
        items={"triage": MESSAGES},
        access=Access(mode="invite", invite_codes=["sesame-street"]),
    )
    eve = bot.emu.user("UEVE")
    await eve.slash("/label")
    await eve.wait_for(lambda: any("invite-only" in m.text for m in eve.ephemerals))
    assert items(eve) == []
    await eve.slash("/label", "start sesame-street")
    await eve.wait_for(lambda: open_items(eve))


async def test_project_choice_rating_and_verify(stack: Any, tmp_path: Path) -> None:
    stars = project("stars", title="Stars", kind="rating", labels=["1", "2", "3", "4", "5"])
    boxes = project("boxes", title="Boxes", kind="verify", labels=[])
    bot = await make_bot(
        stack,
        tmp_path,
        stars,
        boxes,
        items={
            "stars": [{"id": "r1", "text": "Great product, fast shipping"}],
            "boxes": [{"id": "v1", "text": "Photo 17", "suggestion": "cat"}],
        },
    )
    ann = bot.emu.user("U1")
    await ann.slash("/label")
    chooser = await ann.wait_for(
        lambda: (
            ann.last_message
            if ann.last_message and ann.last_message.button_texts == ["Stars", "Boxes"]
            else None
        )
    )
    await ann.press(chooser, "Stars")
    rating = (await ann.wait_for(lambda: open_items(ann)))[0]
    assert rating.button_texts == ["1", "2", "3", "4", "5", "Skip", "Report"]
    assert bot.emu.message(chooser.channel, chooser.ts).button_texts == []  # type: ignore[union-attr]
    await ann.press(rating, "4")
    await ann.wait_for(lambda: "That's everything for now" in ann.messages[-1].text)

    await ann.slash("/label", "start boxes")
    verify = await ann.wait_for(lambda: open_items(ann))
    assert "Suggested: cat — is this right?" in shown(verify[0])
    assert verify[0].button_texts == ["✅ Yes", "❌ No", "Skip", "Report"]
    await ann.press(verify[0], "✅ Yes")
    await ann.wait_for(lambda: not open_items(ann))
    assert await bot.answers() == [("slack:T0001/U1", "r1", "4"), ("slack:T0001/U1", "v1", "yes")]


async def test_multi_choice_checkboxes_and_done(stack: Any, tmp_path: Path) -> None:
    tags = project("tags", title="Tags", kind="multi", labels=["red", "green", "blue"])
    bot = await make_bot(stack, tmp_path, tags, items={"tags": [{"id": "t1", "text": "A flag"}]})
    ann = await joined(bot, "U1")
    msg = open_items(ann)[0]
    assert msg.button_texts == ["Done", "Skip", "Report"]
    action_id, values = checkbox_values(msg)

    async def draft() -> Any:
        rows = await bot.rows("SELECT draft FROM assignments")
        return json.loads(rows[0][0]) if rows[0][0] else []

    def ticked() -> set[str]:
        return {
            o["text"]["text"]
            for b in msg.blocks
            for e in b.get("elements", [])
            for o in e.get("initial_options", [])
        }

    await ann.press(msg, action_id, selected=[values["red"]])
    await ann.wait_for(lambda: ticked() == {"red"})  # re-rendered from what was stored
    assert await draft() == ["red"]
    await ann.press(msg, action_id, selected=[values["red"], values["blue"]])
    await ann.wait_for(lambda: ticked() == {"red", "blue"})
    assert await draft() == ["red", "blue"]

    # Done reads the boxes as the person sees them, even if a tick is still on its way.
    done = click(ann, msg, "Done")
    block_id = next(
        b["block_id"]
        for b in msg.blocks
        for e in b.get("elements", [])
        if e["type"] == "checkboxes"
    )
    seen = [{"text": {"type": "plain_text", "text": "green"}, "value": values["green"]}]
    done["state"] = {
        "values": {block_id: {action_id: {"type": "checkboxes", "selected_options": seen}}}
    }
    await ann.press_raw(done)
    await ann.wait_for(lambda: not open_items(ann))
    assert await bot.answers() == [("slack:T0001/U1", "t1", '["green"]')]
    assert "✅ green" in shown(items(ann)[0])


async def test_text_answers_through_the_modal_and_a_dm_reply(stack: Any, tmp_path: Path) -> None:
    notes = project("notes", title="Captions", kind="text", labels=[])
    bot = await make_bot(
        stack,
        tmp_path,
        notes,
        items={
            "notes": [
                {"id": "n1", "text": "Describe photo 1"},
                {"id": "n2", "text": "Describe photo 2"},
            ]
        },
    )
    ann = await joined(bot, "U1")
    msg = open_items(ann)[0]
    assert msg.button_texts == ["✍️ Write answer", "Skip", "Report"]
    await ann.press(msg, "✍️ Write answer")
    modal = (await ann.wait_for(lambda: ann.views))[0]
    assert "Describe photo 1" in shown(modal)

    empty = await ann.submit_view(modal, {"cl.answer": {"text": "   "}})
    assert empty.json()["response_action"] == "errors" and len(ann.views) == 1
    assert (await ann.submit_view(modal, {"cl.answer": {"text": "A cat on a mat"}})).status == 200
    assert ann.views == []
    await ann.wait_for(lambda: len(items(ann)) == 2)
    assert "✅ A cat on a mat" in shown(items(ann)[0])

    # Replying in the DM answers the open text item too.
    await ann.say("Two dogs")
    await ann.wait_for(lambda: "✅ Two dogs" in shown(items(ann)[1]))
    assert await bot.answers() == [
        ("slack:T0001/U1", "n1", "A cat on a mat"),
        ("slack:T0001/U1", "n2", "Two dogs"),
    ]


async def test_undo_brings_the_item_back_without_duplicates(stack: Any, tmp_path: Path) -> None:
    bot = await make_bot(stack, tmp_path, items={"triage": MESSAGES})
    ann = await joined(bot, "U1")
    first = open_items(ann)[0]
    await ann.press(first, "spam")
    await ann.wait_for(lambda: len(items(ann)) == 2)
    await ann.press(bot.emu.message(first.channel, first.ts), "↩️ Undo")  # type: ignore[arg-type]
    await ann.wait_for(lambda: first.button_texts == ["spam", "ham", "unsure", "Skip", "Report"])
    assert await bot.answers() == []

    await ann.press(first, "ham")
    await ann.wait_for(lambda: "✅ ham" in shown(first))
    await asyncio.sleep(0.2)
    assert len(items(ann)) == 2  # the second item was already on screen: not posted again
    assert await bot.answers() == [("slack:T0001/U1", "m1", "ham")]


async def test_gold_feedback_then_suspension(stack: Any, tmp_path: Path) -> None:
    # The absolute gate: its fixed bar is the one people are told about.
    gold = Quality(qualification=2, gold_rate=0.0, min_gold_accuracy=0.7, gate="absolute")
    bot = await make_bot(
        stack,
        tmp_path,
        project(quality=gold),
        items={
            "triage": [
                {
                    "id": "g1",
                    "text": "FREE MONEY",
                    "gold": "spam",
                    "gold_reason": "It asks for money",
                },
                {"id": "g2", "text": "See you at 5", "gold": "ham"},
                *MESSAGES,
            ]
        },
    )
    ann = await joined(bot, "U1")
    await ann.press(open_items(ann)[0], "ham")
    await ann.wait_for(lambda: len(items(ann)) == 2)
    missed = shown(items(ann)[0])
    assert "The expected answer was: spam" in missed and "It asks for money" in missed

    await ann.press(open_items(ann)[0], "spam")
    await ann.wait_for(lambda: "not receiving items" in ann.messages[-1].text)
    assert "below the 70% accuracy" in ann.messages[-1].text
    assert items(ann)[1].button_texts == []  # no Undo for the answer that suspended them
    assert await bot.rows("SELECT status FROM members") == [("suspended",)]


async def test_coordinator_commands_and_refusals(stack: Any, tmp_path: Path) -> None:
    bot = await make_bot(stack, tmp_path, items={"triage": MESSAGES})
    ann = await joined(bot, "U1")
    await ann.press(open_items(ann)[0], "spam")
    await ann.wait_for(lambda: len(items(ann)) == 2)
    before = await bot.state()

    for command in (
        "progress",
        "annotators",
        "disagreements",
        "agreement",
        "export",
        "pause triage",
        "resume triage",
    ):
        reply = await ann.slash("/label", command)
        assert reply.body == NOT_ALLOWED, command
    assert await bot.state() == before and bot.exports == []
    assert await bot.rows("SELECT paused FROM projects") == [(0,)]

    boss = bot.emu.user("UBOSS", name="boss")
    await boss.slash("/label", "progress")
    chart = await boss.wait_for(lambda: [m for m in boss.messages if m.files])
    assert "📈 Spam triage" in chart[0].text and "Answers: 1" in chart[0].text
    assert bot.emu.files[chart[0].files[0]["id"]].content[:8] == b"\x89PNG\r\n\x1a\n"  # type: ignore[index]

    await boss.slash("/label", "annotators")
    await boss.wait_for(lambda: any("👥 Annotators" in m.text for m in boss.ephemerals))
    assert any("u1: 1" in m.text for m in boss.ephemerals)
    await boss.slash("/label", "disagreements")
    await boss.wait_for(lambda: any("No disagreements" in m.text for m in boss.ephemerals))
    await boss.slash("/label", "agreement triage")
    await boss.wait_for(
        lambda: any("🤝 Agreement in Spam triage" in m.text for m in boss.ephemerals)
    )
    await boss.slash("/label", "export")
    await boss.wait_for(lambda: len([m for m in boss.messages if m.files]) == 2)
    assert bot.exports == ["triage"]
    await boss.slash("/label", "progress nope")
    await boss.wait_for(lambda: any("no project called nope" in m.text for m in boss.ephemerals))

    await boss.slash("/label", "pause triage")
    await boss.wait_for(lambda: any("⏸ Spam triage is paused" in m.text for m in boss.ephemerals))
    assert await bot.rows("SELECT paused FROM projects") == [(1,)]
    await ann.press(open_items(ann)[0], "ham")
    await ann.wait_for(lambda: "paused for now" in ann.messages[-1].text)
    await boss.slash("/label", "resume triage")
    await ann.wait_for(lambda: len(open_items(ann)) == 1)  # pushed when the project resumes
    assert await bot.rows("SELECT paused FROM projects") == [(0,)]

    help_reply = await boss.slash("/label", "help")
    assert "Coordinator commands" in help_reply.body
    assert "Coordinator commands" not in (await ann.slash("/label", "help")).body


async def test_stale_forged_and_repeated_presses_change_nothing(stack: Any, tmp_path: Path) -> None:
    bot = await make_bot(stack, tmp_path, items={"triage": MESSAGES})
    ann = await joined(bot, "U1")
    bob = await joined(bot, "U2")
    first = copy.deepcopy(open_items(ann)[0])
    await ann.press(open_items(ann)[0], "spam")
    await ann.wait_for(lambda: len(items(ann)) == 2)
    before, posted = await bot.state(), len(ann.messages)

    async def told(user: Any, text: str) -> None:
        await user.wait_for(lambda: any(text in m.text for m in user.ephemerals))

    await ann.press_raw(click(ann, first, "spam"))  # pressed again from the old message
    await told(ann, "Already recorded")
    await ann.press_raw(click(ann, first, "ham", value="garbage"))
    await told(ann, "doesn't work any more")
    bobs = open_items(bob)[0]
    await ann.press_raw(click(ann, bobs, "spam"))  # someone else's item
    await told(ann, "isn't yours")
    await ann.press_raw(click(ann, items(ann)[1], "spam", value="a:1:99"))  # no such choice
    await ann.press_raw(click(ann, first, "spam", value="u:999999"))
    await told(ann, "Nothing to undo")
    await asyncio.sleep(0.1)
    assert await bot.state() == before and len(ann.messages) == posted

    # Two clicks of one button arriving together: one answer, one next item.
    current = copy.deepcopy(open_items(ann)[0])
    replies = await asyncio.gather(*(ann.press_raw(click(ann, current, "ham")) for _ in range(3)))
    assert [r.status for r in replies] == [200, 200, 200]
    await ann.wait_for(lambda: len(items(ann)) == 3)
    await asyncio.sleep(0.2)
    assert len(items(ann)) == 3
    assert [a for a in await bot.answers() if a[0] == "slack:T0001/U1"] == [
        ("slack:T0001/U1", "m1", "spam"),
        ("slack:T0001/U1", "m2", "ham"),
    ]

    # A press after the lease ran out: told, the dead buttons go, and a fresh item comes.
    timed_out = open_items(ann)[0]
    bot.clock.now += 3600
    before = await bot.answers()
    await ann.press(timed_out, "spam")
    await told(ann, "timed out")
    await ann.wait_for(lambda: len(items(ann)) == 4 and timed_out.button_texts == [])
    assert await bot.answers() == before


async def test_bad_signature_and_replayed_timestamp_are_rejected(
    stack: Any, tmp_path: Path
) -> None:
    bot = await make_bot(stack, tmp_path, items={"triage": MESSAGES})
    ann = bot.emu.user("U1")
    forged = await ann.with_signature(secret="not-the-secret").slash("/label")
    replayed = await ann.with_signature(timestamp=int(time.time()) - 600).slash("/label")
    assert (forged.status, replayed.status) == (401, 401)
    ann_real = await joined(bot, "U2")
    before = await bot.state()
    stale_press = await ann_real.with_signature(timestamp=int(time.time()) - 600).press(
        open_items(ann_real)[0], "spam"
    )
    assert stale_press.status == 401
    await asyncio.sleep(0.1)
    assert await bot.state() == before
    assert await bot.rows("SELECT key FROM annotators") == [("slack:T0001/U2",)]
    assert ann.messages == [] and ann.ephemerals == []

    # Slack's URL check is answered (signed, as Slack signs it).
    url, secret, session = bot.emu.bot_endpoint()
    body = json.dumps({"type": "url_verification", "challenge": "c-123", "token": "t"}).encode()
    ts = str(int(time.time()))
    async with session.post(
        url,
        data=body,
        headers={
            "Content-Type": "application/json",
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": sign(secret, ts, body),
        },
    ) as resp:
        assert resp.status == 200 and (await resp.json())["challenge"] == "c-123"


async def test_rate_limited_post_is_retried_and_nothing_is_lost(stack: Any, tmp_path: Path) -> None:
    faults = SlackFaults(retry_after=1, methods=frozenset({"chat.postMessage"}))
    bot = await make_bot(stack, tmp_path, items={"triage": MESSAGES}, faults=faults)
    ann = await joined(bot, "U1")
    faults.ratelimit_next(1)
    started = time.monotonic()
    await ann.press(open_items(ann)[0], "spam")
    await ann.wait_for(lambda: len(items(ann)) == 2, timeout=10)
    assert time.monotonic() - started >= 1  # it waited for Retry-After
    statuses = [c.status for c in bot.emu.calls_to("chat.postMessage")]
    assert statuses.count(429) == 1 and statuses[-1] == 200
    assert await bot.answers() == [("slack:T0001/U1", "m1", "spam")]
    assert len(open_items(ann)) == 1


async def test_image_is_uploaded_once_and_reused(stack: Any, tmp_path: Path) -> None:
    Image.new("RGB", (64, 48), (200, 30, 30)).save(tmp_path / "red.png")
    bot = await make_bot(
        stack,
        tmp_path,
        items={"triage": [{"id": "p1", "text": "What is this?", "image": "red.png"}]},
    )
    ann = await joined(bot, "U1")
    bob = await joined(bot, "U2")
    ids = []
    for user in (ann, bob):
        image = next(b for b in open_items(user)[0].blocks if b["type"] == "image")
        ids.append(image["slack_file"]["id"])
    assert ids[0] == ids[1]
    assert len(bot.emu.calls_to("files.getUploadURLExternal")) == 1
    assert bot.emu.files[ids[0]].content[:2] == b"\xff\xd8"  # type: ignore[index]  # JPEG
    assert bot.emu.files[ids[0]].channels == []  # uploaded privately, shown by id
    assert len(await bot.rows("SELECT file_id FROM media_files WHERE platform = 'slack'")) == 1
    await ann.press(open_items(ann)[0], "spam")
    await ann.wait_for(lambda: not open_items(ann))
    assert any(b["type"] == "image" for b in items(ann)[0].blocks)  # still shown once answered


async def test_waiting_annotators_get_pushed_new_items_unless_paused(
    stack: Any, tmp_path: Path
) -> None:
    bot = await make_bot(stack, tmp_path)
    ann, bob = bot.emu.user("U1"), bot.emu.user("U2")
    for user in (ann, bob):
        await user.slash("/label")
        await user.wait_for(
            lambda u=user: u.messages and "That's everything for now" in u.messages[-1].text
        )
    await bob.slash("/label", "pause")
    await bob.wait_for(lambda: any("Paused" in m.text for m in bob.ephemerals))
    await bot.add_items("triage", MESSAGES[:1])
    await ann.wait_for(lambda: open_items(ann))
    await asyncio.sleep(0.2)
    assert open_items(bob) == []
    await bob.slash("/label", "resume")
    await bob.wait_for(lambda: open_items(bob))
    await bob.slash("/label", "stats")
    await bob.wait_for(lambda: any("Answers: 0" in m.text for m in bob.ephemerals))


async def test_env_proxy_does_not_capture_loopback_calls(
    stack: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(key, "http://127.0.0.1:9")  # nothing listens there
    bot = await make_bot(stack, tmp_path, items={"triage": MESSAGES})
    ann = await joined(bot, "U1")
    await ann.slash("/label", "stats")  # replies through the response_url
    await ann.wait_for(lambda: any("Answers: 0" in m.text for m in ann.ephemerals))


async def test_response_url_posts_share_one_session_closed_at_stop(
    stack: Any, tmp_path: Path
) -> None:
    bot = await make_bot(stack, tmp_path, items={"triage": MESSAGES})
    ann = await joined(bot, "U1")
    await ann.slash("/label", "stats")  # replies through the response_url
    await ann.wait_for(lambda: any("Answers: 0" in m.text for m in ann.ephemerals))
    session = bot.transport.outlet._hooks
    assert session is not None and not session.closed
    first = open_items(ann)[0]
    await ann.press(first, "spam")  # the edit goes through the press's response_url
    await ann.wait_for(lambda: "✅ spam" in shown(first))
    assert bot.transport.outlet._hooks is session
    await bot.transport.stop()
    assert session.closed


async def test_undo_button_goes_when_the_window_closes(stack: Any, tmp_path: Path) -> None:
    bot = await make_bot(stack, tmp_path, project(undo_seconds=1), items={"triage": MESSAGES})
    ann = await joined(bot, "U1")
    first = open_items(ann)[0]
    await ann.press(first, "spam")
    await ann.wait_for(lambda: first.button_texts == ["↩️ Undo"])
    await ann.wait_for(lambda: first.button_texts == [], timeout=5)
    assert "✅ spam" in shown(first)


async def test_command_from_a_channel_answers_in_the_dm(stack: Any, tmp_path: Path) -> None:
    bot = await make_bot(stack, tmp_path, items={"triage": MESSAGES})
    bot.emu.add_channel("C1", "general")
    ann = bot.emu.user("U1")
    await ann.slash("/label", channel="C1")
    await ann.wait_for(lambda: open_items(ann))
    await ann.wait_for(lambda: any("sent it to our DM" in m.text for m in ann.ephemerals))
    assert [m.channel for m in ann.ephemerals] == ["C1"]
    assert bot.emu.history("C1") == []  # nothing public


async def test_a_failed_command_reply_is_logged_and_the_command_goes_on(
    stack: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    faults = SlackFaults()
    bot = await make_bot(stack, tmp_path, items={"triage": MESSAGES}, faults=faults)
    bot.emu.add_channel("C1", "general")
    ann = bot.emu.user("U1")
    # The "sent it to our DM" note's post loses its connection, and so does slack_sdk's retry.
    faults.cut_next_responses(2)
    await ann.slash("/label", channel="C1")
    await ann.wait_for(lambda: open_items(ann))  # the first item still reaches the DM
    assert ann.ephemerals == [] and bot.emu.response_posts == []
    failed = [r for r in caplog.records if "response_url post failed" in r.getMessage()]
    assert len(failed) == 1 and failed[0].levelno == logging.WARNING
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    chatlabel = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("chatlabel"))
    assert "/response/" not in chatlabel  # the URL (its token) stays out of the logs
    await ann.slash("/label", "stats")  # the next command's reply gets through
    await ann.wait_for(lambda: any("Answers: 0" in m.text for m in ann.ephemerals))


async def test_redelivered_dm_event_counts_once_and_other_events_are_acked(
    stack: Any, tmp_path: Path
) -> None:
    notes = project("notes", title="Captions", kind="text", labels=[])
    bot = await make_bot(
        stack,
        tmp_path,
        notes,
        items={"notes": [{"id": "n1", "text": "Describe 1"}, {"id": "n2", "text": "Describe 2"}]},
    )
    ann = await joined(bot, "U1")
    url, secret, session = bot.emu.bot_endpoint()

    async def deliver(event: dict[str, Any], event_id: str) -> int:
        body = json.dumps(
            {
                "token": "t",
                "team_id": "T0001",
                "api_app_id": "A0001",
                "type": "event_callback",
                "event": event,
                "event_id": event_id,
                "event_time": int(time.time()),
            }
        ).encode()
        ts = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": sign(secret, ts, body),
        }
        async with session.post(url, data=body, headers=headers) as resp:
            return resp.status

    said = {
        "type": "message",
        "channel": "DU1",
        "user": "U1",
        "text": "a red bus",
        "ts": "1.000001",
        "channel_type": "im",
    }
    assert await deliver(said, "Ev1") == 200
    await ann.wait_for(lambda: len(items(ann)) == 2)
    assert await deliver(said, "Ev1") == 200  # Slack's retry of the same event
    assert await deliver({"type": "team_join", "user": {"id": "U9"}}, "Ev2") == 200
    await asyncio.sleep(0.2)
    assert await bot.answers() == [("slack:T0001/U1", "n1", "a red bus")]


async def test_wrong_tokens_fail_start_instead_of_hanging(tmp_path: Path) -> None:
    async with SlackApiEmulator() as emu, Database(tmp_path / "db.sqlite") as db:
        config = Config(project=[project()], slack=Slack(port=0, base_url=emu.base_url))
        service = LabelingService(db, config)
        await service.start()
        assert config.slack is not None
        wrong = SlackTransport(
            service,
            Reports(service),
            config.slack,
            "xoxb-wrong",
            SECRET,
            media_cache=tmp_path / "cache",
        )
        with pytest.raises(
            ConfigError,
            match=r"Slack refused the bot token in CHATLABEL_SLACK_BOT_TOKEN \(invalid_auth\)",
        ) as refused:
            await wrong.start()
        assert "xoxb-wrong" not in str(refused.value)
        await wrong.stop()
        # An app whose Socket Mode is off (the fake's default) refuses the WebSocket: start()
        # fails rather than hang (Socket Mode itself: test_slack_socket_mode.py).
        socket = SlackTransport(
            service,
            Reports(service),
            config.slack,
            emu.token,
            SECRET,
            app_token=emu.app_token,
            media_cache=tmp_path / "cache",
        )
        with pytest.raises(SlackApiError, match="forbidden_team"):
            await asyncio.wait_for(socket.start(), timeout=5)
        await socket.stop()
        assert [c.method for c in emu.calls][-1] == "apps.connections.open"


async def test_no_secret_reaches_the_logs(
    stack: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bot = await make_bot(stack, tmp_path, items={"triage": MESSAGES})
    ann = await joined(bot, "U1")
    await ann.press(open_items(ann)[0], "spam")
    await ann.wait_for(lambda: len(items(ann)) == 2)
    await ann.with_signature(secret="wrong").slash("/label")
    await bot.emu.user("UBOSS").slash("/label", "progress")
    await bot.emu.user("UBOSS").wait_for(lambda: bot.emu.files)
    assert caplog.records  # debug logging was on
    for secret in (bot.emu.token, SECRET):
        assert secret not in caplog.text


async def test_buttons_keep_working_after_a_restart(stack: Any, tmp_path: Path) -> None:
    bot = await make_bot(stack, tmp_path, items={"triage": MESSAGES})
    ann = await joined(bot, "U1")
    first = open_items(ann)[0]
    await bot.transport.stop()
    # A new process: same database and Slack workspace, nothing remembered in memory.
    again = SlackTransport(
        bot.service,
        Reports(bot.service),
        bot.transport.settings,
        bot.emu.token,
        SECRET,
        media_cache=tmp_path / "cache",
    )
    await again.start()
    stack.push_async_callback(again.stop)
    bot.emu.configure_bot(again.url, SECRET)

    await ann.press(first, "ham")
    await ann.wait_for(lambda: len(items(ann)) == 2)
    assert "✅ ham" in shown(first) and "WIN A PRIZE NOW" in shown(first)
    await ann.press(first, "↩️ Undo")
    await ann.wait_for(lambda: first.button_texts == ["spam", "ham", "unsure", "Skip", "Report"])
    await ann.press(first, "spam")
    await ann.wait_for(lambda: "✅ spam" in shown(first))
    assert await bot.answers() == [("slack:T0001/U1", "m1", "spam")]
    # The newer item, taken away by the undo, comes back once (not twice) after the answer.
    await ann.wait_for(lambda: len(items(ann)) == 2)
    await asyncio.sleep(0.2)
    assert len(items(ann)) == 2


async def test_a_confident_suggestion_is_one_check_in_slack_too(stack: Any, tmp_path: Path) -> None:
    """The check flow is the shared conversation's: Slack shows a confident item as yes/no."""
    routed = project(model=Model(kind="import", auto_threshold=0.9, audit_rate=0.0))
    bot = await make_bot(
        stack,
        tmp_path,
        routed,
        items={
            "triage": [
                {"id": "c1", "text": "FREE PRIZE", "suggestion": "spam", "suggestion_score": 0.97},
                {"id": "c2", "text": "Lunch?", "suggestion": "ham", "suggestion_score": 0.95},
            ]
        },
    )
    ann = await joined(bot, "U1")
    check = open_items(ann)[0]
    assert "FREE PRIZE" in shown(check)
    assert "Suggested: spam — is this right?" in shown(check)
    assert check.button_texts == ["✅ Yes", "❌ No", "Skip", "Report"]
    await ann.press(check, "✅ Yes")
    await ann.wait_for(lambda: len(items(ann)) == 2)
    second = open_items(ann)[0]
    assert "Suggested: ham — is this right?" in shown(second)
    await ann.press(second, "❌ No")
    await ann.wait_for(lambda: "That's everything for now" in ann.messages[-1].text)
    assert await bot.rows(
        "SELECT i.ext_id, i.status, i.route, v.label FROM items i "
        "LEFT JOIN verdicts v ON v.item_id = i.id ORDER BY i.seq"
    ) == [("c1", "resolved", "verified", "spam"), ("c2", "pending", "rejected", None)]
    assert await bot.rows("SELECT method FROM verdicts WHERE label IS NOT NULL") == [("check",)]
    # Of the two labels plus "unsure", "not ham" names no label: the no is not a vote.
    assert await bot.answers() == [("slack:T0001/U1", "c1", "yes"), ("slack:T0001/U1", "c2", "no")]
