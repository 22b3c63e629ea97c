"""The sender of bulk messages: the outbox rows of one platform, worded and sent at BULK priority.

Each copy is claimed (pending -> sending) before it is sent and settled (sent, retry later,
failed) after: a copy is sent at most once per claim. What a crash leaves claimed but unsettled
is settled at the next start (`reconcile`) by asking the platform when its outlet can tell
(`outlet.delivered(to, handle)`: True, False, or None for "cannot tell"), else by kind
(the service's RESEND_WHEN_UNSURE). Interactive replies go first because every copy asks for
its turn at BULK priority (`outlet.ready`: the platform's pacer).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace

from ..charts import progress_png
from ..service.health import StorageUnavailable
from ..service.types import UserRef
from ..service.volunteer_types import OutboxItem
from . import volunteer_words as words
from .context import Context
from .events import MessageRef, Who
from .model_alerts import routing_off_text
from .ports import MediaFailed, SendFailed, Unreachable
from .views import Chart, Message, Priority

log = logging.getLogger("chatlabel.conversation")

Delivered = Callable[[UserRef, str], Awaitable[bool | None]]
STOP_GRACE = 3.0  # seconds copies in flight get to settle when a transport stops


class OutboxSender:
    """Sends this platform's outbox (see the module); `run_once` for tests, `run` to serve."""

    concurrency = 4  # copies in flight at once (what a crash can leave unsettled)

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.service = ctx.service
        self.platform = ctx.outlet.platform
        self._inflight: set[int] = set()
        self._reconciled = False
        self._stop: asyncio.Event | None = None
        self.lock = asyncio.Lock()  # held while a round sends; whoever holds it holds the sender
        self._trouble = False  # storage refused during this round: end it
        # What became of copies the platform answered for, when storage refused to write it.
        self._unsettled: list[Callable[[], Awaitable[None]]] = []
        self.sent = 0  # copies the platform accepted, since this sender started

    async def reconcile(self) -> int:
        """Settle copies a crash left claimed; how many are to be sent again."""
        delivered: Delivered | None = getattr(self.ctx.outlet, "delivered", None)
        again = 0
        for item in await self.service.outbox_unsettled(self.platform):
            answer = None
            if delivered is not None:
                answer = await delivered(item.user, item.handle)
            resend = await self.service.outbox_settle(item, answer)
            again += resend
            # The platform said whether it arrived (True/False) or cannot tell (None).
            log.info(
                "outbox copy %d (%s to %s) was in flight at a crash; arrived: %s; resent: %s",
                item.id,
                item.kind,
                item.user.key,
                answer,
                resend,
            )
        self._reconciled = True
        return again

    async def run_once(self) -> int:
        """Send every copy due now, waiting for each one's turn; how many went out."""
        async with self.lock:  # one round at a time (the loop's, or a caller's)
            return await self._round()

    async def _round(self) -> int:
        if not self._reconciled:
            await self.reconcile()
        while self._unsettled:  # settlings storage refused last round: before anything new
            await self._unsettled[0]()
            self._unsettled.pop(0)
        before = self.sent
        slots = asyncio.Semaphore(self.concurrency)
        jobs: set[asyncio.Task[None]] = set()
        tried: set[int] = set()  # each copy once a round, whatever became of it
        self._trouble = False
        try:
            while not self._stopping() and not self._trouble:
                skip = tuple(self._inflight | tried)
                items = await self.service.outbox_due(self.platform, 50, skip)
                if not items:
                    break
                for item in items:
                    if self._stopping() or self._trouble:
                        break  # copies in flight settle; no new ones start
                    # Only take a copy out when it can go at once: interactive calls go first.
                    await self.ctx.outlet.ready(item.user, Priority.BULK)
                    if self._stopping():
                        break
                    await slots.acquire()
                    tried.add(item.id)
                    self._inflight.add(item.id)
                    job = asyncio.create_task(self._deliver(item, slots))
                    jobs.add(job)
                    job.add_done_callback(jobs.discard)
            if jobs:
                await asyncio.gather(*jobs)
        finally:
            for job in jobs:
                job.cancel()
        return self.sent - before

    def _stopping(self) -> bool:
        return self._stop is not None and self._stop.is_set()

    async def run(self, stop: asyncio.Event, interval: float = 5.0) -> None:
        """Send copies as they come due until `stop`, while this process holds the platform's
        outbox; storage faults skip a round quietly.

        One sender per platform across every process on a shared database (an advisory lock,
        held as long as this loop runs): another process's sender would take this one's copies
        in flight for a crash's. If the holder dies, its lock goes with it and a waiting
        process takes over, starting with the dead one's copies in flight (reconcile).
        """
        self._stop = stop
        while not stop.is_set():
            try:
                async with self.service.exclusive(f"outbox:{self.platform}") as mine:
                    if mine:
                        self._reconciled = False  # whatever was in flight: reconcile first
                        await self._serve(stop, interval)
                        return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("taking the %s outbox failed; retrying shortly", self.platform)
            # Another process sends this platform's copies: look again in a while.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(interval, 5.0))

    async def _serve(self, stop: asyncio.Event, interval: float) -> None:
        woken = self.service.outbox_listen()
        while not stop.is_set():
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except StorageUnavailable:
                pass  # storage logs the incident once; the next round tries again
            except Exception:
                log.exception("sending bulk messages on %s failed; retrying shortly", self.platform)
            if stop.is_set():
                break
            wait = interval
            try:
                at = await self.service.outbox_next_due(self.platform)
                if at is not None:
                    wait = min(interval, max(1.0, at - self.service.now()))
            except StorageUnavailable:
                pass
            await _first(woken, stop, wait)
            woken.clear()

    async def _deliver(self, item: OutboxItem, slots: asyncio.Semaphore) -> None:
        try:
            claimed = await self.service.outbox_claim(item)
            if claimed is None:
                return  # sent meanwhile, cancelled, or no longer wanted (they came back)
            try:
                view = await self.view(claimed)
            except Exception as exc:
                log.exception("cannot word outbox copy %d (%s)", item.id, item.kind)
                await self.service.outbox_failed(claimed, repr(exc), retry=False)
                return
            await self._send(claimed, view)
        except StorageUnavailable:
            # The copy stays as it was; the round ends and the next one takes it again.
            self._trouble = True
        finally:
            self._inflight.discard(item.id)
            slots.release()

    async def _send(self, item: OutboxItem, view: Message) -> None:
        service = self.service
        try:
            ref: MessageRef | None = await self.ctx.outlet.send(item.user, view, Priority.BULK)
        except Unreachable as exc:
            log.info("%s cannot be reached (%s); no more messages to them", item.user.key, exc)
            await service.mark_blocked(item.user)
            why = f"unreachable: {exc}"
            await self._settle(lambda: service.outbox_failed(item, why, retry=False))
        except (SendFailed, MediaFailed) as exc:
            if isinstance(exc, SendFailed) and self._stopping():
                # Not the platform's refusal: the bot is stopping. The next start sends it.
                await self._settle(lambda: service.outbox_put_back(item))
                return
            why, again = str(exc), isinstance(exc, SendFailed)
            await self._settle(lambda: service.outbox_failed(item, why, retry=again))
        except Exception as exc:  # an adapter bug must not lose the copy silently
            log.exception("sending outbox copy %d to %s failed", item.id, item.user.key)
            why = repr(exc)
            await self._settle(lambda: service.outbox_failed(item, why, retry=True))
        else:
            self.sent += 1
            await self._settle(lambda: service.outbox_sent(item, ref))

    async def _settle(self, settle: Callable[[], Awaitable[None]]) -> None:
        """Write what became of a copy; if storage refuses, keep it to write next round.

        The platform has answered already: forgetting its answer would send the copy again
        (or lose it) at the next start.
        """
        try:
            await settle()
        except StorageUnavailable:
            self._unsettled.append(settle)
            raise

    async def view(self, item: OutboxItem) -> Message:
        """The copy as its reader sees it, in their language."""
        name = item.project
        if name is None or name not in self.service.project_names():
            raise LookupError(f"outbox copy {item.id}: project {name!r} is not in the config")
        info = self.service.info(name)
        t = await self.ctx.texts(Who(item.user), name)
        how = self.ctx.how
        if item.kind == "reminder":
            view = words.reminder_view(t, item, info, how)
        elif item.kind == "announcement":
            view = Message(words.announcement_text(t, item, info))
        elif item.kind == "announced":
            view = Message(words.announced_text(t, item, info))
        elif item.kind == "pulled":
            view = Message(words.pulled_text(t, item, info, how))
        elif item.kind == "model_off":
            command = how.command("routing")
            view = Message(routing_off_text(t, info.title_in(t.lang), item.payload, command))
        else:
            p = await self.ctx.reports.progress(name)
            title = info.title_in(t.lang)
            # Pillow drawing is CPU-bound: keep it off the event loop.
            png = await asyncio.to_thread(progress_png, p, t, title)
            chart = Chart(png, f"{name}-digest.png")
            view = Message(words.digest_text(t, item, info, how), chart=chart)
        return replace(view, handle=item.handle)


async def _first(a: asyncio.Event, b: asyncio.Event, timeout: float) -> None:  # noqa: ASYNC109
    """Wait until either event is set, or the timeout."""
    waits = [asyncio.ensure_future(a.wait()), asyncio.ensure_future(b.wait())]
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
