"""Slack's rate limits, emulated: method tiers per workspace, chat.postMessage per channel.

Slack limits each Web API method per workspace by tier (t1 1+, t2 20+, t3 50+, t4 100+ calls
a minute; see the `rate_limits` of each method in tests/specs/slack-methods) and
chat.postMessage, a "special" method, to about one message a second per channel with short
bursts and several hundred a minute per workspace. Over a limit, Slack answers HTTP 429
`{"ok": false, "error": "ratelimited"}` with a `Retry-After` header: seconds until the call
would be allowed. Off unless a test or benchmark sets `emu.limits = SlackLimits()`; the
numbers are the documented floors ("50+" is taken as 50).
"""

from __future__ import annotations

import math
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

PER_MINUTE: Mapping[str, int] = MappingProxyType({"t1": 1, "t2": 20, "t3": 50, "t4": 100})


@dataclass
class SlackLimits:
    """Per-method tier limits per workspace and per-channel posting (see the module)."""

    per_minute: Mapping[str, int] = field(default_factory=lambda: dict(PER_MINUTE))
    post_per_channel: tuple[int, float] = (3, 3.0)  # about 1 a second, bursts of 3
    post_per_workspace: int = 300  # chat.postMessage a minute
    clock: Callable[[], float] = time.monotonic
    refused: Counter[str] = field(default_factory=Counter)  # 429s by method
    _calls: dict[tuple[str, str], deque[float]] = field(default_factory=dict, repr=False)

    def check(self, method: str, tier: str, team: str, channel: str | None) -> int | None:
        """Seconds to wait (the 429's Retry-After) if this call is over a limit; else count it."""
        now = self.clock()
        windows: list[tuple[tuple[str, str], int, float]] = []
        if tier in self.per_minute:
            windows.append(((method, team), self.per_minute[tier], 60.0))
        if method == "chat.postMessage":
            windows.append(((method, team), self.post_per_workspace, 60.0))
            if channel:
                count, period = self.post_per_channel
                windows.append(((method, f"{team}/{channel}"), count, period))
        wait = 0.0
        for key, count, period in windows:
            times = self._calls.setdefault(key, deque())
            while times and times[0] <= now - period:
                times.popleft()
            if len(times) >= count:
                wait = max(wait, times[-count] + period - now)
        if wait > 0:
            self.refused[method] += 1
            return max(1, math.ceil(wait))
        for key, _, _ in windows:
            self._calls[key].append(now)
        return None
