"""The outbox: every bulk message (reminders, announcements, digests) is a row before it is sent.

A row goes pending -> sending (claimed, one more attempt) -> sent once the platform accepted
it. A crash between the platform's acceptance and the "sent" write leaves the row "sending";
the next start settles those rows (see `unsettled`): where the platform can tell whether the
message arrived (a handle stored with it) the row is settled by what it says; where it cannot,
the kind decides (`RESEND_WHEN_UNSURE`). docs/reliability.md explains the trade-off.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Collection
from dataclasses import replace

from ..storage import outbox_queries as oq
from .shared import Row, Shared
from .types import UserRef
from .volunteer_types import OutboxItem

# Waits before another attempt after the platform refused for now (network, 5xx, limits past
# the outlet's own retries); after the last, the copy is given up as failed.
RETRY_DELAYS = (30.0, 120.0, 600.0, 3600.0)
# When a crash leaves a copy's fate unknown and the platform cannot tell: a second copy of an
# announcement (or a digest, or the alert that routing by a model is off) is better than none;
# a second reminder is worse than a missed one.
RESEND_WHEN_UNSURE = frozenset({"announcement", "announced", "digest", "pulled", "model_off"})
# Kinds for members (not coordinators): a later /mute stops copies still queued.
FOR_MEMBERS = frozenset({"reminder", "announcement"})


def _user(r: Row) -> UserRef:
    return UserRef.from_key(str(r["recipient"]), r["name"] or "", r["address"])


class Outbox:
    """Rows of bulk sends: what senders take, settle and retry; when they should wake."""

    def __init__(self, shared: Shared) -> None:
        self.s = shared
        self._listeners: list[asyncio.Event] = []

    def item(self, r: Row) -> OutboxItem:
        """A row as the conversation reads it."""
        pid = r["project_id"]
        return OutboxItem(
            id=int(r["id"]),
            kind=r["kind"],
            user=_user(r),
            project=self.s.names.get(pid) if pid is not None else None,
            payload=json.loads(r["payload"] or "{}"),
            text=r["announcement_text"] or "",
            announcement_id=r["announcement_id"],
            claimed_at=r["claimed_at"],
        )

    # -- waking senders -------------------------------------------------------------------------

    def listen(self) -> asyncio.Event:
        """An event of one's own that every `notify` sets (each sender clears its own)."""
        if not self._listeners:
            # Rows queued by another process on the same database (PostgreSQL) wake it too.
            self.s.db.on_change(self._wake)
        event = asyncio.Event()
        self._listeners.append(event)
        return event

    def notify(self) -> None:
        """New rows are due: wake the senders (a sender busy sending sees it when it next waits),
        in this process and, on a shared database, in the others."""
        self._wake()
        self.s.db.announce()

    def _wake(self) -> None:
        for event in self._listeners:
            event.set()

    # -- taking rows ----------------------------------------------------------------------------

    async def due(
        self, platform: str, limit: int = 50, skip: Collection[int] = ()
    ) -> list[OutboxItem]:
        """Pending rows of a platform whose time has come (`skip`: ids already being sent)."""
        now = self.s.clock()
        rows = await self.s.db.read(oq.due, platform, now, limit + len(skip))
        return [self.item(r) for r in rows if r["id"] not in skip][:limit]

    async def next_due_at(self, platform: str) -> float | None:
        """When the platform's next pending row comes due (None: nothing pending)."""
        return await self.s.db.read(oq.next_due_at, platform)

    async def claim(self, item: OutboxItem) -> OutboxItem | None:
        """Take a row for sending (pending -> sending); None if it went or is no longer wanted."""
        now = self.s.clock()

        def tx(conn: sqlite3.Connection) -> OutboxItem | str | None:
            r = oq.get(conn, item.id)
            if r is None or r["state"] != "pending":
                return None
            why = self._unwanted(conn, r, now)
            if why:
                oq.set_state(conn, item.id, "dropped", error=why, sent_at=now)
                if self._finish(conn, r, now):
                    return "done"
                return None
            oq.claim(conn, item.id, now)
            return replace(item, claimed_at=now)

        got = await self.s.db.write(tx, short=True)
        if isinstance(got, str):  # the last copy of an announcement: its author hears
            self.notify()
            return None
        return got

    def _unwanted(self, conn: sqlite3.Connection, r: Row, now: float) -> str:
        """Why a queued copy should not go out any more ('' when it should)."""
        if r["kind"] == "reminder":
            m = oq.member_for_reminder(conn, r["recipient"], r["project_id"])
            if m is None or m["status"] != "active" or m["paused"] or m["blocked"] or m["halted"]:
                return "not_available"
            if not m["current"]:
                return "other_project"
            if m["last_active"] is not None and m["last_active"] > r["created_at"]:
                return "came_back"  # they answered since it was queued: nothing to remind of
        if r["kind"] in FOR_MEMBERS and oq.muted(conn, r["recipient"]):
            return "muted"
        if r["expires_at"] is not None and r["expires_at"] <= now:
            return "expired"
        return ""

    # -- settling rows --------------------------------------------------------------------------

    async def sent(self, item: OutboxItem, ref: str | None) -> None:
        """The platform accepted the copy."""
        now = self.s.clock()

        def tx(conn: sqlite3.Connection) -> bool:
            oq.set_state(conn, item.id, "sent", sent_at=now, message_ref=ref, error=None)
            return self._finish(conn, oq.get(conn, item.id), now)

        if await self.s.db.write(tx, short=True):
            self.notify()

    async def failed(self, item: OutboxItem, error: str, *, retry: bool) -> None:
        """The copy did not go: try again later (`retry`) or give it up."""
        now = self.s.clock()

        def tx(conn: sqlite3.Connection) -> bool:
            r = oq.get(conn, item.id)
            if r is None:
                return False
            attempts = int(r["attempts"])
            if retry and attempts <= len(RETRY_DELAYS):
                later = now + RETRY_DELAYS[attempts - 1]
                oq.set_state(conn, item.id, "pending", not_before=later, error=error)
                return False
            oq.set_state(conn, item.id, "failed", sent_at=now, error=error)
            return self._finish(conn, r, now)

        if await self.s.db.write(tx, short=True):
            self.notify()

    async def put_back(self, item: OutboxItem) -> None:
        """A claimed copy that did not go because the bot is stopping: pending again, as if
        never tried (the next start sends it without waiting)."""

        def tx(conn: sqlite3.Connection) -> None:
            row = oq.get(conn, item.id)
            if row is not None and row["state"] == "sending":
                attempts = max(0, int(row["attempts"]) - 1)
                oq.set_state(conn, item.id, "pending", attempts=attempts)

        await self.s.db.write(tx, short=True)

    async def unsettled(self, platform: str) -> list[OutboxItem]:
        """Copies a sender claimed and never settled: what a crash left in flight."""
        rows = await self.s.db.read(oq.sending, platform)
        return [self.item(r) for r in rows]

    async def settle(self, item: OutboxItem, delivered: bool | None) -> bool:
        """Settle a copy a crash left in flight by what the platform says it got.

        `delivered` None: the platform cannot tell; the kind decides (RESEND_WHEN_UNSURE).
        True when the copy is to be sent (again).
        """
        now = self.s.clock()
        resend = delivered is False or (delivered is None and item.kind in RESEND_WHEN_UNSURE)

        def tx(conn: sqlite3.Connection) -> bool:
            if delivered:
                oq.set_state(conn, item.id, "sent", sent_at=now, error="found after a restart")
            elif resend:
                oq.set_state(conn, item.id, "pending", not_before=now)
                return False
            else:
                oq.set_state(conn, item.id, "unsure", sent_at=now, error="unknown after a crash")
            return self._finish(conn, oq.get(conn, item.id), now)

        await self.s.db.write(tx, short=True)
        self.notify()
        return resend

    def _finish(self, conn: sqlite3.Connection, r: Row | None, now: float) -> bool:
        """The last copy of an announcement settled: it is done, and its author hears so."""
        if r is None or r["announcement_id"] is None or r["kind"] != "announcement":
            return False
        aid = r["announcement_id"]
        counts = oq.announcement_counts(conn, aid)
        if counts.get("pending") or counts.get("sending"):
            return False
        a = oq.announcement(conn, aid)
        if a is None or a["state"] != "sending":
            return False
        oq.set_announcement(conn, aid, state="done", finished_at=now)
        author = str(a["author"])
        oq.add(
            conn,
            [
                oq.NewRow(
                    kind="announced",
                    platform=author.partition(":")[0],
                    recipient=author,
                    address=a["author_address"],
                    name="",
                    payload={
                        "sent": counts.get("sent", 0),
                        "failed": counts.get("failed", 0) + counts.get("unsure", 0),
                        "skipped": counts.get("dropped", 0),
                    },
                    not_before=now,
                    project_id=a["project_id"],
                    announcement_id=aid,
                    dedupe=f"announced:{aid}",
                )
            ],
            now,
        )
        return True
