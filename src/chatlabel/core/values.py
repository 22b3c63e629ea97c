"""Answer values: the canonical form of each kind's answers and how they match gold."""

from __future__ import annotations

import json
from collections.abc import Sequence

from .model import Rules
from .verdict import normalize_text

MAX_TEXT_ANSWER = 2000


def canonical(rules: Rules, raw: str | Sequence[str]) -> str:
    """The stored form of an answer or gold value; ValueError says what is wrong with it."""
    if rules.kind == "multi":
        chosen = json.loads(raw) if isinstance(raw, str) and raw.startswith("[") else raw
        if isinstance(chosen, str):
            chosen = [c for c in chosen.split("|") if c]
        unknown = [c for c in chosen if c not in rules.labels]
        if unknown:
            raise ValueError(f"unknown label {unknown[0]!r} (labels: {', '.join(rules.labels)})")
        return json.dumps([lab for lab in rules.labels if lab in set(chosen)])
    if not isinstance(raw, str):
        raise ValueError("expected a single value, not a list")
    value = raw.strip()
    if rules.kind == "text":
        if not value:
            raise ValueError("empty answer")
        return value[:MAX_TEXT_ANSWER]
    if rules.kind == "verify":
        low = value.lower()
        if low in ("yes", "true", "1", "y"):
            return "yes"
        if low in ("no", "false", "0", "n"):
            return "no"
        raise ValueError(f"expected yes or no, got {raw!r}")
    if value not in rules.labels:
        raise ValueError(f"unknown label {raw!r} (labels: {', '.join(rules.labels)})")
    return value


def matches_gold(rules: Rules, value: str, gold: str) -> bool:
    """True when an answer agrees with an item's gold value."""
    if rules.kind == "text":
        return normalize_text(value) == normalize_text(gold)
    return value == gold
