"""The SQL behind /me, the leaderboard, reminders and the coordinators' daily digest."""

from __future__ import annotations

import sqlite3

from .dialect import is_pg

Row = sqlite3.Row


def set_flag(conn: sqlite3.Connection, key: str, column: str, on: bool) -> bool:
    """Set a person's `muted` or `on_board` choice; False when they are not known yet."""
    if column not in ("muted", "on_board"):
        raise ValueError(f"not a choice column: {column}")
    cur = conn.execute(f"UPDATE annotators SET {column} = ? WHERE key = ?", (int(on), key))
    return cur.rowcount == 1


def agreement(conn: sqlite3.Connection, project_id: int, annotator_id: int) -> tuple[int, int]:
    """(answers on resolved items, of which equal to the verdict) of one member."""
    n, agreed = conn.execute(
        """SELECT COUNT(*), COALESCE(SUM(CASE WHEN v.label = x.value THEN 1 ELSE 0 END), 0)
           FROM answers x
           JOIN items i ON i.id = x.item_id JOIN verdicts v ON v.item_id = x.item_id
           WHERE x.annotator_id = ? AND i.project_id = ? AND x.is_gold = 0
             AND x.value IS NOT NULL AND v.status = 'resolved'""",
        (annotator_id, project_id),
    ).fetchone()
    return int(n), int(agreed)


def project_answers(conn: sqlite3.Connection, project_id: int) -> int:
    """Answers (not skips) every member gave in the project, gold included."""
    row = conn.execute(
        "SELECT COALESCE(SUM(answers), 0) FROM members WHERE project_id = ?", (project_id,)
    ).fetchone()
    return int(row[0])


def contributions(conn: sqlite3.Connection, project_id: int) -> list[Row]:
    """Per active member: answers, right gold answers, answers that agreed with a verdict."""
    return conn.execute(
        """SELECT a.key, a.name, a.on_board, m.answers, m.gold_correct,
                  COALESCE(g.agreed, 0) AS agreed
           FROM members m JOIN annotators a ON a.id = m.annotator_id
           LEFT JOIN (SELECT x.annotator_id, COUNT(*) AS agreed FROM answers x
                      JOIN items i ON i.id = x.item_id JOIN verdicts v ON v.item_id = x.item_id
                      WHERE i.project_id = :p AND x.is_gold = 0 AND x.value IS NOT NULL
                        AND v.status = 'resolved' AND v.label = x.value
                      GROUP BY x.annotator_id) g ON g.annotator_id = m.annotator_id
           WHERE m.project_id = :p AND m.status = 'active' AND m.answers > 0""",
        {"p": project_id},
    ).fetchall()


# -- reminders ------------------------------------------------------------------------------


def reminder_candidates(
    conn: sqlite3.Connection, project_id: int, idle_before: float, every_before: float, limit: int
) -> list[Row]:
    """Members who may get a reminder: reachable, not paused or muted, idle long enough.

    The core decides the rest (per day, quiet hours, ignored reminders); this only narrows.
    """
    return conn.execute(
        """SELECT a.id AS annotator_id, a.key, a.address, a.name, a.platform, m.*
           FROM members m JOIN annotators a ON a.id = m.annotator_id
           JOIN projects p ON p.id = m.project_id
           WHERE m.project_id = ? AND m.status = 'active' AND m.paused = 0 AND p.paused = 0
             AND a.blocked = 0 AND a.muted = 0 AND a.project_id = m.project_id
             AND m.last_active <= ? AND (m.reminded_at IS NULL OR m.reminded_at <= ?)
           ORDER BY m.last_active LIMIT ?""",
        (project_id, idle_before, every_before, limit),
    ).fetchall()


def queue_size(conn: sqlite3.Connection, project_id: int) -> int:
    """Ordinary items that still want answers (what a reminder says is waiting)."""
    row = conn.execute(
        "SELECT COUNT(*) FROM items INDEXED BY items_queue WHERE project_id = ? AND queued",
        (project_id,),
    ).fetchone()
    return int(row[0])


# -- the digest ---------------------------------------------------------------------------------


def settled_since(conn: sqlite3.Connection, project_id: int, since: float) -> int:
    """Ordinary items whose verdict settled (resolved or escalated) at or after `since`."""
    row = conn.execute(
        """SELECT COUNT(*) FROM verdicts v JOIN items i ON i.id = v.item_id
           WHERE i.project_id = ? AND i.gold IS NULL AND v.status IN ('resolved', 'escalated')
             AND v.updated_at >= ?""",
        (project_id, since),
    ).fetchone()
    return int(row[0])


def suspended_since(conn: sqlite3.Connection, project_id: int, since: float) -> list[Row]:
    """Members suspended at or after `since`, with their names."""
    return conn.execute(
        """SELECT a.key, a.name FROM members m JOIN annotators a ON a.id = m.annotator_id
           WHERE m.project_id = ? AND m.status = 'suspended' AND m.suspended_at >= ?
           ORDER BY m.suspended_at""",
        (project_id, since),
    ).fetchall()


def last_digest(conn: sqlite3.Connection, project: str) -> tuple[int | None, float | None]:
    """The local day of the project's latest digest and when it was queued (None: never).

    Read through the unique `dedupe` index ("digest:PROJECT:DAY:KEY"): the outbox grows by a row
    per reminder, and this runs every minute.
    """
    prefix = f"digest:{project}:"
    # Byte order on PostgreSQL too, whatever the database's collation (';' right after ':').
    c = ' COLLATE "C"' if is_pg(conn) else ""
    row = conn.execute(
        f"""SELECT dedupe, created_at FROM outbox WHERE dedupe{c} >= ? AND dedupe{c} < ?
           ORDER BY dedupe{c} DESC LIMIT 1""",
        (prefix, prefix[:-1] + ";"),  # ';' sorts right after ':'
    ).fetchone()
    if row is None:
        return None, None
    return int(str(row[0])[len(prefix) :].split(":", 1)[0]), float(row[1])
