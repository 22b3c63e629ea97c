"""Fuzzed input: random and mutated button data, odd command arguments, huge and unicode-heavy
texts, from known and unknown people, on Telegram and Slack.

Nothing crashes (no error is logged, and the bot goes on answering a real person), nothing in the
database changes for input a real button or message could not have sent, and every press gets a
polite answer (a toast or an ephemeral note) and every message a polite reply or none.
Seeded: the same inputs every run.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import json
import logging
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from chatlabel.conversation.buttons import decode
from chatlabel.core.values import MAX_TEXT_ANSWER
from chatlabel.emulators.telegram import SimUser
from chatlabel.emulators.telegram_format import command_entities
from tests.slack_harness import click, items, make_bot, open_items
from tests.telegram_harness import COORDINATOR_ID, Bench, is_item, next_item, project, running_bot

pytestmark = pytest.mark.timeout(90)

SEED = 20240611
TELEGRAM_INPUTS = 1600
SLACK_INPUTS = 400
LABELS = ("cat", "dog", "bird")

# What people may be told about input that does nothing (toasts, replies, ephemeral notes).
POLITE_TOASTS = {
    "That button doesn't work any more.",
    "That button isn't yours.",
    "Nothing to undo.",
    "Too late to undo, sorry.",
    "Please choose an answer.",
    "Already recorded, thanks!",
    "That button doesn't belong here.",
    "Sorry, that command is for project coordinators.",  # a forged Export button
    None,  # a project choice that is out of range is answered in the chat instead
}
IMPOLITE = ("Traceback", "Exception", "Error", "NoneType", "sqlite", "KeyError")

# -- inputs -------------------------------------------------------------------------------------

_ALPHABETS = [
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "0123456789:::::",
    " \t\n",
    "".join(chr(c) for c in range(1, 32) if c not in (0,)),  # control characters, no NUL
    "\u202e\u202d\u200f\u200e\u2066\u2069",  # bidi overrides and marks
    "שלום עולם مرحبا بالعالم",  # Hebrew and Arabic
    "😀🐱🐶🐦👍🏽🇺🇦👨‍👩‍👧‍👦",  # emoji, modifiers, flags, ZWJ sequences
    "e\u0301\u0308\u20dd\ufe0f\u200b\u2060\ufeff",  # combining marks, zero-width
    "١٢٣٤٥٦٧٨٩٠０１２３",  # non-ASCII digits
    "'\";--/*%s%n{{}}<>&$`\\",  # quoting and format characters
    "你好世界日本語한국어",
]
INJECTIONS = [
    "'; DROP TABLE answers;--",
    "' OR '1'='1",
    "../../etc/passwd",
    "..\\..\\windows\\system32",
    "%s%s%s%n",
    "{{7*7}}",
    "${jndi:ldap://x/a}",
    "<script>alert(1)</script>",
    "$(rm -rf /)",
    "\u202egnp.exe",
    "NULL",
    "None",
    "-1",
    "9" * 40,
]


def junk(rng: random.Random, max_len: int = 80) -> str:
    """A random string from a mix of scripts, controls, emoji and quoting characters."""
    n = rng.randint(0, max_len)
    return "".join(rng.choice(rng.choice(_ALPHABETS)) for _ in range(n))


def visible(rng: random.Random, max_len: int = 80) -> str:
    """Junk with at least one visible character (clients do not send blank messages)."""
    text = junk(rng, max_len)
    return text if text.strip() else text + rng.choice("x😀ש٣")


def mutate(rng: random.Random, data: str) -> str:
    """Real button data, damaged: a character changed, dropped, doubled, or junk added."""
    chars = list(data)
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(6)
        i = rng.randrange(len(chars) + 1)
        if op == 0 and chars:
            chars[min(i, len(chars) - 1)] = rng.choice(rng.choice(_ALPHABETS))
        elif op == 1 and chars:
            del chars[min(i, len(chars) - 1)]
        elif op == 2:
            chars.insert(i, rng.choice(":-+ 0x٣"))
        elif op == 3:
            chars += list(":" + str(rng.randint(0, 10**6)))
        elif op == 4:
            chars = list("".join(chars).upper())
        else:
            chars = list("".join(chars) * rng.randint(2, 30))
    return "".join(chars)


def looks_valid(rng: random.Random, refs: list[int]) -> str:
    """Button data in the bot's own format, pointing at rows it should not reach."""
    code = rng.choice("atdsupAx")
    ref = rng.choice([*refs, 0, -1, 2**31, 2**62, 2**63, 10**30, rng.randint(1, 10**6)])
    index = rng.choice([-1, 0, 1, 2, 3, 5, 99, 2**40])
    return f"{code}:{ref}" if rng.random() < 0.3 else f"{code}:{ref}:{index}"


# -- database digest ------------------------------------------------------------------------------

DIGEST_QUERIES = (
    "SELECT id, name, paused FROM projects ORDER BY id",
    "SELECT id, status, needed, n_answers, n_leases FROM items ORDER BY id",
    "SELECT * FROM members ORDER BY project_id, annotator_id",
    "SELECT id, item_id, annotator_id, state, draft, expires_at FROM assignments ORDER BY id",
    "SELECT * FROM answers ORDER BY id",
    "SELECT * FROM verdicts ORDER BY item_id",
    # Anyone may say /start and be refused: a refused person is remembered, but belongs nowhere.
    "SELECT key, project_id, blocked FROM annotators WHERE project_id IS NOT NULL ORDER BY key",
)


async def snapshot(query: Callable[[str], Awaitable[list[tuple[Any, ...]]]]) -> dict[str, str]:
    """A hash per table of every row labeling depends on (not message refs: re-sends move them),
    with the rows themselves kept for a readable failure."""
    out = {}
    for sql in DIGEST_QUERIES:
        rows = json.dumps(await query(sql), default=str, ensure_ascii=False)
        out[sql] = hashlib.sha256(rows.encode()).hexdigest()[:16] + " " + rows[:3000]
    return out


def no_errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Messages of ERROR records (a handler failed; the bot's error handler logs these)."""
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR]


# -- Telegram -------------------------------------------------------------------------------------


@dataclass
class Person:
    """A fuzzing user: who they are and what would be a real press for them."""

    user: SimUser
    project: str | None  # None: never joined
    item: int = 0  # message id of their open item
    assignment: int = 0


def _assignment_of(message: Any) -> int:
    for b in message.buttons:
        data = str(b.get("callback_data", ""))
        if data.startswith("s:"):
            return int(data.split(":")[1])
    raise AssertionError(f"not an item: {message.describe()}")


def legitimate(p: Person, data: str) -> bool:
    """Whether pressing `data` is something a real button of theirs could do (it may change
    state, so the barrage leaves it out)."""
    btn = decode(data)
    if btn is None:
        return False
    if btn.action == "project":
        return True  # choosing a project joins it
    if btn.ref != p.assignment or p.project is None:
        return False
    if btn.action == "skip":
        return True
    choices = LABELS if p.project == "animals" else ()
    return btn.action == "answer" and btn.index is not None and btn.index < len(choices)


def telegram_inputs(
    rng: random.Random, people: list[Person], coordinator: SimUser, refs: list[int], n: int
) -> list[tuple[SimUser, str, Any]]:
    """n fuzzed inputs: (who, "press" or "send", (message_id, data) or text); `refs` are row
    ids worth aiming at (everyone's assignments and answers)."""
    out: list[tuple[SimUser, str, Any]] = []
    while len(out) < n:
        p = rng.choice(people)
        u = p.user
        roll = rng.random()
        if roll < 0.62:  # button data
            kind = rng.choice([0, 0, 1, 2, 2, 2, 3, 3])
            if kind == 0:
                data = junk(rng)
            elif kind == 1:
                data = rng.choice("atdsup") + ":" + "9" * rng.randint(63, 3000)
            elif kind == 2:
                data = looks_valid(rng, refs)
            else:
                own = f"a:{p.assignment or 1}:{rng.randrange(3)}"
                data = mutate(rng, own)
            if legitimate(p, data):
                continue
            message_id = p.item if p.item and rng.random() < 0.8 else rng.randint(0, 10**6)
            out.append((u, "press", (message_id, data)))
        elif roll < 0.82:  # commands with odd arguments
            command = rng.choice(
                ["start", "help", "stats", "progress", "annotators", "disagreements",
                 "agreement", "export", "pause_project", "resume_project", "nosuch",
                 "start@chatlabel_emulator_bot", "help@some_other_bot", junk(rng, 10)]
            )  # fmt: skip
            if p.project is not None and command.startswith(("pause", "resume")):
                command = "stats"  # /pause, /resume are real for members: a state change
            arg = rng.choice([*INJECTIONS, junk(rng, 300), "x" * rng.randint(64, 5000), ""])
            if command == "start" and arg in ("animals", "notes"):
                continue
            text = f"/{command} {arg}".strip()
            if not text.strip("/ \t\n"):
                text = "/x"
            if p.project == "notes" and not command_entities(text):
                continue  # not a command to Telegram: a free-text project takes it as an answer
            out.append((u, "send", text))
        elif p.project != "notes":  # texts: a free-text project would take them as answers
            size = rng.choice([1, 50, 500, 4096, 100_000])
            text = visible(rng, min(size, 2000))
            if size > 2000:
                text = (text * (size // max(len(text), 1) + 1))[:size]
            out.append((u, "send", text if text.strip() else "x"))
    # The coordinator's commands with arguments that name nothing.
    for command in ("export", "progress", "pause_project", "resume_project", "annotators"):
        for arg in ("../../etc", "'; DROP TABLE items;--", "animals/../notes", "ANIMALS"):
            out.append((coordinator, "send", f"/{command} {arg}"))
    for arg in ("", "../../etc off", "'; DROP TABLE items;-- on", "animals off", "ANIMALS on"):
        out.append((coordinator, "send", f"/routing {arg}".strip()))  # no project has a model
    return out


async def _drain(b: Bench, queries: list[tuple[SimUser, str]], timeout: float = 20) -> None:  # noqa: ASYNC109
    """Wait until the bot took every update and answered every press (then a little longer)."""
    deadline = time.monotonic() + timeout
    answered = b.emu.callback_queries
    while time.monotonic() < deadline:
        if not b.emu.pending_updates and all(answered[q].answered for _, q in queries):
            await asyncio.sleep(0.3)
            if not b.emu.pending_updates:
                return
        await asyncio.sleep(0.05)
    missing = [(u, answered[q].data) for u, q in queries if not answered[q].answered]
    raise AssertionError(
        f"not drained in {timeout}s: {len(b.emu.pending_updates)} updates pending, "
        f"unanswered presses {missing[:5]}"
    )


async def test_telegram_fuzzed_presses_commands_and_texts_change_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    rng = random.Random(SEED)
    notes = project("notes", kind="text", labels=[], overlap=1, max_overlap=1)
    animals = project("animals", overlap=1, max_overlap=1)
    async with running_bot(tmp_path, [animals, notes]) as b:
        await b.add_items("animals", [{"id": f"a{n}", "text": f"Animal {n}"} for n in range(20)])
        await b.add_items("notes", [{"id": f"n{n}", "text": f"Describe {n}"} for n in range(20)])
        ann, bob, ned = b.user(1, "Ann"), b.user(2, "Bob"), b.user(3, "Ned")
        people = [Person(ann, "animals"), Person(bob, "animals"), Person(ned, "notes")]
        for p in people:
            first = await b.start(p.user, p.project or "")
            if p.project == "animals":
                await p.user.press(first, "cat")
            else:
                await p.user.send("a first honest answer")
            current = await next_item(p.user, first.message_id)
            p.item, p.assignment = current.message_id, _assignment_of(current)
        people += [Person(b.user(7000 + n, junk(rng, 20) or "x"), None) for n in range(5)]
        boss = b.user(COORDINATOR_ID, "Boss")
        b.clock.advance(120)  # past the undo window; the leases (600 s) still hold
        await _drain(b, [])
        before = await snapshot(b.query)
        answers_before = await b.answers()
        messages_before = {p.user.id: len(p.user.messages) for p in people}
        calls_before = len(b.emu.calls)

        refs = [
            r[0] for r in await b.query("SELECT id FROM assignments UNION SELECT id FROM answers")
        ]
        inputs = telegram_inputs(rng, people, boss, refs, TELEGRAM_INPUTS)
        started = time.monotonic()
        queries: list[tuple[SimUser, str]] = []
        for chunk in range(0, len(inputs), 200):
            batch: list[tuple[SimUser, str]] = []
            for u, kind, payload in inputs[chunk : chunk + 200]:
                if kind == "press":
                    batch.append((u, await u.press_raw(*payload)))
                else:
                    await u.send(payload)
            await _drain(b, batch)
            queries += batch
        elapsed = time.monotonic() - started

        assert await snapshot(b.query) == before, "fuzzed input changed the database"
        assert await b.answers() == answers_before
        toasts = Counter(b.emu.callback_queries[q].answer_text for _, q in queries)
        assert set(toasts) <= POLITE_TOASTS, toasts
        replies = [
            m.content
            for p in [*people, Person(boss, None)]
            for m in p.user.messages[messages_before.get(p.user.id, 0) :]
        ]
        rude = [r[:200] for r in replies if any(w in r for w in IMPOLITE)]
        assert rude == []
        failed = Counter(
            (c.method, (c.error or "")[:60]) for c in b.emu.calls[calls_before:] if not c.ok
        )
        # Presses on messages that are not there (or are not the item) edit nothing; nothing
        # else may fail: a 400 would mean the bot sent something Telegram refuses.
        assert set(failed) <= {
            ("editMessageText", "Bad Request: message to edit not found"),
            ("editMessageText", "Bad Request: message is not modified: specified new m"),
        }, failed
        assert no_errors_logged(caplog) == []
        # The items are unchanged for their owners: nobody lost or gained one.
        for p in people[:3]:
            assert [m.message_id for m in p.user.messages if is_item(m)][-1] >= p.item

        # Legitimate input still works, however odd its text.
        huge = "🐱" * 50_000  # 100,000 UTF-16 code units
        weird = "\u202eright-to-left\u202c שלום مرحبا 👨‍👩‍👧‍👦 e\u0301\x01\x1f\t tab"
        for text in (huge, weird):
            shown = [m.message_id for m in ned.messages if is_item(m)][-1]
            await ned.send(text)
            await next_item(ned, shown, timeout=10)
        last = [m for m in ann.messages if is_item(m)][-1]
        await ann.press(last, "dog")
        await next_item(ann, last.message_id)
        newcomer = people[3].user
        item = await b.start(newcomer, "animals")
        assert item.content.startswith("Animal")
        added = (await b.answers())[len(answers_before) :]
        # Text answers are stored stripped and cut to MAX_TEXT_ANSWER characters, by design.
        assert [v for _, v in added] == [huge[:MAX_TEXT_ANSWER], weird, "dog"]
        assert no_errors_logged(caplog) == []
        print(
            f"\nTelegram fuzz: {len(inputs)} inputs ({sum(1 for i in inputs if i[1] == 'press')} "
            f"presses, {sum(1 for i in inputs if i[1] == 'send')} messages) from "
            f"{len(people) + 1} people in {elapsed:.1f} s; toasts {dict(toasts)}; "
            f"calls refused by the emulator {dict(failed)}; state changes 0"
        )


# -- Slack ----------------------------------------------------------------------------------------


@pytest.fixture
async def stack() -> AsyncIterator[contextlib.AsyncExitStack]:
    async with contextlib.AsyncExitStack() as s:
        yield s


def slack_payloads(
    rng: random.Random, users: dict[str, Any], mine: dict[str, Any], n: int
) -> list[tuple[Any, dict[str, Any]]]:
    """Forged block_actions payloads: someone else's item, unknown action ids, bad values."""
    out: list[tuple[Any, dict[str, Any]]] = []
    ids = list(users)
    owners = list(mine)
    refs = [int(str(b["value"]).split(":")[1]) for m in mine.values() for b in _buttons(m)]
    while len(out) < n:
        sender = users[rng.choice(ids)]
        owner = rng.choice(owners)
        message = mine[owner]
        label = rng.choice(["spam", "ham", "unsure", "Skip"])
        payload = click(sender, message, label)
        action = payload["actions"][0]
        own = owner == sender.id
        kind = rng.randrange(7)
        if kind == 0 and not own:
            pass  # someone else's button, exactly as shown to its owner
        elif kind == 1:
            action["value"] = junk(rng, 120)
        elif kind == 2:
            action["value"] = looks_valid(rng, refs)
        elif kind == 3:
            action["action_id"] = rng.choice(
                ["cl.b.999", "cl.x", "", junk(rng, 30), "cl.m.1.0", "cl.home.export.0",
                 "cl.home.export.99", "cl.write", "cl.home.start.x"]
            )  # fmt: skip
            action["value"] = rng.choice([action["value"], junk(rng, 30), "1" * 19])
        elif kind == 4:
            action["value"] = rng.choice([None, 12, 3.5, [], {}, True, "9" * 2500])
        elif kind == 5:
            action["block_id"] = rng.choice(["", "cl:nosuch:1", junk(rng, 40), "cl:triage"])
        else:
            payload["user"] = {**payload["user"], "team_id": "T9999"}
            payload["team"] = {"id": "T9999", "domain": "evil"}
        same_team = payload["team"]["id"] == sender.team_id
        if same_team and sender.id in mine and _is_own_press(action.get("value"), mine[sender.id]):
            continue  # what their own button does, whatever the wrapping: legitimate
        out.append((sender, payload))
    return out


def _buttons(message: Any) -> list[dict[str, Any]]:
    return [
        e
        for b in message.blocks
        for e in b.get("elements", [])
        if e.get("type") == "button" and str(e.get("value", "")).startswith(("a:", "s:"))
    ]


def _is_own_press(value: Any, message: Any) -> bool:
    btn = decode(str(value))
    own = {int(str(b["value"]).split(":")[1]) for b in _buttons(message)}
    return btn is not None and btn.ref in own and btn.action in ("answer", "skip", "done")


async def test_slack_forged_block_actions_change_nothing(
    stack: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    rng = random.Random(SEED + 1)
    rows = [{"id": f"m{n}", "text": f"Message {n}"} for n in range(10)]
    bot = await make_bot(stack, tmp_path, items={"triage": rows})
    users = {uid: bot.emu.user(uid, name=uid.lower()) for uid in ("U1", "U2", "U3")}
    for u in users.values():
        assert (await u.slash("/label")).status == 200
        await u.wait_for(lambda u=u: open_items(u))  # type: ignore[misc]
    stranger = bot.emu.user("U9", name="stranger")
    mine = {uid: copy.deepcopy(open_items(u)[0]) for uid, u in users.items()}
    await asyncio.sleep(0.2)
    before = await bot.state()
    posted = {uid: len(u.messages) for uid, u in users.items()}

    forged = slack_payloads(rng, {**users, "U9": stranger}, mine, SLACK_INPUTS - 40)
    started = time.monotonic()
    statuses: Counter[int] = Counter()
    for chunk in range(0, len(forged), 40):
        replies = await asyncio.gather(
            *(sender.press_raw(payload) for sender, payload in forged[chunk : chunk + 40])
        )
        statuses.update(r.status for r in replies)
    # Slash commands with odd arguments, from a member and a stranger.
    commands = 0
    for who in (users["U1"], stranger):
        for sub in ("export", "progress", "pause", "resume", "annotators", "nosuch",
                    "agreement", "disagreements", junk(rng, 12)):  # fmt: skip
            for arg in ("../../etc", "'; DROP TABLE answers;--", "{{7*7}}", "\u202etriage"):
                reply = await who.slash("/label", f"{sub} {arg}")
                statuses[reply.status] += 1
                commands += 1
                assert not any(w in reply.body for w in IMPOLITE), reply.body
    elapsed = time.monotonic() - started

    async def quiet() -> None:
        n = -1
        while n != len(bot.emu.calls):
            n = len(bot.emu.calls)
            await asyncio.sleep(0.3)

    await asyncio.wait_for(quiet(), 20)
    assert await bot.state() == before, "a forged payload changed the database"
    assert {uid: len(u.messages) for uid, u in users.items()} == posted  # no item was pushed
    assert set(statuses) == {200}, statuses
    notes = Counter(m.text for u in [*users.values(), stranger] for m in u.ephemerals)
    assert not [t for t in notes if any(w in t for w in IMPOLITE)], notes
    assert no_errors_logged(caplog) == []
    assert bot.exports == []

    # The real people carry on.
    ann = users["U1"]
    await ann.press(open_items(ann)[0], "ham")
    await ann.wait_for(lambda: len(items(ann)) == 2)
    assert [a[2] for a in await bot.answers()] == ["ham"]
    print(
        f"\nSlack fuzz: {len(forged)} forged block_actions and {commands} odd slash commands "
        f"in {elapsed:.1f} s; HTTP statuses {dict(statuses)}; "
        f"notes shown {dict(_first_lines(notes))}; state changes 0"
    )


def _first_lines(notes: Counter[str]) -> Counter[str]:
    out: Counter[str] = Counter()
    for text, n in notes.items():
        line = text.splitlines()[0]
        out[line if not line.startswith("I don't know") else "I don't know `…`. (+ help)"] += n
    return out
