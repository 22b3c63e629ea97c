"""Work for people: joining a project, the next item, leases, and pushes to those waiting."""

from __future__ import annotations

import sqlite3
from dataclasses import replace

from ..core import access
from ..core.assignment import MemberRecord, lease_deadline, may_check, wants_gold
from ..core.suspension import Reason
from ..mechanics import AttemptLimiter
from ..storage import repo
from .settling import member_record
from .shared import Row, Shared
from .types import Idle, JoinResult, Push, Task, UserRef


class Leases:
    """Who works on what: joining, the next item, a named item, giving items back, pushes."""

    def __init__(self, shared: Shared) -> None:
        self.s = shared
        # Failed invite codes, per person and overall (in memory: a restart forgets them).
        self.invite_attempts = AttemptLimiter()

    # -- join ------------------------------------------------------------------------------

    async def join(self, user: UserRef, arg: str | None = None) -> JoinResult:
        """Start (or resume) labeling; `arg` is a project name or an invite code."""
        now = self.s.clock()
        role = self.s.role(user)
        arg = (arg or "").strip() or None
        acc = self.s.config.access
        # An argument that is not a project name is an invite code (or a guess at one).
        guess = arg is not None and arg not in self.s.projects and acc.mode == "invite"
        # Someone locked out is not compared against the codes at all: the right code waits.
        locked = guess and self.invite_attempts.locked(user.key, now)
        codes = () if locked else acc.invite_codes
        valid = arg is not None and access.code_matches(arg, codes)

        def tx(conn: sqlite3.Connection) -> JoinResult:
            res = joining(conn)
            if res.status != "joined" and not newly_invited:
                # Nothing is kept for someone who is not let in (or has yet to choose): a
                # stranger's /start must not leave a row behind. The savepoint rolls it back.
                raise _Unwritten(res)
            return res

        newly_invited = False

        def joining(conn: sqlite3.Connection) -> JoinResult:
            nonlocal newly_invited
            a = repo.upsert_annotator(conn, user.key, user.platform, user.address, user.name, now)
            if valid and not a["invited"]:
                # Kept, so choosing among several projects after the code needs no code again.
                repo.set_invited(conn, a["id"])
                newly_invited = True
                a = repo.upsert_annotator(conn, user.key, user.platform, None, "", now)
            name: str | None = None
            if arg in self.s.projects:
                name = arg
            elif len(self.s.projects) == 1:
                name = next(iter(self.s.projects))
            elif a["project_id"] in self.s.names:
                name = self.s.names[a["project_id"]]
            if name is None:
                if not self.s.projects:
                    return JoinResult("refused", role=role, refusal="no_projects")
                choices = tuple(self.s.info(n) for n in self.s.projects)
                return JoinResult("choose", choices=choices, role=role)
            pid = self.s.pids[name]
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
                return JoinResult("refused", role=role, refusal=refusal)
            repo.add_member(conn, pid, a["id"], now)
            if member is None:
                # Reminders count a newcomer's idle time from joining; after that, from their
                # latest answer or skip (a /start alone changes nothing, as it always did).
                repo.update_member(conn, pid, a["id"], last_active=now)
            repo.set_current_project(conn, a["id"], pid)
            return JoinResult("joined", project=self.s.info(name), role=role)

        try:
            res = await self.s.db.write(tx, short=True)
        except _Unwritten as unwritten:
            res = unwritten.result
        if guess and res.status == "refused":
            if locked:
                return replace(res, refusal="too_many_attempts")
            self.invite_attempts.failed(user.key, now)
        return res

    # -- next item -------------------------------------------------------------------------

    async def next_task(self, user: UserRef) -> Task | Idle:
        """The annotator's current item, or a new lease, or why there is none."""
        now = self.s.clock()
        role = self.s.role(user)
        draw = self.s.rng.random()
        return await self.s.db.write(self.next_in, user, role, now, draw, short=True)

    def member(
        self, conn: sqlite3.Connection, user: UserRef, now: float
    ) -> tuple[Row, str, Row] | Idle:
        """The annotator, their project and membership, or why they get no item now.

        Overdue leases expire first, so what follows sees the pool as it really is."""
        if repo.expire_leases(conn, now):
            self.s.notify()
        cur = self.s.current(conn, user)
        if cur is None:
            return Idle("not_joined")
        a, name = cur
        pid = self.s.pids[name]
        # Locked until commit (PostgreSQL): one person's next item is decided once at a time.
        m = repo.member_for_work(conn, pid, a["id"])
        if m is None:
            return Idle("not_joined")
        if m["status"] == "suspended":
            return Idle("suspended", Reason.decode(m["reason"]))
        if m["project_paused"]:
            # Waiting, so the push loop brings them back when the project resumes.
            repo.update_member(conn, pid, a["id"], waiting=1)
            return Idle("project_paused")
        if m["paused"]:
            return Idle("paused")
        return a, name, m

    def next_in(
        self, conn: sqlite3.Connection, user: UserRef, role: str, now: float, draw: float
    ) -> Task | Idle:
        got = self.member(conn, user, now)
        if isinstance(got, Idle):
            return got
        a, name, m = got
        pid = self.s.pids[name]
        open_row = repo.open_assignment(conn, a["id"], pid)
        if open_row is not None:
            return self.s.task(conn, int(open_row["id"]), m["answers"])
        item_id = self._pick(conn, pid, a["id"], role, member_record(m), draw, now)
        if item_id is None:
            repo.update_member(conn, pid, a["id"], waiting=1)
            return Idle("no_work")
        project = self.s.projects[name]
        asg = repo.create_assignment(
            conn, item_id, a["id"], now, lease_deadline(now, project.lease_seconds)
        )
        if m["waiting"]:
            repo.update_member(conn, pid, a["id"], waiting=0)
        return self.s.task(conn, asg, m["answers"])

    def _routed(
        self, conn: sqlite3.Connection, pid: int, aid: int, m: MemberRecord, now: float
    ) -> int | None:
        """The next queue item where confident items wait for checks: checks go to checkers."""
        crowd = self.s.crowd(conn, pid)
        if may_check(m, crowd):
            item = repo.next_queue_item(conn, pid, aid, check=True)
            return item if item is not None else repo.next_queue_item(conn, pid, aid)
        item = repo.next_queue_item(conn, pid, aid)
        if item is not None:
            return item
        # Nothing but checks left: this person takes one only if no checker has been around
        # for a lease's time (a check must not wait for someone who has gone).
        since = now - self.s.projects[self.s.names[pid]].lease_seconds
        if repo.checker_around(conn, pid, aid, crowd, since):
            return None
        return repo.next_queue_item(conn, pid, aid, check=True)

    def has_work(
        self, conn: sqlite3.Connection, pid: int, aid: int, role: str, m: Row, now: float
    ) -> bool:
        """Whether a member has an item open or one to take now (without leasing it)."""
        if repo.open_assignment(conn, aid, pid) is not None:
            return True
        # A draw of 1.0 asks for gold only where qualification needs it.
        return self._pick(conn, pid, aid, role, member_record(m), 1.0, now) is not None

    def _pick(
        self,
        conn: sqlite3.Connection,
        pid: int,
        aid: int,
        role: str,
        m: MemberRecord,
        draw: float,
        now: float,
    ) -> int | None:
        rules = self.s.rules[self.s.names[pid]]
        settles = role == "expert" or (role == "coordinator" and not self.s.config.access.experts)
        if settles:
            item = repo.next_escalated_item(conn, pid, aid)
            if item is not None:
                return item
        if self.s.routing[self.s.names[pid]] is None:
            queue = repo.next_queue_item(conn, pid, aid)
        else:
            queue = self._routed(conn, pid, aid, m, now)
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
        now = self.s.clock()

        def tx(conn: sqlite3.Connection) -> Task | Idle:
            got = self.member(conn, user, now)
            if isinstance(got, Idle):
                return got
            a, name, m = got
            pid = self.s.pids[name]
            if repo.open_assignment(conn, a["id"], pid) is not None:
                return Idle("busy")
            target = repo.open_item(conn, pid, a["id"], item_id)
            if target is None:
                return Idle("not_needed")
            lease = lease_deadline(now, self.s.projects[name].lease_seconds)
            asg = repo.create_assignment(conn, target, a["id"], now, lease)
            return self.s.task(conn, asg, m["answers"])

        return await self.s.db.write(tx, short=True)

    async def open_task(self, user: UserRef, assignment_id: int) -> Task | None:
        """The person's own assignment as a Task while it is open (None otherwise)."""
        now = self.s.clock()

        def q(conn: sqlite3.Connection) -> Task | None:
            r = repo.get_assignment(conn, assignment_id)
            if r is None or r["annotator_key"] != user.key:
                return None
            if r["state"] != "pending" or r["expires_at"] <= now:
                return None
            return self.s.task(conn, assignment_id, 0, r)

        return await self.s.db.read(q)

    async def release(self, user: UserRef, assignment_id: int) -> None:
        """Give back an item that could not be shown; its person keeps waiting for work."""

        def tx(conn: sqlite3.Connection) -> None:
            r = repo.get_assignment(conn, assignment_id, lock=True)
            if r is None or r["annotator_key"] != user.key or r["state"] != "pending":
                return
            repo.close_assignment(conn, assignment_id, r["id"], "expired")
            repo.update_member(conn, r["project_id"], r["annotator_id"], waiting=1)

        await self.s.db.write(tx)
        self.s.notify()  # the item is free for others, and the push loop tries them again

    async def pushes(self, platform: str, limit: int = 50) -> list[Push]:
        """Items for annotators on `platform` who were told to wait and now have work."""
        now = self.s.clock()

        def tx(conn: sqlite3.Connection) -> list[Push]:
            out = []
            for w in repo.waiting_members(conn, platform, self.s.pids.values(), limit):
                user = UserRef.from_key(w["key"], w["name"], w["address"])
                role = self.s.role(user)
                got = self.next_in(conn, user, role, now, self.s.rng.random())
                if isinstance(got, Task):
                    out.append(Push(user, got))
            return out

        return await self.s.db.write(tx)


class _Unwritten(Exception):
    """A join that changes nothing: its result, with the transaction's writes rolled back."""

    def __init__(self, result: JoinResult) -> None:
        super().__init__(result.status)
        self.result = result
