"""What the service hands to transports: platform-neutral results of each use case."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from ..core.engagement import Milestone
from ..core.suspension import Reason


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

    @classmethod
    def from_key(cls, key: str, name: str = "", address: str | None = None) -> UserRef:
        """The person a stored `platform:user` key names."""
        platform, _, uid = key.partition(":")
        return cls(platform, uid, name, address)


@dataclass(frozen=True)
class ProjectTexts:
    """A project's own texts in one language (missing ones fall back to the config's)."""

    title: str = ""
    instructions: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)  # label value -> caption


@dataclass(frozen=True)
class ProjectInfo:
    """A project as shown to people."""

    name: str
    title: str
    instructions: str
    kind: str
    labels: tuple[str, ...]
    language: str | None = None  # the project's default language for people
    translations: Mapping[str, ProjectTexts] = field(default_factory=dict)
    max_image_side: int = 1280

    def title_in(self, lang: str) -> str:
        """The title in `lang` (the config's when there is no translation)."""
        t = self.translations.get(lang)
        return (t.title if t else "") or self.title

    def instructions_in(self, lang: str) -> str:
        """The instructions in `lang` (the config's when there is no translation)."""
        t = self.translations.get(lang)
        return (t.instructions if t else "") or self.instructions

    def caption(self, label: str, lang: str) -> str:
        """What a label is called on buttons in `lang`; the stored value never changes."""
        t = self.translations.get(lang)
        return (t.labels.get(label) if t else None) or label


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
    # A yes/no check of a confident suggestion: `project` then shows the item as a verify
    # item (its kind "verify"), and `choices` are yes and no.
    check: bool = False


IdleReason = Literal[
    "no_work",  # nothing for them now; they are told when something comes
    "paused",  # they paused themselves
    "project_paused",  # a coordinator paused the project
    "suspended",  # see `why`
    "not_joined",  # they have no project yet
    "blocked",
    "busy",  # (lease) they have an open item to answer first
    "not_needed",  # (lease) the named item does not need them
]


@dataclass(frozen=True)
class Idle:
    """Nothing to show right now, and why."""

    reason: IdleReason
    why: Reason | None = None  # suspended: the reason


Refusal = Literal[
    "invite_only",
    "allowlist_only",
    "no_projects",
    "too_many_attempts",  # invite mode: too many wrong codes lately (from them, or from all)
]


@dataclass(frozen=True)
class JoinResult:
    """The outcome of /start."""

    status: Literal["joined", "choose", "refused"]
    project: ProjectInfo | None = None
    choices: tuple[ProjectInfo, ...] = ()
    role: str = "annotator"
    refusal: Refusal | None = None


@dataclass(frozen=True)
class Feedback:
    """What a missed gold item should have been: the expected value and the item's reason."""

    expected: str
    reason: str | None


OutcomeStatus = Literal["recorded", "duplicate", "stale", "forbidden", "invalid"]
# Why an outcome is what it is (the status says whether anything changed).
Detail = Literal[
    "",
    "not_yours",  # forbidden: someone else's button
    "timed_out",  # stale: the lease ran out
    "done",  # stale: a toggle on an item already answered
    "cannot_answer",  # stale: suspended or gone since the item was shown
    "nothing_to_undo",
    "too_late",  # stale: the undo window closed
    "settled_by_expert",  # stale: too late to undo, an expert decided
    "no_text_item",  # stale: a typed message with no free-text item open
    "not_an_answer",  # stale: an edited message that was no answer
    "no_choice",  # invalid: Done with nothing chosen, or no value
    "bad_value",  # invalid: the value does not fit the project (see `problem`)
    "wrong_button",  # invalid: a toggle for a label the project lacks
]


@dataclass(frozen=True)
class Outcome:
    """The result of an answer, skip, toggle or undo."""

    status: OutcomeStatus
    detail: Detail = ""
    project: str = ""  # the project of the item
    value: str | None = None  # the recorded (canonical) value; None for a skip
    skipped: bool = False
    answer_id: int | None = None
    undo_until: float | None = None
    feedback: Feedback | None = None
    suspended: Reason | None = None  # why the annotator was just suspended
    task: Task | None = None  # answered: the item; toggle: updated; undo: to answer again
    next: Task | Idle | None = None  # answer/skip with then_next: what to show next
    problem: str = ""  # bad_value: what is wrong, for logs
    milestone: Milestone | None = None  # a milestone this answer reached
    reason: str | None = None  # a skip's reason (a report's, when it reported the item)
    reported: bool = False  # the skip reported the item to the coordinators
    held: bool = False  # ... and took it out of the queue (the report quorum was reached)

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
    reason: Reason | None


@dataclass(frozen=True)
class Disagreement:
    """An item the crowd does not agree on."""

    item_id: str
    text: str | None
    status: str
    votes: dict[str, float]
    confidence: float


@dataclass(frozen=True)
class ModelState:
    """A project's model as coordinators see it: its version, routing and record."""

    project: str
    kind: str  # import | builtin-text | http
    version: str | None
    routing: bool  # confident items get one check (False once its record fell too low)
    reason: Reason | None  # why routing is off
    right: int  # its suggestions that matched gold or an audited verdict
    scored: int  # of how many
    trainings: int
    examples: int  # labeled items of its last training
    trained_on: int  # resolved items when it last trained
    suggested: int  # items with a scored suggestion
    verified: int  # items one check settled
    rejected: int  # items a "no" sent to ordinary overlap
    threshold: float = 0.0  # auto_threshold: a suggestion scored this or more is one check
    below_bar: bool = False  # its record is confidently below min_gold_accuracy (routing stops)


@dataclass(frozen=True)
class RoutingStopped:
    """Routing by a project's model switched itself off (reason: its record)."""

    project: str
    reason: Reason
