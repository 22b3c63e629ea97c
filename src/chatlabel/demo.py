"""`chatlabel demo`: the real bot against an emulated platform, with simulated people.

No token and no network: the emulator serves the Telegram Bot API (or, with `--platform
slack`, the Slack Web API) on 127.0.0.1, the bot is built by the same composition root as
`chatlabel run`, and simulated annotators of varying skill read the items on their screens and
press buttons until the sample project is labeled.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import secrets
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import exporter
from .app import Runtime, build
from .config import Config, Slack, Telegram, load_config
from .conversation import Catalog
from .conversation.render import reason_text
from .emulators.slack import SlackApiEmulator, SlackEmulatorError, SlackMessage
from .emulators.telegram import BotApiEmulator, ChatMessage, EmulatorUsageError
from .importer import import_file
from .sample import write_sample
from .transports.slack import SlackTransport

COORDINATOR_ID = 1000  # the sample config's coordinator (telegram:1000; on Slack U1000)
FIRST_ANNOTATOR_ID = 2001
TIME_LIMIT = 60.0  # seconds; the demo normally ends in well under half of this
IDLE_GRACE = 1.5  # everyone idle this long with items still open: nobody can settle them


@dataclass(frozen=True)
class Persona:
    """A simulated annotator: how often they pick the right label."""

    name: str
    kind: str  # good | careless | spammer
    skill: float | None  # None: presses at random


@dataclass(frozen=True)
class AnnotatorResult:
    """One simulated annotator's figures at the end."""

    name: str
    kind: str
    skill: float | None
    answers: int
    gold_answers: int
    gold_accuracy: float | None
    status: str
    reason: str | None


@dataclass(frozen=True)
class DemoResult:
    """What the demo measured."""

    items: int  # ordinary (non-gold) items
    resolved: int
    escalated: int
    pending: int
    correct: int  # resolved items whose label matches the hidden truth
    accuracy: float | None  # correct / resolved
    fleiss_kappa: float
    krippendorff_alpha: float
    annotators: list[AnnotatorResult]
    seconds: float
    timed_out: bool
    directory: Path | None  # where the database and exports were kept
    exports: list[Path] = field(default_factory=list)

    def annotator(self, kind: str) -> list[AnnotatorResult]:
        """The annotators of one kind (good, careless, spammer)."""
        return [a for a in self.annotators if a.kind == kind]


def personas(n: int) -> list[Persona]:
    """A crowd of `n`: one spammer, one careless person from five up, the rest good."""
    if n < 1:
        raise ValueError("the demo needs at least one annotator")
    out = [Persona("Spammer", "spammer", None)] if n >= 2 else []
    if n >= 5:
        out.append(Persona("Careless", "careless", 0.6))
    good = n - len(out)
    out[:0] = [Persona(f"Good {i + 1}", "good", 0.92) for i in range(good)]
    return out


class _Screen(Protocol):
    """One simulated person's chat, on whichever platform: what they see and what they press."""

    key: str

    async def start(self) -> None:
        """Send the start command."""

    async def next_item(self, seen: set[str], wait: float) -> tuple[str, str, list[str]]:
        """An item not seen yet: (its id, its text, the labels of its buttons)."""

    async def press(self, item_id: str, label: str) -> None:
        """Press the button with this label on that item."""

    async def export(self) -> bytes | None:
        """As a coordinator: /export, and the file it delivers (None if none came)."""


class _TelegramScreen:
    def __init__(self, emu: BotApiEmulator, uid: int, name: str) -> None:
        self.user = emu.user(uid, name)
        self.key = f"telegram:{uid}"

    async def start(self) -> None:
        await self.user.send("/start")

    async def next_item(self, seen: set[str], wait: float) -> tuple[str, str, list[str]]:
        def is_new(m: ChatMessage) -> bool:
            data = [str(b.get("callback_data", "")) for b in m.buttons]
            return any(d.startswith("s:") for d in data) and str(m.message_id) not in seen

        m = await self.user.wait_for_message(is_new, timeout=wait)
        labels = [str(b["text"]) for b in m.buttons if str(b["callback_data"]).startswith("a:")]
        return str(m.message_id), m.content.split("\n\n")[0], labels

    async def press(self, item_id: str, label: str) -> None:
        with contextlib.suppress(EmulatorUsageError):  # the keyboard changed meanwhile
            await self.user.press(int(item_id), label)

    async def export(self) -> bytes | None:
        await self.user.send("/export")
        with contextlib.suppress(TimeoutError):
            doc = await self.user.wait_for_message(lambda m: m.kind == "document", timeout=10)
            if doc.media is not None:
                return doc.media.files[0].data
        return None


class _SlackScreen:
    def __init__(self, emu: SlackApiEmulator, uid: str, name: str) -> None:
        self.emu = emu
        self.user = emu.user(uid, name)
        self.key = f"slack:{emu.team_id}/{uid}"

    async def start(self) -> None:
        await self.user.slash("/label")

    def _items(self) -> dict[str, SlackMessage]:
        return {
            m.ts: m
            for m in self.user.messages
            if any(str(e.get("value", "")).startswith("s:") for e in _elements(m))
        }

    async def next_item(self, seen: set[str], wait: float) -> tuple[str, str, list[str]]:
        def new() -> SlackMessage | None:
            return next((m for ts, m in self._items().items() if ts not in seen), None)

        m = await self.user.wait_for(new, timeout=wait)
        assert m is not None
        labels = [
            str(e["text"]["text"]) for e in _elements(m) if str(e.get("value", "")).startswith("a:")
        ]
        return m.ts, str(m.blocks[0]["text"]["text"]), labels

    async def press(self, item_id: str, label: str) -> None:
        message = self._items().get(item_id)
        if message is not None:
            with contextlib.suppress(SlackEmulatorError):
                await self.user.press(message, label)

    def _file(self) -> SlackMessage | None:
        return next((m for m in self.user.messages if m.files), None)

    async def export(self) -> bytes | None:
        await self.user.slash("/label", "export")
        with contextlib.suppress(TimeoutError):
            sent = await self.user.wait_for(self._file, timeout=10)
            assert sent is not None
            return self.emu.files[sent.files[0]["id"]].content
        return None


def _elements(m: SlackMessage) -> list[dict[str, Any]]:
    return [e for b in m.blocks for e in b.get("elements", []) if isinstance(e, dict)]


class Crowd:
    """The simulated annotators: each reads only its own screen and presses real buttons."""

    def __init__(
        self,
        screens: list[_Screen],
        people: list[Persona],
        truth: dict[str, str],
        seed: int,
        pace: tuple[float, float] = (0.0, 0.03),
    ) -> None:
        self.people = people
        self.pace = pace  # seconds each takes to read an item (the --web demo: a person's pace)
        self.truth = truth  # item text as shown -> true label
        self.screens = screens
        self.rngs = [random.Random(seed * 1000 + i) for i in range(len(people))]
        self.idle_since: dict[str, float | None] = {s.key: None for s in screens}
        self.stop = asyncio.Event()

    def all_idle_for(self, seconds: float) -> bool:
        """True when every annotator has had nothing to do for `seconds`."""
        now = time.monotonic()
        return all(t is not None and now - t >= seconds for t in self.idle_since.values())

    async def work(self, i: int) -> None:
        """One annotator: start, then answer each item that appears, until told to stop."""
        screen, person, rng = self.screens[i], self.people[i], self.rngs[i]
        handled: set[str] = set()
        await screen.start()
        while not self.stop.is_set():
            try:
                item_id, text, labels = await screen.next_item(handled, wait=0.5)
            except TimeoutError:
                if self.idle_since[screen.key] is None:
                    self.idle_since[screen.key] = time.monotonic()
                continue
            self.idle_since[screen.key] = None
            handled.add(item_id)
            await asyncio.sleep(rng.uniform(*self.pace))  # a moment to read
            await screen.press(item_id, self.choose(text, labels, person, rng))

    def choose(self, text: str, labels: list[str], person: Persona, rng: random.Random) -> str:
        """The button a persona presses, judged from what the message shows."""
        right = self.truth.get(text)
        if person.skill is None or right not in labels:
            return rng.choice(labels)
        if rng.random() < person.skill:
            return right
        return rng.choice([label for label in labels if label != right])


def truth_by_text(directory: Path) -> dict[str, str]:
    """What each item's message shows, mapped to its hidden true label."""
    truth = json.loads((directory / "truth.json").read_text(encoding="utf-8"))
    out = {}
    with (directory / "items.jsonl").open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            out[row["text"]] = truth[row["id"]]
    return out


@contextlib.asynccontextmanager
async def folder(keep: Path | None) -> AsyncIterator[Path]:
    """The folder to keep the demo in, or a temporary one removed afterwards."""
    if keep is not None:
        await asyncio.to_thread(keep.mkdir, parents=True, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="chatlabel-demo-") as tmp:
        yield Path(tmp)


async def run_demo(
    *,
    annotators: int = 6,
    items: int = 40,
    keep: Path | None = None,
    seed: int = 7,
    platform: str = "telegram",
    console: Console | None = None,
) -> DemoResult:
    """Run the sample project through the real bot with simulated annotators; print results."""
    console = console or Console()
    people = personas(annotators)
    started = time.monotonic()
    async with folder(keep) as directory, stage_for(platform, directory, items, seed) as stage:
        # Unpaced: the demo's emulators enforce no rate limits, and its crowd clicks within
        # milliseconds, far faster than the platforms' pace for one person (bench/limits.py
        # and the fault tests run the bot against emulated limits).
        rt = await build(stage.config, stage.env, paced=False)
        try:
            name = stage.config.project[0].name
            summary = await import_file(rt.service, name, directory / "items.jsonl")
            console.print(
                f"[bold]chatlabel demo[/]: {summary.items} items ({summary.gold} gold) in "
                f"[cyan]{stage.config.project[0].title}[/], {len(people)} simulated annotators, "
                f"{stage.where}"
            )
            for transport in rt.transports:
                await transport.start()
            stage.started(rt)
            screens = [stage.screen(FIRST_ANNOTATOR_ID + i, p.name) for i, p in enumerate(people)]
            crowd = Crowd(screens, people, truth_by_text(directory), seed)
            timed_out = await _label(rt, name, crowd, console)
            boss = stage.screen(COORDINATOR_ID, "Coordinator")
            exports = await _exports(rt, name, boss, directory) if keep is not None else []
            result = await results(rt, name, crowd, directory, started, timed_out, keep, exports)
        finally:
            await rt.close()
    print_results(console, result, stage.config.project[0].title)
    return result


@dataclass
class Stage:
    """The sample config pointed at an emulated platform, and how to make its people."""

    config: Config
    env: dict[str, str]
    where: str
    screen: Callable[[int, str], _Screen]
    started: Callable[[Runtime], None] = lambda rt: None


@contextlib.asynccontextmanager
async def stage_for(platform: str, directory: Path, items: int, seed: int) -> AsyncIterator[Stage]:
    """The sample project written to `directory`, with the platform's emulator running."""
    config = load_config(write_sample(directory, items, seed=seed))
    if platform == "telegram":
        async with BotApiEmulator() as emu:
            assert config.telegram is not None
            env = {config.telegram.token_env: emu.token}
            config = config.model_copy(update={"telegram": Telegram(base_url=emu.base_url)})
            where = f"Telegram emulated at {emu.base_url.removesuffix('/bot')}"
            yield Stage(config, env, where, lambda uid, name: _TelegramScreen(emu, uid, name))
        return
    async with SlackApiEmulator() as slack:
        settings = Slack(base_url=slack.base_url, port=0)
        secret = secrets.token_hex(16)
        env = {settings.bot_token_env: slack.token, settings.signing_secret_env: secret}
        access = config.access.model_copy(update={"coordinators": [f"slack:U{COORDINATOR_ID}"]})
        config = config.model_copy(update={"telegram": None, "slack": settings, "access": access})

        def started(rt: Runtime) -> None:
            # Slack's requests go to the bot's endpoint, signed with its secret.
            (bot,) = (t for t in rt.transports if isinstance(t, SlackTransport))
            slack.configure_bot(bot.url, secret)

        where = f"Slack emulated at {slack.base_url}"
        yield Stage(
            config, env, where, lambda uid, name: _SlackScreen(slack, f"U{uid}", name), started
        )


async def _label(rt: Runtime, name: str, crowd: Crowd, console: Console) -> bool:
    """Let the crowd work until every item is settled; True if the time limit hit first."""
    workers = [asyncio.create_task(crowd.work(i)) for i in range(len(crowd.screens))]
    deadline = time.monotonic() + TIME_LIMIT
    columns = (
        TextColumn("labeling"), BarColumn(), MofNCompleteColumn(), TextColumn("items settled"),
        TimeElapsedColumn(),
    )  # fmt: skip
    try:
        with Progress(*columns, console=console, transient=False) as bar:
            task = bar.add_task("labeling", total=None)
            while True:
                p = await rt.reports.progress(name)
                bar.update(task, total=p.items, completed=p.resolved + p.escalated)
                if p.items and p.pending == 0:
                    return False
                if crowd.all_idle_for(IDLE_GRACE):
                    return False  # items are open, but nobody left may answer them
                if time.monotonic() > deadline:
                    return True
                await asyncio.sleep(0.1)
    finally:
        crowd.stop.set()
        for w in workers:
            w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)


async def _exports(rt: Runtime, name: str, boss: _Screen, directory: Path) -> list[Path]:
    """Keep the results as the coordinator's /export delivers them, plus answers and people."""
    out = []
    data = await boss.export()
    if data is not None:
        path = directory / f"{name}-results.jsonl"
        path.write_bytes(data)
        out.append(path)
    whats: tuple[exporter.What, ...] = ("answers", "annotators")
    for what in whats:
        path = directory / f"{name}-{what}.csv"
        with path.open("w", encoding="utf-8", newline="") as f:
            await exporter.write(rt.service, name, what, "csv", f)
        out.append(path)
    return out


async def results(
    rt: Runtime,
    name: str,
    crowd: Crowd,
    directory: Path,
    started: float,
    timed_out: bool,
    keep: Path | None,
    exports: list[Path],
) -> DemoResult:
    """What the crowd achieved: verdicts against the hidden truth, each annotator, agreement."""
    truth = json.loads((directory / "truth.json").read_text(encoding="utf-8"))
    resolved = escalated = pending = correct = 0
    async for row in exporter.rows(rt.service, name, "results"):
        if row["status"] == "resolved":
            resolved += 1
            correct += row["label"] == truth.get(row["id"])
        elif row["status"] == "escalated":
            escalated += 1
        else:
            pending += 1
    by_key = {s.key: p for s, p in zip(crowd.screens, crowd.people, strict=True)}
    people = []
    english = Catalog().texts("en")  # the demo's tables are in English
    for a in await rt.reports.annotators(name):
        person = by_key.get(a.key)
        if person is not None:
            people.append(AnnotatorResult(
                person.name, person.kind, person.skill, a.answers, a.gold_answers,
                a.gold_accuracy, a.status, reason_text(english, a.reason) or None,
            ))  # fmt: skip
    people.sort(key=lambda a: [p.name for p in crowd.people].index(a.name))
    figures = await rt.reports.agreement(name)
    return DemoResult(
        items=resolved + escalated + pending,
        resolved=resolved,
        escalated=escalated,
        pending=pending,
        correct=correct,
        accuracy=correct / resolved if resolved else None,
        fleiss_kappa=float(figures.get("fleiss_kappa", math.nan)),
        krippendorff_alpha=float(figures.get("krippendorff_alpha", math.nan)),
        annotators=people,
        seconds=time.monotonic() - started,
        timed_out=timed_out,
        directory=keep,
        exports=exports,
    )


def _fmt(x: float | None, pct: bool = False) -> str:
    if x is None or math.isnan(x):
        return "n/a"
    return f"{x:.0%}" if pct else f"{x:.3f}"


def print_results(console: Console, r: DemoResult, title: str) -> None:
    """The results, as a person running the demo wants to read them."""
    summary = Table(title=f"Results: {title}", show_header=False)
    summary.add_row("items", str(r.items))
    summary.add_row("resolved", str(r.resolved))
    summary.add_row("escalated to experts", str(r.escalated))
    if r.pending:
        why = "too few active annotators who haven't answered them"
        summary.add_row("still open", f"{r.pending} ({why})")
    summary.add_row(
        "accuracy of resolved labels vs hidden truth",
        f"{_fmt(r.accuracy, pct=True)} ({r.correct} of {r.resolved})",
    )
    summary.add_row("Fleiss' kappa", _fmt(r.fleiss_kappa))
    summary.add_row("Krippendorff's alpha", _fmt(r.krippendorff_alpha))
    summary.add_row("time", f"{r.seconds:.1f} s" + (" (time limit reached)" if r.timed_out else ""))
    console.print(summary)
    people = Table(title="Annotators")
    for col in ("annotator", "true skill", "answers", "gold accuracy", "status"):
        people.add_column(col)
    for a in r.annotators:
        skill = "random" if a.skill is None else f"{a.skill:.0%}"
        gold = f"{_fmt(a.gold_accuracy, pct=True)} of {a.gold_answers}"
        status = "[green]active[/]" if a.status == "active" else f"[red]{a.status}[/]"
        if a.reason:
            status += f" — {a.reason}"
        people.add_row(a.name, skill, str(a.answers), gold, status)
    console.print(people)
    if r.directory is not None:
        kept = ", ".join(p.name for p in r.exports)
        console.print(f"Kept the database and exports in {r.directory}: chatlabel.db, {kept}")
