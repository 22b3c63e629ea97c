"""The SQL of the outbox (bulk sends, one row per recipient) and of announcements."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

Row = sqlite3.Row


@dataclass(frozen=True)
class NewRow:
    """An outbox row to write: who gets what (data, never words), once per `dedupe`."""

    kind: str
    platform: str
    recipient: str
    address: str | None
    name: str
    payload: Mapping[str, Any]
    not_before: float
    project_id: int | None = None
    announcement_id: int | None = None
    dedupe: str | None = None
    expires_at: float | None = None


def to_each(
    keys: Iterable[str],
    kind: str,
    payload: Mapping[str, Any],
    now: float,
    project_id: int,
    dedupe: str | None = None,
) -> list[NewRow]:
    """One row of `kind` for each `platform:user` key, due now; `dedupe` (plus the key) sends
    each person's once."""
    return [
        NewRow(
            kind=kind,
            platform=key.partition(":")[0],
            recipient=key,
            address=None,
            name="",
            payload=payload,
            not_before=now,
            project_id=project_id,
            dedupe=None if dedupe is None else f"{dedupe}:{key}",
        )
        for key in keys
    ]


def add(conn: sqlite3.Connection, rows: Iterable[NewRow], now: float) -> int:
    """Write rows (a row whose `dedupe` exists already is left out); how many were new."""
    cur = conn.executemany(
        """INSERT INTO outbox (kind, platform, recipient, address, name, project_id,
             announcement_id, payload, dedupe, not_before, expires_at, created_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(dedupe) DO NOTHING""",
        [
            (r.kind, r.platform, r.recipient, r.address, r.name, r.project_id,
             r.announcement_id, json.dumps(dict(r.payload)), r.dedupe, r.not_before,
             r.expires_at, now)
            for r in rows
        ],
    )  # fmt: skip
    return cur.rowcount


_ROW = """SELECT o.*, n.text AS announcement_text, n.state AS announcement_state
    FROM outbox o LEFT JOIN announcements n ON n.id = o.announcement_id"""


def due(conn: sqlite3.Connection, platform: str, now: float, limit: int) -> list[Row]:
    """Pending rows of a platform whose time has come, oldest first."""
    return conn.execute(
        f"""{_ROW} WHERE o.platform = ? AND o.state = 'pending' AND o.not_before <= ?
            ORDER BY o.not_before, o.id LIMIT ?""",
        (platform, now, limit),
    ).fetchall()


def next_due_at(conn: sqlite3.Connection, platform: str) -> float | None:
    """When the platform's next pending row becomes due (None: nothing pending)."""
    row = conn.execute(
        "SELECT MIN(not_before) FROM outbox WHERE platform = ? AND state = 'pending'", (platform,)
    ).fetchone()
    return None if row[0] is None else float(row[0])


def get(conn: sqlite3.Connection, row_id: int) -> Row | None:
    """One row with its announcement's text."""
    return conn.execute(f"{_ROW} WHERE o.id = ?", (row_id,)).fetchone()


def set_state(conn: sqlite3.Connection, row_id: int, state: str, **cols: Any) -> None:
    """Move a row to a state, setting other columns too."""
    sets = ", ".join(["state = ?", *(f"{c} = ?" for c in cols)])
    conn.execute(f"UPDATE outbox SET {sets} WHERE id = ?", (state, *cols.values(), row_id))


def claim(conn: sqlite3.Connection, row_id: int, now: float) -> bool:
    """pending -> sending, with one more attempt; False if the row is no longer pending."""
    cur = conn.execute(
        """UPDATE outbox SET state = 'sending', attempts = attempts + 1, claimed_at = ?
           WHERE id = ? AND state = 'pending'""",
        (now, row_id),
    )
    return cur.rowcount == 1


def sending(conn: sqlite3.Connection, platform: str) -> list[Row]:
    """Rows a sender claimed and never settled: what a crash left in flight."""
    return conn.execute(
        f"{_ROW} WHERE o.platform = ? AND o.state = 'sending' ORDER BY o.id", (platform,)
    ).fetchall()


def member_for_reminder(conn: sqlite3.Connection, recipient: str, project_id: int) -> Row | None:
    """What decides whether a queued reminder still makes sense for its person."""
    return conn.execute(
        """SELECT m.status, m.paused, m.last_active, a.blocked, a.muted, p.paused AS halted,
                  a.project_id = m.project_id AS current
           FROM members m JOIN annotators a ON a.id = m.annotator_id
           JOIN projects p ON p.id = m.project_id
           WHERE a.key = ? AND m.project_id = ?""",
        (recipient, project_id),
    ).fetchone()


def muted(conn: sqlite3.Connection, recipient: str) -> bool:
    """Whether the person asked for no bulk messages."""
    row = conn.execute("SELECT muted FROM annotators WHERE key = ?", (recipient,)).fetchone()
    return bool(row and row[0])


# -- announcements ----------------------------------------------------------------------------


def new_announcement(
    conn: sqlite3.Connection,
    project_id: int,
    author: str,
    address: str | None,
    text: str,
    now: float,
) -> int:
    """A draft announcement; its id."""
    cur = conn.execute(
        """INSERT INTO announcements (project_id, author, author_address, text, created_at)
           VALUES (?, ?, ?, ?, ?)""",
        (project_id, author, address, text, now),
    )
    return int(cur.lastrowid or 0)


def announcement(conn: sqlite3.Connection, announcement_id: int) -> Row | None:
    """One announcement."""
    return conn.execute("SELECT * FROM announcements WHERE id = ?", (announcement_id,)).fetchone()


def latest_announcements(
    conn: sqlite3.Connection, states: tuple[str, ...], limit: int
) -> list[Row]:
    """The newest announcements in these states."""
    marks = ",".join("?" for _ in states)
    return conn.execute(
        f"SELECT * FROM announcements WHERE state IN ({marks}) ORDER BY id DESC LIMIT ?",
        (*states, limit),
    ).fetchall()


def set_announcement(conn: sqlite3.Connection, announcement_id: int, **cols: Any) -> None:
    """Set columns of an announcement."""
    sets = ", ".join(f"{c} = ?" for c in cols)
    conn.execute(f"UPDATE announcements SET {sets} WHERE id = ?", (*cols.values(), announcement_id))


def audience(conn: sqlite3.Connection, project_id: int, exclude: str) -> list[Row]:
    """Who an announcement goes to: the project's active members who can be written to."""
    return conn.execute(
        """SELECT a.key, a.platform, a.address, a.name FROM members m
           JOIN annotators a ON a.id = m.annotator_id
           WHERE m.project_id = ? AND m.status = 'active' AND a.blocked = 0 AND a.muted = 0
             AND a.key != ?
           ORDER BY a.id""",
        (project_id, exclude),
    ).fetchall()


def announcement_counts(conn: sqlite3.Connection, announcement_id: int) -> dict[str, int]:
    """The announcement's copies by state."""
    return dict(
        conn.execute(
            """SELECT state, COUNT(*) FROM outbox
               WHERE announcement_id = ? AND kind = 'announcement' GROUP BY state""",
            (announcement_id,),
        ).fetchall()
    )


def cancel_announcement(conn: sqlite3.Connection, announcement_id: int, now: float) -> int:
    """Copies not yet sent stop here; how many were stopped."""
    return conn.execute(
        """UPDATE outbox SET state = 'cancelled', sent_at = ?
           WHERE announcement_id = ? AND kind = 'announcement' AND state = 'pending'""",
        (now, announcement_id),
    ).rowcount
