"""The SQL of exports: results, answers and reports built by the database, streamed in batches."""

from __future__ import annotations

from typing import Literal

ExportWhat = Literal["results", "answers", "reports"]
ExportFormat = Literal["jsonl", "csv"]


# Results and answers are built by SQLite itself (json_object for JSONL): a million rows stream at
# SQLite's speed instead of through a Python dict and json.dumps each.
def _label_sql(kind: str, column: str) -> str:
    if kind == "multi":
        return f"json({column})"
    if kind == "rating":
        return (
            f"CASE WHEN CAST({column} AS INTEGER) = CAST({column} AS REAL)"
            f" THEN CAST({column} AS INTEGER) ELSE CAST({column} AS REAL) END"
        )
    return column


_BOOL = "json(CASE WHEN {} THEN 'true' ELSE 'false' END)"
# Held (reported, awaiting a decision) and removed items say so whatever their verdict says.
_STATUS = """CASE WHEN i.status IN ('held', 'removed') THEN i.status
    ELSE COALESCE(v.status, i.status) END"""
# What the annotator wrote about the item (replies to it, a report's note), oldest first.
_COMMENT = """(SELECT GROUP_CONCAT(c.text, char(10)) FROM comments c
    WHERE c.item_id = x.item_id AND c.annotator_id = x.annotator_id)"""
_RESULTS_FROM = """FROM items i LEFT JOIN verdicts v ON v.item_id = i.id
    WHERE i.project_id = :p AND i.gold IS NULL ORDER BY i.seq"""
_ANSWERS_FROM = """FROM answers x JOIN items i ON i.id = x.item_id
    JOIN annotators a ON a.id = x.annotator_id WHERE i.project_id = :p ORDER BY x.id"""
_ISO = "strftime('%Y-%m-%dT%H:%M:%f', x.answered_at, 'unixepoch') || '+00:00'"
_REPORTED_AT = "strftime('%Y-%m-%dT%H:%M:%f', r.created_at, 'unixepoch') || '+00:00'"
_NOTE = """(SELECT GROUP_CONCAT(c.text, char(10)) FROM comments c
    WHERE c.item_id = r.item_id AND c.annotator_id = r.annotator_id)"""
_REPORTS_FROM = """FROM item_reports r JOIN items i ON i.id = r.item_id
    JOIN annotators a ON a.id = r.annotator_id WHERE i.project_id = :p ORDER BY r.id"""
# One row per report: the item, who, why, their comments, when, the item's state and decision.
_REPORTS_JSONL = f"""SELECT json_object('item_id', i.ext_id, 'annotator', a.key,
    'reason', r.reason, 'comment', {_NOTE}, 'reported_at', {_REPORTED_AT},
    'item_status', i.status, 'decision', r.decision) {_REPORTS_FROM}"""
_REPORTS_CSV = f"""SELECT i.ext_id, a.key, r.reason, {_NOTE}, {_REPORTED_AT}, i.status, r.decision
    {_REPORTS_FROM}"""
# The same on PostgreSQL (json_build_object, string_agg, to_char).
_PG_REPORTED_AT = (
    "to_char(to_timestamp(r.created_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS')"
    " || '+00:00'"
)
_PG_NOTE = """(SELECT string_agg(c.text, chr(10) ORDER BY c.id) FROM comments c
    WHERE c.item_id = r.item_id AND c.annotator_id = r.annotator_id)"""
_PG_REPORTS_JSONL = f"""SELECT json_build_object('item_id', i.ext_id, 'annotator', a.key,
    'reason', r.reason, 'comment', {_PG_NOTE}, 'reported_at', {_PG_REPORTED_AT},
    'item_status', i.status, 'decision', r.decision)::text {_REPORTS_FROM}"""
_PG_REPORTS_CSV = f"""SELECT i.ext_id, a.key, r.reason, {_PG_NOTE}, {_PG_REPORTED_AT}, i.status,
    r.decision {_REPORTS_FROM}"""
_SQL = {
    ("results", "jsonl"): """SELECT json_object('id', i.ext_id,
        'label', CASE WHEN {status} = 'resolved' THEN {label} END,
        'status', {status}, 'confidence', ROUND(v.confidence, 4),
        'votes', json(COALESCE(v.votes, '{{}}')), 'n_answers', COALESCE(v.n_answers, 0),
        'method', COALESCE(v.method, :method), 'suggestion', i.suggestion,
        'suggestion_score', ROUND(i.suggestion_score, 4), 'model', i.suggestion_model) """
    + _RESULTS_FROM,
    ("results", "csv"): """SELECT i.ext_id,
        CASE WHEN {status} = 'resolved' THEN v.label END,
        {status}, ROUND(v.confidence, 4), COALESCE(v.votes, '{{}}'),
        COALESCE(v.n_answers, 0), COALESCE(v.method, :method), i.suggestion,
        ROUND(i.suggestion_score, 4), i.suggestion_model """
    + _RESULTS_FROM,
    ("answers", "jsonl"): f"""SELECT json_object('item_id', i.ext_id, 'annotator', a.key,
        'label', {{label}}, 'skipped', {_BOOL.format("x.value IS NULL")},
        'is_gold', {_BOOL.format("x.is_gold")},
        'correct', CASE WHEN x.correct IS NULL THEN NULL ELSE {_BOOL.format("x.correct")} END,
        'seconds', ROUND(x.seconds, 3), 'answered_at', {_ISO},
        'skip_reason', x.skip_reason, 'comment', {_COMMENT},
        'check', {_BOOL.format("x.checked")}) """
    + _ANSWERS_FROM,
    ("answers", "csv"): f"""SELECT i.ext_id, a.key, x.value,
        CASE WHEN x.value IS NULL THEN 'true' ELSE 'false' END,
        CASE WHEN x.is_gold THEN 'true' ELSE 'false' END,
        CASE x.correct WHEN 1 THEN 'true' WHEN 0 THEN 'false' END,
        ROUND(x.seconds, 3), {_ISO},
        x.skip_reason, {_COMMENT}, CASE WHEN x.checked <> 0 THEN 'true' ELSE 'false' END """
    + _ANSWERS_FROM,
    ("reports", "jsonl"): _REPORTS_JSONL,
    ("reports", "csv"): _REPORTS_CSV,
}


# The same rows on PostgreSQL: json_build_object keeps the keys in this order, as SQLite's
# json_object does; times and scores are double precision, rounded through numeric.
def _pg_label_sql(kind: str, column: str, json: bool) -> str:
    if kind == "multi":
        return f"({column})::json" if json else column
    if kind == "rating" and json:
        return (
            f"CASE WHEN ({column})::numeric = trunc(({column})::numeric)"
            f" THEN to_json(({column})::numeric::bigint) ELSE to_json(({column})::float8) END"
        )
    if kind == "rating":
        return (
            f"CASE WHEN ({column})::numeric = trunc(({column})::numeric)"
            f" THEN (({column})::numeric::bigint)::text ELSE (({column})::float8)::text END"
        )
    return column


_PG_ROUND = "round(({})::numeric, {})::float8"
_PG_ISO = (
    "to_char(to_timestamp(x.answered_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS')"
    " || '+00:00'"
)
_PG_COMMENT = """(SELECT string_agg(c.text, chr(10) ORDER BY c.id) FROM comments c
    WHERE c.item_id = x.item_id AND c.annotator_id = x.annotator_id)"""
_PG_SQL = {
    ("results", "jsonl"): """SELECT json_build_object('id', i.ext_id,
        'label', CASE WHEN {status} = 'resolved' THEN {label} END,
        'status', {status},
        'confidence', """
    + _PG_ROUND.format("v.confidence", 4)
    + """, 'votes', COALESCE(v.votes, '{{}}')::json, 'n_answers', COALESCE(v.n_answers, 0),
        'method', COALESCE(v.method, :method), 'suggestion', i.suggestion,
        'suggestion_score', """
    + _PG_ROUND.format("i.suggestion_score", 4)
    + """, 'model', i.suggestion_model)::text """
    + _RESULTS_FROM,
    ("results", "csv"): """SELECT i.ext_id,
        CASE WHEN {status} = 'resolved' THEN v.label END,
        {status}, """
    + _PG_ROUND.format("v.confidence", 4)
    + """, COALESCE(v.votes, '{{}}'),
        COALESCE(v.n_answers, 0), COALESCE(v.method, :method), i.suggestion, """
    + _PG_ROUND.format("i.suggestion_score", 4)
    + """, i.suggestion_model """
    + _RESULTS_FROM,
    ("answers", "jsonl"): f"""SELECT json_build_object('item_id', i.ext_id, 'annotator', a.key,
        'label', {{label}}, 'skipped', x.value IS NULL, 'is_gold', x.is_gold <> 0,
        'correct', CASE WHEN x.correct IS NULL THEN NULL ELSE x.correct <> 0 END,
        'seconds', {_PG_ROUND.format("x.seconds", 3)}, 'answered_at', {_PG_ISO},
        'skip_reason', x.skip_reason, 'comment', {_PG_COMMENT},
        'check', x.checked <> 0)::text """
    + _ANSWERS_FROM,
    ("answers", "csv"): f"""SELECT i.ext_id, a.key, x.value,
        CASE WHEN x.value IS NULL THEN 'true' ELSE 'false' END,
        CASE WHEN x.is_gold <> 0 THEN 'true' ELSE 'false' END,
        CASE x.correct WHEN 1 THEN 'true' WHEN 0 THEN 'false' END,
        {_PG_ROUND.format("x.seconds", 3)}, {_PG_ISO}, x.skip_reason, {_PG_COMMENT},
        CASE WHEN x.checked <> 0 THEN 'true' ELSE 'false' END """
    + _ANSWERS_FROM,
    ("reports", "jsonl"): _PG_REPORTS_JSONL,
    ("reports", "csv"): _PG_REPORTS_CSV,
}


def export_sql(what: ExportWhat, fmt: ExportFormat, kind: str, dialect: str = "sqlite") -> str:
    """The query for an export; parameters :p (project id) and :method (its verdict method)."""
    if what == "reports" and dialect != "postgresql":
        return _SQL[what, fmt]
    column = "v.label" if what == "results" else "x.value"
    if dialect == "postgresql":
        if what == "reports":
            return _PG_SQL[what, fmt]
        label = _pg_label_sql(kind, column, fmt == "jsonl")
        return _PG_SQL[what, fmt].format(label=label, status=_STATUS)
    return _SQL[what, fmt].format(label=_label_sql(kind, column), status=_STATUS)


# Every item (gold too: its gold answer is a ground-truth annotation) with its suggestion and
# verdict, for Label Studio's task JSON; the columns label_studio.task_of reads, in order.
_TASKS_SQL = """SELECT i.ext_id, i.text, i.media_kind, i.media_path, i.context, i.meta, i.gold,
    i.suggestion, {score}, i.suggestion_model,
    COALESCE(v.status, i.status), v.label, {confidence}, COALESCE(v.n_answers, 0),
    v.method
    FROM items i LEFT JOIN verdicts v ON v.item_id = i.id
    WHERE i.project_id = :p ORDER BY i.seq"""


def tasks_sql(dialect: str = "sqlite") -> str:
    """The query behind Label Studio's task export; parameter :p (project id)."""
    rnd = _PG_ROUND if dialect == "postgresql" else "ROUND({}, {})"
    return _TASKS_SQL.format(
        score=rnd.format("i.suggestion_score", 4), confidence=rnd.format("v.confidence", 4)
    )
