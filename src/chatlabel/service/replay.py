"""Replaying recorded answers through the service: lease a named item to a named annotator."""

from __future__ import annotations

import sqlite3

from ..core.assignment import lease_deadline
from ..storage import quality_queries as qq
from ..storage import repo
from .labeling import LabelingService
from .types import Idle, Task, UserRef


async def lease_item(service: LabelingService, user: UserRef, item_id: str) -> Task | Idle:
    """Lease the item `item_id` to a member if it is open to them; otherwise say why not.

    The ordinary path (`next_task`) picks the item itself; a replay of real crowd data must
    give each worker the item they answered, and learn when that item no longer needs them
    (settled, or seen before). Everything else — suspension, pauses, leases — is the same.
    """
    now = service.clock()

    def tx(conn: sqlite3.Connection) -> Task | Idle:
        if repo.expire_leases(conn, now):
            service.notify()
        cur = service._current(conn, user)
        if cur is None:
            return Idle("not_joined", "Send /start to begin labeling.")
        a, name = cur
        pid = service.pids[name]
        m = repo.get_member(conn, pid, a["id"])
        if m is None:
            return Idle("not_joined", "Send /start to begin labeling.")
        if m["status"] == "suspended":
            return Idle("suspended", m["reason"] or "Suspended.")
        target = qq.open_item(conn, pid, a["id"], item_id)
        if target is None:
            return Idle("no_work", f"Item {item_id!r} does not need this annotator.")
        if repo.open_assignment(conn, a["id"], pid) is not None:
            return Idle("no_work", "Answer or skip the open item first.")
        asg = repo.create_assignment(
            conn, target, a["id"], now, lease_deadline(now, service.projects[name].lease_seconds)
        )
        return service._task(conn, asg, m["answers"])

    return await service.db.write(tx)
