"""Suggestions and routing: checks of confident items, routes of imported scores, a model's
output written in small transactions, its record, and routing switching itself off."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable

from ..core.gold import person_accuracy
from ..core.model import Rules
from ..core.routing import (
    Route,
    Routing,
    audit_draw,
    certainty_key,
    check_confidence,
    needed_for,
    route_for,
    routing_stops,
)
from ..core.suspension import Reason
from ..models.base import Predictions, Suggested, Work, WorkSource
from ..storage import model_queries as mq
from ..storage import outbox_queries as oq
from ..storage import repo
from ..storage.snapshot import Where, read_only, where
from .outbox import Outbox
from .settling import Settling
from .shared import Row, Shared
from .types import ModelState, RoutingStopped

log = logging.getLogger("chatlabel.model")

# Suggestions written per transaction: each holds the single writer for well under a
# millisecond, so presses keep flowing while a model's output for thousands of items lands.
WRITE_CHUNK = 16


class Suggestions:
    """Use cases of suggestions and routing (the press-time ones inside a press's transaction)."""

    def __init__(self, shared: Shared, outbox: Outbox, settling: Settling) -> None:
        self.s = shared
        self.outbox = outbox
        self.settling = settling

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

    # -- inside a press's transaction ------------------------------------------------------------

    @staticmethod
    def vote_of_check(r: Row, value: str, rules: Rules) -> str:
        """How a check's answer is stored: a no among two labels is the other label (a vote)."""
        suggestion = r["suggestion"]
        if value != "no" or r["route"] != "check" or len(rules.choices) != 2:
            return value
        if suggestion not in rules.choices:
            return value
        return next(c for c in rules.choices if c != suggestion)

    def checked(
        self, conn: sqlite3.Connection, r: Row, m: Row, value: str, rules: Rules, now: float
    ) -> bool:
        """What a yes or no to a confident item's suggestion does: settle it, or reopen it.

        `m`: the checker's member row as the press read it (a check moves no gold counter).
        True when a no reopened it (the caller settles it from its votes, a two-label no
        being one of them).
        """
        if r["route"] != "check" or r["status"] != "pending" or r["suggestion"] is None:
            return False  # routing was switched off while it was out: overlap decides
        pid, item_id = r["project_id"], r["id"]
        if value == "yes":
            crowd = self.s.crowd(conn, pid)
            checker = person_accuracy(m["gold_correct"], m["gold_answers"], crowd)
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
            return False
        mq.reject(conn, item_id, rules.overlap)
        return True

    def undo_check(self, conn: sqlite3.Connection, item: Row, voted: bool) -> bool:
        """Take back what a check did to its item; False when others have built on it since.

        `voted`: the check's no was stored as a vote (two labels), so it is one of n_answers.
        """
        route = item["route"]
        others = item["n_answers"] - int(voted)
        if route == "rejected" and (others > 0 or item["n_leases"]):
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
        model = self.s.projects[name].model
        if model is not None and model.kind == "import":
            # The imported model's name is the model's name: in /annotators, reports, exports.
            version = mq.imported_version(conn, pid, after_seq)
            if version is not None:
                mq.set_version(conn, pid, version, self.s.clock())
        row = mq.model_row(conn, pid)
        on = routing if row is None or row["routing"] else None
        overlap = self.s.projects[name].overlap
        mq.route_items(
            conn, _routes(on, routing, mq.imported_scores(conn, pid, after_seq), overlap)
        )

    # -- a model's rounds ------------------------------------------------------------------------

    def source(self, name: str, *, learns: bool) -> WorkSource:
        """Where a model round reads its work: every labeled and untouched item for a model that
        learns, only items it has not suggested for yet for one that does not."""
        return WorkSource(read_work, (where(self.s.db), self.s.pids[name], learns))

    async def unsuggested(self, name: str) -> int:
        """Items (gold included) that no model has suggested for yet."""
        return await self.s.db.read(mq.unsuggested, self.s.pids[name])

    async def trainings(self, name: str) -> tuple[int, int]:
        """(trainings so far, resolved items at the last one): one row, for a round's decision."""
        row = await self.s.db.read(mq.model_row, self.s.pids[name])
        return (int(row["trainings"]), int(row["trained_on"])) if row is not None else (0, 0)

    async def resolved(self, name: str) -> int:
        """Ordinary items of a project resolved so far."""
        return await self.s.db.read(mq.resolved_count, self.s.pids[name])

    async def write(
        self, name: str, suggested: Suggested, version: str, *, resolved: int | None = None
    ) -> int:
        """Store a model round's suggestions (untouched items are routed by them); how many.

        Written WRITE_CHUNK items per transaction, on the event loop's thread between presses:
        each is a fraction of a millisecond, and a thread would make presses wait for the GIL.
        Each is a background write: while people label, it gives way to their presses.
        `resolved`: for a model that learns, the resolved items it was trained with.
        """
        pid = self.s.pids[name]
        routing = self.s.routing.get(name)
        overlap = self.s.projects[name].overlap
        written = 0
        items = suggested.items
        for start in range(0, len(items), WRITE_CHUNK):
            end = start + WRITE_CHUNK
            chunk = (pid, items, start, end, version, routing, overlap)
            written += await self.s.db.write(_write_items, *chunk, short=True, background=True)
        gold = suggested.gold
        for start in range(0, len(gold), WRITE_CHUNK):
            end = start + WRITE_CHUNK
            rows = zip(
                gold.labels[start:end],
                gold.scores[start:end],
                [version] * (end - start),
                gold.ids[start:end],
                strict=False,
            )
            await self.s.db.write(
                mq.write_gold_suggestions, list(rows), short=True, background=True
            )
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

        await self.s.db.write(done, short=True)
        self.s.notify()  # new checks may be waiting for people
        return written

    # -- the model's record ----------------------------------------------------------------------

    async def state(self, name: str) -> ModelState | None:
        """A project's model with its record (None without a [model] section)."""
        project = self.s.projects[name]
        if project.model is None:
            return None
        pid, rules = self.s.pids[name], self.s.rules[name]

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
                threshold=project.model.auto_threshold,
                below_bar=routing_stops(
                    right, scored, rules.min_gold_accuracy, rules.suspend_confidence
                ),
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
            self._settle_rejections(conn, name, now)
            # Every coordinator hears of it, on their platform, whichever process serves it
            # (one process per bot on a shared database): a row of the outbox each, in the
            # same transaction, so the alert is sent once routing is off and only then.
            coordinators = self.s.config.access.coordinators
            dedupe = f"model_off:{name}:{now}"
            oq.add(
                conn, oq.to_each(coordinators, "model_off", reason.params, now, pid, dedupe), now
            )
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
            self.outbox.notify()  # the coordinators' alert is queued
        return stopped

    def _settle_rejections(self, conn: sqlite3.Connection, name: str, now: float) -> None:
        """Routing just went off or on: settle again the items still collecting after a no.

        A rejected suggestion's vote counts only while routing is on: without it they want
        more people, with it again they may be decided.
        """
        pid, rules = self.s.pids[name], self.s.rules[name]
        for item_id in mq.open_rejections(conn, pid):
            repo.lock_item(conn, item_id)  # in id order, as suspensions lock them
            self.settling.settle(conn, pid, item_id, rules, now)

    async def set_routing(self, name: str, on: bool, by: str = "") -> bool:
        """Switch routing on or off by hand (`by`: who, for the log); untouched items are
        routed again by their scores."""
        routing = self.s.routing.get(name)
        if routing is None:
            return False
        pid, overlap, now = self.s.pids[name], self.s.projects[name].overlap, self.s.clock()

        def tx(conn: sqlite3.Connection) -> None:
            mq.set_routing(conn, pid, on, None, now)
            if on:
                scores = mq.untouched_scores(conn, pid)
                mq.route_items(conn, _routes(routing, routing, scores, overlap))
            else:
                mq.unroute_checks(conn, pid, overlap)
            self._settle_rejections(conn, name, now)

        await self.s.db.write(tx)
        log.info("%s: routing by the model switched %s by %s", name, "on" if on else "off", by)
        self.s.notify()
        return True


def _routes(
    on: Routing | None, routing: Routing, scores: Iterable[tuple[int, float]], overlap: int
) -> list[tuple[Route | None, int, float, int]]:
    """(route, needed, certainty, id) of items by their scores: routed by `on` (None: routing
    is off), ordered by `routing`."""
    rows = []
    for item_id, score in scores:
        route = route_for(on, score, audit_draw(item_id))
        rows.append((route, needed_for(route, overlap), certainty_key(routing, score), item_id))
    return rows


def _write_items(
    conn: sqlite3.Connection,
    pid: int,
    items: Predictions,
    start: int,
    end: int,
    version: str,
    routing: Routing | None,
    overlap: int,
) -> int:
    """One chunk of a round's suggestions, routed by score unless routing is off."""
    row = mq.model_row(conn, pid)
    on = routing if row is None or row["routing"] else None
    rows = []
    for item_id, label, score in zip(
        items.ids[start:end], items.labels[start:end], items.scores[start:end], strict=True
    ):
        route = route_for(on, score, audit_draw(item_id))
        certainty = certainty_key(routing, score)
        rows.append((label, score, version, certainty, route, needed_for(route, overlap), item_id))
    return mq.write_suggestions(conn, rows)


def read_work(place: Where, project_id: int, learns: bool) -> Work:
    """A model round's work, read on a connection of its own (in a model's worker process),
    its reads in one snapshot."""
    work = Work()
    with read_only(place) as conn:
        if learns:
            for item_id, text, label, gold in mq.examples(conn, project_id):
                work.example_ids.append(item_id)
                work.example_texts.append(text)
                work.example_labels.append(label)
                work.example_gold.append(bool(gold))
        for item_id, text in mq.untouched(conn, project_id, unsuggested=not learns):
            work.item_ids.append(item_id)
            work.item_texts.append(text)
        for item_id, text in mq.gold_texts(conn, project_id, unsuggested=not learns):
            work.gold_ids.append(item_id)
            work.gold_texts.append(text)
    return work
