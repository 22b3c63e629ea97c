"""Reports and comments on items: a report skips the item with a reason and may hold it out of
the queue until a coordinator restores or removes it; a reply to an item is a comment on it."""

from __future__ import annotations

import sqlite3
from dataclasses import replace

from ..core.engagement import pulled
from ..storage import feedback_queries as fq
from ..storage import outbox_queries as oq
from ..storage import repo
from .answers import Answers
from .leases import Leases
from .outbox import Outbox
from .shared import Shared
from .types import Outcome, UserRef
from .volunteer_types import REPORT_REASONS, SKIP_REASONS, Decision, HeldItem, Saved

COMMENT_MAX = 2000  # characters kept of one comment


class Feedback:
    """What people tell the coordinators about items, and what coordinators decide."""

    def __init__(self, shared: Shared, answers: Answers, leases: Leases, outbox: Outbox) -> None:
        self.s = shared
        self.answers = answers
        self.leases = leases
        self.outbox = outbox

    async def report(
        self, user: UserRef, assignment_id: int, reason: str, *, ref: str | None = None
    ) -> Outcome:
        """Report an open item: it is skipped with the reason, and the next item is leased."""
        if reason not in REPORT_REASONS:
            return Outcome("invalid", "wrong_button")
        now = self.s.clock()
        role = self.s.role(user)
        draw = self.s.rng.random()

        def tx(conn: sqlite3.Connection) -> Outcome:
            out = self.answers.answer_in(
                conn, user, assignment_id, None, now, True, ref=ref, reason=reason
            )
            if not out.ok:
                return out
            r = repo.get_assignment(conn, assignment_id)
            assert r is not None
            held = self._file(conn, r["id"], r["annotator_id"], reason, now)
            out = replace(out, reported=True, held=held)
            return replace(out, next=self.leases.next_in(conn, user, role, now, draw))

        out = await self.s.db.write(tx, short=True)
        self._woken(out)
        return out

    async def reportable(self, user: UserRef, assignment_id: int) -> Outcome:
        """Whether the person may report this item now: its Task, or why not."""
        now = self.s.clock()

        def q(conn: sqlite3.Connection) -> Outcome:
            r = repo.get_assignment(conn, assignment_id)
            if r is None or r["annotator_key"] != user.key:
                return Outcome("forbidden", "not_yours")
            name = self.s.names[r["project_id"]]
            if r["state"] != "pending":
                return Outcome("stale", "done", project=name)
            if r["expires_at"] <= now:
                return Outcome("stale", "timed_out", project=name)
            return Outcome("recorded", project=name, task=self.s.task(conn, assignment_id, 0, r))

        return await self.s.db.read(q)

    async def skip_reason(self, user: UserRef, answer_id: int, reason: str) -> Outcome:
        """Say why an item was skipped; a reason that is a problem with the item reports it."""
        if reason not in SKIP_REASONS:
            return Outcome("invalid", "wrong_button")
        now = self.s.clock()

        def tx(conn: sqlite3.Connection) -> Outcome:
            x = repo.get_answer(conn, answer_id)
            if x is None:
                return Outcome("stale", "nothing_to_undo")
            if x["annotator_key"] != user.key:
                return Outcome("forbidden", "not_yours")
            item = repo.get_item(conn, x["item_id"])
            name = self.s.names[item["project_id"]]
            if x["value"] is not None or x["skip_reason"] is not None:
                return Outcome("duplicate", project=name, reason=x["skip_reason"])
            fq.set_skip_reason(conn, answer_id, reason)
            reported = held = False
            if reason in REPORT_REASONS:
                reported = True
                held = self._file(conn, x["item_id"], x["annotator_id"], reason, now)
            m = repo.get_member(conn, item["project_id"], x["annotator_id"])
            undo = self.s.projects[name].undo_seconds
            return Outcome(
                "recorded",
                project=name,
                skipped=True,
                task=self.s.task(conn, x["assignment_id"], m["answers"] if m else 0),
                answer_id=answer_id,
                undo_until=x["answered_at"] + undo,
                reason=reason,
                reported=reported,
                held=held,
            )

        out = await self.s.db.write(tx, short=True)
        self._woken(out)
        return out

    def _file(
        self, conn: sqlite3.Connection, item_id: int, annotator_id: int, reason: str, now: float
    ) -> bool:
        """Record a report; True when it takes the item out (and coordinators are told)."""
        item = repo.get_item(conn, item_id)
        name = self.s.names[item["project_id"]]
        if not fq.add_report(conn, item_id, annotator_id, reason, now):
            return False
        n = fq.open_reports(conn, item_id)
        if not pulled(n, self.s.projects[name].report_quorum) or not fq.hold(conn, item_id):
            return False
        payload = {"item": item["ext_id"], "reports": n, "reasons": fq.reasons(conn, item_id)}
        coordinators = self.s.config.access.coordinators
        oq.add(conn, oq.to_each(coordinators, "pulled", payload, now, item["project_id"]), now)
        return True

    def _woken(self, out: Outcome) -> None:
        if out.ok:
            self.s.notify()
        if out.held:
            self.outbox.notify()

    # -- comments -------------------------------------------------------------------------------

    async def comment(
        self,
        user: UserRef,
        text: str,
        *,
        assignment_id: int | None = None,
        ref: str | None = None,
        source: str | None = None,
    ) -> Saved:
        """Save a comment on an item: the person's assignment, or the item shown in `ref`."""
        now = self.s.clock()

        def tx(conn: sqlite3.Connection) -> Saved:
            a = repo.get_annotator(conn, user.key)
            if a is None:
                return Saved("no_item")
            item_id = None
            if assignment_id is not None:
                r = repo.get_assignment(conn, assignment_id)
                if r is not None and r["annotator_key"] == user.key:
                    item_id = r["id"]
            elif ref is not None:
                x = fq.answer_by_message(conn, a["id"], ref)
                item_id = None if x is None else x["item_id"]
            if item_id is None:
                return Saved("no_item")
            ext = repo.get_item(conn, item_id)["ext_id"]
            if not fq.add_comment(conn, item_id, a["id"], text[:COMMENT_MAX], source, now):
                return Saved("duplicate", ext)
            return Saved("saved", ext)

        return await self.s.db.write(tx, short=True)

    # -- coordinators ---------------------------------------------------------------------------

    async def held(self, project: str, limit: int = 10) -> tuple[list[HeldItem], int]:
        """Items waiting for a decision (the oldest `limit`), and how many there are."""
        pid = self.s.pids[project]

        def q(conn: sqlite3.Connection) -> tuple[list[HeldItem], int]:
            out = [
                HeldItem(
                    id=int(r["id"]),
                    item_id=r["ext_id"],
                    project=project,
                    text=r["text"],
                    reports=int(r["reports"]),
                    reasons=tuple(fq.reasons(conn, r["id"])),
                    comments=tuple(fq.item_comments(conn, r["id"], 3)),
                )
                for r in fq.held_items(conn, pid, limit)
            ]
            return out, fq.held_count(conn, pid)

        return await self.s.db.read(q)

    async def decide(self, item_id: int, restore: bool) -> Decision:
        """A coordinator's word on a held item: back into the queue, or out for good."""
        now = self.s.clock()

        def tx(conn: sqlite3.Connection) -> Decision:
            item = fq.item_of(conn, item_id)
            if item is None or item["project_id"] not in self.s.names:
                return Decision("unknown")
            name = self.s.names[item["project_id"]]
            if item["status"] != "held":
                return Decision("not_held", item["ext_id"], name)
            if restore:
                fq.decide(conn, item_id, "restored", now)
                fq.release(conn, item_id)
                return Decision("restored", item["ext_id"], name)
            fq.decide(conn, item_id, "removed", now)
            fq.remove(conn, item_id)
            return Decision("removed", item["ext_id"], name)

        got = await self.s.db.write(tx)
        if got.status == "restored":
            self.s.notify()  # people waiting for work may take it again
        return got
