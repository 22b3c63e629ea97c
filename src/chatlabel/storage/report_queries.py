"""The SQL behind the reports: a person's rank, a project's counts, members, disagreements."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from .dialect import is_pg

Row = sqlite3.Row


@dataclass(frozen=True)
class ProjectCounts:
    """A project's raw counts, as the progress report needs them."""

    by_status: dict[str, int]  # ordinary items per status
    gold_items: int
    answers: int
    answers_since: int  # answers at or after `since`
    members: int
    suspended: int
    active_since: int  # annotators with an answer at or after `active_from`
    resolved_labels: list[tuple[str, int]]  # (stored label, items) of resolved items
    per_minute: list[tuple[float, int]]  # (minute, answers), oldest first
    paused: bool
    answers_needed: int  # answers the pending items still need, at least their overlap


def project_counts(
    conn: sqlite3.Connection, project_id: int, since: float, active_from: float
) -> ProjectCounts:
    """Everything /progress shows, in one read."""
    p = project_id
    by_status = dict(
        conn.execute(
            "SELECT status, COUNT(*) FROM items WHERE project_id = ? AND gold IS NULL"
            " GROUP BY status",
            (p,),
        ).fetchall()
    )
    gold_items = conn.execute(
        "SELECT COUNT(*) FROM items WHERE project_id = ? AND gold IS NOT NULL", (p,)
    ).fetchone()[0]
    answers, recent = conn.execute(
        """SELECT COUNT(*), COALESCE(SUM(CASE WHEN x.answered_at >= ? THEN 1 ELSE 0 END), 0)
           FROM answers x
           JOIN items i ON i.id = x.item_id WHERE i.project_id = ? AND x.value IS NOT NULL""",
        (since, p),
    ).fetchone()
    members, suspended = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(CASE WHEN status = 'suspended' THEN 1 ELSE 0 END), 0)"
        " FROM members WHERE project_id = ?",
        (p,),
    ).fetchone()
    active = conn.execute(
        """SELECT COUNT(DISTINCT x.annotator_id) FROM answers x JOIN items i ON i.id = x.item_id
           WHERE i.project_id = ? AND x.answered_at >= ?""",
        (p, active_from),
    ).fetchone()[0]
    labels = conn.execute(
        """SELECT v.label, COUNT(*) FROM verdicts v JOIN items i ON i.id = v.item_id
           WHERE i.project_id = ? AND v.status = 'resolved' AND i.gold IS NULL
           GROUP BY v.label""",
        (p,),
    ).fetchall()
    # Whole minutes: SQLite's CAST truncates, PostgreSQL's rounds, so FLOOR there.
    minute = "FLOOR(x.answered_at / 60)" if is_pg(conn) else "CAST(x.answered_at / 60 AS INTEGER)"
    per_minute = conn.execute(
        f"""SELECT {minute} * 60 AS t, COUNT(*)
           FROM answers x JOIN items i ON i.id = x.item_id
           WHERE i.project_id = ? AND x.value IS NOT NULL GROUP BY t ORDER BY t""",
        (p,),
    ).fetchall()
    paused = conn.execute("SELECT paused FROM projects WHERE id = ?", (p,)).fetchone()[0]
    needed = conn.execute(
        """SELECT COALESCE(SUM(CASE WHEN needed > n_answers THEN needed - n_answers ELSE 0 END), 0)
           FROM items
           WHERE project_id = ? AND gold IS NULL AND status = 'pending'""",
        (p,),
    ).fetchone()[0]
    return ProjectCounts(
        by_status=by_status,
        gold_items=int(gold_items),
        answers=int(answers),
        answers_since=int(recent),
        members=int(members),
        suspended=int(suspended),
        active_since=int(active),
        resolved_labels=[(str(lab), int(n)) for lab, n in labels],
        per_minute=[(float(t), int(c)) for t, c in per_minute],
        paused=bool(paused),
        answers_needed=int(needed),
    )


def members(conn: sqlite3.Connection, project_id: int, limit: int) -> list[Row]:
    """Members with their annotator's key and name, the busiest first."""
    return conn.execute(
        """SELECT a.id, a.key, a.name, m.* FROM members m
           JOIN annotators a ON a.id = m.annotator_id WHERE m.project_id = ?
           ORDER BY m.answers DESC, a.key LIMIT ?""",
        (project_id, limit),
    ).fetchall()


def recent_seconds(
    conn: sqlite3.Connection, project_id: int, annotator_id: int, limit: int = 500
) -> list[float]:
    """How long someone's latest answers in a project took, in seconds."""
    return [
        float(s)
        for (s,) in conn.execute(
            """SELECT x.seconds FROM answers x JOIN items i ON i.id = x.item_id
               WHERE x.annotator_id = ? AND i.project_id = ? AND x.value IS NOT NULL
               ORDER BY x.id DESC LIMIT ?""",
            (annotator_id, project_id, limit),
        )
    ]


def disagreements(conn: sqlite3.Connection, project_id: int, limit: int) -> list[Row]:
    """Escalated items first, then the least confident ones with several answers."""
    return conn.execute(
        """SELECT i.ext_id, i.text, v.status, v.votes, v.confidence
           FROM verdicts v JOIN items i ON i.id = v.item_id
           WHERE i.project_id = ? AND v.n_answers >= 2 AND v.confidence < 1
           ORDER BY v.status = 'escalated' DESC, v.confidence, i.seq LIMIT ?""",
        (project_id, limit),
    ).fetchall()


def counted_answers(conn: sqlite3.Connection, project_id: int) -> list[tuple[int, int, str]]:
    """(item, annotator, value) of every counted crowd answer: what agreement is measured on."""
    return [
        (int(i), int(a), str(v))
        for i, a, v in conn.execute(
            """SELECT x.item_id, x.annotator_id, x.value FROM answers x
               JOIN items i ON i.id = x.item_id
               WHERE i.project_id = ? AND x.value IS NOT NULL AND x.is_gold = 0
                 AND x.expert = 0 AND x.counted = 1""",
            (project_id,),
        )
    ]
