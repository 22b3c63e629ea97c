"""Telegram's flood control, emulated: per-chat and bot-wide limits with growing retry_after.

Telegram documents "about 30 messages a second" for a bot and advises no more than about one
message a second in a chat, allowing short bursts; beyond that it answers 429 with
`retry_after`, and a bot that keeps going over is made to wait longer each time (minutes, in
the wild). The emulator makes that concrete and switchable (off unless a test or benchmark
sets `emu.flood = FloodLimits()`):

- per chat: at most `per_chat` sends and edits in any `window` seconds (callback answers,
  deletions and everything else are free);
- for the whole bot: at most `overall` new messages (send* methods) in any `window` seconds;
- over either, the call gets 429 with `retry_after` seconds, and that chat (or the whole bot)
  is refused until then; going over again within `memory` seconds of the end of a penalty, or
  calling during one, multiplies the next penalty by `growth` (up to `max_retry_after`).
"""

from __future__ import annotations

import math
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from chatlabel.emulators.telegram_model import ApiError

_SENDS = frozenset(
    {"sendmessage", "sendphoto", "sendaudio", "sendvoice", "sendvideo", "senddocument"}
)
_EDITS = frozenset({"editmessagetext", "editmessagecaption", "editmessagereplymarkup"})


@dataclass
class _Scope:
    """The recent counted calls of one chat (or of the whole bot) and its penalty."""

    times: deque[float] = field(default_factory=deque)
    until: float = -math.inf  # refused until then
    strikes: int = 0  # penalties in a row (each one longer)


@dataclass
class FloodLimits:
    """Per-chat and bot-wide flood limits (see the module); `refused` counts the 429s."""

    per_chat: int = 3
    overall: int = 30
    window: float = 1.0
    retry_after: int = 1
    growth: float = 2.0
    max_retry_after: int = 300
    memory: float = 30.0
    clock: Callable[[], float] = time.monotonic
    refused: Counter[str] = field(default_factory=Counter)
    _chats: dict[str, _Scope] = field(default_factory=dict, repr=False)
    _bot: _Scope = field(default_factory=_Scope, repr=False)

    def check(self, method: str, chat_id: object) -> None:
        """Raise the 429 Telegram would answer this call with; else count it."""
        name = method.lower()
        if name not in _SENDS and name not in _EDITS or chat_id in (None, ""):
            return
        now = self.clock()
        chat = self._chats.setdefault(str(chat_id), _Scope())
        self._refuse(chat, self.per_chat, now, "chat")
        if name in _SENDS:
            self._refuse(self._bot, self.overall, now, "overall")
            self._bot.times.append(now)
        chat.times.append(now)

    def _refuse(self, scope: _Scope, limit: int, now: float, what: str) -> None:
        while scope.times and scope.times[0] <= now - self.window:
            scope.times.popleft()
        if now < scope.until:
            # Calling during a penalty only makes it longer.
            scope.strikes += 1
        elif len(scope.times) >= limit:
            scope.strikes = scope.strikes + 1 if now - scope.until < self.memory else 0
        else:
            return
        wait = min(self.max_retry_after, self.retry_after * self.growth**scope.strikes)
        scope.until = max(scope.until, now + wait)
        self.refused[what] += 1
        raise ApiError.too_many_requests(max(1, math.ceil(scope.until - now)))
