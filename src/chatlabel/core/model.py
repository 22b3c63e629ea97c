"""Dataclasses the pure core works on: a project's rules, votes and verdicts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["single", "multi", "rating", "verify", "text"]
Method = Literal["majority", "weighted", "dawid-skene"]
Status = Literal["pending", "resolved", "escalated"]

VERIFY_LABELS = ("yes", "no")

# The fields of a new item, in the order the importer builds its rows and storage inserts them.
ITEM_FIELDS = (
    "project_id",
    "ext_id",
    "text",
    "media_kind",
    "media_path",
    "context",
    "gold",
    "gold_reason",
    "suggestion",
    "boxes",
    "meta",
    "needed",
    "seq",
    "created_at",
)


@dataclass(frozen=True)
class Rules:
    """The labeling rules of one project, as the core needs them."""

    kind: Kind = "single"
    labels: tuple[str, ...] = ()
    overlap: int = 3
    max_overlap: int = 5
    agreement: float = 0.6
    method: Method = "majority"
    # Dynamic overlap: stop collecting once the verdict's confidence reaches this (None = off).
    confidence_target: float | None = None
    min_answers: int = 2
    qualification: int = 4
    gold_rate: float = 0.1
    min_gold_accuracy: float = 0.7
    # Confidence level of the bound used to suspend (0.95 = suspend when 95 % sure).
    suspend_confidence: float = 0.95
    min_seconds: float = 0.0  # answers faster than this count as careless (0: off)
    max_same_run: int = 0  # this many identical labels in a row is careless (0: off)

    @property
    def choices(self) -> tuple[str, ...]:
        """The labels a vote may take (yes/no for verification tasks)."""
        return VERIFY_LABELS if self.kind == "verify" else self.labels


@dataclass(frozen=True)
class Vote:
    """One non-gold answer that counts toward an item's verdict."""

    annotator: str
    value: str  # canonical value: a label, a JSON list for multi, a number for rating, text
    expert: bool = False


@dataclass(frozen=True)
class Verdict:
    """The aggregated label of one item."""

    status: Status
    label: str | None
    confidence: float
    votes: dict[str, float] = field(default_factory=dict)
    n_answers: int = 0
    method: str = "majority"
    needed: int = 0  # answers the item should have in total (grows while undecided)

    @property
    def settled(self) -> bool:
        """True once the item needs no more crowd answers."""
        return self.status != "pending"
