"""Verdicts: how an item's votes become a label, and whether it needs more answers."""

from __future__ import annotations

import json
import math
import re
import statistics
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence

from .model import Rules, Verdict, Vote

_SPACE = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Canonical form of a free-text answer so trivially different spellings vote together."""
    text = unicodedata.normalize("NFKC", text).casefold().strip()
    text = _SPACE.sub(" ", text)
    return text.strip(" .,;:!?\"'")


def _tally(
    votes: Sequence[Vote], weights: Mapping[str, float] | None, text: bool = False
) -> dict[str, float]:
    counts: dict[str, float] = {}
    for v in votes:
        w = 1.0 if weights is None else weights.get(v.annotator, 1.0)
        key = normalize_text(v.value) if text else v.value
        counts[key] = counts.get(key, 0.0) + w
    return counts


def _leader(
    counts: Mapping[str, float], order: Sequence[str] = ()
) -> tuple[str | None, float, bool]:
    """The leading value, its share of the total, and whether it is tied with another."""
    if not counts:
        return None, 0.0, False
    # Tie rule: the tied value listed first in `order` (the project's labels) leads, then the
    # alphabetically first; a tie still never resolves an item (see decide).
    rank = {v: i for i, v in enumerate(order)}
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], rank.get(kv[0], len(rank)), kv[0]))
    total = sum(counts.values())
    top, top_n = ranked[0]
    tied = len(ranked) > 1 and math.isclose(ranked[1][1], top_n)
    return top, (top_n / total if total > 0 else 0.0), tied


def _posterior(counts: Mapping[str, float], n_choices: int) -> float:
    """Posterior of the leader when counts are summed log-odds weights (one-coin model)."""
    if not counts:
        return 0.0
    top = max(counts.values())
    unseen = max(n_choices - len(counts), 0)
    z = sum(math.exp(c - top) for c in counts.values()) + unseen * math.exp(-top)
    return 1.0 / z


def _multi(votes: Sequence[Vote], rules: Rules) -> tuple[str, float, dict[str, float], bool]:
    """Per-label vote for multi-choice items: a label is in when most voters chose it."""
    n = len(votes)
    chosen: Counter[str] = Counter()
    for v in votes:
        chosen.update(set(json.loads(v.value)))
    shares = {lab: chosen[lab] / n for lab in rules.labels}
    label = json.dumps([lab for lab in rules.labels if shares[lab] > 0.5])
    confidence = min((max(s, 1 - s) for s in shares.values()), default=1.0)
    tied = any(math.isclose(s, 0.5) for s in shares.values())
    return label, confidence, {k: float(c) for k, c in chosen.items()}, tied


def _rating(votes: Sequence[Vote]) -> tuple[str, float, dict[str, float], bool]:
    """Median rating; confidence is the share of votes within one point of it."""
    values = [float(v.value) for v in votes]
    med = statistics.median_low(values)
    near = sum(1 for x in values if abs(x - med) <= 1) / len(values)
    counts = {k: float(c) for k, c in Counter(v.value for v in votes).items()}
    label = str(int(med)) if med.is_integer() else str(med)
    return label, near, counts, False


def _settle_expert(experts: Sequence[Vote], n: int, counts: dict[str, float]) -> Verdict:
    # The most recent expert answer settles the item: experts are the last word by design.
    return Verdict("resolved", experts[-1].value, 1.0, counts, n, "expert", n)


def decide(
    rules: Rules, votes: Sequence[Vote], weights: Mapping[str, float] | None = None
) -> Verdict:
    """The verdict of one item from its votes (gold answers never reach here)."""
    crowd = [v for v in votes if not v.expert]
    experts = [v for v in votes if v.expert]
    n = len(crowd)
    method = rules.method if rules.method != "dawid-skene" else "weighted"
    use_weights = weights if method == "weighted" else None
    if not crowd and not experts:
        return Verdict("pending", None, 0.0, {}, 0, method, rules.overlap)

    if rules.kind == "multi":
        label, confidence, counts, tied = _multi(crowd, rules) if crowd else ("[]", 0.0, {}, True)
        decided = not tied and confidence >= rules.agreement
    elif rules.kind == "rating":
        label, confidence, counts, tied = _rating(crowd) if crowd else ("", 0.0, {}, True)
        decided = confidence >= rules.agreement
    else:
        counts = _tally(crowd, use_weights, text=rules.kind == "text")
        leader, share, tied = _leader(counts, rules.choices)
        label = leader or ""
        if use_weights is not None:
            confidence = _posterior(counts, len(rules.choices) or len(counts))
        else:
            confidence = share
        decided = leader is not None and not tied and share >= rules.agreement
        if use_weights is not None:
            counts = _tally(crowd, None, text=rules.kind == "text")  # report counts, not weights

    if experts:
        return _settle_expert(experts, n, counts)

    target = rules.confidence_target
    if target is None:
        done = decided and n >= rules.overlap
    else:
        # Dynamic overlap: confidence alone ends collection, as early as min_answers and as
        # late as max_overlap; `overlap` is then only how many answers are sought at first.
        done = decided and n >= rules.min_answers and confidence >= target
    if done:
        return Verdict("resolved", label, confidence, counts, n, method, n)
    if n < rules.overlap:
        return Verdict("pending", label, confidence, counts, n, method, rules.overlap)
    if n < rules.max_overlap:
        return Verdict("pending", label, confidence, counts, n, method, n + 1)
    return Verdict("escalated", label, confidence, counts, n, method, n)


def stranded(rules: Rules, v: Verdict) -> Verdict | None:
    """The verdict if no one who could still answer is left: None unless it should escalate.

    An item that got its planned answers and is still undecided goes to the experts rather than
    waiting for a newcomer who may never come (three staffers who split three ways). One short
    of its planned answers keeps waiting: a young project's crowd is still growing.
    """
    if v.status != "pending" or v.n_answers < rules.overlap:
        return None
    return Verdict("escalated", v.label, v.confidence, v.votes, v.n_answers, v.method, v.n_answers)
