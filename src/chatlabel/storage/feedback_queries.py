"""The SQL of reports and comments on items, and of items held out of the queue by reports."""

from __future__ import annotations

import sqlite3

from .dialect import distinct_list, name_of

Row = sqlite3.Row


def add_report(
    conn: sqlite3.Connection, item_id: int, annotator_id: int, reason: str, now: float
) -> bool:
    """Record one person's report on an item; False if they had reported it already."""
    cur = conn.execute(
        """INSERT INTO item_reports (item_id, annotator_id, reason, created_at) VALUES (?, ?, ?, ?)
           ON CONFLICT (item_id, annotator_id) DO NOTHING""",
        (item_id, annotator_id, reason, now),
    )
    return cur.rowcount == 1


def drop_report(conn: sqlite3.Connection, item_id: int, annotator_id: int) -> None:
    """Take back one person's undecided report (their skip was undone)."""
    conn.execute(
        "DELETE FROM item_reports WHERE item_id = ? AND annotator_id = ? AND decision IS NULL",
        (item_id, annotator_id),
    )


def open_reports(conn: sqlite3.Connection, item_id: int) -> int:
    """How many people reported an item since a coordinator last decided on it."""
    row = conn.execute(
        "SELECT COUNT(*) FROM item_reports WHERE item_id = ? AND decision IS NULL", (item_id,)
    ).fetchone()
    return int(row[0])


def hold(conn: sqlite3.Connection, item_id: int) -> bool:
    """Take an item out of the queue until a coordinator decides; False if it was out already."""
    cur = conn.execute(
        "UPDATE items SET status = 'held' WHERE id = ? AND status NOT IN ('held', 'removed')",
        (item_id,),
    )
    return cur.rowcount == 1


def release(conn: sqlite3.Connection, item_id: int) -> None:
    """Put a held item back as its verdict says (pending without one)."""
    conn.execute(
        """UPDATE items SET status = COALESCE(
             (SELECT v.status FROM verdicts v WHERE v.item_id = items.id), 'pending')
           WHERE id = ? AND status = 'held'""",
        (item_id,),
    )


def remove(conn: sqlite3.Connection, item_id: int) -> None:
    """Take an item out for good (its answers stay, its results say removed)."""
    conn.execute("UPDATE items SET status = 'removed' WHERE id = ?", (item_id,))


def decide(conn: sqlite3.Connection, item_id: int, decision: str, now: float) -> int:
    """Close an item's open reports with a coordinator's decision; how many were closed."""
    return conn.execute(
        """UPDATE item_reports SET decision = ?, decided_at = ?
           WHERE item_id = ? AND decision IS NULL""",
        (decision, now, item_id),
    ).rowcount


def held_items(conn: sqlite3.Connection, project_id: int, limit: int) -> list[Row]:
    """Items waiting for a coordinator's decision, oldest report first."""
    return conn.execute(
        """SELECT i.id, i.ext_id, i.text, i.media_kind, i.status,
                  MIN(r.created_at) AS first_report, COUNT(r.id) AS reports
           FROM items i JOIN item_reports r ON r.item_id = i.id AND r.decision IS NULL
           WHERE i.project_id = ? AND i.status = 'held'
           GROUP BY i.id ORDER BY first_report LIMIT ?""",
        (project_id, limit),
    ).fetchall()


def held_count(conn: sqlite3.Connection, project_id: int) -> int:
    """Items of a project held for a decision."""
    row = conn.execute(
        "SELECT COUNT(*) FROM items WHERE project_id = ? AND status = 'held'", (project_id,)
    ).fetchone()
    return int(row[0])


def reasons(conn: sqlite3.Connection, item_id: int) -> list[tuple[str, int]]:
    """An item's open reports by reason, the most frequent first."""
    return [
        (str(r), int(n))
        for r, n in conn.execute(
            """SELECT reason, COUNT(*) FROM item_reports WHERE item_id = ? AND decision IS NULL
               GROUP BY reason ORDER BY COUNT(*) DESC, reason""",
            (item_id,),
        )
    ]


def item_comments(conn: sqlite3.Connection, item_id: int, limit: int) -> list[str]:
    """The latest comments on an item."""
    return [
        str(t)
        for (t,) in conn.execute(
            "SELECT text FROM comments WHERE item_id = ? ORDER BY id DESC LIMIT ?",
            (item_id, limit),
        )
    ]


def item_of(conn: sqlite3.Connection, item_id: int) -> Row | None:
    """An item's project, status and import id."""
    return conn.execute(
        "SELECT id, project_id, ext_id, text, status FROM items WHERE id = ?", (item_id,)
    ).fetchone()


def add_comment(
    conn: sqlite3.Connection,
    item_id: int,
    annotator_id: int,
    text: str,
    source: str | None,
    now: float,
) -> bool:
    """Save a comment; False when the same platform message was saved already."""
    cur = conn.execute(
        """INSERT INTO comments (item_id, annotator_id, text, source, created_at)
           VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING""",
        (item_id, annotator_id, text, source, now),
    )
    return cur.rowcount == 1


def answer_by_message(conn: sqlite3.Connection, annotator_id: int, ref: str) -> Row | None:
    """The answer someone gave on the item shown in a given platform message."""
    return conn.execute(
        """SELECT x.id, x.item_id, x.assignment_id, x.value FROM answers x
           WHERE x.annotator_id = ? AND x.message_ref = ? ORDER BY x.id DESC LIMIT 1""",
        (annotator_id, ref),
    ).fetchone()


def set_skip_reason(conn: sqlite3.Connection, answer_id: int, reason: str) -> None:
    """Record why a skip was a skip."""
    conn.execute("UPDATE answers SET skip_reason = ? WHERE id = ?", (reason, answer_id))


def reported_items(conn: sqlite3.Connection, project_id: int, limit: int) -> list[Row]:
    """Every item with reports (decided or not), for the HTML report: the latest first."""
    reasons = distinct_list(name_of(conn), "r.reason")
    return conn.execute(
        f"""SELECT i.ext_id, i.text, i.status, COUNT(r.id) AS reports,
                  {reasons} AS reasons, MAX(r.decision) AS decision
           FROM item_reports r JOIN items i ON i.id = r.item_id
           WHERE i.project_id = ? GROUP BY i.id ORDER BY MAX(r.created_at) DESC LIMIT ?""",
        (project_id, limit),
    ).fetchall()
