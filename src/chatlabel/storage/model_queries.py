"""The SQL behind suggestions: a model's training data and output, routing, and its record."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

Row = sqlite3.Row

# An item nobody has touched yet: open, ordinary, no answer, no lease, and not past its check.
# Only such items may get a new suggestion or a new route.
UNTOUCHED = """gold IS NULL AND status = 'pending' AND n_answers = 0 AND n_leases = 0
    AND (route IS NULL OR route IN ('check', 'audit'))"""


# -- the model's row ---------------------------------------------------------------------------


def ensure_model(conn: sqlite3.Connection, project_id: int, kind: str, now: float) -> Row:
    """A project's model row, created on first use (routing on)."""
    conn.execute(
        """INSERT INTO models (project_id, kind, updated_at) VALUES (?, ?, ?)
           ON CONFLICT(project_id) DO UPDATE SET kind = excluded.kind""",
        (project_id, kind, now),
    )
    row = model_row(conn, project_id)
    assert row is not None
    return row


def model_row(conn: sqlite3.Connection, project_id: int) -> Row | None:
    """A project's model row, if it has one."""
    return conn.execute("SELECT * FROM models WHERE project_id = ?", (project_id,)).fetchone()


def set_routing(
    conn: sqlite3.Connection, project_id: int, on: bool, reason: str | None, now: float
) -> None:
    """Switch routing on or off (with why) for a project's model."""
    conn.execute(
        "UPDATE models SET routing = ?, reason = ?, updated_at = ? WHERE project_id = ?",
        (int(on), reason, now, project_id),
    )


def trained(
    conn: sqlite3.Connection,
    project_id: int,
    version: str,
    examples: int,
    trained_on: int,
    now: float,
    *,
    count: bool = True,
) -> None:
    """Record a model round: its version and (a training: `count`) its examples and the
    resolved items it had seen."""
    conn.execute(
        """UPDATE models SET version = ?, trainings = trainings + ?, examples = ?,
             trained_on = ?, updated_at = ? WHERE project_id = ?""",
        (version, int(count), examples, trained_on, now, project_id),
    )


def imported_version(conn: sqlite3.Connection, project_id: int, after_seq: int) -> str | None:
    """The model version named by the last item imported after `after_seq` that names one."""
    row = conn.execute(
        """SELECT suggestion_model FROM items WHERE project_id = ? AND seq > ?
             AND suggestion_model IS NOT NULL ORDER BY seq DESC LIMIT 1""",
        (project_id, after_seq),
    ).fetchone()
    return None if row is None else str(row[0])


def set_version(conn: sqlite3.Connection, project_id: int, version: str, now: float) -> None:
    """Name the model by `version` (imported suggestions: no training to count)."""
    conn.execute(
        "UPDATE models SET version = ?, updated_at = ? WHERE project_id = ?",
        (version, now, project_id),
    )


def record(conn: sqlite3.Connection, project_id: int) -> tuple[int, int]:
    """(right, scored) of a project's suggestions on gold items and audited verdicts."""
    row = conn.execute(
        """SELECT COALESCE(SUM(model_hit), 0), COUNT(*) FROM items INDEXED BY items_model_hits
           WHERE project_id = ? AND model_hit IS NOT NULL""",
        (project_id,),
    ).fetchone()
    return int(row[0]), int(row[1])


def digest_figures(conn: sqlite3.Connection, project_id: int, since: float) -> dict[str, Any]:
    """The model's part of a digest: routing on or off, its record, and the items one "yes"
    settled at or after `since`."""
    row = model_row(conn, project_id)
    right, scored = record(conn, project_id)
    checked = conn.execute(
        """SELECT COUNT(*) FROM verdicts v JOIN items i ON i.id = v.item_id
           WHERE i.project_id = ? AND v.method = 'check' AND v.updated_at >= ?""",
        (project_id, since),
    ).fetchone()[0]
    routing = bool(row["routing"]) if row is not None else True
    return {"routing": routing, "checked": int(checked), "right": right, "scored": scored}


def suggestion_counts(conn: sqlite3.Connection, project_id: int) -> tuple[int, int, int]:
    """(items with a suggestion, checks a "yes" settled, checks a "no" reopened)."""
    suggested = conn.execute(
        "SELECT COUNT(*) FROM items WHERE project_id = ? AND suggestion_score IS NOT NULL",
        (project_id,),
    ).fetchone()[0]
    routes = dict(
        conn.execute(
            """SELECT route, COUNT(*) FROM items INDEXED BY items_routed
               WHERE project_id = ? AND route IS NOT NULL GROUP BY route""",
            (project_id,),
        ).fetchall()
    )
    return int(suggested), int(routes.get("verified", 0)), int(routes.get("rejected", 0))


# -- what a model learns from and works on -----------------------------------------------------

# What a model reads of an item: its text, and its context after a line break.
_TEXT = "COALESCE(text, '') || COALESCE('\n' || context, '')"  # a line break in the literal


def resolved_count(conn: sqlite3.Connection, project_id: int) -> int:
    """Ordinary items with a resolved verdict."""
    row = conn.execute(
        "SELECT COUNT(*) FROM items WHERE project_id = ? AND gold IS NULL AND status = 'resolved'",
        (project_id,),
    ).fetchone()
    return int(row[0])


def examples(conn: sqlite3.Connection, project_id: int) -> list[tuple[int, str, str, int]]:
    """(item id, text, label, is gold) of every labeled item: gold, and resolved verdicts."""
    return conn.execute(
        """SELECT i.id, COALESCE(i.text, '') || COALESCE('\n' || i.context, ''),
                  COALESCE(i.gold, v.label), i.gold IS NOT NULL
           FROM items i LEFT JOIN verdicts v ON v.item_id = i.id
           WHERE i.project_id = ?
             AND (i.gold IS NOT NULL OR (i.status = 'resolved' AND v.label IS NOT NULL))
           ORDER BY i.seq""",
        (project_id,),
    ).fetchall()


def untouched(
    conn: sqlite3.Connection, project_id: int, *, unsuggested: bool = False
) -> list[tuple[int, str]]:
    """(item id, text) of untouched items, or only those with no model suggestion yet."""
    extra = " AND suggestion_model IS NULL" if unsuggested else ""
    return conn.execute(
        f"""SELECT id, {_TEXT} FROM items
            WHERE project_id = ? AND {UNTOUCHED}{extra} ORDER BY seq""",
        (project_id,),
    ).fetchall()


def gold_texts(
    conn: sqlite3.Connection, project_id: int, *, unsuggested: bool = False
) -> list[tuple[int, str]]:
    """(item id, text) of gold items (only those with no model suggestion yet)."""
    extra = " AND suggestion_model IS NULL" if unsuggested else ""
    return conn.execute(
        f"""SELECT id, {_TEXT} FROM items
            WHERE project_id = ? AND gold IS NOT NULL{extra} ORDER BY seq""",
        (project_id,),
    ).fetchall()


def unsuggested(conn: sqlite3.Connection, project_id: int) -> int:
    """Untouched and gold items with no model suggestion yet (a model that does not learn
    is asked only about those)."""
    row = conn.execute(
        f"""SELECT COUNT(*) FROM items WHERE project_id = ? AND suggestion_model IS NULL
              AND (gold IS NOT NULL OR ({UNTOUCHED}))""",
        (project_id,),
    ).fetchone()
    return int(row[0])


# -- writing suggestions and routes ------------------------------------------------------------


def write_suggestions(
    conn: sqlite3.Connection,
    rows: Iterable[tuple[str, float | None, str, float, str | None, int, int]],
) -> int:
    """Set (suggestion, score, model, certainty, route, needed) of untouched items, by id.

    Items someone has taken meanwhile (leased, answered, checked) are left as they are: a
    person may be looking at the suggestion they were shown. Returns how many changed.
    """
    cur = conn.executemany(
        f"""UPDATE items SET suggestion = ?, suggestion_score = ?, suggestion_model = ?,
              certainty = ?, route = ?, needed = ?
            WHERE id = ? AND {UNTOUCHED}""",
        rows,
    )
    return cur.rowcount


def write_gold_suggestions(
    conn: sqlite3.Connection, rows: Iterable[tuple[str, float | None, str, int]]
) -> int:
    """Set (suggestion, score, model) of gold items and score each against the gold value."""
    # SET sees the row as it was, so the new suggestion is compared as a parameter.
    cur = conn.executemany(
        """UPDATE items SET suggestion = :s, suggestion_score = :score, suggestion_model = :m,
             model_hit = CASE WHEN :s = gold THEN 1 ELSE 0 END
           WHERE id = :id AND gold IS NOT NULL""",
        [{"s": s, "score": score, "m": m, "id": i} for s, score, m, i in rows],
    )
    return cur.rowcount


def imported_scores(
    conn: sqlite3.Connection, project_id: int, after_seq: int
) -> list[tuple[int, float]]:
    """(item id, score) of ordinary items imported after `after_seq` with a scored suggestion."""
    rows = conn.execute(
        """SELECT id, suggestion_score FROM items
           WHERE project_id = ? AND seq > ? AND gold IS NULL AND suggestion_score IS NOT NULL""",
        (project_id, after_seq),
    ).fetchall()
    return [(int(r[0]), float(r[1])) for r in rows]


def score_imported_gold(conn: sqlite3.Connection, project_id: int, after_seq: int) -> None:
    """Score the suggestions imported with gold items against their gold values."""
    conn.execute(
        """UPDATE items SET model_hit = CASE WHEN suggestion = gold THEN 1 ELSE 0 END
           WHERE project_id = ? AND seq > ? AND gold IS NOT NULL AND suggestion IS NOT NULL""",
        (project_id, after_seq),
    )


def route_items(
    conn: sqlite3.Connection, rows: Iterable[tuple[str | None, int, float, int]]
) -> None:
    """Set (route, needed, certainty) of untouched items, by id."""
    conn.executemany(
        f"UPDATE items SET route = ?, needed = ?, certainty = ? WHERE id = ? AND {UNTOUCHED}",
        rows,
    )


def unroute_checks(conn: sqlite3.Connection, project_id: int, overlap: int) -> int:
    """Items still waiting for their one check go back to ordinary overlap; returns how many.

    Checks already leased keep their lease: the person answers what they were shown.
    """
    cur = conn.execute(
        """UPDATE items SET route = NULL, needed = ?
           WHERE project_id = ? AND route = 'check' AND status = 'pending' AND n_leases = 0""",
        (overlap, project_id),
    )
    return cur.rowcount


def open_rejections(conn: sqlite3.Connection, project_id: int) -> list[int]:
    """Items still collecting answers after a no, in id order (their suggestion votes)."""
    return [
        int(r[0])
        for r in conn.execute(
            """SELECT id FROM items WHERE project_id = ? AND route = 'rejected'
                 AND status = 'pending' ORDER BY id""",
            (project_id,),
        )
    ]


def verify(conn: sqlite3.Connection, item_id: int) -> None:
    """A "yes" settled the item's check (its verdict is saved apart)."""
    conn.execute("UPDATE items SET route = 'verified' WHERE id = ?", (item_id,))


def reject(conn: sqlite3.Connection, item_id: int, overlap: int) -> None:
    """A "no" sent the item to ordinary overlap."""
    conn.execute("UPDATE items SET route = 'rejected', needed = ? WHERE id = ?", (overlap, item_id))


def reroute_check(conn: sqlite3.Connection, item_id: int, overlap: int | None) -> None:
    """An undone check: the item waits for its one check again (or, with `overlap`, for
    ordinary overlap: routing is off now); its verdict goes."""
    conn.execute(
        """UPDATE items SET route = CASE WHEN CAST(:o AS INTEGER) IS NULL THEN 'check' END,
             needed = COALESCE(CAST(:o AS INTEGER), 1), n_answers = 0, status = 'pending'
           WHERE id = :id""",
        {"o": overlap, "id": item_id},
    )
    conn.execute("DELETE FROM verdicts WHERE item_id = ?", (item_id,))


def untouched_scores(conn: sqlite3.Connection, project_id: int) -> list[tuple[int, float]]:
    """(item id, score) of untouched items with a scored suggestion (to route them again)."""
    rows = conn.execute(
        f"""SELECT id, suggestion_score FROM items
            WHERE project_id = ? AND suggestion_score IS NOT NULL AND {UNTOUCHED}""",
        (project_id,),
    ).fetchall()
    return [(int(r[0]), float(r[1])) for r in rows]
