"""One conversation, three platforms: the same script on Telegram, Slack and the web chat.

Each script runs against the real bot of each platform (python-telegram-bot and slack-bolt over
their loopback emulators, the web chat over real HTTP and server-sent events) and what the
person was shown is read back the way a phone would show it: the items in order, their buttons,
the line an answer leaves, gold feedback, /stats. The transcripts must match, and so must what
was stored.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest

from chatlabel.config import Quality
from chatlabel.conversation import Catalog
from chatlabel.emulators.slack import SlackMessage, SlackSimUser
from chatlabel.emulators.telegram import ChatMessage, SimUser
from tests import slack_harness as sh
from tests import telegram_harness as th
from tests import web_harness as wh

pytestmark = pytest.mark.timeout(60)

ITEMS = [
    {"id": "g1", "text": "It barks at the postman.", "gold": "dog", "gold_reason": "Barking."},
    {"id": "t1", "text": "Meow, says it."},
    {"id": "t2", "text": "Tweet, says it."},
    {"id": "t3", "text": "Woof, says it."},
]
LABELS = ["cat", "dog", "bird"]
STATUS = re.compile(r"^(✅|⏭) ")


@dataclass
class Seen:
    """An item message as the person sees it now."""

    text: str
    captions: list[str]
    status: str = ""
    note: str = ""


@dataclass
class Transcript:
    """What one person was shown during a script."""

    first_seen: list[tuple[str, list[str]]] = field(default_factory=list)
    final: list[Seen] = field(default_factory=list)
    stats: str = ""
    help: str = ""


class Person(Protocol):
    """One person on one platform, driven the same way whatever the platform."""

    async def start(self) -> None: ...
    def items(self) -> list[Any]: ...
    def seen(self, item: Any) -> Seen: ...
    async def press(self, item: Any, caption: str) -> None: ...
    async def wait(self, predicate: Any) -> Any: ...
    async def command(self, name: str) -> str: ...
    def last_text(self) -> str: ...


class TelegramPerson:
    """A Telegram user in the Bot API emulator."""

    def __init__(self, sim: SimUser) -> None:
        self.sim = sim
        self._items: list[int] = []  # message ids of item messages, as they arrive

    async def start(self) -> None:
        await self.sim.send("/start")

    def items(self) -> list[ChatMessage]:
        for m in self.sim.messages:
            if th.is_item(m) and m.message_id not in self._items:
                self._items.append(m.message_id)
        return [
            self.sim.chat.messages[i] for i in self._items if not self.sim.chat.messages[i].deleted
        ]

    def seen(self, item: ChatMessage) -> Seen:
        parts = item.content.split("\n\n")
        body, status, note = [parts[0]], "", ""
        for part in parts[1:]:
            if STATUS.match(part):
                status = part
            elif status:
                note = part
            else:
                body.append(part)
        return Seen("\n\n".join(body), [b["text"] for b in item.buttons], status, note)

    async def press(self, item: ChatMessage, caption: str) -> None:
        await self.sim.press(item, caption)

    async def wait(self, predicate: Any) -> Any:
        await self.sim.wait_for(lambda: bool(predicate()))
        return predicate()

    def last_text(self) -> str:
        return self.sim.messages[-1].content if self.sim.messages else ""

    async def command(self, name: str) -> str:
        before = len(self.sim.messages)
        await self.sim.send(f"/{name}")
        await self.sim.wait_for(lambda: len(self.sim.messages) > before)
        return self.sim.messages[-1].content.replace("/", "")


class SlackPerson:
    """A Slack user in the Web API emulator."""

    def __init__(self, sim: SlackSimUser) -> None:
        self.sim = sim
        self._items: list[str] = []  # ts of item messages, as they arrive

    async def start(self) -> None:
        await self.sim.slash("/label", "")

    def items(self) -> list[SlackMessage]:
        # An item message is one that came with a Skip button (whatever its language).
        current = {m.ts: m for m in self.sim.messages}
        for m in self.sim.messages:
            values = [str(e.get("value", "")) for b in m.blocks for e in b.get("elements", [])]
            if any(v.startswith("s:") for v in values) and m.ts not in self._items:
                self._items.append(m.ts)
        return [current[ts] for ts in self._items if ts in current]

    def seen(self, item: SlackMessage) -> Seen:
        sections = [b["text"]["text"] for b in item.blocks if b["type"] == "section"]
        status = next((s.strip("*") for s in sections if STATUS.match(s.strip("*"))), "")
        contexts = [b for b in item.blocks if b["type"] == "context"]
        note = ""
        if status and len(contexts) > 1:
            note = contexts[-1]["elements"][0]["text"]
        return Seen(sections[0], item.button_texts, status, note)

    async def press(self, item: SlackMessage, caption: str) -> None:
        await self.sim.press(item, caption)

    async def wait(self, predicate: Any) -> Any:
        return await self.sim.wait_for(lambda: predicate() or None)

    def last_text(self) -> str:
        return self.sim.messages[-1].text if self.sim.messages else ""

    async def command(self, name: str) -> str:
        before = len(self.sim.ephemerals)
        reply = await self.sim.slash("/label", name)
        if reply.body.strip():
            return reply.body.replace("/label ", "")
        await self.sim.wait_for(lambda: len(self.sim.ephemerals) > before)
        return self.sim.ephemerals[-1].text.replace("/label ", "")


class WebPerson:
    """A person in a browser, as the page's script sees the server's events."""

    def __init__(self, visitor: wh.Visitor) -> None:
        self.v = visitor
        self._items: list[str] = []  # refs of item messages, as they arrive

    async def start(self) -> None:
        await self.v.start()

    def items(self) -> list[dict[str, Any]]:
        for ref, m in self.v.screen.items():
            if any(b["data"].startswith("s:") for b in wh.buttons(m)) and ref not in self._items:
                self._items.append(ref)
        return [self.v.screen[ref] for ref in self._items if ref in self.v.screen]

    def seen(self, item: dict[str, Any]) -> Seen:
        return Seen(item["text"], wh.captions(item), item["status"], item["note"])

    async def press(self, item: dict[str, Any], caption: str) -> None:
        assert await self.v.press(item, caption) == 200

    async def wait(self, predicate: Any) -> Any:
        return await self.v.wait_for(predicate)

    def last_text(self) -> str:
        return self.v.last_text()

    async def command(self, name: str) -> str:
        before = len(self.v.messages())
        assert await self.v.type(f"/{name}") == 200
        await self.v.wait_for(lambda: len(self.v.messages()) > before)
        return self.v.last_text().replace("/", "")


def gold_project() -> dict[str, Any]:
    return th.project(
        "animals",
        labels=LABELS,
        overlap=1,
        max_overlap=1,
        quality={"qualification": 1, "min_gold_accuracy": 0.0, "gold_feedback": True},
    )


@contextlib.asynccontextmanager
async def telegram(tmp: Path) -> AsyncIterator[tuple[Person, Any]]:
    async with th.running_bot(tmp, [gold_project()]) as b:
        await b.add_items("animals", ITEMS)
        yield TelegramPerson(b.user(1, "Ann")), b.answers


@contextlib.asynccontextmanager
async def slack(tmp: Path) -> AsyncIterator[tuple[Person, Any]]:
    p = gold_project()
    quality = Quality(**p.pop("quality"))
    async with contextlib.AsyncExitStack() as stack:
        bot = await sh.make_bot(
            stack, tmp, sh.project(**{**p, "quality": quality}), items={"animals": ITEMS}
        )

        async def answers() -> list[tuple[str, str | None]]:
            return [(r[1], r[2]) for r in await bot.answers()]

        yield SlackPerson(bot.emu.user("U1", name="ann")), answers


@contextlib.asynccontextmanager
async def website(tmp: Path) -> AsyncIterator[tuple[Person, Any]]:
    async with wh.running_web(tmp, [gold_project()]) as b:
        await b.add_items("animals", ITEMS)

        async def answers() -> list[tuple[str, str | None]]:
            return [(item, value) for _, item, value in await b.answers()]

        yield WebPerson(await b.visitor()), answers


async def script(person: Person) -> Transcript:
    """Gold first (missed), an answer, an undo and a new answer, a skip, then /stats, /help."""
    out = Transcript()

    def note_new() -> None:
        for item in person.items():
            seen = person.seen(item)
            if seen.text not in [t for t, _ in out.first_seen]:
                out.first_seen.append((seen.text, seen.captions))

    await person.start()
    await person.wait(lambda: person.items())
    note_new()
    gold = person.items()[0]
    await person.press(gold, "cat")  # wrong: it barks
    await person.wait(lambda: len(person.items()) == 2)
    note_new()
    second = person.items()[1]
    await person.press(second, "cat")
    await person.wait(lambda: len(person.items()) == 3)
    note_new()
    await person.wait(lambda: person.seen(person.items()[1]).captions == ["↩️ Undo"])
    await person.press(person.items()[1], "↩️ Undo")
    # Back in place with its buttons; the newer item is gone until this one is answered.
    await person.wait(lambda: len(person.items()) == 2)
    await person.wait(lambda: "Skip" in person.seen(person.items()[1]).captions)
    await person.press(person.items()[1], "bird")
    await person.wait(lambda: len(person.items()) == 3)
    note_new()
    await person.press(person.items()[2], "Skip")
    await person.wait(lambda: len(person.items()) == 4)
    note_new()
    await person.press(person.items()[3], "dog")
    await person.wait(lambda: person.seen(person.items()[3]).status)
    await person.wait(lambda: "That's everything for now" in person.last_text())
    out.final = [person.seen(i) for i in person.items()]
    out.stats = await person.command("stats")
    out.help = await person.command("help")
    return out


async def test_the_same_script_shows_the_same_things_on_every_platform(tmp_path: Path) -> None:
    transcripts, stored = [], []
    for platform in (telegram, slack, website):
        async with platform(tmp_path / platform.__name__) as (person, answers):
            transcripts.append(await script(person))
            stored.append(await answers())
    tg, sl, www = transcripts
    # The web shows exactly what Telegram shows: buttons, texts, statuses, notes, commands.
    assert www.first_seen == tg.first_seen
    assert [(s.text, s.captions, s.status, s.note) for s in www.final] == [
        (s.text, s.captions, s.status, s.note) for s in tg.final
    ]
    assert www.stats == tg.stats and www.help == tg.help
    assert tg.first_seen == sl.first_seen
    assert [t for t, _ in tg.first_seen] == [r["text"] for r in ITEMS]
    assert tg.first_seen[0][1] == ["cat", "dog", "bird", "Skip", "Report"]
    assert [(s.text, s.status, s.note) for s in tg.final] == [
        (s.text, s.status, s.note) for s in sl.final
    ]
    assert [s.status for s in tg.final] == ["✅ cat", "✅ bird", "⏭ Skipped", "✅ dog"]
    assert tg.final[0].note == "ℹ️ The expected answer was: dog\nBarking."
    assert tg.stats == sl.stats and "Answers: 3 (skipped 1)" in tg.stats
    assert tg.help == sl.help and "me — your figures" in tg.help
    assert stored[0] == stored[1] == stored[2]
    assert stored[0] == [("g1", "cat"), ("t1", "bird"), ("t2", None), ("t3", "dog")]


# -- in the person's language ------------------------------------------------------------------

TRANSLATED = {
    "es": {"title": "Animales", "instructions": "Etiqueta los animales.",
           "labels": {"cat": "gato", "dog": "perro", "bird": "pájaro"}},
    "pt": {"title": "Animais", "instructions": "Rotule os animais.",
           "labels": {"cat": "gato", "dog": "cão", "bird": "pássaro"}},
}  # fmt: skip


def english_fragments(lang: str) -> set[str]:
    """Pieces of English sentences that a person spoken to in `lang` must never see."""
    catalog = Catalog()
    english, other = catalog.tables["en"], catalog.tables[lang]
    out = set()
    for key, text in english.items():
        if other.get(key) == text:
            continue  # the same in both languages (a symbol, a number format)
        forms = text.values() if isinstance(text, dict) else [text]
        for form in forms:
            for piece in re.split(r"\{[a-z_]+\}", form):
                piece = piece.strip(" .,:;!?—()\n")
                if len(re.findall(r"[A-Za-z]{3,}", piece)) >= 2:
                    out.add(piece)
    return out


def telegram_saw(sim: SimUser) -> list[str]:
    texts = [m.content for m in sim.messages]
    texts += [str(b["text"]) for m in sim.messages for b in m.buttons]
    return texts + [t for t in sim.callback_answers if t]


def slack_saw(sim: SlackSimUser) -> list[str]:
    texts = [sh.shown(m) for m in [*sim.messages, *sim.ephemerals]]
    texts += [t for m in sim.messages for t in m.button_texts]
    return texts + [sh.shown(v) for v in sim.views]


def web_saw(v: wh.Visitor) -> list[str]:
    texts = [m["text"] for m in v.messages()]
    texts += [x for m in v.messages() for x in (m["status"], m["note"], m["footer"]) if x]
    texts += wh.captions_of_all(v.messages())
    return texts + v.toasts + [v.session["id"]] + [c["label"] for c in v.session["commands"]]


def no_english(seen: list[str], lang: str) -> list[str]:
    fragments = english_fragments(lang)
    return [f"{f!r} in {text!r}" for text in seen for f in fragments if f in text]


async def spanish_session(person: Person) -> None:
    """A whole session: welcome, a missed gold item, answers, /stats, /help, nothing left."""
    await person.start()
    await person.wait(lambda: person.items())
    await person.press(person.items()[0], "gato")  # wrong: it barks
    await person.wait(lambda: len(person.items()) == 2)
    assert person.seen(person.items()[0]).note.startswith("ℹ️")
    skip = Catalog().texts("es")("item.skip")
    for n, label in ((1, "pájaro"), (2, skip), (3, "perro")):
        await person.wait(lambda n=n: len(person.items()) > n)
        await person.press(person.items()[n], label)
    await person.wait(lambda: person.seen(person.items()[3]).status)
    await person.command("stats")
    await person.command("help")


async def test_a_spanish_volunteer_reads_no_english_on_any_platform(tmp_path: Path) -> None:
    es = Catalog().texts("es")
    project = {**gold_project(), "translations": TRANSLATED}
    async with th.running_bot(tmp_path / "tg", [project]) as b:
        await b.add_items("animals", ITEMS)
        sim = b.emu.user(1, "Ana", language_code="es")
        await spanish_session(TelegramPerson(sim))
        await sim.wait_for(lambda: any(es("idle.no_work") == m.content for m in sim.messages))
        assert no_english(telegram_saw(sim), "es") == []
        # /language pt switches at once, and stays switched.
        await sim.send("/language pt")
        await sim.wait_for(
            lambda: sim.messages[-1].content == Catalog().texts("pt")("language.set")
        )
        await sim.send("/stats")
        await sim.wait_for(lambda: sim.messages[-1].content.startswith("📊 Animais"))
        assert await b.query("SELECT language FROM annotators") == [("pt",)]

    quality = Quality(**project.pop("quality"))
    async with contextlib.AsyncExitStack() as stack:
        bot = await sh.make_bot(
            stack, tmp_path / "sl", sh.project(**{**project, "quality": quality}),
            items={"animals": ITEMS},
        )  # fmt: skip
        slack_sim = bot.emu.user("U1", name="ana", locale="es-ES")
        await spanish_session(SlackPerson(slack_sim))
        await slack_sim.wait_for(lambda: es("idle.no_work") in slack_sim.messages[-1].text)
        assert no_english(slack_saw(slack_sim), "es") == []
        await slack_sim.slash("/label", "language pt")
        pt_set = Catalog().texts("pt")("language.set")
        await slack_sim.wait_for(lambda: any(pt_set in m.text for m in slack_sim.ephemerals))

    async with wh.running_web(
        tmp_path / "web", [{**project, "quality": quality.model_dump()}]
    ) as b:
        await b.add_items("animals", ITEMS)
        visitor = await b.visitor("es-ES,es;q=0.9")
        await spanish_session(WebPerson(visitor))
        assert es("idle.no_work") in [m["text"] for m in visitor.messages()]
        assert no_english(web_saw(visitor), "es") == []
        async with visitor.http.get(b.base + "/", headers={"Accept-Language": "es"}) as r:
            page = await r.text()
        assert '<html lang="es">' in page and es("web.type_answer") in page
        assert await visitor.type("/language pt") == 200
        await visitor.wait_for(lambda: visitor.last_text() == Catalog().texts("pt")("language.set"))


async def test_a_pushed_item_speaks_the_persons_language_on_every_platform(
    tmp_path: Path,
) -> None:
    """Pushes carry no language hint of their own: the one the platform gave last is used."""
    es = Catalog().texts("es")
    no_gold = gold_project() | {"quality": {"qualification": 0, "gold_rate": 0.0}}
    later = [{"id": "n1", "text": "Quack, says it."}]

    async with th.running_bot(tmp_path / "tg", [no_gold]) as b:
        sim = b.emu.user(7, "Ana", language_code="es")
        await sim.send("/start")
        await sim.wait_for(lambda: any(m.content == es("idle.no_work") for m in sim.messages))
        await b.add_items("animals", later)
        pushed = await th.next_item(sim)
        assert [x["text"] for x in pushed.buttons][-2:] == [es("item.skip"), es("item.report")]

    quality = Quality(**no_gold["quality"])
    async with contextlib.AsyncExitStack() as stack:
        bot = await sh.make_bot(
            stack, tmp_path / "sl", sh.project(**{**no_gold, "quality": quality}),
            items={"animals": []},
        )  # fmt: skip
        slack_sim = bot.emu.user("U7", name="ana", locale="es-ES")
        await slack_sim.slash("/label", "")
        await slack_sim.wait_for(
            lambda: any(es("idle.no_work") in m.text for m in slack_sim.messages)
        )
        await bot.add_items("animals", later)
        person = SlackPerson(slack_sim)
        item = (await person.wait(lambda: person.items()))[0]
        assert person.seen(item).captions[-2:] == [es("item.skip"), es("item.report")]

    async with wh.running_web(tmp_path / "web", [no_gold]) as w:
        visitor = await w.visitor("es")
        await visitor.start()
        await visitor.wait_for(lambda: visitor.last_text() == es("idle.no_work"))
        await w.add_items("animals", later)
        item = (await visitor.wait_for(visitor.open_items))[0]
        assert wh.captions(item)[-2:] == [es("item.skip"), es("item.report")]
