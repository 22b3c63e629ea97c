"""What the service hands out about volunteers: /me, the board, bulk sends, reports on items."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ..core.suspension import Reason
from .types import UserRef

# Why someone reports an item (stored as they are; the catalog words them).
REPORT_REASONS = ("broken", "offensive", "unclear", "other")
# Why someone skipped an item; the ones that are also report reasons file a report too.
SKIP_REASONS = ("unsure", "unclear", "broken", "offensive")

OutboxKind = Literal["reminder", "announcement", "announced", "digest", "pulled", "model_off"]


@dataclass(frozen=True)
class MeFigures:
    """A member's own figures in their current project (/me)."""

    project: str
    answers: int
    skips: int
    gold_answers: int
    gold_accuracy: float | None
    accuracy_low: float | None
    accuracy_high: float | None
    settled: int  # their answers on resolved items
    agreed: int  # of those, the ones equal to the verdict
    days_active: int
    streak: int  # days in a row up to today (or yesterday)
    best_streak: int
    share: float | None  # their part of all answers in the project
    place: int | None  # on the leaderboard, when the project has one
    of: int | None
    on_board: bool  # they chose to appear by name
    muted: bool
    status: str
    reason: Reason | None


@dataclass(frozen=True)
class BoardLine:
    """One line of /top: a place, a name ('' when its owner did not opt in), a score."""

    place: int
    name: str
    score: int
    you: bool = False


@dataclass(frozen=True)
class Board:
    """The project's leaderboard as one person sees it."""

    project: str
    enabled: bool
    lines: tuple[BoardLine, ...] = ()
    you: BoardLine | None = None  # where the asker stands (None: not on it yet)
    total: int = 0
    on_board: bool = False


@dataclass(frozen=True)
class OutboxItem:
    """One message of a bulk send to one person, as data: the conversation words it."""

    id: int
    kind: OutboxKind
    user: UserRef
    project: str | None
    payload: Mapping[str, Any] = field(default_factory=dict)
    text: str = ""  # an announcement's own text
    announcement_id: int | None = None
    claimed_at: float | None = None

    @property
    def handle(self) -> str:
        """A platform-side idempotency handle: where a platform can store it with the message,
        a restart can tell whether the message went out."""
        return f"outbox-{self.id}"


@dataclass(frozen=True)
class Announcement:
    """An announcement and how far its sending got."""

    id: int
    project: str
    author: str
    text: str
    state: str  # draft | sending | done | cancelled
    audience: int = 0  # people it goes (or went) to
    sent: int = 0
    pending: int = 0
    failed: int = 0
    cancelled: int = 0


@dataclass(frozen=True)
class HeldItem:
    """An item out of the queue because people reported it, waiting for a coordinator."""

    id: int  # the item's row id (buttons carry it)
    item_id: str
    project: str
    text: str | None
    reports: int
    reasons: tuple[tuple[str, int], ...]
    comments: tuple[str, ...]


@dataclass(frozen=True)
class Decision:
    """What a coordinator's Restore or Remove did."""

    status: Literal["restored", "removed", "not_held", "unknown"]
    item_id: str = ""
    project: str = ""


@dataclass(frozen=True)
class Saved:
    """What became of a comment on an item."""

    status: Literal["saved", "duplicate", "no_item"]
    item_id: str = ""


@dataclass(frozen=True)
class Tick:
    """What one round of the scheduler queued."""

    reminders: int = 0
    digests: int = 0


@dataclass(frozen=True)
class ReportedItem:
    """An item people reported, for the coordinators' HTML report."""

    item_id: str
    text: str | None
    status: str  # the item's status now: held, removed, pending, resolved...
    reports: int
    reasons: tuple[str, ...]
    decision: str | None  # restored | removed, None while waiting
