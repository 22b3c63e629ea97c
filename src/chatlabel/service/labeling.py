"""The labeling use cases: join, next item, answer, skip, toggle, undo, pushes."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace

from ..config import Project
from ..core import access
from ..core.assignment import MemberRecord, can_undo, lease_deadline, wants_gold
from ..core.model import Rules
from ..core.values import canonical, display, matches_gold
from ..storage import repo
from .base import Row
from .people import People
from .settling import member_record
from .types import Feedback, Idle, JoinResult, Outcome, Push, Task, UserRef


class LabelingService(People):
    """The one place labeling happens; transports call it, it calls storage and the core."""

    # -- join ------------------------------------------------------------------------------

    async def join(self, user: UserRef, arg: str | None = None) -> JoinResult:
        """Start (or resume) labeling; `arg` is a project name or an invite code."""
        now = self.clock()
        role = self.role(user)
        arg = (arg or "").strip() or None
        acc = self.config.access
        # An argument that is not a project name is an invite code (or a guess at one).
        guess = arg is not None and arg not in self.projects and acc.mode == "invite"
        # Someone locked out is not compared against the codes at all: the right code waits.
        locked = guess and self.invite_attempts.locked(user.key, now)
        codes = () if locked else acc.invite_codes
        valid = arg is not None and access.code_matches(arg, codes)

        def tx(conn: sqlite3.Connection) -> JoinResult:
            a = repo.upsert_annotator(conn, user.key, user.platform, user.address, user.name, now)
            if valid and not a["invited"]:
                # Kept, so choosing among several projects after the code needs no code again.
                repo.set_invited(conn, a["id"])
                a = repo.upsert_annotator(conn, user.key, user.platform, None, "", now)
            name: str | None = None
            if arg in self.projects:
                name = arg
            elif len(self.projects) == 1:
                name = next(iter(self.projects))
            elif a["project_id"] in self.names:
                name = self.names[a["project_id"]]
            if name is None:
                if not self.projects:
                    return JoinResult("refused", "There is nothing to label yet.", role=role)
                choices = tuple(self.info(n) for n in self.projects)
                return JoinResult(
                    "choose", "Which project would you like to label?", choices=choices, role=role
                )
            pid = self.pids[name]
            member = repo.get_member(conn, pid, a["id"])
            refusal = access.join_refusal(
                user.key,
                acc.mode,
                code=arg,
                invite_codes=codes,
                allowlist=acc.allowlist,
                role=role,
                already_member=member is not None or bool(a["invited"]),
            )
            if refusal:
                return JoinResult("refused", refusal, role=role)
            repo.add_member(conn, pid, a["id"], now)
            repo.set_current_project(conn, a["id"], pid)
            info = self.info(name)
            return JoinResult("joined", f"Welcome to {info.title}!", project=info, role=role)

        res = await self.db.write(tx, short=True)
        if guess and res.status == "refused":
            if locked:
                return replace(res, reason="too_many_attempts")
            self.invite_attempts.failed(user.key, now)
        return res

    # -- next item -------------------------------------------------------------------------

    async def next_task(self, user: UserRef) -> Task | Idle:
        """The annotator's current item, or a new lease, or why there is none."""
        now = self.clock()
        role = self.role(user)
        draw = self.rng.random()
        return await self.db.write(self._next_tx, user, role, now, draw, short=True)

    def _member(
        self, conn: sqlite3.Connection, user: UserRef, now: float
    ) -> tuple[Row, str, Row] | Idle:
        """The annotator, their project and membership, or why they get no item now.

        Overdue leases expire first, so what follows sees the pool as it really is."""
        if repo.expire_leases(conn, now):
            self.notify()
        cur = self._current(conn, user)
        if cur is None:
            return Idle("not_joined", "Send /start to begin labeling.")
        a, name = cur
        pid = self.pids[name]
        m = repo.get_member(conn, pid, a["id"])
        if m is None:
            return Idle("not_joined", "Send /start to begin labeling.")
        if m["status"] == "suspended":
            return Idle("suspended", _suspended_text(m["reason"]))
        if any(p["id"] == pid and p["paused"] for p in repo.project_rows(conn)):
            # Waiting, so the push loop brings them back when the project resumes.
            repo.update_member(conn, pid, a["id"], waiting=1)
            return Idle(
                "project_paused", "Labeling is paused for now. We'll message you when it resumes."
            )
        if m["paused"]:
            return Idle("paused", "You're paused. Send /resume when you want more items.")
        return a, name, m

    def _next_tx(
        self, conn: sqlite3.Connection, user: UserRef, role: str, now: float, draw: float
    ) -> Task | Idle:
        got = self._member(conn, user, now)
        if isinstance(got, Idle):
            return got
        a, name, m = got
        pid = self.pids[name]
        open_row = repo.open_assignment(conn, a["id"], pid)
        if open_row is not None:
            return self._task(conn, int(open_row["id"]), m["answers"])
        item_id = self._pick(conn, pid, a["id"], role, member_record(m), draw)
        if item_id is None:
            repo.update_member(conn, pid, a["id"], waiting=1)
            return Idle(
                "no_work",
                "That's everything for now, thank you! "
                "I'll send you the next item as soon as there is one.",
            )
        project = self.projects[name]
        asg = repo.create_assignment(
            conn, item_id, a["id"], now, lease_deadline(now, project.lease_seconds)
        )
        if m["waiting"]:
            repo.update_member(conn, pid, a["id"], waiting=0)
        return self._task(conn, asg, m["answers"])

    def _pick(
        self, conn: sqlite3.Connection, pid: int, aid: int, role: str, m: MemberRecord, draw: float
    ) -> int | None:
        rules = self.rules[self.names[pid]]
        settles = role == "expert" or (role == "coordinator" and not self.config.access.experts)
        if settles:
            item = repo.next_escalated_item(conn, pid, aid)
            if item is not None:
                return item
        queue = repo.next_queue_item(conn, pid, aid)
        # Gold is mixed into real work; only qualification may use gold when the queue is dry.
        if (queue is not None or m.qualification_answers < rules.qualification) and wants_gold(
            rules, m, draw
        ):
            gold = repo.next_gold_item(conn, pid, aid)
            if gold is not None:
                return gold
        return queue

    async def lease(self, user: UserRef, item_id: str) -> Task | Idle:
        """Lease one named item (by its import id) to an annotator, if it is open to them.

        For replaying recorded crowd answers: each worker must get the item they answered.
        Everything else (suspension, pauses, one open item at a time) is as in next_task.
        """
        now = self.clock()

        def tx(conn: sqlite3.Connection) -> Task | Idle:
            got = self._member(conn, user, now)
            if isinstance(got, Idle):
                return got
            a, name, m = got
            pid = self.pids[name]
            if repo.open_assignment(conn, a["id"], pid) is not None:
                return Idle("no_work", "Answer or skip the open item first.")
            target = repo.open_item(conn, pid, a["id"], item_id)
            if target is None:
                return Idle("no_work", f"Item {item_id!r} does not need this annotator.")
            lease = lease_deadline(now, self.projects[name].lease_seconds)
            asg = repo.create_assignment(conn, target, a["id"], now, lease)
            return self._task(conn, asg, m["answers"])

        return await self.db.write(tx, short=True)

    # -- answers ---------------------------------------------------------------------------

    async def answer(
        self,
        user: UserRef,
        assignment_id: int,
        value: str | list[str] | None = None,
        *,
        then_next: bool = False,
    ) -> Outcome:
        """Record an answer (multi: None means 'the selection so far').

        With then_next, the next item is leased in the same transaction (Outcome.next): a
        button press costs one commit, not two.
        """
        return await self._record(user, assignment_id, value, False, then_next)

    async def skip(self, user: UserRef, assignment_id: int, *, then_next: bool = False) -> Outcome:
        """Skip an assignment: the item goes to someone else and never comes back to this user."""
        return await self._record(user, assignment_id, None, True, then_next)

    async def _record(
        self,
        user: UserRef,
        assignment_id: int,
        value: str | list[str] | None,
        skipping: bool,
        then_next: bool,
    ) -> Outcome:
        now = self.clock()
        role = self.role(user)
        draw = self.rng.random()

        def tx(conn: sqlite3.Connection) -> Outcome:
            out = self._answer_tx(conn, user, assignment_id, value, now, skipping)
            if (
                not then_next
                or out.status in ("forbidden", "invalid", "duplicate")
                or out.suspended
            ):
                return out
            return replace(out, next=self._next_tx(conn, user, role, now, draw))

        out = await self.db.write(tx, short=True)
        if out.ok:
            self.notify()
        return out

    async def answer_text(self, user: UserRef, text: str, source: str | None = None) -> Outcome:
        """A free-text message: the answer to the annotator's open text item, if they have one.

        `source` names the platform message (e.g. chat and message id): the same message
        delivered again is recognised and counts once, instead of answering the next item.
        """
        now = self.clock()
        role = self.role(user)
        draw = self.rng.random()

        def tx(conn: sqlite3.Connection) -> Outcome:
            cur = self._current(conn, user)
            if cur is None:
                return Outcome("stale", "There's no item waiting for a written answer.")
            a, name = cur
            if source is not None:
                prev = repo.answer_from_source(conn, a["id"], source)
                if prev is not None:
                    return Outcome("duplicate", "Already recorded, thanks!", choice=prev["value"])
            row = repo.open_assignment(conn, a["id"], self.pids[name])
            if self.rules[name].kind != "text" or row is None:
                return Outcome("stale", "There's no item waiting for a written answer.")
            out = self._answer_tx(conn, user, int(row["id"]), text, now, False, source)
            if not out.ok or out.suspended:
                return out
            return replace(out, next=self._next_tx(conn, user, role, now, draw))

        out = await self.db.write(tx, short=True)
        if out.ok:
            self.notify()
        return out

    def _check(self, conn: sqlite3.Connection, user: UserRef, assignment_id: int) -> Row | Outcome:
        r = repo.get_assignment(conn, assignment_id)
        if r is None or r["annotator_key"] != user.key:
            return Outcome("forbidden", "That button isn't yours.")
        return r

    def _answer_tx(
        self,
        conn: sqlite3.Connection,
        user: UserRef,
        assignment_id: int,
        raw: str | list[str] | None,
        now: float,
        skipping: bool,
        source: str | None = None,
    ) -> Outcome:
        r = self._check(conn, user, assignment_id)
        if isinstance(r, Outcome):
            return r
        name = self.names[r["project_id"]]
        rules, project = self.rules[name], self.projects[name]
        if r["state"] != "pending":
            prev = repo.answer_for_assignment(conn, assignment_id)
            if prev is not None:
                return Outcome(
                    "duplicate", "Already recorded, thanks!", choice=display(rules, prev["value"])
                )
            return Outcome("stale", "This item has timed out; here's a fresh one.")
        if r["expires_at"] <= now:
            repo.expire_leases(conn, now)
            self.notify()
            return Outcome("stale", "This item has timed out; here's a fresh one.")
        member = repo.get_member(conn, r["project_id"], r["annotator_id"])
        if member is None or member["status"] != "active":
            return Outcome("stale", "You can't answer right now.")
        scored = repo.answer_for_assignment(conn, assignment_id) if r["gold"] is not None else None
        value: str | None = None
        if not skipping:
            if raw is None and rules.kind == "multi":
                raw = json.loads(r["draft"]) if r["draft"] else []
            if raw is None:
                return Outcome("invalid", "Please choose an answer.")
            try:
                value = canonical(rules, raw)
            except ValueError as exc:
                return Outcome("invalid", f"That answer isn't valid: {exc}.")
        if scored is not None:
            return self._answer_again(conn, r, rules, project, scored, value, now, source)
        is_gold = r["gold"] is not None
        expert = r["status"] == "escalated"
        correct = None if value is None or not is_gold else matches_gold(rules, value, r["gold"])
        seconds = max(0.0, now - r["leased_at"])
        answer_id = repo.insert_answer(
            conn,
            item_id=r["id"],
            annotator_id=r["annotator_id"],
            assignment_id=assignment_id,
            value=value,
            is_gold=int(is_gold),
            correct=None if correct is None else int(correct),
            expert=int(expert),
            seconds=seconds,
            answered_at=now,
            source=source,
        )
        repo.close_assignment(conn, assignment_id, r["id"], "skipped" if skipping else "answered")
        if skipping:
            repo.bump_member(conn, r["project_id"], r["annotator_id"], skips=1)
            # The skipper may have been the last one who could answer an item that has its
            # planned answers (see stranded); a skip changes no vote, so nothing else to redo.
            if not is_gold and r["n_answers"] >= rules.overlap:
                self._settle(conn, r["project_id"], r["id"], rules, now)
            return Outcome(
                "recorded",
                "Skipped.",
                choice="skipped",
                answer_id=answer_id,
                undo_until=now + project.undo_seconds,
            )
        assert value is not None
        suspended = self._score(conn, r, rules, project, value, correct, seconds, now)
        repo.bump_member(conn, r["project_id"], r["annotator_id"], answers=1)
        if is_gold:
            # Counting gold answers rotates gold items ("least used first") across annotators.
            repo.bump_item_answers(conn, r["id"], 1)
        else:
            self._settle(conn, r["project_id"], r["id"], rules, now)
        feedback = None
        if correct is False and project.quality.gold_feedback:
            feedback = Feedback(display(rules, r["gold"]), r["gold_reason"])
        return Outcome(
            "recorded",
            f"Saved: {display(rules, value)}",
            choice=display(rules, value),
            answer_id=answer_id,
            undo_until=None if suspended else now + project.undo_seconds,
            feedback=feedback,
            suspended=suspended,
        )

    def _answer_again(
        self,
        conn: sqlite3.Connection,
        r: Row,
        rules: Rules,
        project: Project,
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
        repo.close_assignment(conn, r["assignment_id"], r["id"], "answered")
        if value is not None:
            repo.set_answer_value(conn, scored["id"], value, now, source)
        choice = "skipped" if value is None else display(rules, value)
        return Outcome(
            "recorded",
            "Skipped." if value is None else f"Saved: {choice}",
            choice=choice,
            answer_id=scored["id"],
            undo_until=now + project.undo_seconds,
        )

    # -- multi-choice toggles and undo -----------------------------------------------------

    async def toggle(self, user: UserRef, assignment_id: int, label: str) -> Outcome:
        """Add or remove one label of a multi-choice selection."""
        now = self.clock()

        def tx(conn: sqlite3.Connection) -> Outcome:
            r = self._check(conn, user, assignment_id)
            if isinstance(r, Outcome):
                return r
            name = self.names[r["project_id"]]
            if r["state"] != "pending" or r["expires_at"] <= now:
                return Outcome("stale", "This item is already done.")
            if self.rules[name].kind != "multi" or label not in self.rules[name].labels:
                return Outcome("invalid", "That button doesn't belong here.")
            chosen = set(json.loads(r["draft"]) if r["draft"] else [])
            chosen ^= {label}
            repo.set_draft(conn, assignment_id, [x for x in self.rules[name].labels if x in chosen])
            m = repo.get_member(conn, r["project_id"], r["annotator_id"])
            task = self._task(conn, assignment_id, m["answers"] if m else 0)
            return Outcome("recorded", f"{'✓' if label in chosen else '✗'} {label}", task=task)

        return await self.db.write(tx, short=True)

    async def undo(self, user: UserRef, answer_id: int) -> Outcome:
        """Take back an answer within the project's undo window; returns the item again."""
        now = self.clock()

        def tx(conn: sqlite3.Connection) -> Outcome:
            x = repo.get_answer(conn, answer_id)
            if x is None:
                return Outcome("stale", "Nothing to undo.")
            if x["annotator_key"] != user.key:
                return Outcome("forbidden", "That button isn't yours.")
            item = repo.get_item(conn, x["item_id"])
            name = self.names[item["project_id"]]
            project, rules = self.projects[name], self.rules[name]
            if not can_undo(x["answered_at"], now, project.undo_seconds):
                return Outcome("stale", "Too late to undo, sorry.")
            pid, aid = item["project_id"], x["annotator_id"]
            m = repo.get_member(conn, pid, aid)
            if m is None or m["status"] != "active":
                return Outcome("stale", "You can't undo right now.")
            settled_by_expert = any(v["expert"] for v in repo.item_votes(conn, item["id"]))
            if settled_by_expert and not x["expert"]:
                return Outcome("stale", "Too late to undo: an expert has settled this item.")
            lease = lease_deadline(now, project.lease_seconds)
            if x["is_gold"] and x["value"] is not None:
                # A scored gold answer stays: Undo lets them answer again (feedback may have
                # shown the right answer) but the score is the first answer's, and the kept
                # row means the item is never leased to them again.
                repo.reopen_assignment(conn, x["assignment_id"], x["item_id"], lease)
                task = self._task(conn, x["assignment_id"], m["answers"])
                return Outcome("recorded", "Undone: answer it again.", task=task)
            repo.delete_answer(conn, answer_id)
            repo.reopen_assignment(conn, x["assignment_id"], x["item_id"], lease)
            deltas = {"skips": -1} if x["value"] is None else {"answers": -1}
            if x["is_gold"] and x["value"] is not None:
                repo.bump_item_answers(conn, x["item_id"], -1)
                self._pooled.pop(pid, None)
            if x["correct"] is not None:
                deltas.update(gold_answers=-1, gold_correct=-int(x["correct"]))
                # Undoing a qualification answer gives back its qualification slot too.
                gold_before = m["gold_answers"] - 1
                if gold_before < rules.qualification:
                    deltas.update(qual_answers=-1, qual_correct=-int(x["correct"]))
            repo.bump_member(conn, pid, aid, **deltas)
            repo.update_member(conn, pid, aid, same_run=max(0, m["same_run"] - 1))
            if x["value"] is not None and not x["is_gold"]:
                self._settle(conn, pid, x["item_id"], rules, now)
            task = self._task(conn, x["assignment_id"], m["answers"] + deltas.get("answers", 0))
            return Outcome("recorded", "Undone: answer it again.", task=task)

        return await self.db.write(tx, short=True)

    async def pushes(self, platform: str, limit: int = 50) -> list[Push]:
        """Items for annotators on `platform` who were told to wait and now have work."""
        now = self.clock()

        def tx(conn: sqlite3.Connection) -> list[Push]:
            out = []
            for w in repo.waiting_members(conn, platform, limit):
                platform_, _, uid = w["key"].partition(":")
                user = UserRef(platform_, uid, w["name"], w["address"])
                role = self.role(user)
                got = self._next_tx(conn, user, role, now, self.rng.random())
                if isinstance(got, Task):
                    out.append(Push(user, got))
            return out

        return await self.db.write(tx)


def _suspended_text(reason: str | None) -> str:
    why = f" {reason}" if reason else ""
    return f"You're not receiving items at the moment.{why} A coordinator can reinstate you."
