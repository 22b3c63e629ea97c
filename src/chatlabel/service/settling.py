"""Scoring answers against gold, suspensions and verdicts: what an answer sets off."""

from __future__ import annotations

import sqlite3
from typing import Any

from ..config import Project
from ..core.assignment import MemberRecord
from ..core.gold import reliability_weight
from ..core.model import Rules, Vote
from ..core.routing import SUGGESTION_VOTER, as_stored, suggestion_votes
from ..core.suspension import Conduct, Reason, suspension
from ..core.verdict import decide, stranded
from ..storage import repo
from .shared import Row, Shared


class Settling:
    """Quality counters, suspensions and verdicts, inside the transaction of what set them off."""

    def __init__(self, shared: Shared) -> None:
        self.s = shared

    def score(
        self,
        conn: sqlite3.Connection,
        r: Row,
        rules: Rules,
        project: Project,
        value: str,
        correct: bool | None,
        seconds: float,
        now: float,
        m: Row | None = None,
        count_answer: bool = False,
        check: bool = False,
        also: dict[str, object] | None = None,
    ) -> Reason | None:
        """Update quality counters for one answer; returns why it suspends its author, if so.

        `m`: the author's membership row as the caller read it in this transaction;
        `count_answer`: add the answer to their count in the same UPDATE (one statement, not
        three: on PostgreSQL each is a round trip and a row version); `also`: other columns of
        that row to set in the same statement (activity and streak). A `check` (yes or no to
        a suggestion) is judged by gold only: a run of "yes" to a good model's suggestions is
        no sign of carelessness, and a quick yes is what a check is.
        """
        pid, aid = r["project_id"], r["annotator_id"]
        m = m or repo.get_member(conn, pid, aid)
        assert m is not None
        deltas: dict[str, int] = {}
        if correct is not None:
            deltas.update(gold_answers=1, gold_correct=int(correct))
            self.s.gold_scored(pid, correct)
            if m["qual_answers"] < rules.qualification:
                deltas.update(qual_answers=1, qual_correct=int(correct))
        if rules.min_seconds and seconds < rules.min_seconds and not check:
            deltas["fast_answers"] = 1
        run = m["same_run"]
        set_: dict[str, Any] = dict(also or {})
        if not check:
            run = run + 1 if m["last_label"] == value else 1
            set_.update(last_label=value, same_run=run)
        add = {**deltas, "answers": 1} if count_answer else deltas
        if set_ or add:
            repo.change_member(conn, pid, aid, set_, add)
        # The row as it is now, without reading it again: the counters plus what was added.
        now_m = {k: m[k] for k in m.keys()}  # noqa: SIM118 (rows are not dicts)
        for k, d in deltas.items():
            now_m[k] += d
        # The relative gate's bar moves with the crowd, so it is read when gold is scored.
        crowd = self.s.crowd(conn, pid) if correct is not None else None
        conduct = Conduct(
            member=member_record(now_m),
            qualifying=bool(deltas.get("qual_answers")),
            scored=correct is not None,
            same_run=run if not check else 0,
            fast_answers=now_m["fast_answers"],
            crowd=crowd,
        )
        reason = suspension(rules, conduct)
        if reason is not None:
            self.suspend(conn, pid, aid, reason, now)
        return reason

    def suspend(
        self, conn: sqlite3.Connection, pid: int, aid: int, reason: Reason, now: float
    ) -> None:
        """Stop giving someone work: their open items go back, their open votes stop counting."""
        self.s.pooled.pop(pid, None)
        repo.update_member(
            conn, pid, aid, status="suspended", reason=reason.encode(), waiting=0, suspended_at=now
        )
        repo.release_assignments(conn, aid)
        rules = self.s.rules[self.s.names[pid]]
        # Their votes on unsettled items stop counting; those items reopen for others.
        reopened = repo.uncount_open_answers(conn, pid, aid)
        # And undecided items only they could still have answered go to the experts.
        for item_id in sorted({*reopened, *repo.undecided_items(conn, pid, rules.overlap)}):
            repo.lock_item(conn, item_id)  # in id order: two suspensions cannot deadlock
            self.settle(conn, pid, item_id, rules, now)
        self.s.notify()

    def weights(
        self, conn: sqlite3.Connection, pid: int, rules: Rules, ids: list[int]
    ) -> dict[int | None, float]:
        """Vote weights of these annotators, from their gold accuracy (weighted methods).

        Under None: a voter who is nobody (a rejected check's suggestion) weighs like the
        project's average annotator, one ordinary vote.
        """
        n = len(rules.choices) or 2
        # Unscored annotators weigh like this project's average one, not a fixed guess.
        prior = self.s.crowd(conn, pid)
        out: dict[int | None, float] = {None: reliability_weight(0, 0, n, prior)}
        for g in repo.gold_counts(conn, pid, ids) if ids else ():
            out[int(g["annotator_id"])] = reliability_weight(
                g["gold_correct"], g["gold_answers"], n, prior
            )
        return out

    def stands_in(self, name: str) -> bool:
        """Whether a rejected check's suggestion keeps a vote in this project (it has a model
        and two labels: core.routing.suggestion_votes)."""
        project = self.s.projects[name]
        return project.model is not None and suggestion_votes(len(self.s.rules[name].choices))

    def settle(
        self, conn: sqlite3.Connection, pid: int, item_id: int, rules: Rules, now: float
    ) -> None:
        """Recompute an item's verdict from its counted votes (the caller holds the item row)."""
        rows = repo.item_votes(conn, item_id, self.stands_in(self.s.names[pid]))
        votes = [Vote(r["key"] or SUGGESTION_VOTER, r["value"], bool(r["expert"])) for r in rows]
        weights = None
        if rules.method != "majority" and rows:
            ids = [r["annotator_id"] for r in rows if r["annotator_id"] is not None]
            by_id = self.weights(conn, pid, rules, ids)
            weights = {
                vote.annotator: by_id.get(r["annotator_id"], 1.0)
                for vote, r in zip(votes, rows, strict=True)
            }
        v = decide(rules, votes, weights)
        if (gave_up := stranded(rules, v)) is not None and not repo.anyone_left(conn, pid, item_id):
            v = gave_up
        v = as_stored(v, sum(r["key"] is None for r in rows))
        repo.save_verdict(
            conn,
            item_id,
            status=v.status,
            label=v.label if v.settled else None,
            confidence=v.confidence,
            votes=v.votes,
            n_answers=v.n_answers,
            method=v.method,
            needed=v.needed,
            now=now,
        )


def member_record(m: Row | dict[str, Any]) -> MemberRecord:
    """The policy's view of a member row."""
    return MemberRecord(
        answers=m["answers"],
        gold_answers=m["gold_answers"],
        gold_correct=m["gold_correct"],
        qualification_answers=m["qual_answers"],
        qualification_correct=m["qual_correct"],
    )
