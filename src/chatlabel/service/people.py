"""People: pausing, languages, blocked users, suspensions and reinstatements by hand."""

from __future__ import annotations

import sqlite3

from ..core.suspension import Reason
from ..storage import repo
from .settling import Settling
from .shared import Shared
from .types import UserRef


class People:
    """Use cases about annotators rather than items."""

    def __init__(self, shared: Shared, settling: Settling) -> None:
        self.s = shared
        self.settling = settling

    async def set_paused(self, user: UserRef, paused: bool) -> bool:
        """Pause or resume pushes for oneself; False when they have not joined a project."""

        def tx(conn: sqlite3.Connection) -> bool:
            cur = self.s.current(conn, user)
            if cur is None:
                return False
            a, name = cur
            repo.update_member(conn, self.s.pids[name], a["id"], paused=int(paused), waiting=0)
            return True

        return await self.s.db.write(tx, short=True)

    async def language(self, user: UserRef) -> str | None:
        """The language the person chose with /language (None: not chosen)."""
        return await self.s.db.read(repo.get_language, user.key)

    async def set_language(self, user: UserRef, language: str | None) -> bool:
        """Remember the person's language; False when they are not known yet (nothing written)."""

        def tx(conn: sqlite3.Connection) -> bool:
            a = repo.get_annotator(conn, user.key)
            if a is None:
                return False
            repo.set_language(conn, a["id"], language)
            return True

        return await self.s.db.write(tx, short=True)

    async def set_project_paused(self, name: str, paused: bool) -> None:
        """Pause or resume a whole project (coordinators)."""
        await self.s.db.write(lambda c: repo.set_project_paused(c, self.s.pids[name], paused))
        if not paused:
            self.s.notify()

    async def mark_blocked(self, user: UserRef) -> None:
        """The user blocked the bot: stop pushing and give their items back."""

        def tx(conn: sqlite3.Connection) -> None:
            a = repo.get_annotator(conn, user.key)
            if a is not None:
                repo.set_blocked(conn, a["id"])
                repo.release_assignments(conn, a["id"])

        await self.s.db.write(tx, short=True)
        self.s.notify()

    async def suspend(self, project: str, key: str, note: str | None = None) -> bool:
        """Suspend an annotator by hand (coordinators), with their note on why."""
        reason = Reason("by_coordinator", {"note": note} if note else {})
        return await self._set_status(project, key, "suspended", reason)

    async def reinstate(self, project: str, key: str) -> bool:
        """Let a suspended annotator label again (coordinators)."""
        return await self._set_status(project, key, "active", None)

    async def _set_status(self, project: str, key: str, status: str, reason: Reason | None) -> bool:
        now = self.s.clock()
        pid = self.s.pids[project]

        def tx(conn: sqlite3.Connection) -> bool:
            a = repo.get_annotator(conn, key)
            if a is None or repo.get_member(conn, pid, a["id"]) is None:
                return False
            if status == "suspended":
                self.settling.suspend(conn, pid, a["id"], reason or Reason("by_coordinator"), now)
            else:
                self.s.pooled.pop(pid, None)
                # A fresh start: gold counters restart, so they qualify again on new gold.
                repo.update_member(
                    conn,
                    pid,
                    a["id"],
                    status="active",
                    reason=None,
                    qual_answers=0,
                    qual_correct=0,
                    gold_answers=0,
                    gold_correct=0,
                    fast_answers=0,
                    same_run=0,
                    waiting=1,
                )
            return True

        ok = await self.s.db.write(tx)
        self.s.notify()
        return ok
