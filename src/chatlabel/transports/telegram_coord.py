"""Coordinator commands on Telegram: progress with a chart, annotators, agreement, export, pause."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from telegram import InputFile

from ..charts import progress_png
from ..service.labeling import LabelingService
from ..service.reports import Reports
from ..service.types import UserRef
from .common import (
    NOT_ALLOWED,
    agreement_text,
    annotators_text,
    cut,
    disagreements_text,
    progress_text,
)
from .telegram_send import Outbox, chat_of
from .telegram_views import CAPTION_LIMIT

ExportResults = Callable[[str], Awaitable[tuple[str, bytes]]]


class Coordinator:
    """The coordinator commands; each refuses anyone who is not a coordinator."""

    COMMANDS = (
        "progress", "annotators", "disagreements", "agreement", "export",
        "pause_project", "resume_project",
    )  # fmt: skip

    def __init__(
        self,
        service: LabelingService,
        reports: Reports,
        outbox: Outbox,
        export_results: ExportResults | None,
    ) -> None:
        self.service = service
        self.reports = reports
        self.outbox = outbox
        self.export_results = export_results

    async def run(self, command: str, user: UserRef, arg: str | None) -> None:
        """Run one coordinator command for `user`, or refuse it politely."""
        if not self.service.is_coordinator(user):
            await self.outbox.text(user, NOT_ALLOWED)
            return
        if command in ("pause_project", "resume_project"):
            await self._pause(user, arg, paused=command == "pause_project")
            return
        names = self._projects(arg)
        if isinstance(names, str):
            await self.outbox.text(user, names)
            return
        for name in names:
            await getattr(self, f"_{command}")(user, name)

    def _projects(self, arg: str | None) -> list[str] | str:
        """The projects a command is about: the named one, or all; a text when none fits."""
        names = list(self.service.projects)
        if not names:
            return "There are no projects in the config."
        if arg:
            if arg in names:
                return [arg]
            return f"No project named {arg!r}. Projects: {', '.join(names)}"
        return names

    async def _progress(self, user: UserRef, name: str) -> None:
        p = await self.reports.progress(name)
        text = progress_text(p)
        # Pillow drawing is CPU-bound: keep it off the event loop.
        png = await asyncio.to_thread(progress_png, p)
        chart = InputFile(png, filename=f"{name}-progress.png")
        caption = text if len(text) <= CAPTION_LIMIT else None
        chat = chat_of(user)
        await self.outbox.to_user(
            user, lambda: self.outbox.bot.send_photo(chat, chart, caption=caption)
        )
        if caption is None:
            await self.outbox.text(user, text)

    async def _annotators(self, user: UserRef, name: str) -> None:
        rows = await self.reports.annotators(name)
        await self.outbox.text(user, f"{self._title(name)}\n{annotators_text(rows)}")

    async def _disagreements(self, user: UserRef, name: str) -> None:
        rows = await self.reports.disagreements(name)
        await self.outbox.text(user, f"{self._title(name)}\n{disagreements_text(rows)}")

    async def _agreement(self, user: UserRef, name: str) -> None:
        figures = await self.reports.agreement(name)
        await self.outbox.text(user, agreement_text(self._title(name), figures))

    async def _export(self, user: UserRef, name: str) -> None:
        if self.export_results is None:
            await self.outbox.text(
                user, "Export isn't available from the bot here; run `chatlabel export`."
            )
            return
        filename, data = await self.export_results(name)
        document = InputFile(data, filename=filename)
        chat = chat_of(user)
        caption = cut(f"Results of {self._title(name)}", CAPTION_LIMIT)
        await self.outbox.to_user(
            user, lambda: self.outbox.bot.send_document(chat, document, caption=caption)
        )

    async def _pause(self, user: UserRef, arg: str | None, *, paused: bool) -> None:
        names = list(self.service.projects)
        if arg is None and len(names) == 1:
            arg = names[0]
        command = "/pause_project" if paused else "/resume_project"
        if arg not in names:
            known = ", ".join(names) or "none"
            await self.outbox.text(user, f"Which project? Send {command} NAME (projects: {known}).")
            return
        assert arg is not None
        await self.service.set_project_paused(arg, paused)
        if paused:
            text = f"⏸ {self._title(arg)} is paused: nobody gets new items until /resume_project."
        else:
            text = f"▶️ {self._title(arg)} is running again."
        await self.outbox.text(user, text)

    def _title(self, name: str) -> str:
        return self.service.projects[name].title
