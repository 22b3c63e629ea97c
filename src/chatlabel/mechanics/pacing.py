"""One pacing mechanism for every platform call: sliding-window limits per scope, priorities.

A platform limits calls per scope: Telegram about 30 messages a second for the whole bot and a
few a second per chat; Slack so many calls a minute per method and workspace, and about one
message a second per channel. An outlet asks for its turn before each call, naming the scopes
the call counts against and its priority:

    turn = await pacer.turn([("all", ""), ("chat", "42")], Priority.INTERACTIVE)
    if turn:
        try:
            await bot.send_message(42, ...)
        finally:
            turn.done()  # the call counts from its answer: a delay on the way cannot bunch calls

`turn` returns once every scope has room (taking one slot in each), highest priority first
(the answer to what someone just did before pushes, pushes before reminders), first come first
served within a priority. A call that cannot go yet never blocks calls on other scopes: a
limited chat does not stall everyone else. A 429 holds only the scope that got it
(`hold(scope, seconds)`). `wanted` lets a queued call drop out when it became pointless (an
edit superseded by a newer edit of the same message), without spending a slot; `LatestEdit`
keeps that bookkeeping for an outlet.
"""

from __future__ import annotations

import asyncio
import bisect
import enum
import heapq
import itertools
import math
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from .cache import BoundedCache

__all__ = ["Dropped", "LatestEdit", "Limit", "Pacer", "Priority", "Scope", "Turn"]

K = TypeVar("K")

# A scope is (family, key): ("chat", "42"), ("all", ""), ("chat.update", "T0001").
Scope = tuple[str, str]
# Different scopes of one family refused within a second that mean a wider limit was hit.
STORM = 3


class Priority(enum.IntEnum):
    """Which calls go first when a platform's rate limits make them queue."""

    INTERACTIVE = 0  # the answer to what someone just did: next item, edit, command reply
    PUSH = 1  # an item for someone who was waiting for work
    BULK = 2  # reminders, announcements, digests, cosmetic edits nobody waits for


@dataclass(frozen=True)
class Limit:
    """At most `count` calls in any `period` seconds; `reserve` of them kept for INTERACTIVE.

    Lower priorities may use only `count - reserve` slots of a window, so a burst of pushes
    or reminders never leaves the next person who presses a button waiting a whole period.
    """

    count: int
    period: float
    reserve: int = 0

    def __post_init__(self) -> None:
        if self.count < 1 or self.period <= 0 or not 0 <= self.reserve < self.count:
            raise ValueError(f"a limit needs count >= 1, period > 0, 0 <= reserve < count: {self}")


class _Slot:
    """One call counted in a window: when it went, and later when it was answered."""

    __slots__ = ("at",)

    def __init__(self, at: float) -> None:
        self.at = at


class _Window:
    """The recent calls of one scope, and until when a 429 holds it."""

    __slots__ = ("held_until", "limit", "slots")

    def __init__(self, limit: Limit) -> None:
        self.limit = limit
        # Twice the count: a call answered late may still count after later ones.
        self.slots: deque[_Slot] = deque(maxlen=2 * limit.count)
        self.held_until = 0.0

    def free_at(self, now: float, priority: int) -> float:
        """When a call of this priority may go (now or later)."""
        limit = self.limit
        room = limit.count - (limit.reserve if priority > Priority.INTERACTIVE else 0)
        at = now
        if len(self.slots) >= room:
            # The room-th most recent call must have left the window. Answered calls count
            # from their answer: the platform saw them at some point before it, so a burst
            # delayed on its way cannot make the next call look early.
            latest = heapq.nlargest(room, (s.at for s in self.slots))
            at = max(at, latest[-1] + limit.period)
        return max(at, self.held_until)

    def take(self, now: float) -> _Slot:
        slot = _Slot(now)
        self.slots.append(slot)
        return slot


class Turn:
    """A granted call (true) or one that did not go (false); `done()` when it was answered."""

    __slots__ = ("_clock", "_slots")

    def __init__(self, slots: list[_Slot] | None, clock: Callable[[], float]) -> None:
        self._slots = slots
        self._clock = clock

    def __bool__(self) -> bool:
        return self._slots is not None

    def done(self) -> None:
        """The call was answered: it counts from now in its windows."""
        now = self._clock()
        for slot in self._slots or ():
            slot.at = max(slot.at, now)


@dataclass(eq=False)
class _Waiter:
    priority: int
    seq: int
    scopes: tuple[Scope, ...]
    wanted: Callable[[], bool] | None
    future: asyncio.Future[list[_Slot] | None]

    def key(self) -> tuple[int, int]:
        return (self.priority, self.seq)


class Pacer:
    """Paces calls per scope with sliding-window limits, holds and priorities (see module)."""

    def __init__(
        self,
        limits: Mapping[str, Limit] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        scopes: int = 20_000,
    ) -> None:
        # Families without a limit are not paced (and a 429 holds nothing there but the hold).
        self.limits: dict[str, Limit] = dict(limits or {})
        self.clock = clock
        # Per-chat windows are keyed by strangers: bounded. A window evicted for being least
        # recently used has no recent calls left to remember.
        self._windows: BoundedCache[Scope, _Window] = BoundedCache(scopes)
        self._holds: BoundedCache[Scope, float] = BoundedCache(scopes)
        self._waiters: list[_Waiter] = []
        self._seq = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self.granted = dict.fromkeys(Priority, 0)  # calls let through, per priority
        self.dropped = 0  # queued calls that were no longer wanted
        self.closed = False
        self._refusals: deque[tuple[float, Scope]] = deque(maxlen=32)

    # -- asking for a turn ---------------------------------------------------------------------

    async def turn(
        self,
        scopes: Sequence[Scope],
        priority: int = Priority.INTERACTIVE,
        wanted: Callable[[], bool] | None = None,
    ) -> Turn:
        """Wait until every scope has room, then take a slot in each; false if no longer wanted.

        `wanted` is asked before the slot is taken; a call that became pointless while it
        waited (a superseded edit) gets a false Turn without spending anything. Call the
        Turn's `done()` once the platform has answered.
        """
        scopes = tuple(scopes)
        if self.closed:
            return Turn(None, self.clock)
        now = self.clock()
        if self._timer_at <= now:
            self._dispatch()  # waiters whose time has come go before this newcomer
        if self._free_at(scopes, priority, now) <= now:
            # Nothing waits that this call would overtake unfairly: a waiter with room would
            # have been let through already, so whoever waits is blocked on a scope.
            if wanted is not None and not wanted():
                self.dropped += 1
                return Turn(None, self.clock)
            return Turn(self._take(scopes, priority, now), self.clock)
        waiter = _Waiter(
            priority,
            next(self._seq),
            scopes,
            wanted,
            asyncio.get_running_loop().create_future(),
        )
        bisect.insort(self._waiters, waiter, key=_Waiter.key)
        self._wake_at(self._free_at(scopes, priority, now))
        try:
            return Turn(await waiter.future, self.clock)
        except asyncio.CancelledError:
            # The caller gave up: leave no waiter behind (and no slot taken).
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            raise

    async def ready(self, scopes: Sequence[Scope], priority: int = Priority.BULK) -> None:
        """Wait until a call on these scopes at this priority could go, without taking a slot.

        For queues that should take work out of storage only when it can be sent at once.
        """
        scopes = tuple(scopes)
        while not self.closed:
            now = self.clock()
            at = self._free_at(scopes, priority, now)
            ahead = any(
                w.priority <= priority and not w.future.done() and set(w.scopes) & set(scopes)
                for w in self._waiters
            )
            if at <= now and not ahead:
                return
            await asyncio.sleep(max(at - now, 0.01))

    def hold(self, scope: Scope, seconds: float) -> None:
        """Let nothing through `scope` for `seconds` (the platform said: retry after)."""
        until = self.clock() + max(0.0, seconds)
        if until > self._holds.get(scope, 0.0):
            self._holds[scope] = until
        window = self._windows.get(scope)
        if window is not None:
            window.held_until = max(window.held_until, until)

    def refused(self, scopes: Sequence[Scope], seconds: float) -> None:
        """A 429 on a call that counted against `scopes` (widest first): hold the narrowest.

        Platforms seldom say which limit a 429 was for. One chat refused is that chat's
        limit; several different scopes of one family refused within a second point to a
        limit they share, so then every scope of the call is held.
        """
        if not scopes:
            return
        narrow = scopes[-1]
        self.hold(narrow, seconds)
        now = self.clock()
        self._refusals.append((now, narrow))
        recent = {s for at, s in self._refusals if now - at < 1.0 and s[0] == narrow[0]}
        if len(recent) >= STORM:
            for scope in scopes[:-1]:
                self.hold(scope, seconds)

    def held(self, scope: Scope) -> float:
        """Seconds `scope` is still held for (0 when it is not)."""
        return max(0.0, self._holds.get(scope, 0.0) - self.clock())

    def close(self) -> None:
        """Shutting down: every waiting call and every later one gets False at once."""
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_at = None, math.inf
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            if not w.future.done():
                w.future.set_result(None)

    def recheck(self) -> None:
        """Look at every waiter again now (someone's `wanted` may have changed)."""
        self._dispatch()

    @property
    def waiting(self) -> int:
        """Calls waiting for their turn."""
        return len(self._waiters)

    # -- inside --------------------------------------------------------------------------------

    def _window(self, scope: Scope) -> _Window | None:
        limit = self.limits.get(scope[0])
        window = self._windows.get(scope)
        if window is None and limit is not None:
            window = self._windows[scope] = _Window(limit)
            window.held_until = self._holds.get(scope, 0.0)
        return window

    def _free_at(self, scopes: tuple[Scope, ...], priority: int, now: float) -> float:
        at = now
        for scope in scopes:
            window = self._window(scope)
            if window is not None:
                at = max(at, window.free_at(now, priority))
            else:
                at = max(at, self._holds.get(scope, 0.0))
        return at

    def _take(self, scopes: tuple[Scope, ...], priority: int, now: float) -> list[_Slot]:
        slots = []
        for scope in scopes:
            window = self._window(scope)
            if window is not None:
                slots.append(window.take(now))
        self.granted[Priority(min(priority, Priority.BULK))] += 1
        return slots

    def _wake_at(self, at: float) -> None:
        if at >= self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer_at = at
        # The pacer's clock and the loop's may differ (tests use a fake one): convert.
        self._timer = loop.call_at(loop.time() + max(0.0, at - self.clock()), self._dispatch)

    def _dispatch(self) -> None:
        """Let through every waiter that has room now, in priority order; re-arm the timer."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_at = None, math.inf
        now = self.clock()
        later = math.inf
        keep: list[_Waiter] = []
        for w in self._waiters:
            if w.future.done():
                continue
            if w.wanted is not None and not w.wanted():
                self.dropped += 1
                w.future.set_result(None)
                continue
            at = self._free_at(w.scopes, w.priority, now)
            if at <= now:
                w.future.set_result(self._take(w.scopes, w.priority, now))
            else:
                keep.append(w)
                later = min(later, at)
        self._waiters = keep
        if keep:
            self._wake_at(later)


class Dropped(Exception):
    """A paced call that did not go out: superseded by a newer edit, or the bot is stopping."""


class LatestEdit(Generic[K]):
    """Only the latest edit of each message goes out: an older one still queued drops out.

    Each edit takes a number; its `wanted` check stays true while no newer edit (or a deletion)
    of the same message came. Bounded: a message forgotten for being least recently used has
    no edit queued that could still go out of order.
    """

    def __init__(self, size: int = 20_000) -> None:
        self._latest: BoundedCache[K, int] = BoundedCache(size)
        self._seq = itertools.count(1)

    def claim(self, message: K, pacer: Pacer) -> Callable[[], bool]:
        """A new edit of `message`: its `wanted` check for `pacer` (older edits drop out)."""
        mine = self._latest[message] = next(self._seq)
        pacer.recheck()  # an older edit of this message waiting now drops out
        return lambda: self._latest.get(message) == mine

    def forget(self, message: K) -> None:
        """`message` is being deleted: no edit of it queued before now is wanted any more."""
        self._latest[message] = next(self._seq)
