"""People who keep labeling through a bot that may be killed: the crash tests' crowd.

Each presses the first label of every item that shows, counts a press only once the bot
acknowledged it, and sends /start again after a quiet spell (as a real person would).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

RESTART_AFTER = 10.0  # seconds without a new item before someone sends /start again


class CrashCrowd:
    """Simulated Telegram users labeling until `stop`; `enough` is set when `ready(acked)`."""

    def __init__(self, users: list[Any], ready: Callable[[list[tuple[int, str]]], bool]) -> None:
        self.users = users
        self.ready = ready
        self.acked: list[tuple[int, str]] = []  # (user id, item text) of acknowledged presses
        self.pressed: dict[int, set[int]] = {u.id: set() for u in users}
        self.stop = asyncio.Event()
        self.enough = asyncio.Event()  # enough acknowledged presses to crash mid-work

    def start(self) -> list[asyncio.Task[None]]:
        """One task per person."""
        return [asyncio.create_task(self.annotate(u)) for u in self.users]

    def _unanswered(self, u: Any) -> Callable[[Any], bool]:
        return lambda m: (
            any(b.get("callback_data", "").startswith("a:") for b in m.buttons)
            and m.message_id not in self.pressed[u.id]
        )

    async def annotate(self, u: Any) -> None:
        """Label until `stop` is set."""
        await u.send("/start")
        last_start = time.monotonic()
        while not self.stop.is_set():
            try:
                msg = await u.wait_for_message(self._unanswered(u), timeout=3.0)
            except TimeoutError:
                # Nothing new: a real person sends /start again after a while. Not every
                # 3 s: 100 people doing that kept a restarted bot's 30 messages/s budget
                # busy answering /start, and the backlog could outlast the test.
                if self.stop.is_set():
                    return
                if time.monotonic() - last_start > RESTART_AFTER:
                    await u.send("/start")
                    last_start = time.monotonic()
                continue
            text = msg.content
            query = await u.press(msg, msg.buttons[0]["text"])
            try:
                await u.wait_for_answer(query, timeout=4.0)
            except TimeoutError:
                continue  # not acknowledged (the bot may be dead): the button is still there
            self.pressed[u.id].add(msg.message_id)
            self.acked.append((u.id, text))
            if self.ready(self.acked):
                self.enough.set()
