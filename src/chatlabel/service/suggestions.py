"""Suggestions and routing: checks of confident items, routes of imported scores, a model's
output written in small transactions, its record, and routing switching itself off."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..core.model import Rules
from ..core.routing import (
    Routing,
    audit_draw,
    certainty_key,
    check_confidence,
    needed_for,
    route_for,
    routing_stops,
)
from ..core.suspension import Reason
from ..models.base import Example, ItemText, Prediction, Suggested
from ..storage import model_queries as mq
from ..storage import repo
from .shared import Row, Shared
from .types import ModelState, RoutingStopped

log = logging.getLogger("chatlabel.model")

# Suggestions written per transaction: each holds the single writer for a few milliseconds at
# most, so presses keep flowing while a model's output for thousands of items lands.
WRITE_CHUNK = 200
# How far an unscored checker's accuracy is pulled toward the crowd's (pseudo-answers).
CHECKER_PRIOR = 4


@dataclass(frozen=True)
class Work:
    """What a model round needs: what to learn from, what to predict, what it saw last time."""

    examples: list[Example]
    items: list[ItemText]
    gold: list[ItemText]
    resolved: int  # ordinary items resolved so far
    trained_on: int  # resolved items at its last training
    trainings: int


Listener = Callable[[RoutingStopped], object]


class Suggestions:
    """Use cases of suggestions and routing (the press-time ones inside a press's transaction)."""

    def __init__(self, shared: Shared) -> None:
        self.s = shared
        self._listeners: list[Listener] = []

    def models(self) -> list[str]:
        """Projects with a [model] section, in the config's order."""
        return [name for name, p in self.s.projects.items() if p.model is not None]

    async def start(self) -> None:
        """Create each model's row (routing starts on)."""
        now = self.s.clock()

        def tx(conn: sqlite3.Connection) -> None:
            for name in self.models():
                model = self.s.projects[name].model
                assert model is not None
                mq.ensure_model(conn, self.s.pids[name], model.kind, now)

        if self.models():
            await self.s.db.write(tx)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Hear when routing switches itself off; returns how to stop listening."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    # -- inside a press's transaction ------------------------------------------------------------

    def checked(
        self, conn: sqlite3.Connection, r: Row, value: str, rules: Rules, now: float
    ) -> None:
        """What a yes or no to a confident item's suggestion does: settle it, or reopen it."""
        if r["route"] != "check" or r["status"] != "pending" or r["suggestion"] is None:
            return  # routing was switched off while it was out: ordinary overlap decides
        pid, item_id = r["project_id"], r["id"]
        if value == "yes":
            m = repo.get_member(conn, pid, r["annotator_id"])
            crowd = self.s.crowd(conn, pid)
            right, seen = (m["gold_correct"], m["gold_answers"]) if m is not None else (0, 0)
            checker = (right + crowd * CHECKER_PRIOR) / (seen + CHECKER_PRIOR)
            score = r["suggestion_score"] if r["suggestion_score"] is not None else 0.5
            label = str(r["suggestion"])
            repo.save_verdict(
                conn,
                item_id,
                status="resolved",
                label=label,
                confidence=check_confidence(score, checker, len(rules.choices)),
                votes={label: 1.0},
                n_answers=1,
                method="check",
                needed=1,
                now=now,
            )
            mq.verify(conn, item_id)
            return
        mq.reject(conn, item_id, rules.overlap)
        repo.save_verdict(
            conn,
            item_id,
            status="pending",
            label=None,
            confidence=0.0,
            votes={},
            n_answers=0,
            method=rules.method if rules.method != "dawid-skene" else "weighted",
            needed=rules.overlap,
            now=now,
        )

    def undo_check(self, conn: sqlite3.Connection, item: Row) -> bool:
        """Take back what a check did to its item; False when others have built on it since."""
        route = item["route"]
        if route == "rejected" and (item["n_answers"] or item["n_leases"]):
            return False  # others are answering it now: the no stands
        if route in ("verified", "rejected"):
            pid = item["project_id"]
            row = mq.model_row(conn, pid)
            # Back to waiting for its check, unless routing is off by now: then ordinary overlap.
            on = row is None or bool(row["routing"])
            overlap = self.s.projects[self.s.names[pid]].overlap
            mq.reroute_check(conn, item["id"], None if on else overlap)
        return True

    # -- imports ---------------------------------------------------------------------------------

    def route_imported(self, conn: sqlite3.Connection, name: str, after_seq: int) -> None:
        """Route the items an import just added by their suggestions' scores; score gold ones."""
        routing = self.s.routing.get(name)
        if routing is None:
            return
        pid = self.s.pids[name]
        mq.score_imported_gold(conn, pid, after_seq)
        row = mq.model_row(conn, pid)
        on = routing if row is None or row["routing"] else None
        overlap = self.s.projects[name].overlap
        rows = []
        for item_id, score in mq.imported_scores(conn, pid, after_seq):
            route = route_for(on, score, audit_draw(item_id))
            rows.append((route, needed_for(route, overlap), certainty_key(routing, score), item_id))
        mq.route_items(conn, rows)

    # -- a model's rounds ------------------------------------------------------------------------

    async def work(self, name: str, *, learns: bool) -> Work:
        """What a model round needs; a model that does not learn gets only unsuggested items."""
        pid = self.s.pids[name]

        def q(conn: sqlite3.Connection) -> Work:
            row = mq.model_row(conn, pid)
            examples = [Example(*e) for e in mq.examples(conn, pid)] if learns else []
            fresh = not learns
            items = [ItemText(*i) for i in mq.untouched(conn, pid, unsuggested=fresh)]
            gold = [ItemText(*i) for i in mq.gold_texts(conn, pid, unsuggested=fresh)]
            return Work(
                examples,
                items,
                gold,
                mq.resolved_count(conn, pid),
                int(row["trained_on"]) if row is not None else 0,
                int(row["trainings"]) if row is not None else 0,
            )

        return await self.s.db.read(q)

    async def resolved(self, name: str) -> int:
        """Ordinary items of a project resolved so far."""
        return await self.s.db.read(mq.resolved_count, self.s.pids[name])

    async def write(
        self, name: str, suggested: Suggested, version: str, *, resolved: int | None = None
    ) -> int:
        """Store a model round's suggestions (untouched items are routed by them); how many.

        Written WRITE_CHUNK items per transaction. `resolved`: for a model that learns, the
        resolved items it was trained with (its next training counts from there).
        """
        pid = self.s.pids[name]
        routing = self.s.routing.get(name)
        overlap = self.s.projects[name].overlap
        written = 0
        items = suggested.items
        for start in range(0, len(items), WRITE_CHUNK):
            part = items[start : start + WRITE_CHUNK]
            written += await self.s.db.write(
                self._write_items, pid, part, version, routing, overlap
            )
        gold = suggested.gold
        for start in range(0, len(gold), WRITE_CHUNK):
            part = gold[start : start + WRITE_CHUNK]
            rows = [(p.label, p.score, version, p.item_id) for p in part]
            await self.s.db.write(mq.write_gold_suggestions, rows)
        now = self.s.clock()

        def done(conn: sqlite3.Connection) -> None:
            row = mq.model_row(conn, pid)
            mq.trained(
                conn,
                pid,
                version,
                suggested.examples or (row["examples"] if row is not None else 0),
                resolved if resolved is not None else (row["trained_on"] if row else 0),
                now,
                count=suggested.examples > 0,
            )

        await self.s.db.write(done)
        self.s.notify()  # new checks may be waiting for people
        return written

    @staticmethod
    def _write_items(
        conn: sqlite3.Connection,
        pid: int,
        part: Sequence[Prediction],
        version: str,
        routing: Routing | None,
        overlap: int,
    ) -> int:
        row = mq.model_row(conn, pid)
        on = routing if row is None or row["routing"] else None
        rows = []
        for p in part:
            route = route_for(on, p.score, audit_draw(p.item_id))
            rows.append(
                (
                    p.label,
                    p.score,
                    version,
                    certainty_key(routing, p.score),
                    route,
                    needed_for(route, overlap),
                    p.item_id,
                )
            )
        return mq.write_suggestions(conn, rows)

    # -- the model's record ----------------------------------------------------------------------

    async def state(self, name: str) -> ModelState | None:
        """A project's model with its record (None without a [model] section)."""
        project = self.s.projects[name]
        if project.model is None:
            return None
        pid = self.s.pids[name]

        def q(conn: sqlite3.Connection) -> ModelState:
            row = mq.model_row(conn, pid)
            right, scored = mq.record(conn, pid)
            suggested, verified, rejected = mq.suggestion_counts(conn, pid)
            assert project.model is not None
            return ModelState(
                project=name,
                kind=project.model.kind,
                version=row["version"] if row is not None else None,
                routing=bool(row["routing"]) if row is not None else True,
                reason=Reason.decode(row["reason"]) if row is not None else None,
                right=right,
                scored=scored,
                trainings=int(row["trainings"]) if row is not None else 0,
                examples=int(row["examples"]) if row is not None else 0,
                trained_on=int(row["trained_on"]) if row is not None else 0,
                suggested=suggested,
                verified=verified,
                rejected=rejected,
            )

        return await self.s.db.read(q)

    async def check(self, name: str) -> RoutingStopped | None:
        """Switch routing off when the model's record is confidently below the project's bar.

        Items waiting for their one check go back to ordinary overlap, and listeners (the
        coordinators' conversation) hear of it once.
        """
        project = self.s.projects[name]
        if project.model is None:
            return None
        pid, rules = self.s.pids[name], self.s.rules[name]
        now = self.s.clock()

        def tx(conn: sqlite3.Connection) -> RoutingStopped | None:
            row = mq.model_row(conn, pid)
            if row is None or not row["routing"]:
                return None
            right, scored = mq.record(conn, pid)
            if not routing_stops(right, scored, rules.min_gold_accuracy, rules.suspend_confidence):
                return None
            reason = Reason(
                "model_accuracy",
                {"accuracy": round(right / scored, 4), "n": scored, "min": rules.min_gold_accuracy},
            )
            mq.set_routing(conn, pid, False, reason.encode(), now)
            mq.unroute_checks(conn, pid, project.overlap)
            return RoutingStopped(name, reason)

        right, scored = await self.s.db.read(mq.record, pid)
        if not routing_stops(right, scored, rules.min_gold_accuracy, rules.suspend_confidence):
            return None  # the common case costs one indexed read, no write
        stopped = await self.s.db.write(tx)
        if stopped is not None:
            log.warning(
                "%s: routing by the model is off: %d of %d suggestions right (below %.0f%%)",
                name,
                right,
                scored,
                rules.min_gold_accuracy * 100,
            )
            self.s.notify()  # items that were checks want full overlap now
            for listener in list(self._listeners):
                try:
                    listener(stopped)
                except Exception:
                    log.exception("a listener failed to hear that routing stopped")
        return stopped

    async def set_routing(self, name: str, on: bool) -> bool:
        """Switch routing on or off by hand; untouched items are routed again by their scores."""
        routing = self.s.routing.get(name)
        if routing is None:
            return False
        pid, overlap, now = self.s.pids[name], self.s.projects[name].overlap, self.s.clock()

        def tx(conn: sqlite3.Connection) -> None:
            mq.set_routing(conn, pid, on, None, now)
            if not on:
                mq.unroute_checks(conn, pid, overlap)
                return
            rows = []
            for item_id, score in mq.untouched_scores(conn, pid):
                route = route_for(routing, score, audit_draw(item_id))
                rows.append(
                    (route, needed_for(route, overlap), certainty_key(routing, score), item_id)
                )
            mq.route_items(conn, rows)

        await self.s.db.write(tx)
        self.s.notify()
        return True
