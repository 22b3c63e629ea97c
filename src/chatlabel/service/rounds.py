"""One round of background work, run by one process at a time on a shared database."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager

from ..storage.health import StorageUnavailable

Exclusive = Callable[[str], AbstractAsyncContextManager[bool]]


async def exclusive_round(
    exclusive: Exclusive,
    name: str,
    work: Callable[[], Awaitable[object]],
    failed: Callable[[], object],
) -> None:
    """Run `work` if this process holds `name`'s lock; on a failure, call `failed` (inside the
    `except`, so `log.exception` there logs the traceback) and skip the round.

    On PostgreSQL the lock is an advisory lock: the other processes skip the round, and if the
    holder dies its lock dies with its session, so another process takes the next round. On
    SQLite one process holds the file and always gets it. Storage faults are not logged here:
    storage reports each incident once, and the next round tries again.
    """
    try:
        async with exclusive(name) as mine:
            if mine:
                await work()
    except StorageUnavailable:
        pass
    except Exception:
        failed()
