"""Simulated people for the emulators: they label every item as soon as it shows (or after
`think` seconds) and record how long the next item took to come after their press.

Shipped beside the emulators for the limit tests and the benchmarks (bench/limits.py,
bench/reminders.py).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from .slack import SlackMessage, SlackSimUser
from .telegram import ChatMessage, SimUser

LABELS = ("cat", "dog", "bird")
NOTHING_LEFT = "That's everything for now"


def assignment(m: ChatMessage) -> int | None:
    """The assignment an item message's answer buttons belong to (None for other messages)."""
    for b in m.buttons:
        data = str(b.get("callback_data", ""))
        if data.startswith("a:"):
            return int(data.split(":")[1])
    return None


@dataclass
class Annotator:
    """One person pressing a label on every item `think` seconds after it shows."""

    user: SimUser
    think: float = 0.0
    presses: list[tuple[int, float]] = field(default_factory=list)  # (assignment, pressed at)
    waits: list[float] = field(default_factory=list)  # press -> next item shown, seconds
    done: set[int] = field(default_factory=set)

    def _open(self, m: ChatMessage) -> bool:
        a = assignment(m)
        return a is not None and a not in self.done

    async def run(self, stop: asyncio.Event, start: bool = True) -> None:
        """Label until `stop` is set."""
        u = self.user
        if start:
            await u.send("/start")
        while not stop.is_set():
            try:
                msg = await u.wait_for_message(self._open, timeout=0.5)
            except TimeoutError:
                continue
            if self.presses:
                self.waits.append(time.monotonic() - self.presses[-1][1])
            a = assignment(msg)
            assert a is not None
            self.done.add(a)
            if self.think:
                await asyncio.sleep(self.think)
            self.presses.append((a, time.monotonic()))
            await u.press(msg, LABELS[a % len(LABELS)])

    def told_nothing_left(self) -> bool:
        """The last message says there is nothing left (or everything they got is answered)."""
        messages = self.user.messages
        return bool(messages) and NOTHING_LEFT in messages[-1].content


def slack_assignment(m: SlackMessage) -> int | None:
    """The assignment a Slack item message's answer buttons belong to."""
    for b in m.blocks:
        for el in b.get("elements", []):
            value = str(el.get("value", ""))
            if el.get("type") == "button" and value.startswith("a:"):
                return int(value.split(":")[1])
    return None


@dataclass
class SlackAnnotator:
    """One Slack person pressing a label on every item as soon as it shows."""

    user: SlackSimUser
    labels: tuple[str, ...] = ("spam", "ham", "unsure")
    presses: list[tuple[int, float]] = field(default_factory=list)
    waits: list[float] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # what Slack got back for each press
    done: set[int] = field(default_factory=set)

    def _next(self) -> SlackMessage | None:
        return next(
            (m for m in self.user.messages if slack_assignment(m) not in (None, *self.done)),
            None,
        )

    async def run(self, stop: asyncio.Event, command: str = "/label") -> None:
        """Label until `stop` is set."""
        u = self.user
        await u.slash(command)
        while not stop.is_set():
            try:
                msg = await u.wait_for(self._next, timeout=0.5)
            except TimeoutError:
                continue
            assert msg is not None  # wait_for returns once _next finds one
            if self.presses:
                self.waits.append(time.monotonic() - self.presses[-1][1])
            a = slack_assignment(msg)
            assert a is not None
            self.done.add(a)
            self.presses.append((a, time.monotonic()))
            reply = await u.press(msg, self.labels[a % len(self.labels)])
            self.statuses.append(reply.status)

    def told_nothing_left(self) -> bool:
        """The last message says there is nothing left."""
        messages = self.user.messages
        return bool(messages) and NOTHING_LEFT in messages[-1].text
