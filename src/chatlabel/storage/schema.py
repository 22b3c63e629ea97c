"""The database schema, as an ordered list of migrations tracked by PRAGMA user_version."""

from __future__ import annotations

import sqlite3

MIGRATIONS: list[str] = [
    # 1: the whole first schema.
    """
    CREATE TABLE projects (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        paused INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL
    );
    CREATE TABLE items (
        id INTEGER PRIMARY KEY,
        project_id INTEGER NOT NULL REFERENCES projects(id),
        ext_id TEXT NOT NULL,
        text TEXT,
        media_kind TEXT,            -- image | audio | video
        media_path TEXT,            -- absolute path of the source file
        context TEXT,
        gold TEXT,                  -- canonical gold value, NULL for ordinary items
        gold_reason TEXT,
        suggestion TEXT,
        boxes TEXT,                 -- JSON list of boxes for verify tasks
        meta TEXT,                  -- JSON object
        status TEXT NOT NULL DEFAULT 'pending',  -- pending | resolved | escalated
        needed INTEGER NOT NULL,    -- answers wanted in total (grows while undecided)
        n_answers INTEGER NOT NULL DEFAULT 0,    -- counted (non-skip, non-gold-scoring) answers
        n_leases INTEGER NOT NULL DEFAULT 0,     -- open assignments
        seq INTEGER NOT NULL,       -- import order
        created_at REAL NOT NULL,
        -- An ordinary open item with a free slot. A column, not an expression in the index's
        -- WHERE, because SQLite only matches partial indexes on simple terms.
        queued INTEGER GENERATED ALWAYS AS
            (gold IS NULL AND status = 'pending' AND n_answers + n_leases < needed) VIRTUAL,
        UNIQUE (project_id, ext_id)
    );
    -- The work queue: open ordinary items with a free slot, fullest first.
    CREATE INDEX items_queue ON items(project_id, n_answers DESC, seq) WHERE queued;
    CREATE INDEX items_gold ON items(project_id, n_answers, seq) WHERE gold IS NOT NULL;
    CREATE INDEX items_escalated ON items(project_id, seq) WHERE status = 'escalated';

    CREATE TABLE annotators (
        id INTEGER PRIMARY KEY,
        key TEXT NOT NULL UNIQUE,   -- platform:user
        platform TEXT NOT NULL,
        address TEXT,               -- where to reach them (chat or DM channel id)
        name TEXT NOT NULL DEFAULT '',
        blocked INTEGER NOT NULL DEFAULT 0,   -- they blocked the bot: no pushes
        project_id INTEGER REFERENCES projects(id),  -- the project they work on now
        created_at REAL NOT NULL
    );
    CREATE TABLE members (
        project_id INTEGER NOT NULL REFERENCES projects(id),
        annotator_id INTEGER NOT NULL REFERENCES annotators(id),
        status TEXT NOT NULL DEFAULT 'active',  -- active | suspended
        reason TEXT,
        paused INTEGER NOT NULL DEFAULT 0,
        waiting INTEGER NOT NULL DEFAULT 0,     -- told there is no work: push when there is
        answers INTEGER NOT NULL DEFAULT 0,
        skips INTEGER NOT NULL DEFAULT 0,
        gold_answers INTEGER NOT NULL DEFAULT 0,
        gold_correct INTEGER NOT NULL DEFAULT 0,
        qual_answers INTEGER NOT NULL DEFAULT 0,
        qual_correct INTEGER NOT NULL DEFAULT 0,
        fast_answers INTEGER NOT NULL DEFAULT 0,
        last_label TEXT,
        same_run INTEGER NOT NULL DEFAULT 0,
        joined_at REAL NOT NULL,
        PRIMARY KEY (project_id, annotator_id)
    );
    CREATE INDEX members_waiting ON members(project_id) WHERE waiting = 1;

    CREATE TABLE assignments (
        id INTEGER PRIMARY KEY,
        item_id INTEGER NOT NULL REFERENCES items(id),
        annotator_id INTEGER NOT NULL REFERENCES annotators(id),
        state TEXT NOT NULL DEFAULT 'pending',  -- pending | answered | skipped | expired
        draft TEXT,                 -- multi-choice selection so far (JSON list)
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL
    );
    CREATE UNIQUE INDEX assignments_open ON assignments(item_id, annotator_id)
        WHERE state = 'pending';
    CREATE INDEX assignments_expiry ON assignments(expires_at) WHERE state = 'pending';
    CREATE INDEX assignments_by_annotator ON assignments(annotator_id, state);

    CREATE TABLE answers (
        id INTEGER PRIMARY KEY,
        item_id INTEGER NOT NULL REFERENCES items(id),
        annotator_id INTEGER NOT NULL REFERENCES annotators(id),
        assignment_id INTEGER NOT NULL UNIQUE REFERENCES assignments(id),
        value TEXT,                 -- canonical value; NULL for a skip
        is_gold INTEGER NOT NULL DEFAULT 0,
        correct INTEGER,            -- gold only
        expert INTEGER NOT NULL DEFAULT 0,
        counted INTEGER NOT NULL DEFAULT 1,  -- 0 once its annotator is suspended
        seconds REAL NOT NULL,
        answered_at REAL NOT NULL,
        UNIQUE (item_id, annotator_id)
    );
    CREATE INDEX answers_by_annotator ON answers(annotator_id, answered_at);
    CREATE INDEX answers_by_time ON answers(answered_at);

    CREATE TABLE verdicts (
        item_id INTEGER PRIMARY KEY REFERENCES items(id),
        status TEXT NOT NULL,
        label TEXT,
        confidence REAL NOT NULL,
        votes TEXT NOT NULL,
        n_answers INTEGER NOT NULL,
        method TEXT NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE media_files (
        sha256 TEXT NOT NULL,
        platform TEXT NOT NULL,
        file_id TEXT NOT NULL,
        PRIMARY KEY (sha256, platform)
    );
    """,
    # 2: a valid invite code admits its holder to every project (chosen after the code).
    """
    ALTER TABLE annotators ADD COLUMN invited INTEGER NOT NULL DEFAULT 0;
    """,
    # 3: the platform message a free-text answer came from, so a redelivered one counts once.
    """
    ALTER TABLE answers ADD COLUMN source TEXT;
    CREATE UNIQUE INDEX answers_source ON answers(annotator_id, source) WHERE source IS NOT NULL;
    """,
    # 4: the language someone chose with /language (NULL: their platform's, or the project's).
    """
    ALTER TABLE annotators ADD COLUMN language TEXT;
    """,
    # 5: suggestions with a score and the model version that made them; routing (one check for
    # confident items, audits), the model's record, and the queue ordered by certainty.
    """
    ALTER TABLE items ADD COLUMN suggestion_score REAL;   -- 0..1; NULL: no score
    ALTER TABLE items ADD COLUMN suggestion_model TEXT;   -- the model version that made it
    ALTER TABLE items ADD COLUMN route TEXT;  -- NULL | check | audit | verified | rejected
    ALTER TABLE items ADD COLUMN certainty REAL NOT NULL DEFAULT 0;  -- queue order among equals
    ALTER TABLE items ADD COLUMN model_hit INTEGER;  -- suggestion = gold / audited verdict (1, 0)
    -- Checks and ordinary work are two ranges of the queue: each person's share is one seek.
    ALTER TABLE items ADD COLUMN awaiting_check INTEGER
        GENERATED ALWAYS AS (route IS 'check') VIRTUAL;
    DROP INDEX items_queue;
    CREATE INDEX items_queue
        ON items(project_id, awaiting_check, n_answers DESC, certainty, seq) WHERE queued;
    CREATE INDEX items_routed ON items(project_id, route) WHERE route IS NOT NULL;
    CREATE INDEX items_model_hits ON items(project_id, model_hit) WHERE model_hit IS NOT NULL;
    ALTER TABLE assignments ADD COLUMN checking INTEGER NOT NULL DEFAULT 0;  -- a yes/no check
    ALTER TABLE answers ADD COLUMN checked INTEGER NOT NULL DEFAULT 0;  -- yes/no to a suggestion
    ALTER TABLE members ADD COLUMN last_answer_at REAL;  -- is a checker around?
    CREATE TABLE models (
        project_id INTEGER PRIMARY KEY REFERENCES projects(id),
        kind TEXT NOT NULL,
        version TEXT,               -- the latest version that made suggestions
        routing INTEGER NOT NULL DEFAULT 1,  -- 0 once its record fell below the bar
        reason TEXT,                -- why routing is off (a suspension Reason, JSON)
        trainings INTEGER NOT NULL DEFAULT 0,
        examples INTEGER NOT NULL DEFAULT 0,  -- labeled examples of the last training
        trained_on INTEGER NOT NULL DEFAULT 0,  -- resolved items when it last trained
        updated_at REAL NOT NULL
    );
    """,
]


class UnusableDatabase(Exception):
    """A database file this chatlabel must not touch; the message names the file and why."""


def check_version(conn: sqlite3.Connection, path: object) -> int:
    """The file's schema version; UnusableDatabase if it is not ours or newer than this code.

    Runs before any pragma that writes (journal_mode = WAL rewrites the file header), so a
    refused file is left byte for byte as it was.
    """
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.DatabaseError as exc:
        raise UnusableDatabase(f"{path}: not a chatlabel database ({exc})") from None
    if version > len(MIGRATIONS):
        raise UnusableDatabase(
            f"{path}: the database is from a newer chatlabel (schema version {version}; this "
            f"one knows up to {len(MIGRATIONS)}): upgrade chatlabel; the file was not changed"
        )
    return version


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema up to date; returns the resulting version."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise RuntimeError(
            f"database schema version {version} is newer than this chatlabel ({len(MIGRATIONS)})"
        )
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        # executescript commits first; each migration runs in its own transaction.
        conn.executescript(f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")
    return len(MIGRATIONS)
