"""Routing by suggestion: a confident item costs one yes/no check, a sample of them is audited
with full overlap, and the model is scored like an annotator (no I/O).

An item's route, as stored: None (ordinary overlap), "check" (one person confirms or rejects
the suggestion), "audit" (confident, but given full overlap to measure the model), and after
its check "verified" (a yes settled it) or "rejected" (a no sent it to ordinary overlap).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Literal

from .gold import confidently_below
from .model import Verdict

Route = Literal["check", "audit", "verified", "rejected"]


@dataclass(frozen=True)
class Routing:
    """A project's routing rules, as the core needs them."""

    threshold: float  # a suggestion scored at least this is confident
    audit_rate: float  # share of confident items that still get full overlap
    uncertain_first: bool = False  # serve the least certain items first


def audit_draw(item_id: int) -> float:
    """A uniform number in [0, 1) fixed per item, so a re-suggested item keeps its audit fate."""
    # A hash, not a random draw: the same item is audited (or not) whichever model scores it,
    # and a restart or a retrain cannot reshuffle which confident items are measured.
    digest = hashlib.blake2b(item_id.to_bytes(8, "little", signed=True), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64


def route_for(routing: Routing | None, score: float | None, draw: float) -> Route | None:
    """The route of an untouched item with this suggestion score (None: ordinary overlap)."""
    if routing is None or score is None or score < routing.threshold:
        return None
    return "audit" if draw < routing.audit_rate else "check"


# A rejected check's suggestion among an item's voters (annotator keys are "platform:uid").
SUGGESTION_VOTER = "suggestion"


def suggestion_votes(n_labels: int) -> bool:
    """Whether a rejected check's suggestion keeps a vote of its own: on two labels only.

    There the "no" is a vote for the other label, so the suggestion against it is a tie that
    the next person breaks: one more answer, not the full overlap. The model only routes what
    it is sure of while its gold record keeps routing on, so its vote is worth at least a third
    person's (bench/model.py measures both). Among more labels a "no" names no label: the item
    gets its full overlap of people.
    """
    return n_labels == 2


def as_stored(v: Verdict, stand_ins: int) -> Verdict:
    """The verdict as stored: a suggestion's vote is in its tally but is nobody's answer."""
    if not stand_ins:
        return v
    return replace(v, n_answers=v.n_answers - stand_ins, needed=max(v.needed - stand_ins, 0))


def needed_for(route: Route | None, overlap: int) -> int:
    """Answers an item on this route should get: one check, or the project's overlap."""
    return 1 if route == "check" else overlap


def certainty_key(routing: Routing | None, score: float | None) -> float:
    """Where an item sorts among equally full ones: its score when uncertain-first, else 0."""
    if routing is None or not routing.uncertain_first or score is None:
        return 0.0
    return score


def check_confidence(score: float, checker: float, n_labels: int) -> float:
    """How sure a verified item is: the model's score updated by one person's "yes".

    A person of accuracy `checker` says yes to a right suggestion with that probability and to
    a wrong one when they would have given that wrong label, (1 - checker) / (k - 1).
    """
    k = max(n_labels, 2)
    s = min(max(score, 0.0), 1.0)
    a = min(max(checker, 1e-3), 1 - 1e-3)
    right = s * a
    wrong = (1 - s) * (1 - a) / (k - 1)
    return right / (right + wrong) if right + wrong > 0 else 0.0


def routing_stops(hits: int, scored: int, min_accuracy: float, confidence: float) -> bool:
    """True when the model's record on gold and audits is confidently below `min_accuracy`.

    The annotators' rule: a few unlucky misses never switch routing off.
    """
    return confidently_below(hits, scored, min_accuracy, confidence)
