"""Coordinators' announcements: a draft with its audience, then one outbox row per member."""

from __future__ import annotations

import sqlite3

from ..storage import outbox_queries as oq
from .outbox import Outbox
from .shared import Row, Shared
from .types import UserRef
from .volunteer_types import Announcement

MAX_TEXT = 3000  # characters: an announcement fits one message on every platform


class Announcements:
    """Draft, send, follow and cancel announcements to a project's members."""

    def __init__(self, shared: Shared, outbox: Outbox) -> None:
        self.s = shared
        self.outbox = outbox

    def _status(self, conn: sqlite3.Connection, a: Row) -> Announcement:
        counts = oq.announcement_counts(conn, a["id"])
        audience = sum(counts.values())
        if a["state"] == "draft":
            audience = len(oq.audience(conn, a["project_id"], a["author"]))
        return Announcement(
            id=int(a["id"]),
            project=self.s.names[a["project_id"]],
            author=str(a["author"]),
            text=str(a["text"]),
            state=str(a["state"]),
            audience=audience,
            sent=counts.get("sent", 0),
            pending=counts.get("pending", 0) + counts.get("sending", 0),
            failed=counts.get("failed", 0) + counts.get("unsure", 0),
            cancelled=counts.get("cancelled", 0) + counts.get("dropped", 0),
        )

    async def draft(self, project: str, author: UserRef, text: str) -> Announcement:
        """Keep an announcement to preview; nothing is sent until `send`."""
        now = self.s.clock()
        pid = self.s.pids[project]

        def tx(conn: sqlite3.Connection) -> Announcement:
            aid = oq.new_announcement(conn, pid, author.key, author.address, text[:MAX_TEXT], now)
            a = oq.announcement(conn, aid)
            assert a is not None
            return self._status(conn, a)

        return await self.s.db.write(tx, short=True)

    async def send(self, announcement_id: int) -> Announcement | None:
        """Queue a draft for every active member (once: a second press changes nothing)."""
        now = self.s.clock()

        def tx(conn: sqlite3.Connection) -> Announcement | None:
            a = oq.announcement(conn, announcement_id)
            if a is None:
                return None
            if a["state"] == "draft":
                rows = [
                    oq.NewRow(
                        kind="announcement",
                        platform=m["platform"],
                        recipient=m["key"],
                        address=m["address"],
                        name=m["name"],
                        payload={},
                        not_before=now,
                        project_id=a["project_id"],
                        announcement_id=announcement_id,
                        dedupe=f"announcement:{announcement_id}:{m['key']}",
                    )
                    for m in oq.audience(conn, a["project_id"], a["author"])
                ]
                oq.add(conn, rows, now)
                state = "sending" if rows else "done"
                oq.set_announcement(conn, announcement_id, state=state, queued_at=now)
                a = oq.announcement(conn, announcement_id)
                assert a is not None
            return self._status(conn, a)

        got = await self.s.db.write(tx)
        self.outbox.notify()
        return got

    async def cancel(self, announcement_id: int | None = None) -> list[Announcement]:
        """Stop copies not yet sent: of one announcement, or of every one still sending."""
        now = self.s.clock()

        def tx(conn: sqlite3.Connection) -> list[Announcement]:
            if announcement_id is None:
                rows = oq.latest_announcements(conn, ("sending", "draft"), 100)
            else:
                one = oq.announcement(conn, announcement_id)
                rows = [one] if one is not None else []
            out = []
            for a in rows:
                if a["state"] not in ("sending", "draft"):
                    out.append(self._status(conn, a))
                    continue
                oq.cancel_announcement(conn, a["id"], now)
                oq.set_announcement(conn, a["id"], state="cancelled", finished_at=now)
                fresh = oq.announcement(conn, a["id"])
                assert fresh is not None
                out.append(self._status(conn, fresh))
            return out

        return await self.s.db.write(tx)

    async def get(self, announcement_id: int) -> Announcement | None:
        """One announcement with its progress."""

        def q(conn: sqlite3.Connection) -> Announcement | None:
            a = oq.announcement(conn, announcement_id)
            return None if a is None else self._status(conn, a)

        return await self.s.db.read(q)

    async def recent(self, limit: int = 3) -> list[Announcement]:
        """The latest announcements sent or sending, newest first."""

        def q(conn: sqlite3.Connection) -> list[Announcement]:
            rows = oq.latest_announcements(conn, ("sending", "done", "cancelled"), limit)
            return [self._status(conn, a) for a in rows]

        return await self.s.db.read(q)
