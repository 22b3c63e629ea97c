"""An annotator's conversation with the Telegram bot: joining, answering, skipping, undoing."""

from __future__ import annotations

from collections import OrderedDict

from telegram import CallbackQuery, Message

from ..service.labeling import LabelingService
from ..service.types import Idle, JoinResult, Outcome, Task, UserRef
from .common import (
    Button,
    choice_of,
    decode,
    feedback_text,
    join_refusal_text,
    outcome_line,
)
from .telegram_send import Outbox, chat_of
from .telegram_views import (
    CAPTION_LIMIT,
    TEXT_LIMIT,
    UNDONE_LINE,
    project_keyboard,
    task_keyboard,
    undo_keyboard,
    with_line,
    without_line,
)

UNKNOWN_BUTTON = "That button isn't valid any more."


def _body(msg: Message) -> tuple[str, bool]:
    """A message's text or caption, and whether it is a caption (media message)."""
    return (msg.text, False) if msg.text is not None else (msg.caption or "", True)


class Conversation:
    """Turns one annotator's presses and messages into service calls and replies."""

    def __init__(self, service: LabelingService, outbox: Outbox) -> None:
        self.service = service
        self.outbox = outbox
        # assignment -> the message that shows its recorded answer (recent ones only): a late
        # duplicate copy of an item is told apart from the real one by it.
        self._confirmed: OrderedDict[int, int] = OrderedDict()

    # -- showing work -----------------------------------------------------------------------

    async def show(self, user: UserRef, got: Task | Idle) -> None:
        """Send an item, or say why there is none."""
        if isinstance(got, Task):
            await self.outbox.task(user, got)
        else:
            await self.outbox.text(user, got.message)

    async def next(self, user: UserRef) -> None:
        """Show the user's current or next item, or why there is none."""
        await self.show(user, await self.service.next_task(user))

    async def join(self, user: UserRef, arg: str | None) -> JoinResult:
        """/start [CODE or project]: welcome and first item, a choice of project, or a refusal."""
        res = await self.service.join(user, arg)
        if res.status == "refused":
            await self.outbox.text(user, join_refusal_text(res))
        elif res.status == "choose":
            names = list(self.service.projects)
            await self.outbox.text(user, res.message, project_keyboard(res.choices, names))
        else:
            await self._welcome(user, res)
        return res

    async def _welcome(self, user: UserRef, res: JoinResult) -> None:
        instructions = res.project.instructions if res.project else ""
        text = res.message + (f"\n\n{instructions}" if instructions else "")
        text += "\n\nAnswer with the buttons under each item; /help explains the rest."
        await self.outbox.text(user, text)
        await self.next(user)

    # -- answers ------------------------------------------------------------------------------

    async def text(self, user: UserRef, text: str, message_id: int) -> None:
        """A plain message: the answer to an open free-text item, if there is one."""
        # The message's id makes a redelivered message count once (Telegram redelivers after
        # a restart), instead of answering the next item too.
        out = await self.service.answer_text(user, text, f"{chat_of(user)}:{message_id}")
        if out.status == "duplicate":
            return
        if not out.ok:
            hint = " Answer with the buttons, or send /help." if out.status == "stale" else ""
            await self.outbox.text(user, out.message + hint)
            return
        shown = self.outbox.shown.get(chat_of(user))
        if shown is not None and shown.open and shown.kind == "text":
            shown.open = False
            await self._confirm(user, out, shown.message_id, shown.body, media=shown.media)
        else:
            await self._confirm(user, out, None, "", media=False)
        await self._after(user, out)

    async def button(self, user: UserRef, query: CallbackQuery) -> None:
        """A pressed inline button; every press gets its callback answered first."""
        press = decode(query.data or "")
        msg = query.message if isinstance(query.message, Message) else None
        if press is None:
            await self.outbox.toast(query, UNKNOWN_BUTTON)
        elif press.action == "project":
            await self.outbox.toast(query)
            await self._choose_project(user, press.ref, msg)
        elif press.action == "undo":
            out = await self.service.undo(user, press.ref)
            await self.outbox.toast(query, None if out.ok else out.message)
            if out.ok and out.task is not None:
                await self._undone(user, out.task, msg)
        elif press.action == "toggle":
            await self._toggle(user, query, press, msg)
        else:
            await self._answer(user, query, press, msg)

    async def _toggle(
        self, user: UserRef, query: CallbackQuery, press: Button, msg: Message | None
    ) -> None:
        choice = choice_of(await self._choices(user, press.ref) or (), press.index)
        if choice is None:
            await self.outbox.toast(query, UNKNOWN_BUTTON)
            return
        out = await self.service.toggle(user, press.ref, choice)
        await self.outbox.toast(query, None if out.ok else out.message)
        if out.ok and out.task is not None and msg is not None:
            await self.outbox.keyboard(msg.chat_id, msg.message_id, task_keyboard(out.task))

    async def _answer(
        self, user: UserRef, query: CallbackQuery, press: Button, msg: Message | None
    ) -> None:
        if press.action == "answer":
            choice = choice_of(await self._choices(user, press.ref) or (), press.index)
            if choice is None:
                await self.outbox.toast(query, UNKNOWN_BUTTON)
                return
            out = await self.service.answer(user, press.ref, choice, then_next=True)
        elif press.action == "done":
            # None: the selection so far.
            out = await self.service.answer(user, press.ref, None, then_next=True)
        else:
            out = await self.service.skip(user, press.ref, then_next=True)
        await self.outbox.toast(query, None if out.ok else out.message)
        if out.ok and msg is not None:
            self._confirmed[press.ref] = msg.message_id
            while len(self._confirmed) > 10_000:
                self._confirmed.popitem(last=False)
        if out.status == "duplicate" and msg is not None:
            confirmed = self._confirmed.get(press.ref)
            if confirmed is not None and confirmed != msg.message_id:
                # A second copy of an answered item (a send retried after a timeout that went
                # through after all): show the recorded answer there too, without buttons.
                body, media = _body(msg)
                limit = CAPTION_LIMIT if media else TEXT_LIMIT
                shown_text = with_line(body, outcome_line(out), limit)
                await self.outbox.edit(msg.chat_id, msg.message_id, shown_text, media=media)
        if out.ok:
            shown = self.outbox.shown.get(chat_of(user))
            if shown is not None and shown.assignment_id == press.ref:
                shown.open = False
            body, media = _body(msg) if msg is not None else ("", False)
            await self._confirm(user, out, msg.message_id if msg else None, body, media=media)
            await self._after(user, out)
        elif out.status == "stale":
            # A timed-out item: take its dead buttons away and show what is current instead.
            if msg is not None:
                body, media = _body(msg)
                limit = CAPTION_LIMIT if media else TEXT_LIMIT
                edited = with_line(body, "⌛ Timed out", limit)
                await self.outbox.edit(msg.chat_id, msg.message_id, edited, media=media)
            await self.next(user)

    async def _choices(self, user: UserRef, assignment_id: int) -> tuple[str, ...] | None:
        """The choices behind an assignment's buttons (the service checks the press itself)."""
        known = self.outbox.choices.get(assignment_id)
        if known is not None:
            return known
        return await self.service.choices_for(assignment_id)

    async def _confirm(
        self, user: UserRef, out: Outcome, message_id: int | None, body: str, *, media: bool
    ) -> None:
        """Show the recorded choice on the item (or in a new message), with Undo for a while."""
        line = outcome_line(out)
        undo = None
        if out.answer_id is not None and out.undo_until and out.undo_until > self.service.clock():
            undo = undo_keyboard(out.answer_id)
        if message_id is None:
            await self.outbox.text(user, line, undo)
            return
        limit = CAPTION_LIMIT if media else TEXT_LIMIT
        shown = with_line(body, line, limit)
        await self.outbox.edit(chat_of(user), message_id, shown, media=media, markup=undo)

    async def _after(self, user: UserRef, out: Outcome) -> None:
        """After a recorded answer: gold feedback, a suspension notice, then the next item."""
        feedback = feedback_text(out)
        if feedback:
            await self.outbox.text(user, feedback)
        if out.suspended:
            await self.outbox.text(
                user,
                f"⛔ You won't get more items in this project. {out.suspended} "
                "A coordinator can reinstate you.",
            )
            return
        if out.next is not None:
            await self.show(user, out.next)  # leased with the answer, in the same commit
        else:
            await self.next(user)

    async def _undone(self, user: UserRef, task: Task, msg: Message | None) -> None:
        """Mark the answer as undone, withdraw a newer unanswered item, show the item again."""
        chat = chat_of(user)
        if msg is not None:
            body, media = _body(msg)
            limit = CAPTION_LIMIT if media else TEXT_LIMIT
            shown_text = with_line(without_line(body), UNDONE_LINE, limit)
            await self.outbox.edit(chat, msg.message_id, shown_text, media=media)
        shown = self.outbox.shown.get(chat)
        if shown is not None and shown.open and shown.assignment_id != task.assignment_id:
            # The item sent after the undone answer stays theirs and comes back next;
            # deleting it keeps one live copy of each item in the chat.
            await self.outbox.delete(chat, shown.message_id)
        await self.outbox.task(user, task)

    async def _choose_project(self, user: UserRef, index: int, msg: Message | None) -> None:
        names = list(self.service.projects)
        if not 0 <= index < len(names):
            await self.outbox.text(user, UNKNOWN_BUTTON)
            return
        if msg is not None:
            title = self.service.projects[names[index]].title
            edited = f"{msg.text or ''}\n\n➡️ {title}"
            await self.outbox.edit(msg.chat_id, msg.message_id, edited, media=False)
        await self.join(user, names[index])
