"""The pure rules of suggestions and the quality gate: routing, checks, the model's record,
who may check, and the bar relative to what the task allows (no I/O, no event loop)."""

from __future__ import annotations

import random

import pytest

from chatlabel.core.assignment import (
    MemberRecord,
    chance_accuracy,
    gate_threshold,
    may_check,
    should_suspend,
)
from chatlabel.core.model import Rules, Vote
from chatlabel.core.routing import (
    SUGGESTION_VOTER,
    Routing,
    as_stored,
    audit_draw,
    certainty_key,
    check_confidence,
    needed_for,
    route_for,
    routing_stops,
    suggestion_votes,
)
from chatlabel.core.suspension import Conduct, Reason, suspension
from chatlabel.core.verdict import decide

ROUTING = Routing(threshold=0.9, audit_rate=0.1)


def test_confident_suggestions_route_to_one_check_or_an_audit() -> None:
    assert route_for(ROUTING, 0.95, draw=0.5) == "check"
    assert route_for(ROUTING, 0.9, draw=0.5) == "check"  # at the threshold counts
    assert route_for(ROUTING, 0.95, draw=0.05) == "audit"
    assert route_for(ROUTING, 0.89, draw=0.5) is None
    assert route_for(ROUTING, None, draw=0.5) is None  # a suggestion without a score
    assert route_for(None, 0.99, draw=0.5) is None  # no routing (none configured, or off)
    assert needed_for("check", 3) == 1
    assert needed_for("audit", 3) == needed_for(None, 3) == 3


def test_a_rejected_suggestion_and_the_no_tie_and_one_more_person_breaks_it() -> None:
    assert suggestion_votes(2) and not suggestion_votes(3)  # a no names a label only of two
    rules = Rules(labels=("ham", "spam"), overlap=3, max_overlap=3)
    model, no = Vote(SUGGESTION_VOTER, "spam"), Vote("t:1", "ham")
    tie = as_stored(decide(rules, [model, no]), 1)
    assert (tie.status, tie.n_answers, tie.needed) == ("pending", 1, 2)  # one person more
    for third, label in (("spam", "spam"), ("ham", "ham")):
        v = as_stored(decide(rules, [model, no, Vote("t:2", third)]), 1)
        assert (v.status, v.label, v.n_answers, v.needed) == ("resolved", label, 2, 2)
        assert v.votes == {"spam": 2.0, "ham": 1.0} if label == "spam" else {"ham": 2, "spam": 1}
    alone = decide(rules, [no, Vote("t:2", "ham")])
    assert as_stored(alone, 0) == alone  # no suggestion among the votes: nothing to take off


def test_the_audit_draw_is_fixed_per_item_and_uniform() -> None:
    assert audit_draw(42) == audit_draw(42)
    draws = [audit_draw(n) for n in range(20_000)]
    assert all(0 <= d < 1 for d in draws)
    share = sum(d < 0.1 for d in draws) / len(draws)
    assert 0.09 < share < 0.11  # audit_rate 0.1 audits about a tenth
    assert abs(sum(draws) / len(draws) - 0.5) < 0.01


def test_uncertain_first_orders_by_score_only_when_asked() -> None:
    assert certainty_key(ROUTING, 0.7) == 0.0
    first = Routing(0.9, 0.1, uncertain_first=True)
    assert certainty_key(first, 0.7) == 0.7 and certainty_key(first, None) == 0.0
    assert certainty_key(first, 0.6) < certainty_key(first, 0.99)  # less certain, sooner


def test_a_yes_makes_a_verified_item_surer_than_the_model_alone() -> None:
    for score in (0.8, 0.9, 0.99):
        for checker in (0.7, 0.9):
            after = check_confidence(score, checker, 2)
            assert score < after < 1
    assert check_confidence(0.9, 0.95, 2) > check_confidence(0.9, 0.7, 2)  # better checker
    # With more labels a wrong suggestion is less likely to be confirmed by mistake.
    assert check_confidence(0.9, 0.8, 4) > check_confidence(0.9, 0.8, 2)
    assert check_confidence(0.9, 0.5, 2) == pytest.approx(0.9)  # a coin flip adds nothing


def test_routing_stops_only_when_confidently_below_the_bar() -> None:
    assert not routing_stops(0, 2, 0.7, 0.95)  # two misses prove nothing
    assert routing_stops(0, 6, 0.7, 0.95)
    assert not routing_stops(95, 100, 0.7, 0.95)
    assert routing_stops(55, 100, 0.7, 0.95)
    assert not routing_stops(0, 0, 0.7, 0.95)


def test_checks_go_to_people_at_least_as_good_as_the_crowd() -> None:
    assert not may_check(MemberRecord(), crowd=0.6)  # no gold answers yet: unknown
    assert may_check(MemberRecord(gold_answers=10, gold_correct=9), crowd=0.8)
    assert not may_check(MemberRecord(gold_answers=10, gold_correct=6), crowd=0.8)
    # A posterior mean, not the raw share: one lucky answer is not 100 %.
    assert not may_check(MemberRecord(gold_answers=1, gold_correct=1), crowd=0.7)


# -- the quality gate ------------------------------------------------------------------------


def four() -> Rules:
    return Rules(labels=("a", "b", "c", "d"), min_gold_accuracy=0.7)


def test_chance_depends_on_the_kind_of_task() -> None:
    assert chance_accuracy(four()) == 0.25
    assert chance_accuracy(Rules(kind="verify")) == 0.5
    assert chance_accuracy(Rules(kind="multi", labels=("a", "b", "c"))) == 0.125
    assert chance_accuracy(Rules(kind="text")) == 0.0


def test_the_relative_bar_sits_between_chance_and_the_crowd_capped_at_the_minimum() -> None:
    # A hard task: the crowd gets half right, so the bar is 37.5 %, not 70 %.
    assert gate_threshold(four(), crowd=0.5) == pytest.approx(0.375)
    # An easy two-label task: the crowd's 90 % puts the bar at the configured 70 %.
    assert gate_threshold(Rules(labels=("a", "b")), crowd=0.9) == pytest.approx(0.7)
    # A crowd at chance: nobody is confidently worse than chance, nobody is suspended.
    assert gate_threshold(four(), crowd=0.2) == pytest.approx(0.25)
    absolute = Rules(labels=("a", "b", "c", "d"), gate="absolute")
    assert gate_threshold(absolute, crowd=0.5) == 0.7
    assert gate_threshold(four(), crowd=None) == 0.7


@pytest.mark.parametrize("accuracy", [0.5, 0.55, 0.65])
def test_honest_people_on_a_hard_task_keep_working_under_the_relative_gate(
    accuracy: float,
) -> None:
    rng = random.Random(int(accuracy * 100))
    correct = sum(rng.random() < accuracy for _ in range(200))
    m = MemberRecord(answers=200, gold_answers=200, gold_correct=correct)
    assert not should_suspend(four(), m, crowd=0.55)
    # The old, absolute rule would have stopped every one of them.
    assert should_suspend(Rules(labels=four().labels, gate="absolute"), m, crowd=0.55)


def test_a_spammer_on_a_hard_task_is_suspended_with_the_figures_behind_it() -> None:
    m = MemberRecord(answers=40, gold_answers=40, gold_correct=8)  # 20 %: at chance
    reason = suspension(four(), Conduct(m, False, True, 1, 0, crowd=0.55))
    assert reason is not None and reason.code == "gold"
    assert reason.params == {"min": 0.4, "accuracy": 0.2, "n": 40, "crowd": 0.55}
    assert Reason.decode(reason.encode()) == reason


def test_qualification_turns_away_only_those_worse_than_guessing() -> None:
    def rejected(rules: Rules, right: int, crowd: float = 0.8) -> Reason | None:
        m = MemberRecord(
            answers=4, gold_answers=4, gold_correct=right,
            qualification_answers=4, qualification_correct=right,
        )  # fmt: skip
        return suspension(rules, Conduct(m, True, True, 1, 0, crowd=crowd))

    two = Rules(labels=("a", "b"), qualification=4)
    got = rejected(two, 1)  # 25 % of two labels: worse than guessing
    assert got is not None and got.code == "qualification"
    assert got.params == {"n": 4, "min": 0.5, "accuracy": 0.25}
    assert rejected(two, 2) is None  # as good as a coin: the posterior rule decides later
    # The absolute gate turns away everyone below min_gold_accuracy on the share.
    absolute = Rules(labels=("a", "b"), qualification=4, gate="absolute")
    got = rejected(absolute, 2)
    assert got is not None and got.params["min"] == 0.7
    # A hard task: one of four right is a 50 %-accurate honest person's bad luck a third of
    # the time, so it is not a reason; none right is.
    assert rejected(four(), 1, crowd=0.5) is None
    assert rejected(four(), 0, crowd=0.5) is not None
