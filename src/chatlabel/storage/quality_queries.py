"""The SQL behind batch quality: Dawid-Skene inputs and outputs, gold confusion, replays."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

Row = sqlite3.Row


def ds_answers(conn: sqlite3.Connection, project_id: int) -> list[Row]:
    """Crowd answers of a project (gold items included; experts, skips and checks left out)."""
    # Answers on gold items are what anchor each annotator's confusion matrix, so they are
    # part of the input even though they never count toward a verdict. So are the answers of
    # suspended people that stopped counting in votes: Dawid-Skene learns how they err (a
    # 30 %-accurate annotator of two labels is an informative one, inverted) and weighs them
    # by it. A check (yes or no to a suggestion) is not a label, so it is no evidence here.
    return conn.execute(
        """SELECT x.item_id, x.annotator_id, x.value FROM answers x
           JOIN items i ON i.id = x.item_id
           WHERE i.project_id = ? AND x.value IS NOT NULL AND x.expert = 0 AND x.checked = 0
           ORDER BY x.id""",
        (project_id,),
    ).fetchall()


def item_states(conn: sqlite3.Connection, project_id: int) -> list[Row]:
    """Every item of a project with its gold value and its verdict (NULLs before any answer),
    and `rejected`: the suggestion a check said no to, while routing is on (it is a vote)."""
    return conn.execute(
        """SELECT i.id, i.ext_id, i.gold, i.status, v.label, v.method, v.confidence,
                  CASE WHEN i.route = 'rejected' AND m.routing = 1 THEN i.suggestion END
                    AS rejected
           FROM items i LEFT JOIN verdicts v ON v.item_id = i.id
             LEFT JOIN models m ON m.project_id = i.project_id
           WHERE i.project_id = ? ORDER BY i.seq""",
        (project_id,),
    ).fetchall()


def write_batch_verdicts(
    conn: sqlite3.Connection, rows: Iterable[tuple[str, float, str, int]]
) -> int:
    """Set (label, confidence, method) of settled crowd verdicts; returns how many.

    `updated_at` stays when the verdict settled: a relabel is not a settlement (the digest
    counts the items settled today by it)."""
    # The status guard makes a race with the online path harmless: an item that an expert
    # settled or that was reopened since the batch read its state is left alone.
    cur = conn.executemany(
        """UPDATE verdicts SET label = ?, confidence = ?, method = ?
           WHERE item_id = ? AND status != 'pending' AND method != 'expert'""",
        rows,
    )
    return cur.rowcount


def gold_pairs(conn: sqlite3.Connection, project_id: int, annotator_key: str) -> list[Row]:
    """(gold, answered value) of one annotator's answers on gold items."""
    return conn.execute(
        """SELECT i.gold, x.value FROM answers x JOIN items i ON i.id = x.item_id
           JOIN annotators a ON a.id = x.annotator_id
           WHERE i.project_id = ? AND a.key = ? AND x.is_gold = 1 AND x.value IS NOT NULL""",
        (project_id, annotator_key),
    ).fetchall()


def all_gold_pairs(conn: sqlite3.Connection, project_id: int) -> list[Row]:
    """(annotator key, gold, answered value) of every answer on a gold item."""
    return conn.execute(
        """SELECT a.key, i.gold, x.value FROM answers x JOIN items i ON i.id = x.item_id
           JOIN annotators a ON a.id = x.annotator_id
           WHERE i.project_id = ? AND x.is_gold = 1 AND x.value IS NOT NULL""",
        (project_id,),
    ).fetchall()


def crowd_answers(conn: sqlite3.Connection, project_id: int) -> list[Row]:
    """(item id, annotator key, value) of the counted crowd answers on ordinary items."""
    return conn.execute(
        """SELECT x.item_id, a.key, x.value FROM answers x JOIN items i ON i.id = x.item_id
           JOIN annotators a ON a.id = x.annotator_id
           WHERE i.project_id = ? AND x.value IS NOT NULL AND x.is_gold = 0 AND x.expert = 0
             AND x.counted = 1""",
        (project_id,),
    ).fetchall()


def counted_votes(conn: sqlite3.Connection, project_id: int) -> list[Row]:
    """(item id, annotator key, annotator id, value, expert) of the votes verdicts count."""
    return conn.execute(
        """SELECT x.item_id, a.key, a.id, x.value, x.expert FROM answers x
           JOIN annotators a ON a.id = x.annotator_id JOIN items i ON i.id = x.item_id
           WHERE i.project_id = ? AND x.value IS NOT NULL AND x.counted = 1 AND x.is_gold = 0
           ORDER BY x.id""",
        (project_id,),
    ).fetchall()


def resolved_labels(conn: sqlite3.Connection, project_id: int) -> list[Row]:
    """(item id, label) of the resolved ordinary items of a project."""
    return conn.execute(
        """SELECT v.item_id, v.label FROM verdicts v JOIN items i ON i.id = v.item_id
           WHERE i.project_id = ? AND i.gold IS NULL AND v.status = 'resolved'""",
        (project_id,),
    ).fetchall()


def settled_times(conn: sqlite3.Connection, project_id: int) -> list[float]:
    """When each settled ordinary item got its last answer, oldest first."""
    rows = conn.execute(
        """SELECT MAX(x.answered_at) AS t FROM items i JOIN answers x ON x.item_id = i.id
           WHERE i.project_id = ? AND i.gold IS NULL AND i.status != 'pending'
             AND x.value IS NOT NULL
           GROUP BY i.id ORDER BY t""",
        (project_id,),
    ).fetchall()
    return [float(r[0]) for r in rows]


def last_answer_id(conn: sqlite3.Connection, project_id: int) -> int:
    """The id of the newest answer in a project (0 without answers)."""
    row = conn.execute(
        """SELECT COALESCE(MAX(x.id), 0) FROM answers x JOIN items i ON i.id = x.item_id
           WHERE i.project_id = ?""",
        (project_id,),
    ).fetchone()
    return int(row[0])


def answers_after(conn: sqlite3.Connection, project_id: int, after_id: int) -> int:
    """How many answers of a project are newer than answer `after_id`."""
    row = conn.execute(
        """SELECT COUNT(*) FROM answers x JOIN items i ON i.id = x.item_id
           WHERE x.id > ? AND i.project_id = ? AND x.value IS NOT NULL""",
        (after_id, project_id),
    ).fetchone()
    return int(row[0])


def pooled_gold(conn: sqlite3.Connection, project_id: int) -> tuple[int, int]:
    """(correct, total) gold answers of a project's active annotators, pooled."""
    # Suspended annotators are left out: the average annotator is one who still labels.
    row = conn.execute(
        """SELECT COALESCE(SUM(gold_correct), 0), COALESCE(SUM(gold_answers), 0) FROM members
           WHERE project_id = ? AND status = 'active'""",
        (project_id,),
    ).fetchone()
    return int(row[0]), int(row[1])
