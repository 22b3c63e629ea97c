"""Access policy: roles from the config's lists, and who may join a project."""

from __future__ import annotations

import hmac
from collections import OrderedDict, deque
from collections.abc import Sequence
from typing import Literal

Role = Literal["annotator", "expert", "coordinator"]
Refusal = Literal["invite_only", "allowlist_only"]


def listed(key: str, entries: Sequence[str]) -> bool:
    """True when `platform:user` is in entries; Slack keys `slack:T/U` also match `slack:U`."""
    if key in entries:
        return True
    platform, _, user = key.partition(":")
    if "/" in user:
        return f"{platform}:{user.rsplit('/', 1)[1]}" in entries
    return False


def role_of(key: str, coordinators: Sequence[str], experts: Sequence[str]) -> Role:
    """The role an annotator key has under the config."""
    if listed(key, coordinators):
        return "coordinator"
    if listed(key, experts):
        return "expert"
    return "annotator"


def join_refusal(
    key: str,
    mode: str,
    *,
    code: str | None,
    invite_codes: Sequence[str],
    allowlist: Sequence[str],
    role: Role,
    already_member: bool,
) -> Refusal | None:
    """Why this person may not join (None when they may)."""
    if role != "annotator" or already_member or mode == "open":
        return None
    if mode == "invite":
        if code and code_matches(code, invite_codes):
            return None
        return "invite_only"
    if listed(key, allowlist):
        return None
    return "allowlist_only"


def code_matches(code: str, codes: Sequence[str]) -> bool:
    """True when `code` is one of `codes`, compared in constant time against every one."""
    given = code.encode("utf-8", "surrogatepass")
    found = False
    for candidate in codes:
        # No early exit, and compare_digest on bytes: the time taken says nothing about
        # which code, or how much of one, a guess got right.
        found |= hmac.compare_digest(given, candidate.encode("utf-8", "surrogatepass"))
    return found


class AttemptLimiter:
    """Failed invite codes per person and overall, in a sliding window: brute force stops.

    Without it 300 guesses took 9 s. Only failures count, and a person who is locked out is
    not compared against the codes at all. People are kept in a bounded map (the oldest
    forgotten first), so strangers cannot grow it without end; the overall limit still holds
    someone who spreads guesses over many accounts.
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
        self._people: OrderedDict[str, deque[float]] = OrderedDict()
        self._all: deque[float] = deque()

    def _trim(self, times: deque[float], now: float) -> None:
        while times and times[0] <= now - self.window:
            times.popleft()

    def locked(self, key: str, now: float) -> bool:
        """True while `key`, or everyone together, has used up the failed attempts allowed."""
        self._trim(self._all, now)
        if len(self._all) >= self.overall:
            return True
        times = self._people.get(key)
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
        times = self._people.pop(key, None) or deque(maxlen=self.per_person)
        times.append(now)
        self._people[key] = times  # most recent last
        while len(self._people) > self.max_people:
            self._people.popitem(last=False)
