"""Coordinators' commands about people and items: /announce (preview, Send, progress, cancel)
and /reports (items reports took out of the queue, with Restore / Remove)."""

from __future__ import annotations

from ..service.volunteer_types import Announcement
from . import volunteer_words as words
from .buttons import Press
from .catalog import Texts
from .context import Context, Handler, PressHandler
from .events import MessageRef, Who
from .views import Message, Priority

HELD_SHOWN = 10  # held items /reports lists at once, oldest first


class Coordination:
    """Announcements and decisions on reported items."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.service = ctx.service

    def handlers(self) -> dict[str, Handler]:
        """The commands this part answers, by name."""
        return {"announce": self.announce, "reports": self.reports}

    def _title(self, name: str, t: Texts) -> str:
        return self.service.info(name).title_in(t.lang)

    # -- /announce ------------------------------------------------------------------------------

    async def announce(self, who: Who, args: str, t: Texts) -> None:
        """/announce PROJECT TEXT (a preview with Send), /announce (progress), /announce cancel."""
        args = args.strip()
        if not args:
            await self._progress(who, t)
            return
        if args.lower() == "cancel":
            done = await self.service.cancel_announcements()
            if not done:
                await self.ctx.tell(who, t("announce.nothing_to_cancel"))
            for a in done:
                await self.ctx.tell(who, self._line(a, t))
            return
        names = self.service.project_names()
        first, _, rest = args.partition(" ")
        if first in names and rest.strip():
            project, text = first, rest.strip()
        elif len(names) == 1 and first != names[0]:
            project, text = names[0], args
        else:
            usage = t(
                "announce.usage", command=self.ctx.how.command("announce"), projects=t.join(names)
            )
            await self.ctx.tell(who, usage)
            return
        draft = await self.service.draft_announcement(project, who.user, text)
        await self.ctx.send(who, words.preview_view(t, draft, self.service.info(project)))

    def _line(self, a: Announcement, t: Texts) -> str:
        return f"{self._title(a.project, t)}: {words.announcement_status(t, a)}"

    async def _progress(self, who: Who, t: Texts) -> None:
        recent = await self.service.recent_announcements()
        if not recent:
            command = self.ctx.how.command("announce")
            await self.ctx.tell(who, t("announce.none", command=command))
            return
        await self.ctx.tell(who, "\n".join(self._line(a, t) for a in recent))

    # -- /reports -------------------------------------------------------------------------------

    async def reports(self, who: Who, args: str, t: Texts) -> None:
        """/reports [PROJECT]: held items, each with Restore and Remove."""
        names = self.service.project_names()
        wanted = args.strip()
        if wanted and wanted not in names:
            text = t("coordinator.no_such_project", name=wanted, projects=t.join(names))
            await self.ctx.tell(who, text)
            return
        for name in [wanted] if wanted else names:
            held, total = await self.service.held_items(name, HELD_SHOWN)
            title = self._title(name, t)
            if not total:
                await self.ctx.tell(who, t("reports.none", title=title))
                continue
            await self.ctx.tell(who, t("reports.header", title=title, n=total))
            for h in held:
                await self.ctx.send(who, words.held_view(t, h))

    # -- presses --------------------------------------------------------------------------------

    def presses(self) -> dict[str, PressHandler]:
        """The presses this part answers, by action."""
        return dict.fromkeys(("send", "cancel", "restore", "remove"), self.press)

    async def press(self, who: Who, press: Press, ref: MessageRef | None, token: object) -> None:
        """Send / Cancel of an announcement, Restore / Remove of an item."""
        t = await self.ctx.texts(who)
        toast = self.ctx.outlet.toast
        if not self.service.is_coordinator(who.user):
            await toast(who.user, token, t("command.not_allowed"), False)
            return
        if press.action in ("restore", "remove"):
            await self._decide(who, press.ref, press.action == "restore", ref, token, t)
            return
        a = await self.service.announcement(press.ref)
        if a is None or a.author != who.user.key:
            await toast(who.user, token, t("press.dead"), False)
            return
        if press.action == "send":
            if a.state != "draft":
                await toast(who.user, token, t("announce.already"), False)
                return
            got = await self.service.send_announcement(a.id)
            a = got or a
            await toast(who.user, token, None, False)
        else:
            done = await self.service.cancel_announcements(a.id)
            a = done[0] if done else a
            await toast(who.user, token, None, False)
        if ref is not None:
            view = words.progress_view(t, a, self.service.info(a.project))
            await self.ctx.outlet.edit(who.user, ref, view, Priority.INTERACTIVE)

    async def _decide(
        self, who: Who, item: int, restore: bool, ref: MessageRef | None, token: object, t: Texts
    ) -> None:
        d = await self.service.decide(item, restore)
        toast = self.ctx.outlet.toast
        if d.status in ("unknown", "not_held"):
            await toast(who.user, token, t("reports.decided"), False)
            return
        await toast(who.user, token, None, False)
        said = t(f"reports.{d.status}", item=d.item_id)
        if ref is not None:
            # The question is answered: its buttons go, what was decided stays.
            await self.ctx.outlet.edit(who.user, ref, Message(said), Priority.INTERACTIVE)
        else:
            await self.ctx.tell(who, said)
