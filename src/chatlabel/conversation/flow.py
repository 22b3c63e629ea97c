"""The labeling flow: join, items, answers, skips, toggles, undo, free text and pushes."""

from __future__ import annotations

import asyncio
import logging

from ..mechanics import BoundedCache
from ..service.types import Idle, JoinResult, Outcome, Push, Task
from . import render
from .buttons import Press, choice_of, decode, encode
from .catalog import Texts
from .context import PEOPLE, Context, PressHandler, Shown
from .events import MessageRef, Who
from .ports import MediaFailed, SendFailed
from .views import Button, Message, Priority
from .volunteer_words import milestone_text

log = logging.getLogger("chatlabel.conversation")

# A repeated "nothing for you right now" within this many seconds is not sent again.
IDLE_QUIET = 30.0
# The presses the flow handles; the others belong to commands and reports.
FLOW_ACTIONS = ("answer", "toggle", "select", "done", "skip", "undo", "page", "report")
# Items whose media cannot be shown skipped at once for one person before giving up for now.
UNSHOWABLE_IN_A_ROW = 3


class Flow:
    """One person's labeling, written once for every platform."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.service = ctx.service
        # assignment -> the message that shows its recorded answer: a late duplicate copy of an
        # item (a send retried after a timeout that went through after all) is told apart by it.
        self._confirmed: BoundedCache[int, MessageRef] = BoundedCache(PEOPLE)
        self._idle_sent: BoundedCache[str, tuple[str, float]] = BoundedCache(PEOPLE)
        self._undo_timers: dict[MessageRef, asyncio.TimerHandle] = {}
        # The page of choices each item message shows now (long label lists).
        self._pages: BoundedCache[MessageRef, int] = BoundedCache(PEOPLE)
        self._background: set[asyncio.Task[None]] = set()

    # -- showing work --------------------------------------------------------------------------

    async def show(
        self, who: Who, got: Task | Idle, t: Texts, priority: Priority = Priority.INTERACTIVE
    ) -> None:
        """Send an item, or say why there is none (not twice in a row)."""
        if isinstance(got, Task):
            await self.show_task(who, got, t, priority)
            return
        key = who.user.key
        last = self._idle_sent.get(key)
        now = self.service.now()
        if last is not None and last[0] == got.reason and now - last[1] < IDLE_QUIET:
            return  # they were just told; a second copy would only be noise
        self._idle_sent[key] = (got.reason, now)
        await self.ctx.say(who, render.idle_text(t, got, self.ctx.how), priority)

    async def show_task(
        self,
        who: Who,
        task: Task,
        t: Texts,
        priority: Priority = Priority.INTERACTIVE,
    ) -> MessageRef | None:
        """Send one item and remember it as the person's latest.

        An item that could not be sent goes back (the person waits for work again, and the
        push loop tries again), so nobody is left holding a lease they never saw. An item
        whose media cannot be shown is never offered without it (it would be answered
        blind): it is skipped for this person and the next one follows.
        """
        failed: MediaFailed | None = None
        for _ in range(UNSHOWABLE_IN_A_ROW):
            self._idle_sent.pop(who.user.key)
            view = render.item_view(t, task, self.ctx.how)
            try:
                ref = await self.ctx.send(who, view, priority)
            except SendFailed as exc:
                await self._release(who, task, exc)
                return None
            except MediaFailed as exc:
                kind = task.media.kind if task.media else "media"
                log.error(
                    "item %s: its %s cannot be shown to %s (%s); skipped for them",
                    task.item_id,
                    kind,
                    who.user.key,
                    exc,
                )
                failed = exc
                got = await self.service.unshowable(who.user, task.assignment_id)
                if isinstance(got, Idle):
                    await self.show(who, got, t, priority)
                    return None
                task = got
                continue
            if ref is not None:
                self.ctx.shown[who.user.key] = Shown(task.assignment_id, ref)
                self.ctx.items_by_ref[ref] = task.assignment_id
            return ref
        # Item after item fails: the media files are probably gone. Stop skipping for now (the
        # push loop tries again later) rather than run through the whole project.
        assert failed is not None
        await self._release(who, task, failed)
        return None

    async def _release(self, who: Who, task: Task, exc: Exception) -> None:
        """Give back an item that could not be sent; its person waits for work again."""
        log.warning(
            "sending item %s to %s failed (%s); it goes back and they wait for work",
            task.item_id,
            who.user.key,
            exc,
        )
        await self.service.release(who.user, task.assignment_id)

    async def next(self, who: Who, t: Texts) -> None:
        """Show the person's current or next item, or why there is none."""
        await self.show(who, await self.service.next_task(who.user), t)

    # -- joining -------------------------------------------------------------------------------

    async def start(self, who: Who, arg: str | None) -> JoinResult:
        """/start [CODE or project]: welcome and first item, a choice of project, or a refusal."""
        res = await self.service.join(who.user, arg)
        project = res.project.name if res.project else None
        t = await self.ctx.texts(who, project)
        if res.status == "refused":
            await self.ctx.tell(who, t(f"join.{res.refusal or 'no_projects'}"))
        elif res.status == "choose":
            names = self.service.project_names()
            buttons = [
                Button(render.cut(c.title_in(t.lang), 60), encode("project", names.index(c.name)))
                for c in res.choices
            ]
            await self.ctx.send(who, Message(t("join.choose"), render.pack(buttons, fixed=1)))
        else:
            await self.ctx.say(who, self._welcome(t, res))
            await self.next(who, t)
        return res

    def _welcome(self, t: Texts, res: JoinResult) -> str:
        assert res.project is not None
        parts = [t("join.welcome", title=res.project.title_in(t.lang))]
        instructions = res.project.instructions_in(t.lang)
        if instructions:
            parts.append(instructions)
        parts.append(t("join.how", help=self.ctx.how.command("help")))
        if res.role == "coordinator":
            parts.append(t("join.coordinator", help=self.ctx.how.command("help")))
        return "\n\n".join(parts)

    # -- presses -------------------------------------------------------------------------------

    def presses(self) -> dict[str, PressHandler]:
        """The presses this part answers, by action."""
        return dict.fromkeys(FLOW_ACTIONS, self.press)

    async def press(self, who: Who, press: Press, ref: MessageRef | None, token: object) -> None:
        """A press on an item; it is always answered (a toast) before anything is sent.

        `press.ticked`: the toggle data of every choice the platform shows ticked.
        """
        t = await self.ctx.texts(who)
        toast = self.ctx.outlet.toast
        ticked = press.ticked
        if press.action == "report":
            # Only an item still open can be reported this way (an answered one: reply to it).
            out = await self.service.reportable(who.user, press.ref)
            await self._toast(who, token, out, t)
            if out.ok and out.task is not None and ref is not None:
                await self.edit(who, ref, render.reasons_view(t, out.task))
            elif out.detail == "timed_out":
                await self.after(who, out, ref, t)  # the fresh item instead
        elif press.action == "undo":
            await self._undo(who, press, ref, token, t)
        elif press.action in ("toggle", "select"):
            await self._toggle(who, press, ref, token, t, ticked)
        elif press.action == "page":
            await toast(who.user, token, None, False)
            task = await self.service.open_task(who.user, press.ref)
            if task is not None and ref is not None and press.index is not None:
                self._pages[ref] = press.index
                view = render.item_view(t, task, self.ctx.how, page=press.index)
                await self.ctx.outlet.edit(who.user, ref, view, Priority.INTERACTIVE)
        else:
            await self._answer(who, press, ref, token, t, ticked)

    async def _labels(
        self, who: Who, aid: int, ticked: tuple[str, ...] | None, ref: MessageRef | None
    ) -> list[str] | None:
        """The labels ticked toggles of assignment `aid` stand for (None: nothing was sent).

        The platform sends the ticks of the page it shows; ticks made on other pages are the
        ones stored so far.
        """
        if ticked is None:
            return None
        choices = await self.service.choices_for(aid) or ()
        chosen, pages = set(), set()
        for data in ticked:
            p = decode(data)
            if p is not None and p.action == "toggle" and p.ref == aid:
                label = choice_of(choices, p.index)
                if label is not None and p.index is not None:
                    chosen.add(label)
                    pages.add(p.index // render.PAGE)
        if len(choices) > render.PAGE:
            # The page shown: where the ticks are, else the one this message was turned to.
            page = min(pages) if pages else self._pages.get(ref, 0) if ref else 0
            shown = set(choices[page * render.PAGE : (page + 1) * render.PAGE])
            task = await self.service.open_task(who.user, aid)
            chosen |= {c for c in (task.selected if task else ()) if c not in shown}
        return [c for c in choices if c in chosen]

    async def _answer(
        self,
        who: Who,
        press: Press,
        ref: MessageRef | None,
        token: object,
        t: Texts,
        ticked: tuple[str, ...] | None,
    ) -> None:
        user = who.user
        if press.action == "answer":
            choice = await self._choice(who, press, token, t)
            if choice is None:
                return
            out = await self.service.answer(user, press.ref, choice, then_next=True, ref=ref)
        elif press.action == "done":
            # What the platform shows ticked wins over ticks still on their way; without it,
            # the selection stored so far (toggle buttons).
            labels = await self._labels(who, press.ref, ticked, ref)
            out = await self.service.answer(user, press.ref, labels, then_next=True, ref=ref)
        else:
            out = await self.service.skip(user, press.ref, then_next=True, ref=ref)
        await self._toast(who, token, out, t)
        await self.after(who, out, ref, t)

    async def _choice(self, who: Who, press: Press, token: object, t: Texts) -> str | None:
        """The label a button stands for; None (and the press told it is dead) if none now."""
        choice = choice_of(await self.service.choices_for(press.ref) or (), press.index)
        if choice is None:
            await self.ctx.outlet.toast(who.user, token, t("press.dead"), False)
        return choice

    async def _toast(self, who: Who, token: object, out: Outcome, t: Texts) -> None:
        """Answer a press: silently when it did something, with why not otherwise."""
        text = None if out.ok else outcome_text(t, out)
        await self.ctx.outlet.toast(who.user, token, text, False)

    async def after(
        self, who: Who, out: Outcome, ref: MessageRef | None, t: Texts, note: str = ""
    ) -> None:
        """What follows an answer or skip: the item shows the choice, then the next item.

        `note` goes out just before the next item (a question about a report, say).
        """
        aid = out.task.assignment_id if out.task is not None else None
        shown = self.ctx.shown.get(who.user.key)
        if shown is not None and aid is not None and shown.assignment_id == aid:
            shown.open = False
            ref = ref or shown.ref
        if out.ok:
            assert out.task is not None
            if ref is not None:
                self._confirmed[out.task.assignment_id] = ref
                undo = not out.suspended and bool(out.undo_until)
                await self.edit(who, ref, render.answered_view(t, out.task, out, undo=undo))
                if undo:
                    self.undo_later(who, ref, out, t)
            else:
                await self.ctx.send(who, Message(render.status_line(t, out.task.project, out)))
            if out.suspended is not None:
                text = t("idle.suspended_now", reason=render.reason_text(t, out.suspended))
                await self.ctx.say(who, text)
                return
            if out.milestone is not None:
                await self.ctx.say(who, milestone_text(t, out.milestone))
            if note:
                await self.ctx.say(who, note)
            # The next item was leased with the answer, in the same commit.
            got = out.next if out.next is not None else await self.service.next_task(who.user)
            await self.show(who, got, t)
        elif out.status == "duplicate" and out.task is not None and ref is not None:
            if self._confirmed.get(out.task.assignment_id, ref) != ref:
                # A second copy of an answered item: show the recorded answer there too.
                await self.edit(who, ref, render.answered_view(t, out.task, out, undo=False))
        elif out.status == "stale" and out.detail == "timed_out":
            # A timed-out item: take its dead buttons away and show what is current instead.
            if ref is not None and out.task is not None:
                await self.edit(who, ref, render.closed_view(t, out.task, "item.timed_out"))
            await self.next(who, t)

    async def edit(
        self, who: Who, ref: MessageRef, view: Message, priority: Priority = Priority.INTERACTIVE
    ) -> None:
        """Edit an item's message (its undo timer stops)."""
        self._cancel_undo(ref)
        await self.ctx.outlet.edit(who.user, ref, view, priority)

    async def _toggle(
        self,
        who: Who,
        press: Press,
        ref: MessageRef | None,
        token: object,
        t: Texts,
        ticked: tuple[str, ...] | None,
    ) -> None:
        user = who.user
        if press.action == "select":
            # The platform shows the ticks itself and sends them all (Slack's checkboxes).
            labels = await self._labels(who, press.ref, ticked or (), ref) or []
            out = await self.service.set_selection(user, press.ref, labels)
            page = self._pages.get(ref, 0) if ref else 0
            ticks = [p for p in map(decode, ticked or ()) if p and p.index is not None]
            if ticks:
                page = min(p.index or 0 for p in ticks) // render.PAGE
        else:
            choice = await self._choice(who, press, token, t)
            if choice is None:
                return
            out = await self.service.toggle(user, press.ref, choice)
            page = _page_of(out.task, choice) if out.task else 0
        await self._toast(who, token, out, t)
        if out.ok and out.task is not None and ref is not None:
            # Shown as stored: what the person sees is what Done will record.
            self._pages[ref] = page
            view = render.item_view(t, out.task, self.ctx.how, page=page)
            await self.ctx.outlet.edit(user, ref, view, Priority.INTERACTIVE)

    # -- undo ----------------------------------------------------------------------------------

    async def _undo(
        self, who: Who, press: Press, ref: MessageRef | None, token: object, t: Texts
    ) -> None:
        out = await self.service.undo(who.user, press.ref)
        await self._toast(who, token, out, t)
        if not out.ok or out.task is None:
            return
        task = out.task
        shown = self.ctx.shown.get(who.user.key)
        if shown is not None and shown.open and shown.assignment_id != task.assignment_id:
            # The item sent after the undone answer stays theirs and comes back next;
            # deleting it keeps one live copy of each item in the chat, and the undone one
            # the last message again.
            await self.ctx.outlet.delete(who.user, shown.ref)
        if ref is None:
            await self.show_task(who, task, t)
            return
        # Back where it was, buttons and all.
        await self.edit(who, ref, render.item_view(t, task, self.ctx.how))
        self.ctx.shown[who.user.key] = Shown(task.assignment_id, ref)

    def undo_later(self, who: Who, ref: MessageRef, out: Outcome, t: Texts) -> None:
        """Take the Undo button away when the undo window closes."""
        assert out.undo_until is not None and out.task is not None
        delay = min(max(out.undo_until - self.service.now(), 0.0), 86400.0)
        final = render.answered_view(t, out.task, out, undo=False)

        def expire() -> None:
            self._undo_timers.pop(ref, None)
            job = asyncio.ensure_future(self.edit(who, ref, final, Priority.BULK))
            self._background.add(job)
            job.add_done_callback(self._background.discard)

        self._undo_timers[ref] = asyncio.get_running_loop().call_later(delay, expire)

    def _cancel_undo(self, ref: MessageRef) -> None:
        handle = self._undo_timers.pop(ref, None)
        if handle is not None:
            handle.cancel()

    async def close(self) -> None:
        """Forget undo timers (the buttons stay; the service refuses late undos)."""
        for handle in self._undo_timers.values():
            handle.cancel()
        self._undo_timers.clear()
        if self._background:
            await asyncio.wait(self._background, timeout=2.0)

    # -- free text -----------------------------------------------------------------------------

    async def text(
        self, who: Who, text: str, source: str | None, item: int | None, ref: MessageRef | None
    ) -> None:
        """A typed answer: to `item` (a platform's answer form) or to the open free-text item."""
        t = await self.ctx.texts(who)
        if item is not None:
            out = await self.service.answer(who.user, item, text, then_next=True)
        else:
            # The source (the platform message) makes a redelivered message count once.
            out = await self.service.answer_text(who.user, text, source)
        if out.status == "duplicate":
            if item is not None:  # a form sent twice (a redelivered message stays silent)
                await self.ctx.tell(who, outcome_text(t, out))
            return
        if not out.ok and item is None:
            hint = t("text.hint", help=self.ctx.how.command("help"))
            await self.ctx.tell(who, f"{outcome_text(t, out)} {hint}")
            return
        if not out.ok:
            await self.ctx.tell(who, outcome_text(t, out))
        await self.after(who, out, ref, t)

    async def edited(self, who: Who, text: str, source: str | None) -> None:
        """An edited message: the new text of a free-text answer, while it may be undone."""
        t = await self.ctx.texts(who)
        out = await self.service.edit_text(who.user, source, text) if source else None
        if out is None or out.detail == "not_an_answer":
            await self.ctx.tell(who, t("text.edited"))
            return
        if out.status == "duplicate":
            return  # the same text again (an edit delivered twice): nothing changed
        if not out.ok:
            key = "text.edit_too_late" if out.status == "stale" else ""
            await self.ctx.tell(who, t(key) if key else outcome_text(t, out))
            return
        assert out.task is not None
        ref = self._confirmed.get(out.task.assignment_id)
        if ref is not None:
            # The item shows the new answer, with Undo for what is left of its window.
            await self.edit(who, ref, render.answered_view(t, out.task, out, undo=True))
            self.undo_later(who, ref, out, t)
        answer = render.value_text(t, out.task.project, out.value)
        await self.ctx.tell(who, t("text.edit_saved", answer=answer))

    # -- pushes --------------------------------------------------------------------------------

    async def push(self, push: Push) -> None:
        """Deliver an item the service found for someone who was waiting for work."""
        who = Who(push.user)
        t = await self.ctx.texts(who, push.task.project.name)
        # A failed send gives the item back and keeps them waiting: the next round tries again.
        await self.show_task(who, push.task, t, Priority.PUSH)


def outcome_text(t: Texts, out: Outcome) -> str:
    """What a press that changed nothing is told."""
    if out.status == "duplicate":
        return t("press.already_recorded")
    if out.status == "forbidden":
        return t("press.not_yours")
    if out.detail == "bad_value":
        return t("press.bad_value")
    return t(f"press.{out.detail or 'dead'}")


def _page_of(task: Task, choice: str) -> int:
    """The page of the label list that holds `choice` (so a toggle keeps the page shown)."""
    try:
        return task.choices.index(choice) // render.PAGE
    except ValueError:
        return 0
