"""Answers: recording an answer or a skip, free text, multi-choice selections, undo."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace

from ..core.assignment import can_undo, lease_deadline
from ..core.engagement import pulled
from ..core.model import VERIFY_LABELS, Rules
from ..core.values import canonical, matches_gold
from ..storage import feedback_queries as fq
from ..storage import repo
from .engagement import Engagement
from .leases import Leases
from .settling import Settling
from .shared import Row, Shared
from .suggestions import Suggestions
from .types import Feedback, Idle, Outcome, Task, UserRef

# How a check's yes or no is read: the verify kind's values.
_CHECK = Rules(kind="verify")


class Answers:
    """What people's answers do, each in one transaction (with the next item, when asked)."""

    def __init__(
        self,
        shared: Shared,
        settling: Settling,
        leases: Leases,
        engagement: Engagement,
        suggestions: Suggestions,
    ) -> None:
        self.s = shared
        self.settling = settling
        self.leases = leases
        self.engagement = engagement
        self.suggestions = suggestions

    # -- answers ---------------------------------------------------------------------------

    async def answer(
        self,
        user: UserRef,
        assignment_id: int,
        value: str | list[str] | None = None,
        *,
        then_next: bool = False,
        ref: str | None = None,
    ) -> Outcome:
        """Record an answer (multi: None means 'the selection so far').

        With then_next, the next item is leased in the same transaction (Outcome.next): a
        button press costs one commit, not two. `ref` is the item's message on the platform
        (a reply to it later is a comment on the item).
        """
        return await self._record(user, assignment_id, value, False, then_next, ref)

    async def skip(
        self, user: UserRef, assignment_id: int, *, then_next: bool = False, ref: str | None = None
    ) -> Outcome:
        """Skip an assignment: the item goes to someone else and never comes back to this user."""
        return await self._record(user, assignment_id, None, True, then_next, ref)

    async def _record(
        self,
        user: UserRef,
        assignment_id: int,
        value: str | list[str] | None,
        skipping: bool,
        then_next: bool,
        ref: str | None,
    ) -> Outcome:
        now = self.s.clock()
        role = self.s.role(user)
        draw = self.s.rng.random()

        def tx(conn: sqlite3.Connection) -> Outcome:
            out = self.answer_in(conn, user, assignment_id, value, now, skipping, ref=ref)
            if (
                not then_next
                or out.status in ("forbidden", "invalid", "duplicate")
                or out.suspended
            ):
                return out
            return replace(out, next=self.leases.next_in(conn, user, role, now, draw))

        out = await self.s.db.write(tx, short=True)
        if out.ok:
            self.s.notify()
        return out

    async def answer_text(self, user: UserRef, text: str, source: str | None = None) -> Outcome:
        """A free-text message: the answer to the annotator's open text item, if they have one.

        `source` names the platform message (e.g. chat and message id): the same message
        delivered again is recognised and counts once, instead of answering the next item.
        """
        now = self.s.clock()
        role = self.s.role(user)
        draw = self.s.rng.random()

        def tx(conn: sqlite3.Connection) -> Outcome:
            cur = self.s.current(conn, user)
            if cur is None:
                return Outcome("stale", "no_text_item")
            a, name = cur
            if source is not None:
                repo.hold_member(conn, self.s.pids[name], a["id"])
                prev = repo.answer_from_source(conn, a["id"], source)
                if prev is not None:
                    return Outcome("duplicate", project=name, value=prev["value"])
            row = repo.open_assignment(conn, a["id"], self.s.pids[name])
            if self.s.rules[name].kind != "text" or row is None:
                return Outcome("stale", "no_text_item", project=name)
            out = self.answer_in(conn, user, int(row["id"]), text, now, False, source)
            if not out.ok or out.suspended:
                return out
            return replace(out, next=self.leases.next_in(conn, user, role, now, draw))

        out = await self.s.db.write(tx, short=True)
        if out.ok:
            self.s.notify()
        return out

    async def edit_text(self, user: UserRef, source: str, text: str) -> Outcome:
        """A free-text answer edited on the platform: it becomes the new text while the answer
        may still be undone, and the item is settled again.

        On a gold item the new text is shown, but the first answer stays the one scored.
        """
        now = self.s.clock()

        def tx(conn: sqlite3.Connection) -> Outcome:
            a = repo.get_annotator(conn, user.key)
            prev = repo.answer_from_source(conn, a["id"], source) if a is not None else None
            if prev is None or prev["value"] is None:
                return Outcome("stale", "not_an_answer")
            repo.lock_item(conn, prev["item_id"])  # its verdict is recomputed below
            item = repo.get_item(conn, prev["item_id"])
            pid = item["project_id"]
            name = self.s.names[pid]
            project, rules = self.s.projects[name], self.s.rules[name]
            if not can_undo(prev["answered_at"], now, project.undo_seconds):
                return Outcome("stale", "too_late", project=name)
            m = repo.get_member(conn, pid, prev["annotator_id"])
            if m is None or m["status"] != "active":
                return Outcome("stale", "cannot_answer", project=name)
            if not prev["expert"] and any(v["expert"] for v in repo.item_votes(conn, item["id"])):
                return Outcome("stale", "settled_by_expert", project=name)
            try:
                value = canonical(rules, text)
            except ValueError as exc:
                return Outcome("invalid", "bad_value", project=name, problem=str(exc))
            task = self.s.task(conn, prev["assignment_id"], m["answers"])
            if value == prev["value"]:
                return Outcome("duplicate", project=name, value=value, task=task)
            # The same moment of answering: an edit does not lengthen the undo window.
            repo.set_answer_value(conn, prev["id"], value, prev["answered_at"], None)
            if not prev["is_gold"] and prev["counted"]:
                self.settling.settle(conn, pid, item["id"], rules, now)
            return Outcome(
                "recorded",
                project=name,
                value=value,
                task=task,
                answer_id=prev["id"],
                undo_until=prev["answered_at"] + project.undo_seconds,
            )

        return await self.s.db.write(tx, short=True)

    async def unshowable(self, user: UserRef, assignment_id: int) -> Task | Idle:
        """An item whose media could not be shown to this person: theirs no more, ever.

        Nobody may answer an item blind, and the person should not wait on it: it is recorded
        as a skip of theirs that counts nowhere (not in their skips, not in any vote), the
        item goes to others, and their next item comes in the same transaction.
        """
        now = self.s.clock()
        role = self.s.role(user)
        draw = self.s.rng.random()

        def tx(conn: sqlite3.Connection) -> Task | Idle:
            r = self._check(conn, user, assignment_id)
            if not isinstance(r, Outcome) and r["state"] == "pending":
                is_gold = r["gold"] is not None
                repo.insert_answer(
                    conn,
                    item_id=r["id"],
                    annotator_id=r["annotator_id"],
                    assignment_id=assignment_id,
                    value=None,
                    is_gold=int(is_gold),
                    correct=None,
                    expert=int(r["status"] == "escalated"),
                    counted=0,
                    seconds=0.0,
                    answered_at=now,
                )
                repo.close_assignment(conn, assignment_id, r["id"], "skipped")
                rules = self.s.rules[self.s.names[r["project_id"]]]
                # As after a skip: they may have been the last who could answer it.
                if not is_gold and r["n_answers"] >= rules.overlap:
                    self.settling.settle(conn, r["project_id"], r["id"], rules, now)
            return self.leases.next_in(conn, user, role, now, draw)

        got = await self.s.db.write(tx, short=True)
        self.s.notify()
        return got

    def _check(self, conn: sqlite3.Connection, user: UserRef, assignment_id: int) -> Row | Outcome:
        # Locked (on PostgreSQL): a press delivered twice, to two workers, counts once.
        r = repo.get_assignment(conn, assignment_id, lock=True)
        if r is None or r["annotator_key"] != user.key:
            return Outcome("forbidden", "not_yours")
        return r

    def answer_in(
        self,
        conn: sqlite3.Connection,
        user: UserRef,
        assignment_id: int,
        raw: str | list[str] | None,
        now: float,
        skipping: bool,
        source: str | None = None,
        *,
        ref: str | None = None,
        reason: str | None = None,
    ) -> Outcome:
        """Record an answer or a skip (with its reason) inside the caller's transaction."""
        r = self._check(conn, user, assignment_id)
        if isinstance(r, Outcome):
            return r
        name = self.s.names[r["project_id"]]
        rules, project = self.s.rules[name], self.s.projects[name]
        if r["state"] != "pending":
            # The item as it was shown, so a second copy of it can show the outcome too.
            shown = self.s.task(conn, assignment_id, 0, r)
            prev = repo.answer_for_assignment(conn, assignment_id)
            if prev is not None:
                skipped = prev["value"] is None
                return Outcome(
                    "duplicate", project=name, value=prev["value"], skipped=skipped, task=shown
                )
            return Outcome("stale", "timed_out", project=name, task=shown)
        if r["expires_at"] <= now:
            repo.expire_leases(conn, now)
            self.s.notify()
            return Outcome(
                "stale", "timed_out", project=name, task=self.s.task(conn, assignment_id, 0, r)
            )
        member = repo.get_member(conn, r["project_id"], r["annotator_id"])
        if member is None or member["status"] != "active":
            return Outcome("stale", "cannot_answer", project=name)
        scored = repo.answer_for_assignment(conn, assignment_id) if r["gold"] is not None else None
        value: str | None = None
        checking = bool(r["checking"])  # a yes/no to a confident item's suggestion
        if not skipping:
            if raw is None and rules.kind == "multi" and not checking:
                raw = json.loads(r["draft"]) if r["draft"] else []
            if raw is None:
                return Outcome("invalid", "no_choice", project=name)
            try:
                value = canonical(_CHECK if checking else rules, raw)
            except ValueError as exc:
                return Outcome("invalid", "bad_value", project=name, problem=str(exc))
        if scored is not None:
            return self._answer_again(conn, r, member, scored, value, now, source)
        is_gold = r["gold"] is not None
        expert = r["status"] == "escalated"
        stored = value
        if checking and value is not None:
            # Of two labels, "not this one" names the other: that no is a vote like any other.
            stored = self.suggestions.vote_of_check(r, value, rules)
        correct = None if value is None or not is_gold else matches_gold(rules, value, r["gold"])
        seconds = max(0.0, now - r["leased_at"])
        answer_id = repo.insert_answer(
            conn,
            item_id=r["id"],
            annotator_id=r["annotator_id"],
            assignment_id=assignment_id,
            value=stored,
            is_gold=int(is_gold),
            correct=None if correct is None else int(correct),
            expert=int(expert),
            seconds=seconds,
            answered_at=now,
            source=source,
            # A check's yes is no vote (it settles the item), nor a no among several labels.
            checked=int(checking),
            counted=0 if checking and stored in VERIFY_LABELS else 1,
            message_ref=ref,
            skip_reason=reason if skipping else None,
        )
        repo.close_assignment(conn, assignment_id, r["id"], "skipped" if skipping else "answered")
        reached, activity = self.engagement.on_answer(r["project_id"], member, now, skipping)
        if skipping:
            repo.change_member(conn, r["project_id"], r["annotator_id"], activity, {"skips": 1})
            # The skipper may have been the last one who could answer an item that has its
            # planned answers (see stranded); a skip changes no vote, so nothing else to redo.
            if not is_gold and r["n_answers"] >= rules.overlap:
                self.settling.settle(conn, r["project_id"], r["id"], rules, now)
            return Outcome(
                "recorded",
                project=name,
                skipped=True,
                task=self.s.task(conn, assignment_id, member["answers"], r),
                answer_id=answer_id,
                undo_until=now + project.undo_seconds,
                reason=reason,
            )
        assert value is not None
        suspended = self.settling.score(
            conn,
            r,
            rules,
            project,
            value,
            correct,
            seconds,
            now,
            member,
            count_answer=True,
            check=checking,
            also=activity,
        )
        if is_gold:
            # Counting gold answers rotates gold items ("least used first") across annotators.
            repo.bump_item_answers(conn, r["id"], 1)
        elif checking:
            if self.suggestions.checked(conn, r, member, value, rules, now):
                # A no reopened the item: its verdict now comes from ordinary overlap.
                self.settling.settle(conn, r["project_id"], r["id"], rules, now)
        else:
            self.settling.settle(conn, r["project_id"], r["id"], rules, now)
        feedback = None
        if correct is False and project.quality.gold_feedback:
            feedback = Feedback(r["gold"], r["gold_reason"])
        return Outcome(
            "recorded",
            project=name,
            value=value,
            task=self.s.task(conn, assignment_id, member["answers"] + 1, r),
            answer_id=answer_id,
            undo_until=None if suspended else now + project.undo_seconds,
            feedback=feedback,
            suspended=suspended,
            milestone=None if suspended else reached,
        )

    def _answer_again(
        self,
        conn: sqlite3.Connection,
        r: Row,
        member: Row,
        scored: Row,
        value: str | None,
        now: float,
        source: str | None,
    ) -> Outcome:
        """A new answer to a gold item whose scored answer was undone: shown, never scored.

        The first answer to a gold item is the one scored; after Undo the person may change
        the recorded label (for display), but the score, the counters and the absence of a
        second feedback stay as they were. A skip keeps the recorded answer.
        """
        name = self.s.names[r["project_id"]]
        assignment_id = int(r["assignment_id"])
        repo.close_assignment(conn, assignment_id, r["id"], "answered")
        if value is not None:
            repo.set_answer_value(conn, scored["id"], value, now, source)
        return Outcome(
            "recorded",
            project=name,
            value=value,
            skipped=value is None,
            task=self.s.task(conn, assignment_id, member["answers"], r),
            answer_id=int(scored["id"]),
            undo_until=now + self.s.projects[name].undo_seconds,
        )

    # -- multi-choice toggles and undo -----------------------------------------------------

    async def toggle(self, user: UserRef, assignment_id: int, label: str) -> Outcome:
        """Add or remove one label of a multi-choice selection."""
        now = self.s.clock()

        def tx(conn: sqlite3.Connection) -> Outcome:
            r = self._check(conn, user, assignment_id)
            if isinstance(r, Outcome):
                return r
            name = self.s.names[r["project_id"]]
            if r["state"] != "pending" or r["expires_at"] <= now:
                return Outcome("stale", "done", project=name)
            if self.s.rules[name].kind != "multi" or label not in self.s.rules[name].labels:
                return Outcome("invalid", "wrong_button", project=name)
            chosen = set(json.loads(r["draft"]) if r["draft"] else [])
            chosen ^= {label}
            repo.set_draft(
                conn, assignment_id, [x for x in self.s.rules[name].labels if x in chosen]
            )
            m = repo.get_member(conn, r["project_id"], r["annotator_id"])
            task = self.s.task(conn, assignment_id, m["answers"] if m else 0)
            return Outcome("recorded", project=name, task=task)

        return await self.s.db.write(tx, short=True)

    async def set_selection(self, user: UserRef, assignment_id: int, labels: list[str]) -> Outcome:
        """Make a multi-choice selection exactly `labels` (a platform that shows ticks itself)."""
        now = self.s.clock()

        def tx(conn: sqlite3.Connection) -> Outcome:
            r = self._check(conn, user, assignment_id)
            if isinstance(r, Outcome):
                return r
            name = self.s.names[r["project_id"]]
            rules = self.s.rules[name]
            if r["state"] != "pending" or r["expires_at"] <= now:
                return Outcome("stale", "done", project=name)
            if rules.kind != "multi" or not set(labels) <= set(rules.labels):
                return Outcome("invalid", "wrong_button", project=name)
            repo.set_draft(conn, assignment_id, [x for x in rules.labels if x in set(labels)])
            m = repo.get_member(conn, r["project_id"], r["annotator_id"])
            task = self.s.task(conn, assignment_id, m["answers"] if m else 0)
            return Outcome("recorded", project=name, task=task)

        return await self.s.db.write(tx, short=True)

    async def undo(self, user: UserRef, answer_id: int) -> Outcome:
        """Take back an answer within the project's undo window; returns the item again."""
        now = self.s.clock()

        def tx(conn: sqlite3.Connection) -> Outcome:
            x = repo.get_answer(conn, answer_id)
            if x is None:
                return Outcome("stale", "nothing_to_undo")
            if x["annotator_key"] != user.key:
                return Outcome("forbidden", "not_yours")
            repo.lock_item(conn, x["item_id"])
            item = repo.get_item(conn, x["item_id"])
            name = self.s.names[item["project_id"]]
            project, rules = self.s.projects[name], self.s.rules[name]
            if not can_undo(x["answered_at"], now, project.undo_seconds):
                return Outcome("stale", "too_late", project=name)
            pid, aid = item["project_id"], x["annotator_id"]
            m = repo.get_member(conn, pid, aid)
            if m is None or m["status"] != "active":
                return Outcome("stale", "cannot_answer", project=name)
            settled_by_expert = any(v["expert"] for v in repo.item_votes(conn, item["id"]))
            if settled_by_expert and not x["expert"]:
                return Outcome("stale", "settled_by_expert", project=name)
            # A check's item goes back to waiting for it, unless others answer it by now.
            checked = x["checked"] and x["value"] is not None
            if checked and not self.suggestions.undo_check(conn, item, bool(x["counted"])):
                return Outcome("stale", "too_late", project=name)
            lease = lease_deadline(now, project.lease_seconds)
            if x["is_gold"] and x["value"] is not None:
                # A scored gold answer stays: Undo lets them answer again (feedback may have
                # shown the right answer) but the score is the first answer's, and the kept
                # row means the item is never leased to them again.
                repo.reopen_assignment(conn, x["assignment_id"], x["item_id"], lease)
                task = self.s.task(conn, x["assignment_id"], m["answers"])
                return Outcome("recorded", project=name, task=task)
            repo.delete_answer(conn, answer_id)
            if x["value"] is None and x["skip_reason"] is not None:
                # Their report goes with the skip; an item it held comes back below the quorum.
                fq.drop_report(conn, x["item_id"], aid)
                if not pulled(fq.open_reports(conn, x["item_id"]), project.report_quorum):
                    fq.release(conn, x["item_id"])
            repo.reopen_assignment(conn, x["assignment_id"], x["item_id"], lease)
            # A scored gold answer returned above: what is undone here never counted on gold.
            deltas = {"skips": -1} if x["value"] is None else {"answers": -1}
            repo.change_member(conn, pid, aid, {}, deltas)
            if not x["checked"]:  # checks never counted toward a run of the same label
                repo.update_member(conn, pid, aid, same_run=max(0, m["same_run"] - 1))
            if x["value"] is not None and not x["checked"]:
                self.settling.settle(conn, pid, x["item_id"], rules, now)
            task = self.s.task(conn, x["assignment_id"], m["answers"] + deltas.get("answers", 0))
            return Outcome("recorded", project=name, task=task)

        return await self.s.db.write(tx, short=True)
