"""The slash command and the App Home: joining, own stats, and the coordinators' reports."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Awaitable, Callable
from urllib.parse import urlparse

from slack_sdk.webhook.async_client import AsyncWebhookClient

from ..charts import progress_png
from ..service.reports import Reports
from ..service.types import UserRef
from .common import (
    NOT_ALLOWED,
    agreement_text,
    annotators_text,
    disagreements_text,
    join_refusal_text,
    progress_text,
    stats_text,
)
from .slack_blocks import choose_blocks, esc, help_text, home_view, section, slackify, welcome_text
from .slack_items import FORGED, SlackItems, slack_id

ExportFn = Callable[[str], Awaitable[tuple[str, bytes]]]
Reply = Callable[[str], Awaitable[None]]
COORDINATOR_COMMANDS = frozenset({"progress", "annotators", "disagreements", "agreement", "export"})
ANNOTATOR_COMMANDS = frozenset({"", "start", "help", "stats", "pause", "resume"})
HOME_PROJECTS = 20  # projects shown on a coordinator's App Home (a view holds 100 blocks)


def is_loopback(url: str) -> bool:
    """True for URLs on this machine (where an HTTP proxy from the environment must not apply)."""
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class SlackCommands:
    """What `/label …` and the App Home tab do, for annotators and coordinators."""

    def __init__(
        self, items: SlackItems, reports: Reports, export_results: ExportFn | None
    ) -> None:
        self.items = items
        self.service = items.service
        self.client = items.client
        self.command = items.command
        self.reports = reports
        self.export_results = export_results

    def immediate(self, user: UserRef, sub: str, rest: str) -> str | None:
        """The reply to give in the ack itself (help, unknown, refusal); None when work follows."""
        coordinator = self.service.is_coordinator(user)
        if sub == "help":
            return help_text(self.command, coordinator)
        if sub not in ANNOTATOR_COMMANDS | COORDINATOR_COMMANDS:
            return f"I don't know `{esc(sub)}`.\n\n{help_text(self.command, coordinator)}"
        project_command = sub in COORDINATOR_COMMANDS or (sub in ("pause", "resume") and rest)
        if project_command and not coordinator:
            return NOT_ALLOWED
        return None

    def replier(self, user: UserRef, response_url: str) -> Reply:
        """How to answer a command: ephemerally through its response_url (else in the DM)."""

        async def reply(text: str) -> None:
            if not response_url:
                await self.items.tell(user, text)
                return
            hook = AsyncWebhookClient(response_url)
            if is_loopback(response_url):
                hook.proxy = None  # it read HTTP(S)_PROXY, which would swallow loopback calls
            await hook.send(text=esc(slackify(text, self.command)), response_type="ephemeral")

        return reply

    async def run(self, user: UserRef, sub: str, rest: str, channel: str, reply: Reply) -> None:
        """Carry out a command that passed `immediate`."""
        if sub in ("", "start"):
            await self.start_flow(user, rest or None, reply, channel)
        elif sub == "stats":
            await reply(stats_text(await self.reports.my_stats(user)))
        elif sub in ("pause", "resume") and rest:
            name = self._project(rest)
            if name is None:
                await reply(self._which(rest))
                return
            await self.service.set_project_paused(name, sub == "pause")
            title = self.service.info(name).title
            await reply(f"{'⏸ Paused' if sub == 'pause' else '▶️ Resumed'} {title}.")
        elif sub in ("pause", "resume"):
            await reply(await self.service.set_paused(user, sub == "pause"))
            if sub == "resume":
                await self.items.send_next(user)
        else:
            await self._coordinator(user, sub, rest, channel, reply)

    def _project(self, arg: str | None) -> str | None:
        """The project an argument names, or the only one when none is named."""
        if arg:
            return arg if arg in self.service.projects else None
        return next(iter(self.service.projects)) if len(self.service.projects) == 1 else None

    def _which(self, arg: str | None) -> str:
        names = ", ".join(self.service.projects) or "none"
        if arg:
            return f"There's no project called {arg}. Projects: {names}."
        return f"Which project? Add its name, e.g. `{self.command} progress NAME` ({names})."

    async def _coordinator(
        self, user: UserRef, sub: str, rest: str, channel: str, reply: Reply
    ) -> None:
        if sub == "progress" and not rest and len(self.service.projects) > 1:
            names = list(self.service.projects)
        else:
            name = self._project(rest or None)
            if name is None:
                await reply(self._which(rest))
                return
            names = [name]
        user = await self.items.with_dm(user)
        elsewhere = channel != user.address
        if sub == "progress":
            for name in names:
                await self._send_progress(user, name)
            if elsewhere:
                await reply("📈 I've sent the progress to our DM.")
        elif sub == "export":
            await self.send_export(user, names[0])
            if elsewhere and self.export_results is not None:
                await reply("📦 I've sent the results file to our DM.")
        elif sub == "annotators":
            await reply(annotators_text(await self.reports.annotators(names[0])))
        elif sub == "disagreements":
            await reply(disagreements_text(await self.reports.disagreements(names[0])))
        else:
            figures = await self.reports.agreement(names[0])
            await reply(agreement_text(self.service.info(names[0]).title, figures))

    async def _send_progress(self, user: UserRef, name: str) -> None:
        p = await self.reports.progress(name)
        png = await asyncio.to_thread(progress_png, p)
        await self.client.files_upload_v2(
            channel=await self.items.dm(user),
            file=png,
            filename=f"progress-{name}.png",
            title=f"Progress of {p.title}",
            initial_comment=esc(progress_text(p)),
        )

    async def send_export(self, user: UserRef, name: str) -> None:
        """Upload a project's results file to the coordinator's DM."""
        if self.export_results is None:
            await self.items.tell(
                user, "Export isn't available from Slack here; run `chatlabel export` instead."
            )
            return
        filename, data = await self.export_results(name)
        title = self.service.info(name).title
        await self.client.files_upload_v2(
            channel=await self.items.dm(user),
            file=data,
            filename=filename,
            title=f"Results of {title}",
            initial_comment=f"📦 Results of {esc(title)}",
        )

    async def start_flow(
        self, user: UserRef, arg: str | None, reply: Reply, channel: str | None = None
    ) -> None:
        """Join (or continue): welcome and instructions, then the first item, in the DM."""
        user = await self.items.with_dm(user)
        res = await self.service.join(user, arg)
        if res.status == "refused":
            await reply(join_refusal_text(res))
            return
        if res.status == "choose":
            names = list(self.service.projects)
            await self.items.post(user, res.message, choose_blocks(res.choices, names, res.message))
        else:
            welcome = [section(welcome_text(res, self.command), markdown=True)]
            await self.items.post(user, res.message, welcome)
            await self.items.send_next(user, force=True)
        if channel is not None and channel != user.address:
            await reply("👋 I've sent it to our DM.")

    async def publish_home(self, user: UserRef) -> None:
        """The App Home tab: own stats and Start; coordinators also see every project."""
        stats = slackify(stats_text(await self.reports.my_stats(user)), self.command)
        projects: list[tuple[str, str, str]] = []
        if self.service.is_coordinator(user):
            for name in list(self.service.projects)[:HOME_PROJECTS]:
                p = await self.reports.progress(name)
                rows = await self.reports.annotators(name, limit=5)
                top = annotators_text(rows, limit=5) if rows else ""
                projects.append((name, progress_text(p), top))
        view = home_view(stats, projects, can_export=self.export_results is not None)
        await self.client.views_publish(user_id=slack_id(user), view=view)

    async def home_export(self, user: UserRef, name: str) -> None:
        """The App Home Export button (checked again: an old view may still show it)."""
        if not self.service.is_coordinator(user):
            await self.items.tell(user, NOT_ALLOWED)
        elif name not in self.service.projects:
            await self.items.tell(user, FORGED)
        else:
            await self.send_export(user, name)
