"""Background writes give way to people's: a model round writing suggestions for thousands of
items must not slow the presses of the people labeling beside it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")

# While people write, each background write is followed by a pause this many times as long as
# it took, so background work holds at most a fifth of the time. Measured on PostgreSQL (2
# cores, the retrain test of tests/test_model_bot.py): written back to back, a round's
# suggestions took a press's median from 11 to 16 ms and its p99 from 17 to 27 ms; with
# pauses of 4x, 11.7 and 17.5 ms.
RATIO = 4.0


class GiveWay:
    """Counts the writes people wait for; paces the background writes that run beside them."""

    def __init__(self) -> None:
        self._foreground = 0  # writes someone may be waiting for, so far
        self._seen = 0  # ... as counted when the last background write ended

    async def run(self, write: Awaitable[T], *, background: bool) -> T:
        """Await a write; after a background one, pause if other writes came since the last."""
        if not background:
            self._foreground += 1
            return await write
        start = time.monotonic()
        result = await write
        took = time.monotonic() - start
        # A round with nobody labeling (or a benchmark that waits for it) goes at full speed.
        busy, self._seen = self._foreground != self._seen, self._foreground
        if busy:
            await asyncio.sleep(RATIO * took)
        return result
