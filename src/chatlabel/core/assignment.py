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


# The relative gate's bar sits this far from chance toward the project's crowd: someone is
# suspended only when confidently nearer chance than the crowd. On a hard 4-label task (honest
# people at 50-65 %, the crowd near 50 %) that is about 37 %: spammers go, honest people stay.
GATE_SHARE = 0.5


def chance_accuracy(rules: Rules) -> float:
    """The gold accuracy of someone answering at random, for this kind of task."""
    if rules.kind == "text":
        return 0.0
    if rules.kind == "multi":
        return 0.5 ** len(rules.labels)  # every label ticked or not by a coin
    return 1.0 / max(len(rules.choices), 2)


def gate_threshold(rules: Rules, crowd: float | None) -> float:
    """The gold accuracy someone must not be confidently below to keep getting work.

    Relative gate: halfway between chance and `crowd` (the project's average annotator), capped
    at min_gold_accuracy, so a task where honest people score 55 % does not lose them to a
    70 % bar. Absolute gate (or no crowd figure): min_gold_accuracy.
    """
    if rules.gate == "absolute" or crowd is None:
        return rules.min_gold_accuracy
    chance = chance_accuracy(rules)
    return min(rules.min_gold_accuracy, chance + GATE_SHARE * max(crowd - chance, 0.0))


def failed_qualification(rules: Rules, m: MemberRecord, crowd: float | None = None) -> bool:
    """True once a newcomer's share right on their qualification items is too low.

    Absolute gate: below min_gold_accuracy. Relative gate: below chance (worse than guessing;
    never above the gate's bar). A handful of items cannot tell a 50 %-accurate honest person
    of a hard task from a random clicker, so only those who do worse than one are turned away
    at the door; the posterior rule (should_suspend) stops the rest once the evidence is in.
    """
    if rules.qualification == 0 or m.qualification_answers < rules.qualification:
        return False
    return m.qualification_correct / m.qualification_answers < qualification_bar(rules, crowd)


def qualification_bar(rules: Rules, crowd: float | None) -> float:
    """The share a newcomer must reach on their qualification items (see failed_qualification)."""
    if rules.gate == "absolute":
        return rules.min_gold_accuracy
    return min(chance_accuracy(rules), gate_threshold(rules, crowd))


def should_suspend(rules: Rules, m: MemberRecord, crowd: float | None = None) -> bool:
    """True when the annotator's gold accuracy is confidently below the gate's bar."""
    return confidently_below(
        m.gold_correct, m.gold_answers, gate_threshold(rules, crowd), rules.suspend_confidence
    )


def may_check(m: MemberRecord, crowd: float) -> bool:
    """Whether someone's word alone may settle a confident item (a check).

    Their gold accuracy (posterior mean, so two lucky answers prove little) must be at least
    the project's average annotator's. The others get ordinary work, and a check only when no
    such checker is around: one careless "no" costs a full overlap, one careless "yes" lets
    the model's mistake through.
    """
    if m.gold_answers == 0:
        return False
    return (m.gold_correct + 1) / (m.gold_answers + 2) >= crowd


def lease_deadline(now: float, lease_seconds: int) -> float:
    """When an assignment handed out at `now` expires and its item returns to the pool."""
    return now + lease_seconds


def can_undo(answered_at: float, now: float, undo_seconds: int) -> bool:
    """True while an answer may still be taken back."""
    return 0 <= now - answered_at <= undo_seconds
