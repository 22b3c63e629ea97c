"""Assignment policy: when a person gets gold, whether they are admitted, and lease timing."""

from __future__ import annotations

from dataclasses import dataclass

from .gold import confidently_below
from .model import Rules


@dataclass(frozen=True)
class MemberRecord:
    """What the policy needs to know about one annotator in one project."""

    answers: int = 0  # non-skip answers, gold included
    gold_answers: int = 0
    gold_correct: int = 0
    qualification_answers: int = 0
    qualification_correct: int = 0


def in_qualification(rules: Rules, m: MemberRecord) -> bool:
    """True while a newcomer still has qualification gold items to answer."""
    return m.qualification_answers < rules.qualification


def wants_gold(rules: Rules, m: MemberRecord, draw: float) -> bool:
    """Whether the next item should be gold; `draw` is a uniform random number in [0, 1)."""
    if in_qualification(rules, m):
        return True
    return draw < rules.gold_rate


def failed_qualification(rules: Rules, m: MemberRecord) -> bool:
    """True once a newcomer's qualification answers fall below the required accuracy."""
    if rules.qualification == 0 or m.qualification_answers < rules.qualification:
        return False
    return m.qualification_correct / m.qualification_answers < rules.min_gold_accuracy


def should_suspend(rules: Rules, m: MemberRecord) -> bool:
    """True when the annotator's gold accuracy is confidently below the project's minimum."""
    return confidently_below(
        m.gold_correct, m.gold_answers, rules.min_gold_accuracy, rules.suspend_confidence
    )


def lease_deadline(now: float, lease_seconds: int) -> float:
    """When an assignment handed out at `now` expires and its item returns to the pool."""
    return now + lease_seconds


def can_undo(answered_at: float, now: float, undo_seconds: int) -> bool:
    """True while an answer may still be taken back."""
    return 0 <= now - answered_at <= undo_seconds
