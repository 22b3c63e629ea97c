"""The one pacer every outlet uses: sliding windows per scope, priorities, holds, dropped calls."""

from __future__ import annotations

import asyncio
import time

import pytest

from chatlabel.mechanics import LatestEdit, Limit, Pacer, Priority

pytestmark = pytest.mark.timeout(10)

CHAT = {"chat": Limit(3, 0.2), "all": Limit(5, 0.2)}


def _max_in_window(times: list[float], period: float) -> int:
    """The most calls any half-open window of `period` seconds holds."""
    times = sorted(times)
    return max(sum(1 for u in times if t <= u < t + period) for t in times)


async def test_a_window_never_holds_more_than_its_count() -> None:
    pacer = Pacer(CHAT)
    granted: list[float] = []

    async def call() -> None:
        assert await pacer.turn([("chat", "1")])
        granted.append(time.monotonic())

    started = time.monotonic()
    await asyncio.gather(*(call() for _ in range(9)))
    assert len(granted) == 9
    # Seen from here a grant can arrive late on a busy machine (the loop ran other work first),
    # which makes two rounds look closer than they were: 50 ms of slack for that.
    assert _max_in_window(granted, 0.15) == 3
    # 3 at once, 3 after 0.2 s, 3 after 0.4 s.
    assert 0.38 <= time.monotonic() - started < 1.0


async def test_higher_priority_goes_first_and_fifo_within_a_priority() -> None:
    pacer = Pacer({"chat": Limit(1, 0.1)})
    assert await pacer.turn([("chat", "1")])  # the window is now full
    order: list[str] = []

    async def call(name: str, priority: Priority) -> None:
        assert await pacer.turn([("chat", "1")], priority)
        order.append(name)

    tasks = [
        asyncio.create_task(call("bulk", Priority.BULK)),
        asyncio.create_task(call("push", Priority.PUSH)),
        asyncio.create_task(call("press-1", Priority.INTERACTIVE)),
        asyncio.create_task(call("press-2", Priority.INTERACTIVE)),
    ]
    await asyncio.wait_for(asyncio.gather(*tasks), 2)
    assert order == ["press-1", "press-2", "push", "bulk"]


async def test_a_held_or_full_scope_does_not_stall_other_scopes() -> None:
    pacer = Pacer(CHAT)
    pacer.hold(("chat", "1"), 5.0)  # a 429 on chat 1
    blocked = asyncio.create_task(pacer.turn([("all", ""), ("chat", "1")]))
    await asyncio.sleep(0)  # it is queued
    started = time.monotonic()
    for n in range(2, 5):
        assert await pacer.turn([("all", ""), ("chat", str(n))])
    assert time.monotonic() - started < 0.05  # other chats went at once
    assert not blocked.done() and pacer.waiting == 1
    assert 4.5 < pacer.held(("chat", "1")) <= 5.0
    blocked.cancel()
    with pytest.raises(asyncio.CancelledError):
        await blocked
    assert pacer.waiting == 0  # a cancelled caller leaves no trace


async def test_a_hold_delays_its_scope_until_it_ends() -> None:
    pacer = Pacer(CHAT)
    pacer.hold(("chat", "1"), 0.3)
    started = time.monotonic()
    assert await pacer.turn([("chat", "1")])
    assert 0.28 <= time.monotonic() - started < 0.6
    # A family without a limit is held too.
    pacer.hold(("other", "x"), 0.2)
    started = time.monotonic()
    assert await pacer.turn([("other", "x")])
    assert 0.18 <= time.monotonic() - started < 0.5


async def test_a_call_no_longer_wanted_drops_out_without_a_slot() -> None:
    pacer = Pacer({"chat": Limit(1, 0.2)})
    assert await pacer.turn([("chat", "1")])
    latest = {"m": 1}
    old = asyncio.create_task(pacer.turn([("chat", "1")], wanted=lambda: latest["m"] == 1))
    await asyncio.sleep(0.01)
    latest["m"] = 2  # a newer edit of the same message
    pacer.recheck()
    assert not await asyncio.wait_for(old, 0.1)
    new = await pacer.turn([("chat", "1")], wanted=lambda: latest["m"] == 2)
    assert new and pacer.dropped == 1


async def test_only_the_latest_edit_of_a_message_goes_and_a_deletion_drops_queued_ones() -> None:
    pacer = Pacer({"chat": Limit(1, 0.2)})
    edits: LatestEdit[str] = LatestEdit(10)
    assert await pacer.turn([("chat", "1")])  # the window is now full
    old = asyncio.create_task(pacer.turn([("chat", "1")], wanted=edits.claim("m", pacer)))
    await asyncio.sleep(0.01)
    newer = edits.claim("m", pacer)  # drops the queued older edit at once
    assert not await asyncio.wait_for(old, 0.1)
    assert newer() and edits.claim("other", pacer)()
    edits.forget("m")  # the message is being deleted
    assert not newer()


async def test_lower_priorities_leave_the_reserve_for_interactive_calls() -> None:
    pacer = Pacer({"all": Limit(3, 0.3, reserve=1)})
    started = time.monotonic()
    assert await pacer.turn([("all", "")], Priority.BULK)
    assert await pacer.turn([("all", "")], Priority.BULK)
    third = asyncio.create_task(pacer.turn([("all", "")], Priority.BULK))
    await asyncio.sleep(0.02)
    assert not third.done()  # the last slot is kept for someone pressing a button
    assert await pacer.turn([("all", "")], Priority.INTERACTIVE)
    assert time.monotonic() - started < 0.1
    assert await asyncio.wait_for(third, 1)
    assert time.monotonic() - started >= 0.28


async def test_ready_waits_for_room_without_taking_it() -> None:
    pacer = Pacer({"chat": Limit(1, 0.2)})
    assert await pacer.turn([("chat", "1")], Priority.BULK)
    started = time.monotonic()
    await pacer.ready([("chat", "1")], Priority.BULK)
    assert 0.18 <= time.monotonic() - started < 0.5
    assert await pacer.turn([("chat", "1")], Priority.BULK)  # the slot was still there
    assert time.monotonic() - started < 0.5


async def test_a_call_counts_from_its_answer() -> None:
    """A call answered late (held up on its way) counts from the answer: the next one in its
    window waits a whole period after it, so calls never bunch up at the platform."""
    pacer = Pacer({"chat": Limit(1, 0.2)})
    started = time.monotonic()
    turn = await pacer.turn([("chat", "1")])
    await asyncio.sleep(0.15)  # the call is on its way
    turn.done()
    assert await pacer.turn([("chat", "1")])
    assert time.monotonic() - started >= 0.15 + 0.2 - 0.01


async def test_no_limits_means_no_waiting() -> None:
    pacer = Pacer()
    started = time.monotonic()
    for _ in range(1000):
        assert await pacer.turn([("chat", "1"), ("all", "")])
    assert time.monotonic() - started < 0.5
    assert pacer.granted[Priority.INTERACTIVE] == 1000


def test_limits_are_checked() -> None:
    for bad in ((0, 1.0, 0), (3, 0.0, 0), (3, 1.0, 3)):
        with pytest.raises(ValueError):
            Limit(*bad)
