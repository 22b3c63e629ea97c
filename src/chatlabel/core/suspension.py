"""Why someone stops getting work: the suspension rules and the reason they leave behind."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from .assignment import MemberRecord, failed_qualification, should_suspend
from .model import Rules

# Fast answers only count once there are this many: one quick answer says nothing.
MIN_FAST_ANSWERS = 5


@dataclass(frozen=True)
class Reason:
    """Why someone was suspended, as data: a code and its figures (people read it worded).

    Codes: `qualification` (n, min), `gold` (min), `same_run` (n), `too_fast` (seconds),
    `by_coordinator`, and `text` (text) for a reason stored by an older chatlabel.
    """

    code: str
    params: dict[str, float | int | str] = field(default_factory=dict)

    def encode(self) -> str:
        """The stored form (JSON)."""
        return json.dumps({"code": self.code, **self.params}, sort_keys=True)

    @staticmethod
    def decode(raw: str | None) -> Reason | None:
        """A stored reason back (plain text from an older version becomes a `text` reason)."""
        if not raw:
            return None
        if raw.startswith("{"):
            try:
                data = json.loads(raw)
                return Reason(str(data.pop("code")), data)
            except (ValueError, KeyError, AttributeError):
                pass
        return Reason("text", {"text": raw})


@dataclass(frozen=True)
class Conduct:
    """What an answer adds to the picture of how someone labels."""

    member: MemberRecord  # counters after this answer
    qualifying: bool  # the answer was one of their qualification gold items
    scored: bool  # the answer was scored against gold
    same_run: int  # identical labels in a row, this one included
    fast_answers: int  # answers faster than the project's min_seconds so far


def suspension(rules: Rules, c: Conduct) -> Reason | None:
    """Why this answer gets its author suspended (None: they carry on)."""
    if c.qualifying and failed_qualification(rules, c.member):
        return Reason("qualification", {"n": rules.qualification, "min": rules.min_gold_accuracy})
    if c.scored and should_suspend(rules, c.member):
        return Reason("gold", {"min": rules.min_gold_accuracy})
    if rules.max_same_run and c.same_run >= rules.max_same_run:
        return Reason("same_run", {"n": c.same_run})
    if (
        rules.min_seconds
        and c.fast_answers >= MIN_FAST_ANSWERS
        and c.fast_answers * 2 >= c.member.answers + 1
    ):
        # Most answers too fast: a careless clicker, not one quick person.
        return Reason("too_fast", {"seconds": rules.min_seconds})
    return None
