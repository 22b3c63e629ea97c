"""What the service hands to transports: platform-neutral results of each use case."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class UserRef:
    """One person on one platform, as a transport sees them."""

    platform: str
    user_id: str
    name: str = ""
    address: str | None = None  # where to send them messages (chat id, DM channel)

    @property
    def key(self) -> str:
        """The stable `platform:user` key."""
        return f"{self.platform}:{self.user_id}"


@dataclass(frozen=True)
class ProjectInfo:
    """A project as shown to people."""

    name: str
    title: str
    instructions: str
    kind: str
    labels: tuple[str, ...]


@dataclass(frozen=True)
class Media:
    """A media file attached to an item."""

    kind: str  # image | audio | video
    path: str


@dataclass(frozen=True)
class Task:
    """An item leased to an annotator, ready to be shown."""

    assignment_id: int
    project: ProjectInfo
    item_id: str
    text: str | None
    context: str | None
    media: Media | None
    suggestion: str | None
    boxes: list[dict[str, object]] | None
    choices: tuple[str, ...]  # the buttons: labels, yes/no, or a rating scale
    selected: tuple[str, ...]  # multi: current selection
    expires_at: float
    answered: int  # how many this annotator has answered in the project


IdleReason = Literal["no_work", "paused", "project_paused", "suspended", "not_joined", "blocked"]


@dataclass(frozen=True)
class Idle:
    """Nothing to show right now, and why."""

    reason: IdleReason
    message: str


# Why a join was refused, where the transports word it themselves (more to come: the
# other refusals still carry their sentence in `message`).
JoinRefusal = Literal["too_many_attempts"]


@dataclass(frozen=True)
class JoinResult:
    """The outcome of /start."""

    status: Literal["joined", "choose", "refused"]
    message: str
    project: ProjectInfo | None = None
    choices: tuple[ProjectInfo, ...] = ()
    role: str = "annotator"
    reason: JoinRefusal | None = None


@dataclass(frozen=True)
class Feedback:
    """What a missed gold item should have been."""

    expected: str
    reason: str | None


OutcomeStatus = Literal["recorded", "duplicate", "stale", "forbidden", "invalid"]


@dataclass(frozen=True)
class Outcome:
    """The result of an answer, skip, toggle or undo."""

    status: OutcomeStatus
    message: str  # short, for a toast or an ephemeral note
    choice: str = ""  # the recorded choice in human form
    answer_id: int | None = None
    undo_until: float | None = None
    feedback: Feedback | None = None
    suspended: str | None = None  # why the annotator was just suspended
    task: Task | None = None  # toggle: the updated task; undo: the task to answer again
    next: Task | Idle | None = None  # answer/skip with then_next: what to show next

    @property
    def ok(self) -> bool:
        """True when something changed."""
        return self.status == "recorded"


@dataclass(frozen=True)
class Push:
    """An item to push to someone who was waiting for work."""

    user: UserRef
    task: Task


@dataclass(frozen=True)
class MyStats:
    """An annotator's own figures."""

    project: str
    answers: int
    skips: int
    gold_answers: int
    gold_accuracy: float | None
    accuracy_low: float | None
    accuracy_high: float | None
    rank: int
    of: int
    status: str
    reason: str | None


@dataclass(frozen=True)
class Progress:
    """A project's progress for coordinators."""

    project: str
    title: str
    items: int
    gold_items: int
    resolved: int
    escalated: int
    pending: int
    answers: int
    answers_last_hour: int
    annotators_active: int
    annotators_total: int
    suspended: int
    eta_seconds: float | None
    labels: dict[str, int] = field(default_factory=dict)
    timeline: list[tuple[float, int]] = field(default_factory=list)
    paused: bool = False


@dataclass(frozen=True)
class AnnotatorRow:
    """One line of the annotator table."""

    key: str
    name: str
    role: str
    status: str
    answers: int
    skips: int
    gold_answers: int
    gold_accuracy: float | None
    accuracy_low: float | None
    accuracy_high: float | None
    median_seconds: float | None
    reason: str | None


@dataclass(frozen=True)
class Disagreement:
    """An item the crowd does not agree on."""

    item_id: str
    text: str | None
    status: str
    votes: dict[str, float]
    confidence: float
