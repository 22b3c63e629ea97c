"""The SQL of chatlabel: small synchronous helpers run inside Database transactions."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from typing import Any

from ..core.model import ITEM_FIELDS
from .dialect import for_update, is_pg

Row = sqlite3.Row


def ensure_project(conn: sqlite3.Connection, name: str, now: float) -> int:
    """The id of a project row, created on first use."""
    conn.execute(
        "INSERT INTO projects (name, created_at) VALUES (?, ?) ON CONFLICT(name) DO NOTHING",
        (name, now),
    )
    return int(conn.execute("SELECT id FROM projects WHERE name = ?", (name,)).fetchone()[0])


def set_project_paused(conn: sqlite3.Connection, project_id: int, paused: bool) -> None:
    """Pause or resume a whole project."""
    conn.execute("UPDATE projects SET paused = ? WHERE id = ?", (int(paused), project_id))


# -- annotators and members -------------------------------------------------------------


def get_annotator(conn: sqlite3.Connection, key: str) -> Row | None:
    """An annotator by platform key."""
    return conn.execute("SELECT * FROM annotators WHERE key = ?", (key,)).fetchone()


def upsert_annotator(
    conn: sqlite3.Connection, key: str, platform: str, address: str | None, name: str, now: float
) -> Row:
    """Create or refresh an annotator; seeing them again means they have not blocked us."""
    conn.execute(
        """INSERT INTO annotators (key, platform, address, name, created_at)
           VALUES (?, ?, ?, ?, ?)
           ON CONFLICT(key) DO UPDATE SET
             address = COALESCE(excluded.address, annotators.address),
             name = CASE WHEN excluded.name != '' THEN excluded.name ELSE annotators.name END,
             blocked = 0""",
        (key, platform, address, name, now),
    )
    row = get_annotator(conn, key)
    assert row is not None
    return row


def set_invited(conn: sqlite3.Connection, annotator_id: int) -> None:
    """Record that an annotator presented a valid invite code."""
    conn.execute("UPDATE annotators SET invited = 1 WHERE id = ?", (annotator_id,))


def set_current_project(conn: sqlite3.Connection, annotator_id: int, project_id: int) -> None:
    """Record which project an annotator works on now."""
    conn.execute("UPDATE annotators SET project_id = ? WHERE id = ?", (project_id, annotator_id))


def get_language(conn: sqlite3.Connection, key: str) -> str | None:
    """The language an annotator chose, if any."""
    row = conn.execute("SELECT language FROM annotators WHERE key = ?", (key,)).fetchone()
    return None if row is None else row[0]


def set_language(conn: sqlite3.Connection, annotator_id: int, language: str | None) -> None:
    """Remember (or forget, with None) the language an annotator chose."""
    conn.execute("UPDATE annotators SET language = ? WHERE id = ?", (language, annotator_id))


def set_blocked(conn: sqlite3.Connection, annotator_id: int) -> None:
    """Mark that the annotator blocked the bot: no more pushes."""
    conn.execute("UPDATE annotators SET blocked = 1 WHERE id = ?", (annotator_id,))
    conn.execute("UPDATE members SET waiting = 0 WHERE annotator_id = ?", (annotator_id,))


def get_member(conn: sqlite3.Connection, project_id: int, annotator_id: int) -> Row | None:
    """One annotator's membership in one project."""
    return conn.execute(
        "SELECT * FROM members WHERE project_id = ? AND annotator_id = ?",
        (project_id, annotator_id),
    ).fetchone()


def member_for_work(conn: sqlite3.Connection, project_id: int, annotator_id: int) -> Row | None:
    """A membership with its project's `project_paused`, held until commit on PostgreSQL.

    Locked because the use case decides from it what to write for that person (their next
    item): two workers handling the same person at once then take turns, as on SQLite."""
    return conn.execute(
        """SELECT m.*, p.paused AS project_paused FROM members m
           JOIN projects p ON p.id = m.project_id
           WHERE m.project_id = ? AND m.annotator_id = ?"""
        + for_update(conn, "m"),
        (project_id, annotator_id),
    ).fetchone()


def hold_member(conn: sqlite3.Connection, project_id: int, annotator_id: int) -> None:
    """Lock a membership until commit on PostgreSQL (on SQLite the one writer already does).

    Two workers handling the same person's message at once then take turns: the second sees
    what the first recorded (a redelivered typed answer finds its answer, not the next item)."""
    if is_pg(conn):
        conn.execute(
            "SELECT 1 FROM members WHERE project_id = ? AND annotator_id = ?" + for_update(conn),
            (project_id, annotator_id),
        )


def add_member(conn: sqlite3.Connection, project_id: int, annotator_id: int, now: float) -> None:
    """Make an annotator a member of a project (no-op when already one)."""
    conn.execute(
        """INSERT INTO members (project_id, annotator_id, joined_at) VALUES (?, ?, ?)
           ON CONFLICT DO NOTHING""",
        (project_id, annotator_id, now),
    )


def update_member(
    conn: sqlite3.Connection, project_id: int, annotator_id: int, **cols: Any
) -> None:
    """Set columns of a membership row."""
    sets = ", ".join(f"{c} = ?" for c in cols)
    conn.execute(
        f"UPDATE members SET {sets} WHERE project_id = ? AND annotator_id = ?",
        (*cols.values(), project_id, annotator_id),
    )


def change_member(
    conn: sqlite3.Connection,
    project_id: int,
    annotator_id: int,
    set_: dict[str, Any],
    add: dict[str, int],
) -> None:
    """Set some columns of a membership row and add to others, in one statement."""
    sets = [f"{c} = ?" for c in set_] + [f"{c} = {c} + ?" for c in add]
    conn.execute(
        f"UPDATE members SET {', '.join(sets)} WHERE project_id = ? AND annotator_id = ?",
        (*set_.values(), *add.values(), project_id, annotator_id),
    )


def waiting_members(
    conn: sqlite3.Connection, platform: str, project_ids: Iterable[int], limit: int
) -> list[Row]:
    """Members of these projects told there was no work, who can be pushed an item now.

    On PostgreSQL the rows are locked and rows another process is pushing are skipped: two
    processes serving one bot never push the same person the same item twice."""
    ids = [int(p) for p in project_ids]
    if not ids:
        return []
    marks = ",".join("?" for _ in ids)
    return conn.execute(
        f"""SELECT a.key, a.address, a.name, a.id AS annotator_id, m.project_id
           FROM members m JOIN annotators a ON a.id = m.annotator_id
           JOIN projects p ON p.id = m.project_id
           WHERE m.waiting = 1 AND m.paused = 0 AND m.status = 'active' AND p.paused = 0
             AND a.blocked = 0 AND a.platform = ? AND a.project_id = m.project_id
             AND m.project_id IN ({marks})
           LIMIT ?"""
        + for_update(conn, "m", skip_locked=True),
        (platform, *ids, limit),
    ).fetchall()


# -- items and assignments ----------------------------------------------------------------


def expire_leases(conn: sqlite3.Connection, now: float) -> int:
    """Expire overdue assignments and give their items' slots back; returns how many."""
    # Rows another transaction is expiring (or answering) right now are left to it.
    rows = conn.execute(
        "SELECT id, item_id FROM assignments WHERE state = 'pending' AND expires_at <= ?"
        + for_update(conn, skip_locked=True),
        (now,),
    ).fetchall()
    for r in rows:
        close_assignment(conn, r["id"], r["item_id"], "expired")
    return len(rows)


def open_assignment(conn: sqlite3.Connection, annotator_id: int, project_id: int) -> Row | None:
    """The annotator's pending assignment in a project, if any."""
    return conn.execute(
        """SELECT s.id FROM assignments s JOIN items i ON i.id = s.item_id
           WHERE s.annotator_id = ? AND s.state = 'pending' AND i.project_id = ?
           ORDER BY s.id LIMIT 1""",
        (annotator_id, project_id),
    ).fetchone()


def _id(row: Row | None) -> int | None:
    return None if row is None else int(row[0])


_UNSEEN = """NOT EXISTS (SELECT 1 FROM answers x WHERE x.item_id = i.id AND x.annotator_id = :a)
    AND NOT EXISTS (SELECT 1 FROM assignments y
                    WHERE y.item_id = i.id AND y.annotator_id = :a AND y.state = 'pending')"""


def _lease_candidate(conn: sqlite3.Connection, sql: str, params: dict[str, Any]) -> int | None:
    """The first row of an item query, locked on PostgreSQL.

    A row another transaction holds right now (a queue head someone else is leasing, an item
    whose answer is being recorded) is skipped: the next one will do, nobody waits. Only when
    every candidate is held does this wait for them, so that "nothing to do" is said only when
    it is true once they commit (as SQLite's one writer would see it), not because a press on
    the last open item happened to be in flight."""
    row = conn.execute(sql + for_update(conn, "i", skip_locked=True), params).fetchone()
    if row is None and is_pg(conn):
        row = conn.execute(sql + for_update(conn, "i"), params).fetchone()
    return _id(row)


def next_queue_item(
    conn: sqlite3.Connection, project_id: int, annotator_id: int, check: bool = False
) -> int | None:
    """The fullest open ordinary item with a free slot that this annotator has not seen.

    Among equally full items the least certain comes first (certainty stays 0 unless the
    project orders by uncertainty), then import order. `check`: an item waiting for its one
    yes/no check instead (routed by a confident suggestion); the two are separate ranges.
    """
    return _lease_candidate(
        conn,
        f"""SELECT i.id FROM items i INDEXED BY items_queue
            WHERE i.project_id = :p AND i.awaiting_check = :c AND i.queued AND {_UNSEEN}
            ORDER BY i.n_answers DESC, i.certainty, i.seq LIMIT 1""",
        {"p": project_id, "a": annotator_id, "c": int(check)},
    )


def checker_around(
    conn: sqlite3.Connection, project_id: int, annotator_id: int, crowd: float, since: float
) -> bool:
    """True when another active member who may check (core.assignment.may_check: gold
    accuracy at least `crowd`) has been active since `since` and could take a check now."""
    row = conn.execute(
        """SELECT EXISTS (
               SELECT 1 FROM members m JOIN annotators a ON a.id = m.annotator_id
               WHERE m.project_id = :p AND m.annotator_id != :a AND m.status = 'active'
                 AND m.paused = 0 AND a.blocked = 0 AND m.last_active >= :since
                 AND m.gold_answers > 0
                 AND (m.gold_correct + 1.0) / (m.gold_answers + 2) >= :crowd)""",
        {"p": project_id, "a": annotator_id, "since": since, "crowd": crowd},
    ).fetchone()
    return bool(row[0])


def next_gold_item(conn: sqlite3.Connection, project_id: int, annotator_id: int) -> int | None:
    """The least-used gold item this annotator has not seen."""
    row = conn.execute(
        f"""SELECT i.id FROM items i INDEXED BY items_gold
            WHERE i.project_id = :p AND i.gold IS NOT NULL AND i.status = 'pending' AND {_UNSEEN}
            ORDER BY i.n_answers, i.seq LIMIT 1""",
        {"p": project_id, "a": annotator_id},
    ).fetchone()
    return _id(row)


def next_escalated_item(conn: sqlite3.Connection, project_id: int, annotator_id: int) -> int | None:
    """The oldest escalated item this expert has not answered and nobody is settling."""
    return _lease_candidate(
        conn,
        f"""SELECT i.id FROM items i INDEXED BY items_escalated
            WHERE i.project_id = :p AND i.status = 'escalated' AND i.n_leases = 0 AND {_UNSEEN}
            ORDER BY i.seq LIMIT 1""",
        {"p": project_id, "a": annotator_id},
    )


def open_item(
    conn: sqlite3.Connection, project_id: int, annotator_id: int, ext_id: str
) -> int | None:
    """The id of a named item if this annotator may be given it now (open slot, unseen)."""
    row = conn.execute(
        f"""SELECT i.id FROM items i
           WHERE i.project_id = :p AND i.ext_id = :e
             AND (i.queued OR (i.gold IS NOT NULL AND i.status = 'pending'))
             AND {_UNSEEN}"""
        + for_update(conn, "i"),
        {"p": project_id, "e": ext_id, "a": annotator_id},
    ).fetchone()
    return _id(row)


def create_assignment(
    conn: sqlite3.Connection, item_id: int, annotator_id: int, now: float, expires: float
) -> int:
    """Lease an item to an annotator (as a yes/no check when the item is routed to one)."""
    # The check flag is taken from the item in the same statement: no read before the insert,
    # and the lease keeps what it was even if routing changes while it is out.
    cur = conn.execute(
        """INSERT INTO assignments (item_id, annotator_id, created_at, expires_at, checking)
           SELECT :i, :a, :now, :exp, CASE WHEN route = 'check' THEN 1 ELSE 0 END
           FROM items WHERE id = :i""",
        {"i": item_id, "a": annotator_id, "now": now, "exp": expires},
    )
    conn.execute("UPDATE items SET n_leases = n_leases + 1 WHERE id = ?", (item_id,))
    return int(cur.lastrowid or 0)


def get_assignment(
    conn: sqlite3.Connection, assignment_id: int, *, lock: bool = False
) -> Row | None:
    """An assignment with its item's fields and its annotator's key.

    `lock` (for a use case that changes them): on PostgreSQL the assignment and its item stay
    locked until commit, so a press delivered twice, or two people's answers to one item,
    take turns and each sees what the other wrote."""
    return conn.execute(
        """SELECT s.id AS assignment_id, s.state, s.draft, s.created_at AS leased_at,
                  s.expires_at, s.annotator_id, s.checking, a.key AS annotator_key, i.*
           FROM assignments s JOIN items i ON i.id = s.item_id
           JOIN annotators a ON a.id = s.annotator_id WHERE s.id = ?"""
        + (for_update(conn, "s, i") if lock else ""),
        (assignment_id,),
    ).fetchone()


def lock_item(conn: sqlite3.Connection, item_id: int) -> None:
    """Hold an item's row until commit before recomputing its verdict (PostgreSQL only)."""
    if is_pg(conn):
        conn.execute("SELECT id FROM items WHERE id = ? FOR UPDATE", (item_id,))


def close_assignment(
    conn: sqlite3.Connection, assignment_id: int, item_id: int, state: str
) -> None:
    """End a pending assignment and free its slot (once: a closed one is left as it is)."""
    if is_pg(conn):
        # One statement, whose result nobody waits for (it goes out with the next one).
        conn.execute(
            """WITH closed AS (UPDATE assignments SET state = ?
                               WHERE id = ? AND state = 'pending' RETURNING item_id)
               UPDATE items SET n_leases = n_leases - 1
               WHERE id = ? AND id IN (SELECT item_id FROM closed)""",
            (state, assignment_id, item_id),
        )
        return
    cur = conn.execute(
        "UPDATE assignments SET state = ? WHERE id = ? AND state = 'pending'",
        (state, assignment_id),
    )
    if cur.rowcount:
        conn.execute("UPDATE items SET n_leases = n_leases - 1 WHERE id = ?", (item_id,))


def bump_item_answers(conn: sqlite3.Connection, item_id: int, delta: int) -> None:
    """Count answers on an item that has no verdict (gold)."""
    conn.execute("UPDATE items SET n_answers = n_answers + ? WHERE id = ?", (delta, item_id))


def reopen_assignment(
    conn: sqlite3.Connection, assignment_id: int, item_id: int, expires: float
) -> None:
    """Put an answered assignment back to pending (undo)."""
    conn.execute(
        "UPDATE assignments SET state = 'pending', draft = NULL, expires_at = ? WHERE id = ?",
        (expires, assignment_id),
    )
    conn.execute("UPDATE items SET n_leases = n_leases + 1 WHERE id = ?", (item_id,))


def set_draft(conn: sqlite3.Connection, assignment_id: int, draft: list[str]) -> None:
    """Store a multi-choice selection in progress."""
    conn.execute(
        "UPDATE assignments SET draft = ? WHERE id = ?", (json.dumps(draft), assignment_id)
    )


def get_item(conn: sqlite3.Connection, item_id: int) -> Row:
    """One item row."""
    return conn.execute("SELECT * FROM items WHERE id = ?", (item_id,)).fetchone()


# -- answers and verdicts -----------------------------------------------------------------


def insert_answer(conn: sqlite3.Connection, **cols: Any) -> int:
    """Record an answer (or a skip, value NULL)."""
    names = ", ".join(cols)
    marks = ", ".join("?" for _ in cols)
    cur = conn.execute(f"INSERT INTO answers ({names}) VALUES ({marks})", tuple(cols.values()))
    return int(cur.lastrowid or 0)


def get_answer(conn: sqlite3.Connection, answer_id: int) -> Row | None:
    """One answer row with its annotator's key."""
    return conn.execute(
        """SELECT x.*, a.key AS annotator_key FROM answers x
           JOIN annotators a ON a.id = x.annotator_id WHERE x.id = ?""",
        (answer_id,),
    ).fetchone()


def answer_for_assignment(conn: sqlite3.Connection, assignment_id: int) -> Row | None:
    """The answer recorded for an assignment, if any."""
    return conn.execute(
        "SELECT * FROM answers WHERE assignment_id = ?", (assignment_id,)
    ).fetchone()


def answer_from_source(conn: sqlite3.Connection, annotator_id: int, source: str) -> Row | None:
    """The answer an annotator gave in a given platform message, if any."""
    return conn.execute(
        "SELECT * FROM answers WHERE annotator_id = ? AND source = ?", (annotator_id, source)
    ).fetchone()


def set_answer_value(
    conn: sqlite3.Connection, answer_id: int, value: str, now: float, source: str | None
) -> None:
    """Change the recorded value of an answer (not its scoring: `correct` stays)."""
    conn.execute(
        """UPDATE answers SET value = ?, answered_at = ?, source = COALESCE(?, source)
           WHERE id = ?""",
        (value, now, source, answer_id),
    )


def delete_answer(conn: sqlite3.Connection, answer_id: int) -> None:
    """Remove an answer (undo)."""
    conn.execute("DELETE FROM answers WHERE id = ?", (answer_id,))


def item_votes(conn: sqlite3.Connection, item_id: int, suggestion: bool = False) -> list[Row]:
    """The counted, non-skip answers of an item with their annotators' keys, in order.

    `suggestion`: a rejected check's suggestion comes first as a vote of its own, with no key
    or annotator, while its model's routing is on (in the same statement: a settle is on
    every press's path).
    """
    sql = """SELECT a.key, a.id AS annotator_id, x.value, x.expert, x.id AS seq FROM answers x
             JOIN annotators a ON a.id = x.annotator_id
             WHERE x.item_id = ? AND x.value IS NOT NULL AND x.counted = 1 AND x.is_gold = 0"""
    args: tuple[int, ...] = (item_id,)
    if suggestion:
        sql += """ UNION ALL SELECT NULL, NULL, i.suggestion, 0, 0 FROM items i
                   JOIN models m ON m.project_id = i.project_id
                   WHERE i.id = ? AND i.route = 'rejected' AND i.suggestion IS NOT NULL
                     AND m.routing = 1"""
        args = (item_id, item_id)
    return conn.execute(sql + " ORDER BY seq", args).fetchall()


def gold_counts(
    conn: sqlite3.Connection, project_id: int, annotator_ids: Iterable[int]
) -> list[Row]:
    """Gold counters of some annotators in a project."""
    ids = list(annotator_ids)
    marks = ",".join("?" for _ in ids)
    return conn.execute(
        f"""SELECT annotator_id, gold_answers, gold_correct FROM members
            WHERE project_id = ? AND annotator_id IN ({marks})""",
        (project_id, *ids),
    ).fetchall()


def save_verdict(
    conn: sqlite3.Connection,
    item_id: int,
    *,
    status: str,
    label: str | None,
    confidence: float,
    votes: dict[str, float],
    n_answers: int,
    method: str,
    needed: int,
    now: float,
) -> None:
    """Store an item's verdict and the item's resulting status and answer target.

    An audited item's suggestion is scored against its verdict as it changes (model_hit); an
    item waiting for its one check keeps wanting one answer.
    """
    conn.execute(
        """INSERT INTO verdicts (item_id, status, label, confidence, votes, n_answers, method,
                                 updated_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT(item_id) DO UPDATE SET status = excluded.status, label = excluded.label,
             confidence = excluded.confidence, votes = excluded.votes,
             n_answers = excluded.n_answers, method = excluded.method,
             updated_at = excluded.updated_at""",
        (item_id, status, label, confidence, json.dumps(votes), n_answers, method, now),
    )
    # An item held by reports (or removed) keeps that status until a coordinator decides.
    conn.execute(
        """UPDATE items SET
             status = CASE WHEN status IN ('held', 'removed') THEN status ELSE :status END,
             n_answers = :n,
             needed = CASE WHEN route = 'check' THEN needed ELSE :needed END,
             model_hit = CASE WHEN route != 'audit' OR route IS NULL THEN model_hit
                              WHEN :status != 'resolved' THEN NULL
                              WHEN suggestion = :label THEN 1 ELSE 0 END
           WHERE id = :id""",
        {"status": status, "n": n_answers, "needed": needed, "label": label, "id": item_id},
    )


def uncount_open_answers(conn: sqlite3.Connection, project_id: int, annotator_id: int) -> list[int]:
    """Stop counting an annotator's answers on unsettled items; returns those items' ids."""
    rows = conn.execute(
        """SELECT x.id, x.item_id FROM answers x JOIN items i ON i.id = x.item_id
           WHERE x.annotator_id = ? AND i.project_id = ? AND i.status = 'pending'
             AND x.counted = 1 AND x.is_gold = 0""",
        (annotator_id, project_id),
    ).fetchall()
    for r in rows:
        conn.execute("UPDATE answers SET counted = 0 WHERE id = ?", (r["id"],))
    return [int(r["item_id"]) for r in rows]


def release_assignments(conn: sqlite3.Connection, annotator_id: int) -> None:
    """Expire every pending assignment of an annotator (suspended or blocked)."""
    rows = conn.execute(
        "SELECT id, item_id FROM assignments WHERE annotator_id = ? AND state = 'pending'",
        (annotator_id,),
    ).fetchall()
    for r in rows:
        close_assignment(conn, r["id"], r["item_id"], "expired")


def media_file_id(conn: sqlite3.Connection, sha256: str, platform: str) -> str | None:
    """A platform's stored file id for prepared media."""
    row = conn.execute(
        "SELECT file_id FROM media_files WHERE sha256 = ? AND platform = ?", (sha256, platform)
    ).fetchone()
    return None if row is None else str(row[0])


def save_media_file_id(conn: sqlite3.Connection, sha256: str, platform: str, file_id: str) -> None:
    """Remember a platform's file id for prepared media."""
    conn.execute(
        """INSERT INTO media_files (sha256, platform, file_id) VALUES (?, ?, ?)
           ON CONFLICT (sha256, platform) DO UPDATE SET file_id = excluded.file_id""",
        (sha256, platform, file_id),
    )


# -- import -------------------------------------------------------------------------------

_IMPORT_LOCK = 0x63_6C_69_6D  # "clim": held by an import's transaction on PostgreSQL
ITEM_COLUMNS = ITEM_FIELDS  # the importer builds rows in this order
_INSERT_ITEM = (
    f"INSERT INTO items ({', '.join(ITEM_COLUMNS)}) VALUES ({', '.join('?' * len(ITEM_COLUMNS))})"
    " ON CONFLICT (project_id, ext_id) DO NOTHING"
)


def max_seq(conn: sqlite3.Connection) -> int:
    """The highest import sequence number so far (imports take turns on PostgreSQL)."""
    if is_pg(conn):
        # Two processes importing at once would otherwise number their rows alike.
        conn.execute("SELECT pg_advisory_xact_lock(?)", (_IMPORT_LOCK,))
    return int(conn.execute("SELECT COALESCE(MAX(seq), 0) FROM items").fetchone()[0])


def insert_items(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> int:
    """Insert items (values in ITEM_COLUMNS order), skipping ids already there; how many new."""
    return conn.executemany(_INSERT_ITEM, rows).rowcount


def item_seq(conn: sqlite3.Connection, project_id: int, ext_id: str) -> int:
    """The import sequence number of an existing item."""
    return int(
        conn.execute(
            "SELECT seq FROM items WHERE project_id = ? AND ext_id = ?", (project_id, ext_id)
        ).fetchone()[0]
    )


def anyone_left(conn: sqlite3.Connection, project_id: int, item_id: int) -> bool:
    """True while an active, reachable member has not answered (or skipped) the item."""
    row = conn.execute(
        """SELECT EXISTS (
               SELECT 1 FROM members m JOIN annotators a ON a.id = m.annotator_id
               WHERE m.project_id = ? AND m.status = 'active' AND a.blocked = 0
                 AND NOT EXISTS (SELECT 1 FROM answers x
                                 WHERE x.item_id = ? AND x.annotator_id = m.annotator_id))""",
        (project_id, item_id),
    ).fetchone()
    return bool(row[0])


def undecided_items(conn: sqlite3.Connection, project_id: int, min_answers: int) -> list[int]:
    """Open ordinary items with at least min_answers counted answers that still want more."""
    return [
        int(r[0])
        for r in conn.execute(
            """SELECT id FROM items INDEXED BY items_queue
               WHERE project_id = ? AND awaiting_check = 0 AND queued AND n_answers >= ?""",
            (project_id, min_answers),
        )
    ]
