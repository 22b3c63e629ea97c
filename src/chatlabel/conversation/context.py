"""What every part of the conversation shares: the service, the words, the outlet, the person."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..mechanics import BoundedCache
from ..service.labeling import LabelingService
from ..service.reports import Reports
from ..service.types import UserRef
from .buttons import Press
from .catalog import Catalog, Texts
from .events import MessageRef, Who
from .ports import Outlet, Unreachable
from .views import Document, Message, Priority

log = logging.getLogger("chatlabel.conversation")

ExportResults = Callable[[str], Awaitable[tuple[str, bytes]]]
# A command's handler: the person, the command's arguments, their catalog.
Handler = Callable[[Who, str, Texts], Awaitable[None]]
# A press's handler: the person, the decoded press, the pressed message, the press's token.
PressHandler = Callable[[Who, Press, MessageRef | None, object], Awaitable[None]]
PEOPLE = 20_000  # people remembered in per-person caches (language, latest item)


@dataclass
class Shown:
    """The latest item message someone was sent: a typed answer or an undo may refer to it."""

    assignment_id: int
    ref: MessageRef
    open: bool = True


class Context:
    """The conversation's shared state, one per platform."""

    def __init__(
        self,
        service: LabelingService,
        reports: Reports,
        catalog: Catalog,
        outlet: Outlet,
        export_results: ExportResults | None = None,
    ) -> None:
        self.service = service
        self.reports = reports
        self.catalog = catalog
        self.outlet = outlet
        self.how = outlet.mechanics
        self.export_results = export_results
        # The language each person chose ("" when they chose none), read once from storage.
        self._chosen: BoundedCache[str, str] = BoundedCache(PEOPLE)
        # The platform's language hint last seen with each person: pushes come without one.
        self._hints: BoundedCache[str, str] = BoundedCache(PEOPLE)
        self.shown: BoundedCache[str, Shown] = BoundedCache(PEOPLE)
        # Item messages sent by this process: a reply to one is a comment on its item.
        self.items_by_ref: BoundedCache[MessageRef, int] = BoundedCache(PEOPLE)
        self._defaults = any(service.info(n).language for n in service.project_names())

    async def texts(self, who: Who, project: str | None = None) -> Texts:
        """The catalog in the person's language: chosen, else their platform's, else the project's.

        English when none of those is a shipped language.
        """
        key = who.user.key
        chosen = self._chosen.get(key)
        if chosen is None:
            chosen = await self.service.language(who.user) or ""
            self._chosen[key] = chosen
        if who.locale:
            self._hints[key] = who.locale
        lang = self.catalog.best(chosen, who.locale or self._hints.get(key))
        if lang is None and self._defaults:
            # Only then is the project's own default worth a lookup.
            project = project or await self.service.current_project(who.user)
            if project is not None:
                lang = self.catalog.best(self.service.info(project).language)
        return self.catalog.texts(lang)

    def remember_language(self, user: UserRef, lang: str) -> None:
        """Use `lang` for this person from now on (already stored, or kept for this process)."""
        self._chosen[user.key] = lang

    async def send(
        self,
        who: Who,
        view: Message | Document,
        priority: Priority = Priority.INTERACTIVE,
    ) -> MessageRef | None:
        """Send a view; a person who cannot be reached any more is marked so (None)."""
        try:
            return await self.outlet.send(who.user, view, priority)
        except Unreachable as exc:
            log.info("%s cannot be reached (%s); no more pushes to them", who.user.key, exc)
            await self.service.mark_blocked(who.user)
            return None

    async def say(self, who: Who, text: str, priority: Priority = Priority.INTERACTIVE) -> None:
        """Send a plain text message that stays in the chat."""
        await self.send(who, Message(text), priority)

    async def tell(self, who: Who, text: str) -> None:
        """Reply to what the person just did (a command's output, a refusal)."""
        await self.send(who, Message(text, transient=True))
