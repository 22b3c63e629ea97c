"""The conversation: one flow for every platform. Adapters feed it events; it sends views."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator

from ..mechanics import BoundedCache, LockMap
from ..service.health import StorageUnavailable
from ..service.labeling import LabelingService
from ..service.reports import Reports
from ..service.types import Push
from .bulk import STOP_GRACE, OutboxSender
from .buttons import decode
from .catalog import Catalog, Texts
from .commands import Commands
from .context import PEOPLE, Context, ExportResults, PressHandler
from .events import MessageRef, Who
from .flow import Flow
from .item_notes import ItemNotes
from .ports import Outlet
from .storage_alerts import StorageAlerts
from .views import Home

log = logging.getLogger("chatlabel.conversation")


class TokenBucket:
    """`rate` events a second on average, bursts up to `burst`."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.at = burst, now

    def take(self, now: float) -> bool:
        """Spend one token if there is one."""
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class Conversation:
    """Everything people say to the bot and what it answers, on one platform.

    Each person's events run one at a time and in order (a per-person lock), different
    people's side by side. Typed messages and commands beyond a per-person rate are dropped
    with one "slow down" reply: one person must not use up the bot's send budget for everyone.
    Replies go out by priority (the outlet's pacer): the answer to what someone just did before
    pushes, pushes before bulk messages.
    """

    # Typed messages and commands a person may send: 1 a second, bursts of 8.
    inbound_rate, inbound_burst = 1.0, 8.0

    def __init__(
        self,
        service: LabelingService,
        reports: Reports,
        catalog: Catalog,
        outlet: Outlet,
        *,
        export_results: ExportResults | None = None,
        inbound: tuple[float, float] | None = None,
    ) -> None:
        self.ctx = Context(service, reports, catalog, outlet, export_results)
        if inbound is not None:
            self.inbound_rate, self.inbound_burst = inbound
        self.service = service
        self.flow = Flow(self.ctx)
        self.commands = Commands(self.ctx, self.flow)
        self.notes = ItemNotes(self.ctx, self.flow)
        # Each press is decoded once and goes to the one part that answers its action.
        self._presses: dict[str, PressHandler] = {
            **self.flow.presses(),
            **self.commands.presses(),
            **self.notes.presses(),
        }
        # Reminders, announcements and digests for people on this platform, from the outbox.
        self.sender = OutboxSender(self.ctx)
        self.locks = LockMap()
        # Coordinators on this platform hear once when storage fails and once when it recovers.
        self.alerts = StorageAlerts(self.ctx)
        self._starts: Counter[str] = Counter()  # /start commands waiting per person
        self._buckets: BoundedCache[str, TokenBucket] = BoundedCache(PEOPLE)
        self._slowed: BoundedCache[str, bool] = BoundedCache(PEOPLE)
        self._pushing: set[asyncio.Task[None]] = set()
        self._push_loop: asyncio.Task[None] | None = None
        self._outbox: asyncio.Task[None] | None = None

    async def texts(self, who: Who) -> Texts:
        """The catalog in the person's language (adapters word their mechanics with it)."""
        return await self.ctx.texts(who)

    # -- events ---------------------------------------------------------------------------------

    async def start(self, who: Who, arg: str | None = None) -> None:
        """/start [CODE or project]; taps queued meanwhile by the same person get one answer."""
        key = who.user.key
        if await self._flooding(who):
            return
        self._starts[key] += 1
        try:
            async with self.locks.hold(key), self._storage_safe(who):
                if self._starts[key] > 1:
                    return  # a later /start of theirs is waiting: that one answers
                await self.flow.start(who, arg)
        finally:
            self._starts[key] -= 1
            if not self._starts[key]:
                del self._starts[key]

    async def command(self, who: Who, name: str, args: str = "") -> None:
        """A command with its arguments ("progress", "animals")."""
        if name.lower() == "start":
            await self.start(who, args or None)
            return
        if await self._flooding(who):
            return
        async with self.locks.hold(who.user.key), self._storage_safe(who):
            await self.commands.run(who, name, args)

    async def quick_reply(self, who: Who, name: str, args: str = "") -> str | None:
        """A command's whole reply when it needs no work (help, unknown, refused), else None."""
        return await self.commands.quick(who, name, args)

    async def press(
        self,
        who: Who,
        data: str,
        ref: MessageRef | None,
        token: object,
        ticked: tuple[str, ...] | None = None,
    ) -> None:
        """A pressed button (`token`: the adapter's handle to answer the press with a toast).

        `ticked`: the toggle data of every choice the platform shows ticked (Slack's checkboxes
        send their whole state with each press).
        """
        press = decode(data, ticked)
        handler = None if press is None else self._presses.get(press.action)
        async with self.locks.hold(who.user.key), self._storage_safe(who, token):
            if press is None or handler is None:
                # Malformed, unknown or forged: it changes nothing, and is answered politely.
                t = await self.ctx.texts(who)
                await self.ctx.outlet.toast(who.user, token, t("press.dead"), False)
                return
            await handler(who, press, ref, token)

    async def text(
        self,
        who: Who,
        text: str,
        *,
        source: str | None = None,
        item: int | None = None,
        ref: MessageRef | None = None,
        reply_to: MessageRef | None = None,
    ) -> None:
        """A typed message: the answer to a free-text item (`item` when the platform knows it),
        or a comment on an item (`reply_to`: the item's message it replies to).

        `source` names the platform message, so a redelivered one counts once; `ref` is the
        item's message when the platform knows it (an answer form opened from it).
        """
        if item is None and await self._flooding(who):
            return
        async with self.locks.hold(who.user.key), self._storage_safe(who):
            if item is None and await self.notes.text(who, text, source, reply_to):
                return
            await self.flow.text(who, text, source, item, ref)

    async def edited(self, who: Who, text: str, *, source: str | None = None) -> None:
        """A typed message was edited: a free-text answer becomes the new text while Undo is
        still offered; anything else changes nothing (and they are told so)."""
        if await self._flooding(who):
            return
        async with self.locks.hold(who.user.key), self._storage_safe(who):
            await self.flow.edited(who, text, source)

    async def unsupported(self, who: Who) -> None:
        """Something the bot cannot take (a photo, a sticker): say what it can take."""
        if await self._flooding(who):
            return
        async with self.locks.hold(who.user.key):
            t = await self.ctx.texts(who)
            await self.ctx.tell(who, t("text.unsupported", help=self.ctx.how.command("help")))

    async def blocked(self, who: Who) -> None:
        """The person blocked the bot: no more pushes, their items go back."""
        with contextlib.suppress(StorageUnavailable):  # seen again at their next send
            await self.service.mark_blocked(who.user)
        log.info("%s blocked the bot; no more pushes to them", who.user.key)

    async def home(self, who: Who) -> Home:
        """The person's home page (for platforms that have one)."""
        return await self.commands.home(who)

    @contextlib.asynccontextmanager
    async def _storage_safe(self, who: Who, press: object = None) -> AsyncIterator[None]:
        """Storage refused (full disk, a lock, I/O errors): say so; nothing was stored."""
        try:
            yield
        except StorageUnavailable:
            # The service retried for a few seconds already; the item stays as it was, so
            # pressing again works once storage is back. The incident is logged once by
            # storage; coordinators hear of it through StorageAlerts.
            try:
                t = await self.ctx.texts(who)
            except StorageUnavailable:
                t = self.ctx.catalog.texts(self.ctx.catalog.best(who.locale))
            if press is not None:
                await self.ctx.outlet.toast(who.user, press, t("press.storage"), True)
            else:
                await self.ctx.tell(who, t("press.storage"))

    # -- pushes ---------------------------------------------------------------------------------

    async def push_loop(self, stop: asyncio.Event, interval: float = 5.0) -> None:
        """Push items to people waiting for work whenever work may have appeared, until `stop`."""
        platform = self.ctx.outlet.platform
        while not stop.is_set():
            # Wake on a change in this process, or every `interval` for leases that expired and
            # items imported by another process.
            await self.service.wait_for_change(interval)
            if stop.is_set():
                break
            try:
                pushes = await self.service.pushes(platform)
            except asyncio.CancelledError:
                raise
            except StorageUnavailable:
                continue  # storage logs the incident once; try again next round
            except Exception:
                log.exception("looking for work to push on %s failed; retrying shortly", platform)
                await asyncio.sleep(min(interval, 1.0))
                continue
            # Side by side and in the background: a chat the platform holds back (a 429) must
            # hold up neither the others nor the next round; the outlet's pacer keeps them all
            # within the platform's limits. Someone being pushed is no longer waiting, so the
            # next round cannot push to them twice.
            for push in pushes:
                task = asyncio.create_task(self._push(push))
                self._pushing.add(task)
                task.add_done_callback(self._pushing.discard)

    async def _push(self, push: Push) -> None:
        try:
            async with self.locks.hold(push.user.key):
                await self.flow.push(push)
        except asyncio.CancelledError:
            raise
        except Exception:
            # One failed push must not strand the others of this round.
            log.exception("pushing an item to %s failed", push.user.key)
            await self.service.release(push.user, push.task.assignment_id)

    def start_pushing(self, stop: asyncio.Event, interval: float = 5.0) -> None:
        """Run `push_loop` in the background until `stop` (or `stop_pushing`)."""
        self._push_loop = asyncio.create_task(
            self.push_loop(stop, interval), name=f"{self.ctx.outlet.platform}-push"
        )

    async def stop_pushing(self) -> None:
        """Cancel the push loop and wait for it to end; safe to call twice."""
        task, self._push_loop = self._push_loop, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    def start_outbox(self, stop: asyncio.Event, interval: float = 5.0) -> None:
        """Send this platform's reminders, announcements and digests as they come due, until `stop`.

        `interval`: how often the sender looks for due copies without a signal.
        """
        self._outbox = asyncio.create_task(
            self.sender.run(stop, interval), name=f"{self.sender.platform}-outbox"
        )

    async def stop_outbox(self, grace: float = STOP_GRACE) -> None:
        """Stop the outbox sender (its stop event is set already): copies in flight settle first.

        A copy cut off between the platform's acceptance and its "sent" row would be resent (or
        dropped) at the next start; a short grace lets the ones in flight finish instead.
        """
        task, self._outbox = self._outbox, None
        if task is None:
            return
        done, _ = await asyncio.wait({task}, timeout=grace)
        if not done:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def close(self) -> None:
        """Stop pushing, timers and alerts, and let last edits finish."""
        for task in list(self._pushing):
            task.cancel()
        await asyncio.gather(*self._pushing, return_exceptions=True)
        self.alerts.close()
        await self.flow.close()

    # -- flood control --------------------------------------------------------------------------

    async def _flooding(self, who: Who) -> bool:
        """True when the person is over their rate: drop it, with one "slow down" per burst.

        Checked before the person's lock: a flood must be dropped at once, not queue up for the
        lock and tie up the platform's update workers that everyone else's presses need.
        """
        # Real time, not the service's clock: this is about the machine's send budget.
        key, now = who.user.key, time.monotonic()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.inbound_rate, self.inbound_burst, now)
        if bucket.take(now):
            self._slowed.pop(key)
            return False
        if key not in self._slowed:
            self._slowed[key] = True
            t = await self.ctx.texts(who)
            await self.ctx.tell(who, t("text.slow_down"))
        return True
