"""What keeps volunteers coming back: streaks, milestones and a quality-weighted leaderboard."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Literal


@dataclass(frozen=True)
class Streak:
    """Days in a row with at least one answer, by local day number (see timing.day_number)."""

    day: int | None = None  # the latest day with an answer
    current: int = 0  # the run of days that ends on `day`
    best: int = 0
    days: int = 0  # days with an answer, in all


def advance(s: Streak, today: int) -> Streak:
    """The streak after an answer on day `today`."""
    if s.day == today:
        return s
    run = s.current + 1 if s.day is not None and s.day == today - 1 else 1
    return Streak(today, run, max(s.best, run), s.days + 1)


def current_run(s: Streak, today: int) -> int:
    """The streak as it stands today: alive while the latest answer was today or yesterday."""
    if s.day is None or s.day < today - 1:
        return 0
    return s.current


MilestoneKind = Literal["answers", "streak"]


@dataclass(frozen=True)
class Milestone:
    """A moment worth a word of thanks: so many answers, or so many days in a row."""

    kind: MilestoneKind
    n: int


# Each has a bit in the member's `celebrated` mask, so one is celebrated once (an undo and a new
# answer do not celebrate it again).
MILESTONES: tuple[Milestone, ...] = (
    Milestone("answers", 10),
    Milestone("answers", 100),
    Milestone("answers", 500),
    Milestone("answers", 1000),
    Milestone("streak", 7),
)


def milestone(celebrated: int, answers: int, streak: int) -> tuple[Milestone | None, int]:
    """The milestone reached now that was never celebrated, and the mask with it marked.

    When several are reached at once, every one is marked and the biggest is returned.
    """
    new: list[Milestone] = []
    mask = celebrated
    for bit, m in enumerate(MILESTONES):
        value = answers if m.kind == "answers" else streak
        if value >= m.n and not celebrated & (1 << bit):
            mask |= 1 << bit
            new.append(m)
    # Answer counts first (the rarer news), the biggest of them.
    best = max(new, key=lambda m: (m.kind == "answers", m.n), default=None)
    return best, mask


@dataclass(frozen=True)
class Contribution:
    """One member's quality-weighted work: answers that agreed with the verdict or with gold."""

    key: str
    name: str
    shown: bool  # they opted in to appear by name
    agreed: int  # answers on settled items equal to the verdict
    gold_correct: int
    answers: int  # answers in all (a tie-breaker only: volume never ranks on its own)

    @property
    def score(self) -> int:
        """What the board ranks by."""
        return self.agreed + self.gold_correct


@dataclass(frozen=True)
class Place:
    """A ranked contribution: equal scores share a place (1, 2, 2, 4)."""

    place: int
    who: Contribution


def ranking(rows: Iterable[Contribution]) -> list[Place]:
    """The board: highest score first; equal scores share a place, fewer answers listed first.

    Listing the more economical of two equal scores first means careless volume never helps.
    """
    ordered = sorted(rows, key=lambda c: (-c.score, c.answers, c.key))
    out: list[Place] = []
    for i, c in enumerate(ordered):
        same = out and out[-1].who.score == c.score
        out.append(Place(out[-1].place if same else i + 1, c))
    return out


def place_of(board: Sequence[Place], key: str) -> Place | None:
    """Where one person stands on a board (None when they are not on it)."""
    return next((p for p in board if p.who.key == key), None)


def visible(c: Contribution) -> Contribution:
    """A contribution as others see it: the name only when its owner opted in."""
    return c if c.shown else replace(c, name="")


def pulled(open_reports: int, quorum: int) -> bool:
    """Whether an item's reports take it out of the queue until a coordinator decides."""
    return open_reports >= quorum
