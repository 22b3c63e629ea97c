"""Access: coordinator commands from anyone else, presses on someone else's buttons, people
outside an allowlist, and Slack requests with a bad or old signature are refused, and change
nothing.

Already covered elsewhere (not repeated here): an annotator sending each coordinator command
without arguments on Telegram (test_telegram_ops.py::test_coordinator_commands_answer_
coordinators_and_refuse_others) and on Slack (test_slack_bot.py::test_coordinator_commands_and_
refusals); an answer button of someone else's item (test_telegram_ops.py::test_stale_forged_and_
double_presses_change_nothing, test_slack_bot.py::test_stale_forged_and_repeated_presses_change_
nothing); a slash command and a press signed with a wrong secret or a 10-minute-old timestamp
(test_slack_bot.py::test_bad_signature_and_replayed_timestamp_are_rejected); an invite-only
project on Slack (test_slack_bot.py::test_invite_only_project_refuses_without_code); the Telegram
webhook secret (test_telegram_ops.py::test_webhook_mode_accepts_only_the_secret).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from chatlabel.config import Access
from chatlabel.conversation import Catalog
from chatlabel.emulators.slack_user import sign
from chatlabel.emulators.telegram import SimUser
from tests.slack_harness import checkbox_values, click, items, make_bot, open_items
from tests.slack_harness import project as slack_project
from tests.telegram_harness import (
    COORDINATOR_ID,
    Bench,
    is_item,
    new_message,
    next_item,
    project,
    running_bot,
)

NOT_ALLOWED = Catalog().texts("en")("command.not_allowed")

pytestmark = pytest.mark.timeout(30)

ITEMS = [{"id": f"t{n}", "text": f"Animal sound number {n}."} for n in range(1, 7)]
NOT_YOURS = "That button isn't yours."
COORDINATOR_COMMANDS = (
    "progress", "annotators", "disagreements", "agreement", "export",
    "pause_project", "resume_project",
)  # fmt: skip


async def telegram_state(b: Bench) -> tuple[list[tuple[Any, ...]], ...]:
    """Everything a refused command or press could change."""
    return (
        await b.query("SELECT id, paused FROM projects ORDER BY id"),
        await b.query("SELECT id, status, n_answers, n_leases FROM items ORDER BY id"),
        await b.query("SELECT * FROM members ORDER BY project_id, annotator_id"),
        await b.query(
            "SELECT id, item_id, annotator_id, state, draft FROM assignments ORDER BY id"
        ),
        await b.query("SELECT * FROM answers ORDER BY id"),
        await b.query("SELECT * FROM verdicts ORDER BY item_id"),
        await b.query("SELECT key, project_id FROM annotators WHERE project_id IS NOT NULL"),
    )


async def replies(u: SimUser, after: int, count: int) -> list[str]:
    """The texts of the next `count` bot messages after message id `after`."""
    await u.wait_for(lambda: len([m for m in u.messages if m.message_id > after]) >= count)
    return [m.content for m in u.messages if m.message_id > after]


# -- Telegram -------------------------------------------------------------------------------------


async def test_telegram_coordinator_commands_from_anyone_else_change_and_leak_nothing(
    tmp_path: Path,
) -> None:
    async with running_bot(tmp_path) as b:
        await b.add_items("animals", ITEMS)
        ann = b.user(1, "Ann")
        item = await b.start(ann)
        await ann.press(item, "cat")
        await next_item(ann, item.message_id)
        stranger = b.user(66, "Mallory")  # never sent /start
        await asyncio.sleep(0.3)
        before = await telegram_state(b)
        variants = [
            "/{c} animals",
            "/{c}@chatlabel_emulator_bot",
            "/{C}",
            "/{c} ../../etc/passwd",
        ]
        for u in (ann, stranger):
            last = u.messages[-1].message_id if u.messages else 0
            sent = [v.format(c=c, C=c.upper()) for c in COORDINATOR_COMMANDS for v in variants]
            for text in sent:
                await u.send(text)
            got = await replies(u, last, len(sent))
            assert got == [NOT_ALLOWED] * len(sent), list(zip(sent, got, strict=False))
        await asyncio.sleep(0.3)
        assert await telegram_state(b) == before
        assert b.emu.calls_to("sendDocument") == [] and b.emu.calls_to("sendPhoto") == []
        assert not [m for u in (ann, stranger) for m in u.messages if m.kind != "text"]
        # The coordinator's own command still works afterwards (the refusals broke nothing).
        boss = b.user(COORDINATOR_ID, "Boss")
        await boss.send("/pause_project animals")
        paused = await new_message(boss, 0)
        assert paused.content.startswith("⏸ Animals is paused")


async def test_telegram_presses_on_someone_elses_buttons_are_refused(tmp_path: Path) -> None:
    tags = project("tags", kind="multi", labels=["red", "green", "blue"], undo_seconds=600)
    async with running_bot(tmp_path, [tags]) as b:
        await b.add_items("tags", [{"id": f"f{n}", "text": f"Flag {n}"} for n in range(4)])
        ann, bob = b.user(1, "Ann"), b.user(2, "Bob")
        ann_item = await b.start(ann)
        bob_first = await b.start(bob)
        await bob.press(bob_first, "red")
        await bob.wait_for(lambda: "✓ red" in [x["text"] for x in bob_first.buttons])
        await bob.press(bob_first, "Done")
        bob_item = await next_item(bob, bob_first.message_id)
        await bob.press(bob_item, "green")  # a draft of Bob's own
        await bob.wait_for(lambda: "✓ green" in [x["text"] for x in bob_item.buttons])
        undo = next(str(x["callback_data"]) for x in bob_first.buttons if "Undo" in x["text"])
        await asyncio.sleep(0.3)
        before = await telegram_state(b)
        assert before[3][-1][4] == '["green"]'

        stolen = [str(x["callback_data"]) for x in bob_item.buttons] + [undo]
        assert {d.split(":")[0] for d in stolen} == {"t", "d", "s", "r", "u"}
        for data in stolen:
            for message_id in (ann_item.message_id, bob_item.message_id):
                query = await ann.press_raw(message_id, data)
                assert await ann.wait_for_answer(query) == NOT_YOURS, data
        await asyncio.sleep(0.3)
        assert await telegram_state(b) == before
        # Bob's message is as Bob left it; Ann's item is still hers to answer.
        assert [x["text"] for x in bob_item.buttons][:3] == ["red", "✓ green", "blue"]
        assert is_item(ann_item) and [m for m in ann.messages if is_item(m)] == [ann_item]


async def test_telegram_allowlist_keeps_everyone_else_out(tmp_path: Path) -> None:
    access = {"mode": "allowlist", "allowlist": ["telegram:1"]}
    pets = project("pets", title="Pets")
    async with running_bot(tmp_path, [project(), pets], access=access) as b:
        await b.add_items("animals", ITEMS)
        ann = b.user(1, "Ann")
        item = await b.start(ann, "animals")
        assert item.content == "Animal sound number 1."
        eve = b.user(5, "Eve")
        before = await telegram_state(b)

        for text in ("/start", "/start animals", "/start pets", "/start telegram:1"):
            last = eve.messages[-1].message_id if eve.messages else 0
            await eve.send(text)
            got = await new_message(eve, last, lambda m: not m.buttons or "p:" in str(m.buttons))
            if got.buttons:  # "Which project?": choosing one is refused too
                query = await eve.press(got, got.buttons[0]["text"])
                await eve.wait_for_answer(query)
                got = await new_message(eve, got.message_id)
            assert (
                got.content
                == "This project is limited to invited people. Ask a coordinator to add you."
            )
        asg = str(item.buttons[0]["callback_data"])
        query = await eve.press_raw(item.message_id, asg)
        assert await eve.wait_for_answer(query) == NOT_YOURS
        last = eve.messages[-1].message_id
        await eve.send("cat")
        reply = await new_message(eve, last)
        assert "no item waiting" in reply.content
        await asyncio.sleep(0.3)
        assert await telegram_state(b) == before
        assert not [m for m in eve.messages if is_item(m)]
        # A coordinator needs no place on the list.
        boss = await b.start(b.user(COORDINATOR_ID, "Boss"), "animals")
        assert is_item(boss)


async def test_telegram_invite_codes_must_match_exactly(tmp_path: Path) -> None:
    access = {"mode": "invite", "invite_codes": ["sesame-42"]}
    async with running_bot(tmp_path, access=access) as b:
        await b.add_items("animals", ITEMS)
        eve = b.user(5, "Eve")
        before = await telegram_state(b)
        for code in ("", "SESAME-42", "sesame", "sesame-42x", " sesame-42 x", "sesame‐42"):
            last = eve.messages[-1].message_id if eve.messages else 0
            await eve.send(f"/start {code}")
            got = await new_message(eve, last)
            assert got.content.startswith("This project is invite-only"), code
        assert await telegram_state(b) == before
        # Five wrong codes lock Eve out for ten minutes (tests/test_faults_security.py); then
        # the right code works.
        b.clock.advance(601)
        item = await b.start(eve, "sesame-42")
        assert is_item(item)


# -- Slack ----------------------------------------------------------------------------------------


@pytest.fixture
async def stack() -> AsyncIterator[contextlib.AsyncExitStack]:
    async with contextlib.AsyncExitStack() as s:
        yield s


async def joined(bot: Any, uid: str, text: str = "") -> Any:
    user = bot.emu.user(uid, name=uid.lower())
    assert (await user.slash("/label", text)).status == 200
    await user.wait_for(lambda: open_items(user))
    return user


async def told(user: Any, text: str, count: int = 1) -> None:
    await user.wait_for(lambda: len([m for m in user.ephemerals if text in m.text]) >= count)


MESSAGES = [{"id": f"m{n}", "text": f"Message {n}"} for n in range(1, 6)]


async def test_slack_coordinator_actions_from_anyone_else_are_refused(
    stack: Any, tmp_path: Path
) -> None:
    bot = await make_bot(stack, tmp_path, items={"triage": MESSAGES})
    ann = await joined(bot, "U1")
    stranger = bot.emu.user("U66", name="mallory")
    before = await bot.state()
    for who in (ann, stranger):
        for sub in ("progress triage", "annotators triage", "disagreements triage",
                    "agreement triage", "export triage", "pause triage", "resume triage",
                    "EXPORT", "Progress"):  # fmt: skip
            reply = await who.slash("/label", sub)
            assert reply.status == 200 and reply.body == NOT_ALLOWED, (who, sub, reply.body)
        # The App Home's Export button, forged (only coordinators are shown it).
        export = {
            "type": "block_actions",
            **who._sender(),
            "container": {"type": "view", "view_id": "V1"},
            "actions": [
                {
                    "type": "button",
                    "action_id": "cl.home.export.0",
                    "block_id": "h",
                    "value": "triage",
                    "action_ts": f"{time.time():.6f}",
                }
            ],
        }
        assert (await who.press_raw(export)).status == 200
        await told(who, NOT_ALLOWED)
    await asyncio.sleep(0.2)
    assert await bot.state() == before
    assert bot.exports == [] and bot.emu.files == {}
    assert await bot.rows("SELECT paused FROM projects") == [(0,)]


async def test_slack_presses_on_someone_elses_items_are_refused(stack: Any, tmp_path: Path) -> None:
    tags = slack_project(
        "tags", title="Tags", kind="multi", labels=["red", "green", "blue"], undo_seconds=600
    )
    notes = slack_project("notes", title="Captions", kind="text", labels=[])
    rows = [{"id": f"f{n}", "text": f"Flag {n}"} for n in range(4)]
    bot = await make_bot(
        stack,
        tmp_path,
        tags,
        notes,
        items={"tags": rows, "notes": [{"id": "n1", "text": "Describe"}]},
    )
    ann = await joined(bot, "U1", "start tags")
    bob = await joined(bot, "U2", "start tags")
    first = open_items(bob)[0]
    action_id, values = checkbox_values(first)
    await bob.press(first, action_id, selected=[values["red"]])
    await bob.wait_for(lambda: "red" in str(first.blocks))
    await bob.press(first, "Done")
    await bob.wait_for(lambda: len(open_items(bob)) == 1 and open_items(bob)[0].ts != first.ts)
    current = open_items(bob)[0]
    answered = next(m for m in items(bob) if m.ts == first.ts)
    await asyncio.sleep(0.2)
    before = await bot.state()

    forged: list[dict[str, Any]] = [
        click(ann, current, "Done"),
        click(ann, current, "Skip"),
        click(ann, answered, "↩️ Undo"),
    ]
    tick_id, tick_values = checkbox_values(current)
    block_id = next(
        b["block_id"]
        for b in current.blocks
        for e in b.get("elements", [])
        if e["type"] == "checkboxes"
    )
    tick = click(ann, current, "Done")
    tick["actions"] = [
        {
            "type": "checkboxes",
            "action_id": tick_id,
            "block_id": block_id,
            "selected_options": [
                {"text": {"type": "plain_text", "text": "blue"}, "value": tick_values["blue"]}
            ],
            "action_ts": f"{time.time():.6f}",
        }
    ]
    forged.append(tick)
    for payload in forged:
        assert (await ann.press_raw(payload)).status == 200
    await told(ann, "isn't yours", count=len(forged))

    # A free-text answer through a forged modal, naming Bob's item.
    aid = int(str(click(bob, current, "Skip")["actions"][0]["value"]).split(":")[1])
    view = {
        "id": "VFORGED",
        "type": "modal",
        "callback_id": "cl.text",
        "blocks": [],
        "private_metadata": json.dumps({"a": aid, "p": "tags", "c": "DU2", "t": current.ts}),
        "state": {"values": {"cl.answer": {"text": {"type": "plain_text_input", "value": "x"}}}},
    }
    submitted = await ann.press_raw({"type": "view_submission", **ann._sender(), "view": view})
    assert submitted.status == 200
    await told(ann, "isn't yours", count=len(forged) + 1)
    await asyncio.sleep(0.2)
    assert await bot.state() == before
    assert (
        current.button_texts == ["Done", "Skip", "Report"] and open_items(bob)[0].ts == current.ts
    )


async def test_slack_allowlist_keeps_everyone_else_out(stack: Any, tmp_path: Path) -> None:
    access = Access(mode="allowlist", allowlist=["slack:U1"], coordinators=["slack:UBOSS"])
    bot = await make_bot(stack, tmp_path, items={"triage": MESSAGES}, access=access)
    eve = bot.emu.user("U5", name="eve")
    for text in ("", "start", "start triage", "start slack:U1"):
        assert (await eve.slash("/label", text)).status == 200
    await told(eve, "limited to invited people", count=4)
    await asyncio.sleep(0.2)
    assert await bot.rows("SELECT COUNT(*) FROM members") == [(0,)]
    ann = await joined(bot, "U1")  # `slack:U1` on the list matches `slack:T0001/U1`
    assert len(open_items(ann)) == 1
    before = await bot.state()
    assert (await eve.press_raw(click(eve, open_items(ann)[0], "spam"))).status == 200
    await told(eve, "isn't yours")
    await asyncio.sleep(0.2)
    assert await bot.state() == before


async def test_slack_requests_with_bad_or_old_signatures_get_401(
    stack: Any, tmp_path: Path
) -> None:
    notes = slack_project("notes", title="Captions", kind="text", labels=[])
    bot = await make_bot(stack, tmp_path, notes, items={"notes": [{"id": "n1", "text": "D"}]})
    ann = await joined(bot, "U1")
    before = await bot.state()
    posts_before = len(bot.emu.calls)
    url, secret, session = bot.emu.bot_endpoint()
    payload = click(ann, open_items(ann)[0], "Skip")
    form = ("payload=" + json.dumps(payload)).encode()
    event = json.dumps(
        {
            "type": "event_callback",
            "team_id": "T0001",
            "api_app_id": "A0001",
            "event_id": "EvX",
            "event_time": int(time.time()),
            "event": {
                "type": "message",
                "channel": "DU1",
                "user": "U1",
                "text": "forged answer",
                "ts": "1.000001",
                "channel_type": "im",
            },
        }
    ).encode()

    async def post(body: bytes, content_type: str, headers: dict[str, str]) -> int:
        async with session.post(
            url, data=body, headers={"Content-Type": content_type, **headers}
        ) as resp:
            return resp.status

    now = str(int(time.time()))
    old, future = str(int(time.time()) - 301), str(int(time.time()) + 301)
    cases = {
        "no headers": {},
        "no signature": {"X-Slack-Request-Timestamp": now},
        "no timestamp": {"X-Slack-Signature": sign(secret, now, form)},
        "wrong secret": {
            "X-Slack-Request-Timestamp": now,
            "X-Slack-Signature": sign("guess", now, form),
        },
        "old": {"X-Slack-Request-Timestamp": old, "X-Slack-Signature": sign(secret, old, form)},
        "future": {
            "X-Slack-Request-Timestamp": future,
            "X-Slack-Signature": sign(secret, future, form),
        },
        "v1 scheme": {
            "X-Slack-Request-Timestamp": now,
            "X-Slack-Signature": "v1=" + sign(secret, now, form)[3:],
        },
        "signed for another body": {
            "X-Slack-Request-Timestamp": now,
            "X-Slack-Signature": sign(secret, now, form + b"x"),
        },
    }
    statuses = {
        name: await post(form, "application/x-www-form-urlencoded", headers)
        for name, headers in cases.items()
    }
    assert statuses == dict.fromkeys(cases, 401), statuses
    stale = await post(
        event,
        "application/json",
        {"X-Slack-Request-Timestamp": old, "X-Slack-Signature": sign(secret, old, event)},
    )
    forged_event = await post(
        event,
        "application/json",
        {"X-Slack-Request-Timestamp": now, "X-Slack-Signature": sign("guess", now, event)},
    )
    modal = await ann.with_signature(secret="guess").press_raw(
        {
            "type": "view_submission",
            **ann._sender(),
            "view": {
                "id": "V",
                "type": "modal",
                "callback_id": "cl.text",
                "private_metadata": "{}",
                "state": {"values": {}},
                "blocks": [],
            },
        }
    )
    assert (stale, forged_event, modal.status) == (401, 401, 401)
    # A timestamp that is not a number: slack_sdk's verifier raises on it, Bolt logs an error
    # with a traceback and answers 500 (see test_slack_a_timestamp_that_is_not_a_number_...).
    await asyncio.sleep(0.3)
    assert await bot.state() == before
    assert len(bot.emu.calls) == posts_before  # the bot did not even answer anyone
    # The same press, signed properly, is taken.
    signed = await post(
        form,
        "application/x-www-form-urlencoded",
        {"X-Slack-Request-Timestamp": now, "X-Slack-Signature": sign(secret, now, form)},
    )
    assert signed == 200
    await ann.wait_for(lambda: not open_items(ann))
    assert [a[2] for a in await bot.answers()] == [None]  # the skip
    assert copy.deepcopy(before) != await bot.state()


async def test_slack_a_timestamp_that_is_not_a_number_is_a_plain_401(
    stack: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Anyone on the internet can send this header; it must not cost a 500 and a logged
    traceback per request (slack_sdk's SignatureVerifier.is_valid does int(timestamp))."""
    bot = await make_bot(stack, tmp_path, items={"triage": MESSAGES})
    url, secret, session = bot.emu.bot_endpoint()
    body = b"payload=%7B%7D"
    statuses = {}
    for stamp in ("soon", "", "1e9", "-5", "0x10", "12.5"):
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": sign(secret, stamp, body),
        }
        async with session.post(url, data=body, headers=headers) as resp:
            statuses[stamp] = resp.status
    assert statuses == dict.fromkeys(statuses, 401)  # 500 today for the non-numbers
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == []
