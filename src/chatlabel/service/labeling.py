"""The labeling use cases: join, next item, answer, skip, toggle, undo, pushes."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace

from ..core import access
from ..core.assignment import MemberRecord, can_undo, lease_deadline, wants_gold
from ..core.suspension import Reason
from ..core.values import canonical, matches_gold
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

        def tx(conn: sqlite3.Connection) -> JoinResult:
            a = repo.upsert_annotator(conn, user.key, user.platform, user.address, user.name, now)
            acc = self.config.access
            if arg and arg in acc.invite_codes and not a["invited"]:
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
                    return JoinResult("refused", role=role, refusal="no_projects")
                choices = tuple(self.info(n) for n in self.projects)
                return JoinResult("choose", choices=choices, role=role)
            pid = self.pids[name]
            member = repo.get_member(conn, pid, a["id"])
            refusal = access.join_refusal(
                user.key,
                acc.mode,
                code=arg,
                invite_codes=acc.invite_codes,
                allowlist=acc.allowlist,
                role=role,
                already_member=member is not None or bool(a["invited"]),
            )
            if refusal:
                return JoinResult("refused", role=role, refusal=refusal)
            repo.add_member(conn, pid, a["id"], now)
            repo.set_current_project(conn, a["id"], pid)
            return JoinResult("joined", project=self.info(name), role=role)

        return await self.db.write(tx, short=True)

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
            return Idle("not_joined")
        a, name = cur
        pid = self.pids[name]
        m = repo.get_member(conn, pid, a["id"])
        if m is None:
            return Idle("not_joined")
        if m["status"] == "suspended":
            return Idle("suspended", Reason.decode(m["reason"]))
        if any(p["id"] == pid and p["paused"] for p in repo.project_rows(conn)):
            # Waiting, so the push loop brings them back when the project resumes.
            repo.update_member(conn, pid, a["id"], waiting=1)
            return Idle("project_paused")
        if m["paused"]:
            return Idle("paused")
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
            return Idle("no_work")
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
                return Idle("busy")
            target = repo.open_item(conn, pid, a["id"], item_id)
            if target is None:
                return Idle("not_needed")
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
                return Outcome("stale", "no_text_item")
            a, name = cur
            if source is not None:
                prev = repo.answer_from_source(conn, a["id"], source)
                if prev is not None:
                    return Outcome("duplicate", project=name, value=prev["value"])
            row = repo.open_assignment(conn, a["id"], self.pids[name])
            if self.rules[name].kind != "text" or row is None:
                return Outcome("stale", "no_text_item", project=name)
            out = self._answer_tx(conn, user, int(row["id"]), text, now, False, source)
            if not out.ok or out.suspended:
                return out
            return replace(out, next=self._next_tx(conn, user, role, now, draw))

        out = await self.db.write(tx, short=True)
        if out.ok:
            self.notify()
        return out

    async def edit_text(self, user: UserRef, source: str, text: str) -> Outcome:
        """A free-text answer edited on the platform: it becomes the new text while the answer
        may still be undone, and the item is settled again.

        On a gold item the new text is shown, but the first answer stays the one scored.
        """
        now = self.clock()

        def tx(conn: sqlite3.Connection) -> Outcome:
            a = repo.get_annotator(conn, user.key)
            prev = repo.answer_from_source(conn, a["id"], source) if a is not None else None
            if prev is None or prev["value"] is None:
                return Outcome("stale", "not_an_answer")
            item = repo.get_item(conn, prev["item_id"])
            pid = item["project_id"]
            name = self.names[pid]
            project, rules = self.projects[name], self.rules[name]
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
            task = self._task(conn, prev["assignment_id"], m["answers"])
            if value == prev["value"]:
                return Outcome("duplicate", project=name, value=value, task=task)
            repo.set_answer_value(conn, prev["id"], value)
            if not prev["is_gold"] and prev["counted"]:
                self._settle(conn, pid, item["id"], rules, now)
            return Outcome(
                "recorded",
                project=name,
                value=value,
                task=task,
                answer_id=prev["id"],
                undo_until=prev["answered_at"] + project.undo_seconds,
            )

        return await self.db.write(tx, short=True)

    def _check(self, conn: sqlite3.Connection, user: UserRef, assignment_id: int) -> Row | Outcome:
        r = repo.get_assignment(conn, assignment_id)
        if r is None or r["annotator_key"] != user.key:
            return Outcome("forbidden", "not_yours")
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
            # The item as it was shown, so a second copy of it can show the outcome too.
            shown = self._task(conn, assignment_id, 0, r)
            prev = repo.answer_for_assignment(conn, assignment_id)
            if prev is not None:
                skipped = prev["value"] is None
                return Outcome(
                    "duplicate", project=name, value=prev["value"], skipped=skipped, task=shown
                )
            return Outcome("stale", "timed_out", project=name, task=shown)
        if r["expires_at"] <= now:
            repo.expire_leases(conn, now)
            self.notify()
            return Outcome(
                "stale", "timed_out", project=name, task=self._task(conn, assignment_id, 0, r)
            )
        member = repo.get_member(conn, r["project_id"], r["annotator_id"])
        if member is None or member["status"] != "active":
            return Outcome("stale", "cannot_answer", project=name)
        value: str | None = None
        if not skipping:
            if raw is None and rules.kind == "multi":
                raw = json.loads(r["draft"]) if r["draft"] else []
            if raw is None:
                return Outcome("invalid", "no_choice", project=name)
            try:
                value = canonical(rules, raw)
            except ValueError as exc:
                return Outcome("invalid", "bad_value", project=name, problem=str(exc))
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
                project=name,
                skipped=True,
                task=self._task(conn, assignment_id, member["answers"], r),
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
            feedback = Feedback(r["gold"], r["gold_reason"])
        return Outcome(
            "recorded",
            project=name,
            value=value,
            task=self._task(conn, assignment_id, member["answers"] + 1, r),
            answer_id=answer_id,
            undo_until=None if suspended else now + project.undo_seconds,
            feedback=feedback,
            suspended=suspended,
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
                return Outcome("stale", "done", project=name)
            if self.rules[name].kind != "multi" or label not in self.rules[name].labels:
                return Outcome("invalid", "wrong_button", project=name)
            chosen = set(json.loads(r["draft"]) if r["draft"] else [])
            chosen ^= {label}
            repo.set_draft(conn, assignment_id, [x for x in self.rules[name].labels if x in chosen])
            m = repo.get_member(conn, r["project_id"], r["annotator_id"])
            task = self._task(conn, assignment_id, m["answers"] if m else 0)
            return Outcome("recorded", project=name, task=task)

        return await self.db.write(tx, short=True)

    async def set_selection(self, user: UserRef, assignment_id: int, labels: list[str]) -> Outcome:
        """Make a multi-choice selection exactly `labels` (a platform that shows ticks itself)."""
        now = self.clock()

        def tx(conn: sqlite3.Connection) -> Outcome:
            r = self._check(conn, user, assignment_id)
            if isinstance(r, Outcome):
                return r
            name = self.names[r["project_id"]]
            rules = self.rules[name]
            if r["state"] != "pending" or r["expires_at"] <= now:
                return Outcome("stale", "done", project=name)
            if rules.kind != "multi" or not set(labels) <= set(rules.labels):
                return Outcome("invalid", "wrong_button", project=name)
            repo.set_draft(conn, assignment_id, [x for x in rules.labels if x in set(labels)])
            m = repo.get_member(conn, r["project_id"], r["annotator_id"])
            task = self._task(conn, assignment_id, m["answers"] if m else 0)
            return Outcome("recorded", project=name, task=task)

        return await self.db.write(tx, short=True)

    async def open_task(self, user: UserRef, assignment_id: int) -> Task | None:
        """The person's own assignment as a Task while it is open (None otherwise)."""
        now = self.clock()

        def q(conn: sqlite3.Connection) -> Task | None:
            r = repo.get_assignment(conn, assignment_id)
            if r is None or r["annotator_key"] != user.key:
                return None
            if r["state"] != "pending" or r["expires_at"] <= now:
                return None
            return self._task(conn, assignment_id, 0, r)

        return await self.db.read(q)

    async def release(self, user: UserRef, assignment_id: int) -> None:
        """Give back an item that could not be shown; its person keeps waiting for work."""

        def tx(conn: sqlite3.Connection) -> None:
            r = repo.get_assignment(conn, assignment_id)
            if r is None or r["annotator_key"] != user.key or r["state"] != "pending":
                return
            repo.close_assignment(conn, assignment_id, r["id"], "expired")
            repo.update_member(conn, r["project_id"], r["annotator_id"], waiting=1)

        await self.db.write(tx)
        self.notify()  # the item is free for others, and the push loop tries them again

    async def unshowable(self, user: UserRef, assignment_id: int) -> Task | Idle:
        """An item whose media could not be shown to this person: theirs no more, ever.

        Nobody may answer an item blind, and the person should not wait on it: it is recorded
        as a skip of theirs that counts nowhere (not in their skips, not in any vote), the
        item goes to others, and their next item comes in the same transaction.
        """
        now = self.clock()
        role = self.role(user)
        draw = self.rng.random()

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
                rules = self.rules[self.names[r["project_id"]]]
                # As after a skip: they may have been the last who could answer it.
                if not is_gold and r["n_answers"] >= rules.overlap:
                    self._settle(conn, r["project_id"], r["id"], rules, now)
            return self._next_tx(conn, user, role, now, draw)

        got = await self.db.write(tx, short=True)
        self.notify()
        return got

    async def undo(self, user: UserRef, answer_id: int) -> Outcome:
        """Take back an answer within the project's undo window; returns the item again."""
        now = self.clock()

        def tx(conn: sqlite3.Connection) -> Outcome:
            x = repo.get_answer(conn, answer_id)
            if x is None:
                return Outcome("stale", "nothing_to_undo")
            if x["annotator_key"] != user.key:
                return Outcome("forbidden", "not_yours")
            item = repo.get_item(conn, x["item_id"])
            name = self.names[item["project_id"]]
            project, rules = self.projects[name], self.rules[name]
            if not can_undo(x["answered_at"], now, project.undo_seconds):
                return Outcome("stale", "too_late", project=name)
            pid, aid = item["project_id"], x["annotator_id"]
            m = repo.get_member(conn, pid, aid)
            if m is None or m["status"] != "active":
                return Outcome("stale", "cannot_answer", project=name)
            settled_by_expert = any(v["expert"] for v in repo.item_votes(conn, item["id"]))
            if settled_by_expert and not x["expert"]:
                return Outcome("stale", "settled_by_expert", project=name)
            repo.delete_answer(conn, answer_id)
            repo.reopen_assignment(
                conn, x["assignment_id"], x["item_id"], lease_deadline(now, project.lease_seconds)
            )
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
            return Outcome("recorded", project=name, task=task)

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
