"""Coordinators hear when storage fails and when it recovers: once each, in their language."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from ..service.health import (
    IncidentCleared,
    IncidentStarted,
    LowSpace,
    SpaceRecovered,
    StorageEvent,
)
from ..service.types import UserRef
from .catalog import Texts
from .context import Context
from .events import Who
from .views import Message, Priority

log = logging.getLogger("chatlabel.conversation")


class StorageAlerts:
    """Tells this platform's coordinators about storage incidents and low disk space."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._unsubscribe = ctx.service.health.subscribe(self._heard)

    def close(self) -> None:
        """Stop listening."""
        self._unsubscribe()

    def _heard(self, event: StorageEvent) -> asyncio.Future[None] | None:
        people = [
            u for u in self.ctx.service.coordinators() if u.platform == self.ctx.outlet.platform
        ]
        if not people:
            return None
        return asyncio.ensure_future(self._tell(people, event))

    async def _tell(self, people: list[UserRef], event: StorageEvent) -> None:
        for user in people:
            who = Who(user)
            try:
                t = await self.ctx.texts(who)
                await self.ctx.send(who, Message(self.worded(t, event)), Priority.PUSH)
            except Exception:
                # An alert that cannot be sent must not stop the others (or the writer).
                log.exception("could not tell %s about storage", user.key)

    @staticmethod
    def worded(t: Texts, event: StorageEvent) -> str:
        """The alert for one storage event."""
        if isinstance(event, IncidentStarted):
            i = event.incident
            cause = t(f"storage.cause_{i.cause}")
            return t(
                "storage.down",
                since=t.when(datetime.fromtimestamp(i.since)),
                cause=cause,
                n=i.refused,
            )
        if isinstance(event, IncidentCleared):
            i = event.incident
            took = (i.cleared_at or i.since) - i.since
            return t("storage.up", duration=t.duration(took), n=i.refused)
        space = event.space
        if isinstance(event, LowSpace):
            return t(
                "storage.low_space",
                free=t.size(space.free),
                total=t.size(space.total),
                threshold=t.size(space.threshold),
            )
        assert isinstance(event, SpaceRecovered)
        return t("storage.space_ok", free=t.size(space.free))
