"""Coordinators hear when routing by a project's model switches itself off, in their language."""

from __future__ import annotations

import asyncio
import logging

from ..service.types import RoutingStopped, UserRef
from .catalog import Texts
from .context import Context
from .events import Who
from .views import Message, Priority

log = logging.getLogger("chatlabel.conversation")


class ModelAlerts:
    """Tells this platform's coordinators that a model's suggestions no longer route items."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._unsubscribe = ctx.service.on_routing_stopped(self._heard)

    def close(self) -> None:
        """Stop listening."""
        self._unsubscribe()

    def _heard(self, event: RoutingStopped) -> asyncio.Future[None] | None:
        people = [
            u for u in self.ctx.service.coordinators() if u.platform == self.ctx.outlet.platform
        ]
        if not people:
            return None
        return asyncio.ensure_future(self._tell(people, event))

    async def _tell(self, people: list[UserRef], event: RoutingStopped) -> None:
        for user in people:
            who = Who(user)
            try:
                t = await self.ctx.texts(who)
                await self.ctx.send(who, Message(self.worded(t, event)), Priority.PUSH)
            except Exception:
                # One coordinator who cannot be reached must not keep the others from hearing.
                log.exception("could not tell %s that routing stopped", user.key)

    def worded(self, t: Texts, event: RoutingStopped) -> str:
        """The alert, with the model's record."""
        p = event.reason.params
        return t(
            "model.routing_off",
            title=self.ctx.service.info(event.project).title_in(t.lang),
            accuracy=t.percent(float(p["accuracy"])),
            n=int(p["n"]),
            min=t.percent(float(p["min"])),
        )
