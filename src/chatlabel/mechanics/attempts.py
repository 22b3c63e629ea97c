"""Failed attempts per person and overall in a sliding window: brute force stops."""

from __future__ import annotations

from collections import deque

from .cache import BoundedCache


class AttemptLimiter:
    """Failed invite codes per person and overall, in a sliding window: brute force stops.

    Without it 300 guesses took 9 s. Only failures count, and a person who is locked out is
    not compared against the codes at all. People are kept in a bounded map (the one who
    failed least recently forgotten first), so strangers cannot grow it without end; the
    overall limit still holds someone who spreads guesses over many accounts.
    """

    def __init__(
        self,
        per_person: int = 5,
        overall: int = 100,
        window: float = 600.0,
        max_people: int = 10_000,
    ) -> None:
        self.per_person = per_person
        self.overall = overall
        self.window = window
        self.max_people = max_people
        self._people: BoundedCache[str, deque[float]] = BoundedCache(max_people)
        self._all: deque[float] = deque()

    def _trim(self, times: deque[float], now: float) -> None:
        while times and times[0] <= now - self.window:
            times.popleft()

    def locked(self, key: str, now: float) -> bool:
        """True while `key`, or everyone together, has used up the failed attempts allowed."""
        self._trim(self._all, now)
        if len(self._all) >= self.overall:
            return True
        # A look, not a use: only a failure keeps someone from being forgotten.
        times = self._people.peek(key)
        if times is None:
            return False
        self._trim(times, now)
        if not times:
            del self._people[key]
            return False
        return len(times) >= self.per_person

    def failed(self, key: str, now: float) -> None:
        """Count one failed attempt by `key`."""
        self._all.append(now)
        times = self._people.get(key) or deque(maxlen=self.per_person)
        times.append(now)
        self._people[key] = times
