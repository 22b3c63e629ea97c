"""The scheduler: reminders to idle members and the coordinators' daily digest, into the outbox.

Each round (`tick`) reads the service's clock, asks the core who is due, and writes outbox rows
and the members' reminder state in the same transaction: a reminder is queued once, and its
times survive restarts. `run` calls `tick` once a minute for `chatlabel run`; tests call `tick`
after moving their clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from typing import Any

from ..core.timing import (
    ReminderRule,
    ReminderState,
    day_start,
    digest_due,
    eta_seconds,
    next_quiet_start,
    parse_clock,
    reminded,
    reminder_due,
)
from ..storage import model_queries as mq
from ..storage import outbox_queries as oq
from ..storage import repo, report_queries
from ..storage import volunteer_queries as vq
from .leases import Leases
from .outbox import Outbox
from .rounds import exclusive_round
from .shared import Row, Shared
from .types import UserRef
from .volunteer_types import Tick

log = logging.getLogger("chatlabel.nudges")

BATCH = 100  # members looked at per transaction: a big round never holds the writer for long
HOUR = 3600.0


class Nudges:
    """Queues reminders and digests when they are due (see the module)."""

    def __init__(self, shared: Shared, leases: Leases, outbox: Outbox) -> None:
        self.s = shared
        self.leases = leases
        self.outbox = outbox
        self.rules: dict[str, ReminderRule] = {}
        for p in shared.config.project:
            rule = p.reminder_rule()
            if rule is not None:
                self.rules[p.name] = rule

    def active(self) -> bool:
        """Whether any project has reminders or a digest."""
        return bool(self.rules) or any(p.digest for p in self.s.config.project)

    async def tick(self) -> Tick:
        """One round at the clock's time: queue every reminder and digest now due."""
        reminders = digests = 0
        for name in self.s.project_names():
            if name in self.rules:
                reminders += await self._reminders(name, self.rules[name])
            if self.s.projects[name].digest is not None:
                digests += await self._digest(name)
        if reminders or digests:
            self.outbox.notify()
        return Tick(reminders, digests)

    async def run(self, stop: asyncio.Event, interval: float = 60.0) -> None:
        """Tick every `interval` until `stop`; storage faults skip a round quietly."""
        while not stop.is_set():
            # One process queues them: the outbox's unique dedupe keys would drop a second
            # copy anyway, but not the work.
            await exclusive_round(
                self.s.db.exclusive,
                "reminders",
                self.tick,
                lambda: log.exception(
                    "queueing reminders and digests failed; trying again next round"
                ),
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)

    # -- reminders --------------------------------------------------------------------------

    async def _reminders(self, name: str, rule: ReminderRule) -> int:
        pid = self.s.pids[name]
        queued, seen = 0, 0
        while True:
            now = self.s.clock()
            added, looked = await self.s.db.write(self._remind, pid, rule, now, seen)
            queued += added
            # Members who got a reminder drop out of the candidates; the rest are skipped.
            seen += looked - added
            if looked < BATCH:
                return queued

    def _remind(
        self, conn: sqlite3.Connection, pid: int, rule: ReminderRule, now: float, skip: int
    ) -> tuple[int, int]:
        """One batch of candidates: queue a reminder for each who is due and has work."""
        rows = vq.reminder_candidates(conn, pid, now - rule.after, now - rule.every, skip + BATCH)
        rows = rows[skip:]
        waiting = vq.queue_size(conn, pid) if rows else 0
        out = []
        for m in rows:
            state = _state(m)
            if not reminder_due(rule, state, now):
                continue
            user = UserRef.from_key(str(m["key"]))
            if not self.leases.has_work(conn, pid, m["annotator_id"], self.s.role(user), m, now):
                continue
            _save(conn, pid, m["annotator_id"], reminded(rule, state, now))
            out.append(
                oq.NewRow(
                    kind="reminder",
                    platform=m["platform"],
                    recipient=m["key"],
                    address=m["address"],
                    name=m["name"],
                    payload={"waiting": max(waiting, 1)},
                    not_before=now,
                    project_id=pid,
                    # Not worth sending once the quiet hours begin.
                    expires_at=next_quiet_start(rule.quiet, now, rule.tz),
                )
            )
        oq.add(conn, out, now)
        return len(out), len(rows)

    # -- the digest -------------------------------------------------------------------------

    async def _digest(self, name: str) -> int:
        project = self.s.projects[name]
        assert project.digest is not None
        pid, tz = self.s.pids[name], self.s.zones[name]
        at = parse_clock(project.digest.at)
        to = project.digest.to or list(self.s.config.access.coordinators)
        now = self.s.clock()

        def tx(conn: sqlite3.Connection) -> int:
            last_day, last_at = vq.last_digest(conn, name)
            day = digest_due(at, tz, now, last_day)
            if day is None:
                return 0
            midnight = day_start(now, tz)
            c = report_queries.project_counts(conn, pid, now - HOUR, midnight)
            pending = c.by_status.get("pending", 0)
            # Suspensions since the last digest (none yet: since midnight), so none is missed.
            since = midnight if last_at is None else min(float(last_at), midnight)
            payload: dict[str, Any] = {
                "day": day,
                "settled_today": vq.settled_since(conn, pid, midnight),
                "eta": eta_seconds(c.answers_needed, c.answers_since, pending),
                "suspended": [r["name"] or r["key"] for r in vq.suspended_since(conn, pid, since)],
                "held": c.by_status.get("held", 0),
            }
            if project.model is not None:
                payload["model"] = mq.digest_figures(conn, pid, midnight)
            return oq.add(
                conn, oq.to_each(to, "digest", payload, now, pid, f"digest:{name}:{day}"), now
            )

        return await self.s.db.write(tx)


def _state(m: Row) -> ReminderState:
    """A member row's reminder state as the core reads it."""
    return ReminderState(
        last_active=m["last_active"] or m["joined_at"],
        reminded_at=m["reminded_at"],
        day=m["reminded_day"],
        sent_today=m["reminded_today"],
        ignored=m["reminders_ignored"],
    )


def _save(conn: sqlite3.Connection, pid: int, aid: int, s: ReminderState) -> None:
    """Store a member's reminder state after a reminder."""
    repo.update_member(
        conn,
        pid,
        aid,
        reminded_at=s.reminded_at,
        reminded_day=s.day,
        reminded_today=s.sent_today,
        reminders_ignored=s.ignored,
    )
