"""One way to drive people on Telegram and on Slack, for the volunteer features' end-to-end tests.

Each test runs the same story on both platforms: the real bots (python-telegram-bot, slack-bolt)
over their loopback emulators, one SQLite file, and the service's clock moved by hand. A
`World` is a running bot; a `Person` is someone in it, read back the way a phone shows them.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from chatlabel.config import Access, Project
from chatlabel.emulators.slack import SlackMessage, SlackSimUser
from chatlabel.emulators.telegram import ChatMessage, SimUser
from chatlabel.service.labeling import LabelingService
from tests import slack_harness as sh
from tests import telegram_harness as th

Handle = Any  # a platform's message (ChatMessage or SlackMessage)
SKIP = re.compile(r"^s:\d+$")


def when(text: str, tz: str = "Europe/Berlin") -> float:
    """A clock reading for a local time written '2024-05-06 10:00'."""
    moment = datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=ZoneInfo(tz))
    return moment.timestamp()


class Person(Protocol):
    """Someone on one platform."""

    key: str

    async def start(self) -> None: ...
    def texts(self) -> list[str]: ...
    def messages(self) -> list[Handle]: ...
    def text_of(self, m: Handle) -> str: ...
    def captions(self, m: Handle) -> list[str]: ...
    def open_items(self) -> list[Handle]: ...
    async def press(self, m: Handle, caption: str) -> None: ...
    async def say(self, text: str, reply_to: Handle | None = None) -> None: ...
    async def command(self, name: str, args: str = "") -> None: ...
    def notes(self) -> list[str]: ...
    async def wait(self, predicate: Callable[[], Any], timeout: float = 5.0) -> Any: ...  # noqa: ASYNC109


class TelegramPerson:
    """A Telegram user in the Bot API emulator."""

    def __init__(self, sim: SimUser) -> None:
        self.sim = sim
        self.key = f"telegram:{sim.id}"

    async def start(self) -> None:
        await self.sim.send("/start")
        await self.wait(lambda: self.open_items() or self.texts())

    def messages(self) -> list[ChatMessage]:
        return self.sim.messages

    def texts(self) -> list[str]:
        return [m.content for m in self.sim.messages]

    def text_of(self, m: ChatMessage) -> str:
        return self.sim.chat.messages[m.message_id].content

    def captions(self, m: ChatMessage) -> list[str]:
        return [str(b["text"]) for b in self.sim.chat.messages[m.message_id].buttons]

    def open_items(self) -> list[ChatMessage]:
        return [m for m in self.sim.messages if th.is_item(m)]

    async def press(self, m: ChatMessage, caption: str) -> None:
        await self.sim.press(m, caption)

    async def say(self, text: str, reply_to: ChatMessage | None = None) -> None:
        await self.sim.send(text, reply_to=reply_to)

    async def command(self, name: str, args: str = "") -> None:
        await self.sim.send(f"/{name} {args}".strip())

    def notes(self) -> list[str]:
        """Short answers to presses (toasts)."""
        return self.sim.callback_answers

    async def wait(self, predicate: Callable[[], Any], timeout: float = 5.0) -> Any:  # noqa: ASYNC109
        await self.sim.wait_for(lambda: bool(predicate()), timeout)
        return predicate()


class SlackPerson:
    """A Slack user in the Web API emulator: DM messages, and ephemeral notes and replies."""

    def __init__(self, sim: SlackSimUser) -> None:
        self.sim = sim
        self.key = f"slack:{sim.team_id}/{sim.id}"

    async def start(self) -> None:
        await self.sim.slash("/label", "")
        await self.wait(lambda: self.open_items() or self.texts())

    def messages(self) -> list[SlackMessage]:
        return self.sim.messages

    def texts(self) -> list[str]:
        # What the person reads in their DM and in Slack's "only visible to you" notes.
        return [sh.shown(m) for m in self.sim.messages] + self.notes()

    def text_of(self, m: SlackMessage) -> str:
        current = self.sim.emulator.message(m.channel, m.ts)
        return sh.shown(current if current is not None else m)

    def captions(self, m: SlackMessage) -> list[str]:
        current = self.sim.emulator.message(m.channel, m.ts)
        return (current if current is not None else m).button_texts

    def open_items(self) -> list[SlackMessage]:
        return sh.open_items(self.sim)

    async def press(self, m: SlackMessage, caption: str) -> None:
        await self.sim.press(m, caption)

    async def say(self, text: str, reply_to: SlackMessage | None = None) -> None:
        await self.sim.say(text, thread=reply_to)

    async def command(self, name: str, args: str = "") -> None:
        await self.sim.slash("/label", f"{name} {args}".strip())

    def notes(self) -> list[str]:
        return [sh.shown(m) for m in self.sim.ephemerals]

    async def wait(self, predicate: Callable[[], Any], timeout: float = 5.0) -> Any:  # noqa: ASYNC109
        return await self.sim.wait_for(lambda: predicate() or None, timeout)


class World:
    """A running bot on one platform, its service and its clock."""

    def __init__(self, platform: str, service: LabelingService, clock: Any, handle: Any) -> None:
        self.platform = platform
        self.service = service
        self.clock = clock
        self._handle = handle  # th.Bench or sh.Bot

    @property
    def transport(self) -> Any:
        return self._handle.transport

    def person(self, n: int, name: str = "") -> Person:
        """A person (number n), new to the bot."""
        if self.platform == "telegram":
            return TelegramPerson(self._handle.user(n, name or f"User{n}"))
        return SlackPerson(self._handle.emu.user(f"U{n}", name=name or f"user{n}"))

    def coordinator(self) -> Person:
        """The coordinator the config lists."""
        if self.platform == "telegram":
            return TelegramPerson(self._handle.user(th.COORDINATOR_ID, "Boss"))
        return SlackPerson(self._handle.emu.user("UBOSS", name="boss"))

    async def add_items(self, project: str, rows: list[dict[str, Any]]) -> None:
        await self._handle.add_items(project, rows)

    async def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """Rows of a read query on the bot's database."""
        return await self.service.db.read(
            lambda c: [tuple(r) for r in c.execute(sql, args).fetchall()]
        )

    async def tick(self) -> None:
        """One scheduler round at the clock's time, and every copy it queued sent."""
        await self.service.tick()
        await self.transport.conversation.sender.run_once()

    async def flush(self) -> None:
        """Send every outbox copy due now (the sender's loop would, a moment later)."""
        await self.transport.conversation.sender.run_once()


@contextlib.asynccontextmanager
async def world(
    platform: str, tmp: Path, projects: list[dict[str, Any]], start: float
) -> AsyncIterator[World]:
    """The bot of `platform` with these projects (telegram_harness.project tables)."""
    if platform == "telegram":
        async with th.running_bot(tmp, projects) as b:
            b.clock.now = start
            yield World("telegram", b.service, b.clock, b)
        return
    async with contextlib.AsyncExitStack() as stack:
        bot = await sh.make_bot(
            stack,
            tmp,
            *[Project(**p) for p in projects],
            access=Access(coordinators=["slack:T0001/UBOSS"]),
        )
        bot.clock.now = start
        yield World("slack", bot.service, bot.clock, bot)


PLATFORMS = ["telegram", "slack"]
