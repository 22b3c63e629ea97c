"""Commands, for everyone and for coordinators, written once for every platform."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from ..charts import progress_png
from . import render
from .buttons import Press, encode
from .catalog import Texts
from .context import Context, Handler, PressHandler
from .coordination import Coordination
from .events import MessageRef, Who
from .flow import Flow
from .routing_command import RoutingCommand
from .views import Button, Chart, Document, Home, Message, Priority, Rows
from .volunteer_commands import VolunteerCommands

ANNOTATOR = (
    "start",
    "me",
    "top",
    "leaderboard",
    "pause",
    "resume",
    "mute",
    "unmute",
    "language",
    "help",
)
COORDINATOR = (
    "progress",
    "annotators",
    "disagreements",
    "agreement",
    "reports",
    "announce",
    "export",
    "pause_project",
    "resume_project",
    "routing",
)
# Other names people type for a command.
ALIASES = {"stats": "me"}
HOME_PROJECTS = 20  # projects on a coordinator's home page (a Slack view holds 100 blocks)


class Commands:
    """What /stats, /language, /progress and the rest do."""

    def __init__(self, ctx: Context, flow: Flow) -> None:
        self.ctx = ctx
        self.flow = flow
        self.service = ctx.service
        self.reports = ctx.reports
        self.volunteers = VolunteerCommands(ctx, flow)
        self.coordination = Coordination(ctx)
        self.handlers: dict[str, Handler] = {
            **self.volunteers.handlers(),
            **self.coordination.handlers(),
            **RoutingCommand(ctx).handlers(),
        }

    # -- dispatch -------------------------------------------------------------------------------

    def resolve(self, who: Who, name: str, args: str) -> tuple[str, str]:
        """The command actually meant: "pause NAME" pauses a project (for coordinators only)."""
        name = name.lower()
        name = ALIASES.get(name, name)
        if name in ("pause", "resume") and args:
            return f"{name}_project", args
        return name, args

    async def quick(self, who: Who, name: str, args: str) -> str | None:
        """The whole reply when no work is needed (help, unknown, refused); else None."""
        name, args = self.resolve(who, name, args)
        t = await self.ctx.texts(who)
        coordinator = self.service.is_coordinator(who.user)
        if name == "help":
            return self.help_text(t, coordinator)
        if name not in ANNOTATOR and name not in COORDINATOR:
            return t("command.unknown", help=self.ctx.how.command("help"))
        if name in COORDINATOR and not coordinator:
            return t("command.not_allowed")
        return None

    async def run(self, who: Who, name: str, args: str) -> None:
        """Carry out a command and send its replies."""
        quick = await self.quick(who, name, args)
        if quick is not None:
            await self.ctx.tell(who, quick)
            return
        name, args = self.resolve(who, name, args)
        t = await self.ctx.texts(who)
        handler: Handler = self.handlers.get(name) or getattr(self, f"_{name}")
        await handler(who, args, t)

    def help_text(self, t: Texts, coordinator: bool) -> str:
        """Help: how labeling works and the commands this person may use."""
        cmd = self.ctx.how.command
        lines = [t("help.intro"), ""]
        lines += [t(f"help.{name}", command=cmd(name)) for name in ANNOTATOR if name != "help"]
        lines.append(t("help.help", command=cmd("help")))
        if coordinator:
            lines += ["", t("help.coordinator")]
            lines += [t(f"help.{name}", command=cmd(name)) for name in COORDINATOR]
        return "\n".join(lines)

    # -- everyone -------------------------------------------------------------------------------

    async def _start(self, who: Who, args: str, t: Texts) -> None:
        await self.flow.start(who, args or None)

    async def _pause(self, who: Who, args: str, t: Texts) -> None:
        if not await self.service.set_paused(who.user, True):
            await self.ctx.tell(who, t("idle.not_joined", start=self.ctx.how.command("start")))
            return
        await self.ctx.tell(who, t("pause.paused", resume=self.ctx.how.command("resume")))

    async def _resume(self, who: Who, args: str, t: Texts) -> None:
        if not await self.service.set_paused(who.user, False):
            await self.ctx.tell(who, t("idle.not_joined", start=self.ctx.how.command("start")))
            return
        await self.ctx.tell(who, t("pause.resumed"))
        await self.flow.next(who, t)

    async def _language(self, who: Who, args: str, t: Texts) -> None:
        wanted = args.strip()
        if wanted:
            lang = self.ctx.catalog.best(wanted)
            if lang is None:
                known = t.join(self.ctx.catalog.languages)
                await self.ctx.tell(who, t("language.unknown", language=wanted, known=known))
                return
            await self._set_language(who, lang)
            return
        langs = self.ctx.catalog.languages
        buttons = [
            Button(self.ctx.catalog.texts(lang).name, encode("language", i))
            for i, lang in enumerate(langs)
        ]
        await self.ctx.send(who, Message(t("language.choose"), render.pack(buttons)))

    async def _set_language(self, who: Who, lang: str) -> None:
        await self.service.set_language(who.user, lang)
        self.ctx.remember_language(who.user, lang)
        t = self.ctx.catalog.texts(lang)
        await self.ctx.tell(who, t("language.set", language=t.name))

    # -- coordinators ---------------------------------------------------------------------------

    def _projects(self, arg: str, t: Texts) -> list[str] | str:
        """The projects a command is about: the named one, or all; a text when none fits."""
        names = self.service.project_names()
        if not names:
            return t("coordinator.no_projects")
        if not arg:
            return names
        if arg in names:
            return [arg]
        return t("coordinator.no_such_project", name=arg, projects=t.join(names))

    def _title(self, name: str, t: Texts) -> str:
        return self.service.info(name).title_in(t.lang)

    async def _each(
        self, who: Who, arg: str, t: Texts, fn: Callable[[str], Awaitable[None]]
    ) -> None:
        names = self._projects(arg, t)
        if isinstance(names, str):
            await self.ctx.tell(who, names)
            return
        for name in names:
            await fn(name)

    async def _progress(self, who: Who, arg: str, t: Texts) -> None:
        async def one(name: str) -> None:
            p = await self.reports.progress(name)
            title = self._title(name, t)
            # Pillow drawing is CPU-bound: keep it off the event loop.
            png = await asyncio.to_thread(progress_png, p, t, title)
            text = render.progress_text(t, p, title)
            chart = Chart(png, f"{name}-progress.png")
            await self.ctx.send(who, Message(text, chart=chart))

        await self._each(who, arg, t, one)

    async def _annotators(self, who: Who, arg: str, t: Texts) -> None:
        async def one(name: str) -> None:
            rows = await self.reports.annotators(name)
            title = self._title(name, t)
            await self.ctx.tell(who, render.annotators_text(t, rows, title))

        await self._each(who, arg, t, one)

    async def _disagreements(self, who: Who, arg: str, t: Texts) -> None:
        async def one(name: str) -> None:
            rows = await self.reports.disagreements(name)
            title = self._title(name, t)
            await self.ctx.tell(who, render.disagreements_text(t, rows, title))

        await self._each(who, arg, t, one)

    async def _agreement(self, who: Who, arg: str, t: Texts) -> None:
        async def one(name: str) -> None:
            figures = await self.reports.agreement(name)
            await self.ctx.tell(who, render.agreement_text(t, self._title(name, t), figures))

        await self._each(who, arg, t, one)

    async def _export(self, who: Who, arg: str, t: Texts) -> None:
        await self._each(who, arg, t, lambda name: self.export(who, name, t))

    async def export(self, who: Who, name: str, t: Texts) -> None:
        """Hand a project's results file to a coordinator."""
        if self.ctx.export_results is None:
            await self.ctx.tell(who, t("coordinator.no_export"))
            return
        filename, data = await self.ctx.export_results(name)
        caption = t("coordinator.export_caption", title=self._title(name, t))
        await self.ctx.send(who, Document(filename, data, caption))

    async def _pause_project(self, who: Who, arg: str, t: Texts) -> None:
        await self._set_project_paused(who, arg, t, paused=True)

    async def _resume_project(self, who: Who, arg: str, t: Texts) -> None:
        await self._set_project_paused(who, arg, t, paused=False)

    async def _set_project_paused(self, who: Who, arg: str, t: Texts, *, paused: bool) -> None:
        names = self.service.project_names()
        if not arg and len(names) == 1:
            arg = names[0]
        if arg not in names:
            command = self.ctx.how.command("pause_project" if paused else "resume_project")
            await self.ctx.tell(
                who, t("coordinator.which", command=command, projects=t.join(names))
            )
            return
        await self.service.set_project_paused(arg, paused)
        title = self._title(arg, t)
        if paused:
            resume = self.ctx.how.command("resume_project")
            await self.ctx.tell(who, t("coordinator.paused", title=title, resume=resume))
        else:
            await self.ctx.tell(who, t("coordinator.resumed", title=title))

    # -- presses on command messages ------------------------------------------------------------

    def presses(self) -> dict[str, PressHandler]:
        """The presses on commands' messages, by action (a choice, a home button, a reminder,
        an announcement, a reported item)."""
        return {
            **dict.fromkeys(("project", "language", "start", "export"), self.press),
            **self.volunteers.presses(),
            **self.coordination.presses(),
        }

    async def press(self, who: Who, press: Press, ref: MessageRef | None, token: object) -> None:
        """A choice of project or language, a home page's Start, a coordinator's Export."""
        outlet = self.ctx.outlet
        t = await self.ctx.texts(who)
        if press.action == "start":
            await outlet.toast(who.user, token, None, False)
            await self.flow.start(who, None)
            return
        if press.action == "export":
            names = self.service.project_names()
            if not self.service.is_coordinator(who.user):
                await outlet.toast(who.user, token, t("command.not_allowed"), False)
            elif not 0 <= press.ref < len(names):
                await outlet.toast(who.user, token, t("press.dead"), False)
            else:
                await outlet.toast(who.user, token, None, False)
                await self.export(who, names[press.ref], t)
            return
        choices = (
            self.service.project_names()
            if press.action == "project"
            else self.ctx.catalog.languages
        )
        if not 0 <= press.ref < len(choices):
            await outlet.toast(who.user, token, t("press.dead"), False)
            return
        await outlet.toast(who.user, token, None, False)
        chosen = choices[press.ref]
        if press.action == "project":
            picked = self._title(chosen, t)
            question = t("join.choose")
        else:
            picked = self.ctx.catalog.texts(chosen).name
            question = t("language.choose")
        if ref is not None:
            # The question stays readable, with what was picked and no buttons.
            view = Message(f"{question}\n\n{t('choice.picked', choice=picked)}")
            await outlet.edit(who.user, ref, view, Priority.INTERACTIVE)
        if press.action == "project":
            await self.flow.start(who, chosen)
        else:
            await self._set_language(who, chosen)

    # -- a home page ----------------------------------------------------------------------------

    async def home(self, who: Who) -> Home:
        """Someone's home page: own figures and Start; coordinators see every project too."""
        t = await self.ctx.texts(who)
        stats = await self.volunteers.me_text(who, t)
        start = ((Button(t("home.start"), encode("start", 0), "primary"),),)
        sections: list[tuple[str, Rows]] = [(stats, start)]
        if self.service.is_coordinator(who.user):
            names = self.service.project_names()
            for n, name in enumerate(names[:HOME_PROJECTS]):
                title = self._title(name, t)
                p = await self.reports.progress(name)
                rows = await self.reports.annotators(name, limit=5)
                text = render.progress_text(t, p, title)
                if rows:
                    text += "\n\n" + render.annotators_text(t, rows, "", limit=5).lstrip("\n")
                buttons: Rows = ()
                if self.ctx.export_results is not None:
                    button = Button(t("home.export", name=name), encode("export", n))
                    buttons = ((button,),)
                sections.append((text, buttons))
        return Home(
            t("home.title"), tuple(sections), t("home.projects") if len(sections) > 1 else ""
        )
