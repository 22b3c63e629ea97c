"""Volunteers' own commands: /me, /top, /leaderboard on|off, /mute, /unmute; Continue."""

from __future__ import annotations

from .buttons import Press
from .catalog import Texts
from .context import Context, Handler, PressHandler
from .events import MessageRef, Who
from .flow import Flow
from .volunteer_words import board_text, me_text


class VolunteerCommands:
    """What a volunteer asks about themselves, and their choices about messages."""

    def __init__(self, ctx: Context, flow: Flow) -> None:
        self.ctx = ctx
        self.flow = flow
        self.service = ctx.service

    def handlers(self) -> dict[str, Handler]:
        """The commands this part answers, by name."""
        return {
            "me": self.me,
            "top": self.top,
            "leaderboard": self.leaderboard,
            "mute": self.mute,
            "unmute": self.unmute,
        }

    async def me_text(self, who: Who, t: Texts) -> str:
        """The person's figures, worded (for /me and a home page)."""
        f = await self.service.me(who.user)
        info = self.service.info(f.project) if f is not None else None
        return me_text(t, f, self.ctx.how, info)

    async def me(self, who: Who, args: str, t: Texts) -> None:
        """/me (and /stats): answers, accuracy, agreement, days, streaks, share, rank."""
        await self.ctx.tell(who, await self.me_text(who, t))

    async def top(self, who: Who, args: str, t: Texts) -> None:
        """/top: the quality-weighted leaderboard of the person's project."""
        board = await self.service.board(who.user)
        if board is None:
            await self.ctx.tell(who, t("stats.not_started", start=self.ctx.how.command("start")))
            return
        title = self.service.info(board.project).title_in(t.lang)
        await self.ctx.tell(who, board_text(t, board, self.ctx.how, title))

    async def leaderboard(self, who: Who, args: str, t: Texts) -> None:
        """/leaderboard on|off: appear by name on /top, or as "someone"."""
        cmd = self.ctx.how.command
        wanted = args.strip().lower()
        if wanted not in ("on", "off"):
            await self.ctx.tell(
                who, t("top.usage", on=cmd("leaderboard on"), off=cmd("leaderboard off"))
            )
            return
        if not await self.service.set_on_board(who.user, wanted == "on"):
            await self.ctx.tell(who, t("idle.not_joined", start=cmd("start")))
            return
        await self.ctx.tell(who, t("top.shown" if wanted == "on" else "top.hidden_now"))

    async def mute(self, who: Who, args: str, t: Texts) -> None:
        """/mute: no reminders or announcements."""
        await self._mute(who, t, True)

    async def unmute(self, who: Who, args: str, t: Texts) -> None:
        """/unmute: reminders and announcements again."""
        await self._mute(who, t, False)

    async def _mute(self, who: Who, t: Texts, muted: bool) -> None:
        cmd = self.ctx.how.command
        if not await self.service.set_muted(who.user, muted):
            await self.ctx.tell(who, t("idle.not_joined", start=cmd("start")))
            return
        text = t("mute.muted", unmute=cmd("unmute")) if muted else t("mute.unmuted")
        await self.ctx.tell(who, text)

    def presses(self) -> dict[str, PressHandler]:
        """The presses this part answers, by action."""
        return {"continue": self.press}

    async def press(self, who: Who, press: Press, ref: MessageRef | None, token: object) -> None:
        """A reminder's Continue: the person's item (or why there is none)."""
        await self.ctx.outlet.toast(who.user, token, None, False)
        await self.flow.next(who, await self.ctx.texts(who))
