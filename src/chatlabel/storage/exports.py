"""The SQL of exports: results, answers and reports built by the database, streamed in batches."""

from __future__ import annotations

from typing import Literal

from .dialect import iso_time, json_bool, json_number, json_object, json_of, lines_of, rounded

ExportWhat = Literal["results", "answers", "reports"]
# Decimals of confidences and scores in exports (a batch recompute rewrites no more than shows).
EXPORTED_DIGITS = 4
ExportFormat = Literal["jsonl", "csv"]

# Each row is built by the database itself (a JSON object's text for JSONL): a million rows
# stream at the database's speed instead of through a Python dict and json.dumps each.

# Held (reported, awaiting a decision) and removed items say so whatever their verdict says.
_STATUS = """CASE WHEN i.status IN ('held', 'removed') THEN i.status
    ELSE COALESCE(v.status, i.status) END"""
_RESULTS_FROM = """FROM items i LEFT JOIN verdicts v ON v.item_id = i.id
    WHERE i.project_id = :p AND i.gold IS NULL ORDER BY i.seq"""
_ANSWERS_FROM = """FROM answers x JOIN items i ON i.id = x.item_id
    JOIN annotators a ON a.id = x.annotator_id WHERE i.project_id = :p ORDER BY x.id"""
_REPORTS_FROM = """FROM item_reports r JOIN items i ON i.id = r.item_id
    JOIN annotators a ON a.id = r.annotator_id WHERE i.project_id = :p ORDER BY r.id"""


def _csv_bool(condition: str) -> str:
    return f"CASE WHEN {condition} THEN 'true' ELSE 'false' END"


def _comments(d: str, row: str) -> str:
    """What the annotator of `row` wrote about its item (replies, a report's note), oldest first."""
    return f"""(SELECT {lines_of(d, "c.text", "c.id")} FROM comments c
    WHERE c.item_id = {row}.item_id AND c.annotator_id = {row}.annotator_id)"""


def _json_label(d: str, kind: str, column: str) -> str:
    """A label as its JSON value: multi's list, rating's number, else the text."""
    if kind == "multi":
        return json_of(d, column)
    if kind == "rating":
        return json_number(d, column)
    return column


def _results(d: str, fmt: ExportFormat, kind: str) -> str:
    confidence = rounded(d, "v.confidence", EXPORTED_DIGITS)
    score = rounded(d, "i.suggestion_score", EXPORTED_DIGITS)
    if fmt == "csv":
        return f"""SELECT i.ext_id, CASE WHEN {_STATUS} = 'resolved' THEN v.label END,
        {_STATUS}, {confidence}, COALESCE(v.votes, '{{}}'), COALESCE(v.n_answers, 0),
        COALESCE(v.method, :method), i.suggestion, {score}, i.suggestion_model {_RESULTS_FROM}"""
    label = _json_label(d, kind, "v.label")
    obj = json_object(
        d,
        f"""'id', i.ext_id, 'label', CASE WHEN {_STATUS} = 'resolved' THEN {label} END,
        'status', {_STATUS}, 'confidence', {confidence},
        'votes', {json_of(d, "COALESCE(v.votes, '{}')")}, 'n_answers', COALESCE(v.n_answers, 0),
        'method', COALESCE(v.method, :method), 'suggestion', i.suggestion,
        'suggestion_score', {score}, 'model', i.suggestion_model""",
    )
    return f"SELECT {obj} {_RESULTS_FROM}"


def _answers(d: str, fmt: ExportFormat, kind: str) -> str:
    seconds, at, comment = (
        rounded(d, "x.seconds", 3),
        iso_time(d, "x.answered_at"),
        _comments(d, "x"),
    )
    if fmt == "csv":
        return f"""SELECT i.ext_id, a.key, x.value, {_csv_bool("x.value IS NULL")},
        {_csv_bool("x.is_gold <> 0")}, CASE x.correct WHEN 1 THEN 'true' WHEN 0 THEN 'false' END,
        {seconds}, {at}, x.skip_reason, {comment}, {_csv_bool("x.checked <> 0")} {_ANSWERS_FROM}"""
    obj = json_object(
        d,
        f"""'item_id', i.ext_id, 'annotator', a.key, 'label', {_json_label(d, kind, "x.value")},
        'skipped', {json_bool(d, "x.value IS NULL")}, 'is_gold', {json_bool(d, "x.is_gold <> 0")},
        'correct', CASE WHEN x.correct IS NULL THEN NULL ELSE {json_bool(d, "x.correct <> 0")} END,
        'seconds', {seconds}, 'answered_at', {at}, 'skip_reason', x.skip_reason,
        'comment', {comment}, 'check', {json_bool(d, "x.checked <> 0")}""",
    )
    return f"SELECT {obj} {_ANSWERS_FROM}"


def _reports(d: str, fmt: ExportFormat) -> str:
    """One row per report: the item, who, why, their comments, when, the item's state, decision."""
    note, at = _comments(d, "r"), iso_time(d, "r.created_at")
    if fmt == "csv":
        return f"""SELECT i.ext_id, a.key, r.reason, {note}, {at}, i.status, r.decision
        {_REPORTS_FROM}"""
    obj = json_object(
        d,
        f"""'item_id', i.ext_id, 'annotator', a.key, 'reason', r.reason, 'comment', {note},
        'reported_at', {at}, 'item_status', i.status, 'decision', r.decision""",
    )
    return f"SELECT {obj} {_REPORTS_FROM}"


def export_sql(what: ExportWhat, fmt: ExportFormat, kind: str, dialect: str = "sqlite") -> str:
    """The query for an export; parameters :p (project id) and :method (its verdict method)."""
    if what == "results":
        return _results(dialect, fmt, kind)
    if what == "answers":
        return _answers(dialect, fmt, kind)
    return _reports(dialect, fmt)


def tasks_sql(dialect: str = "sqlite") -> str:
    """The query behind Label Studio's task export; parameter :p (project id)."""
    # Every item (gold too: its gold answer is a ground-truth annotation) with its suggestion
    # and verdict; the columns label_studio.task_of reads, in order.
    return f"""SELECT i.ext_id, i.text, i.media_kind, i.media_path, i.context, i.meta, i.gold,
    i.suggestion, {rounded(dialect, "i.suggestion_score", EXPORTED_DIGITS)}, i.suggestion_model,
    COALESCE(v.status, i.status), v.label, {rounded(dialect, "v.confidence", EXPORTED_DIGITS)},
    COALESCE(v.n_answers, 0), v.method
    FROM items i LEFT JOIN verdicts v ON v.item_id = i.id
    WHERE i.project_id = :p ORDER BY i.seq"""
