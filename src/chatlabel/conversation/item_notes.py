"""What people tell about items: a report's reason, why they skipped, comments on an item.

A comment is a message that replies to an item's message: adapters pass the message it replies
to (`reply_to`: Telegram's reply, a Slack thread). After reporting an item for "something else",
the person's next plain message (in a project without free-text answers) is the report's note.
"""

from __future__ import annotations

import time

from ..mechanics import BoundedCache
from ..service.volunteer_types import REPORT_REASONS, SKIP_REASONS
from . import render
from .buttons import Press
from .catalog import Texts
from .context import PEOPLE, Context, PressHandler
from .events import MessageRef, Who
from .flow import Flow, outcome_text

NOTE_WINDOW = 600.0  # seconds after "something else" in which a plain message is its note


class ItemNotes:
    """Report reasons, skip reasons and comments, written once for every platform."""

    def __init__(self, ctx: Context, flow: Flow) -> None:
        self.ctx = ctx
        self.flow = flow
        self.service = ctx.service
        # person -> (assignment reported "for something else", until when its note is awaited)
        self._awaiting: BoundedCache[str, tuple[int, float]] = BoundedCache(PEOPLE)

    def presses(self) -> dict[str, PressHandler]:
        """The presses this part answers, by action."""
        return {"reason": self.press, "why": self.press}

    async def press(self, who: Who, press: Press, ref: MessageRef | None, token: object) -> None:
        """A report reason or a skip reason."""
        t = await self.ctx.texts(who)
        reasons = REPORT_REASONS if press.action == "reason" else SKIP_REASONS
        # decode() gives both actions an index; a forged one out of range changes nothing.
        if press.index is None or not 0 <= press.index < len(reasons):
            await self.ctx.outlet.toast(who.user, token, t("press.dead"), False)
            return
        reason = reasons[press.index]
        if press.action == "reason":
            await self._report(who, press.ref, reason, ref, token, t)
        else:
            await self._why(who, press.ref, reason, ref, token, t)

    async def _report(
        self, who: Who, aid: int, reason: str, ref: MessageRef | None, token: object, t: Texts
    ) -> None:
        out = await self.service.report(who.user, aid, reason, ref=ref)
        toast = t("reporting.thanks") if out.ok else outcome_text(t, out)
        await self.ctx.outlet.toast(who.user, token, toast, False)
        note = ""
        if out.ok and reason == "other":
            text_answers = out.task is not None and out.task.project.kind == "text"
            note = t("reporting.tell_reply" if text_answers else "reporting.tell")
            if not text_answers:
                # Real time: how long a person takes to type, not the labeling clock.
                self._awaiting[who.user.key] = (aid, time.monotonic() + NOTE_WINDOW)
        await self.flow.after(who, out, ref, t, note=note)

    async def _why(
        self, who: Who, answer_id: int, reason: str, ref: MessageRef | None, token: object, t: Texts
    ) -> None:
        out = await self.service.skip_reason(who.user, answer_id, reason)
        toast = None if out.ok else outcome_text(t, out)
        if out.reported:
            toast = t("reporting.thanks")
        await self.ctx.outlet.toast(who.user, token, toast, False)
        if not out.ok or out.task is None or ref is None:
            return
        undo = out.undo_until is not None and out.undo_until > self.service.now()
        await self.flow.edit(who, ref, render.answered_view(t, out.task, out, undo=undo))
        if undo:
            self.flow.undo_later(who, ref, out, t)

    async def text(
        self, who: Who, text: str, source: str | None, reply_to: MessageRef | None
    ) -> bool:
        """A comment on an item, or a report's note; False when the text is something else."""
        key = who.user.key
        if reply_to is not None:
            shown = self.ctx.shown.get(key)
            aid = self.ctx.items_by_ref.get(reply_to)
            if shown is not None and shown.ref == reply_to and shown.open:
                task = await self.service.open_task(who.user, shown.assignment_id)
                if task is not None and task.project.kind == "text":
                    return False  # a reply to the open free-text item is its answer
                aid = shown.assignment_id
            saved = await self.service.comment(
                who.user,
                text,
                assignment_id=aid,
                ref=None if aid is not None else reply_to,
                source=source,
            )
            if saved.status == "no_item":
                return False
            await self._saved(who, saved.status)
            return True
        awaiting = self._awaiting.get(key)
        if awaiting is None:
            return False
        self._awaiting.pop(key)
        if awaiting[1] < time.monotonic():
            return False
        saved = await self.service.comment(who.user, text, assignment_id=awaiting[0], source=source)
        if saved.status == "no_item":
            return False
        await self._saved(who, saved.status)
        return True

    async def _saved(self, who: Who, status: str) -> None:
        if status == "duplicate":
            return  # a redelivered message: it was thanked for the first time
        t = await self.ctx.texts(who)
        await self.ctx.tell(who, t("reporting.comment_saved"))
