"""Single flight: concurrent calls for one key share one execution (one upload per file)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    """Runs `work` once per key at a time; callers arriving meanwhile get the same result."""

    def __init__(self) -> None:
        self._running: dict[str, asyncio.Future[T]] = {}

    async def run(self, key: str, work: Callable[[], Awaitable[T]]) -> T:
        """The result of `work()`, or of the run already in flight for `key`."""
        running = self._running.get(key)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        # A failure nobody else awaited must not be reported as "never retrieved".
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._running[key] = future
        try:
            result = await work()
        except BaseException as exc:
            future.set_exception(exc)
            raise
        else:
            future.set_result(result)
            return result
        finally:
            del self._running[key]

    def __len__(self) -> int:
        return len(self._running)
