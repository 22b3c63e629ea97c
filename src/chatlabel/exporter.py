"""Export results, answers or annotators as JSONL or CSV, streamed row by row."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

from .service import quality
from .service.labeling import LabelingService
from .service.reports import Reports

What = Literal["results", "answers", "annotators"]
Format = Literal["jsonl", "csv"]

COLUMNS: dict[str, tuple[str, ...]] = {
    "results": ("id", "label", "status", "confidence", "votes", "n_answers", "method"),
    "answers": (
        "item_id",
        "annotator",
        "label",
        "skipped",
        "is_gold",
        "correct",
        "seconds",
        "answered_at",
    ),
    "annotators": (
        "id",
        "name",
        "role",
        "status",
        "answers",
        "skips",
        "gold_answers",
        "gold_accuracy",
        "accuracy_low",
        "accuracy_high",
        "median_seconds",
    ),
}


def _label(kind: str, value: str | None) -> Any:
    if value is None:
        return None
    if kind == "multi":
        return json.loads(value)
    if kind == "rating":
        number = float(value)
        return int(number) if number.is_integer() else number
    return value


async def rows(service: LabelingService, project: str, what: What) -> AsyncIterator[dict[str, Any]]:
    """The export's rows as dicts, streamed from a read-only connection."""
    pid = service.pids[project]
    kind = service.rules[project].kind
    if what == "results":
        async for batch in _result_batches(service, project, "jsonl"):
            for (line,) in batch:
                yield json.loads(line)
    elif what == "answers":
        async for r in service.db.stream(
            """SELECT i.ext_id, a.key, x.value, x.is_gold, x.correct, x.seconds, x.answered_at
               FROM answers x JOIN items i ON i.id = x.item_id
               JOIN annotators a ON a.id = x.annotator_id
               WHERE i.project_id = ? ORDER BY x.id""",
            (pid,),
        ):
            yield {
                "item_id": r[0],
                "annotator": r[1],
                "label": _label(kind, r[2]),
                "skipped": r[2] is None,
                "is_gold": bool(r[3]),
                "correct": None if r[4] is None else bool(r[4]),
                "seconds": round(r[5], 3),
                "answered_at": datetime.fromtimestamp(r[6], UTC).isoformat(),
            }
    else:
        for a in await Reports(service).annotators(project, limit=1_000_000):
            yield {
                "id": a.key,
                "name": a.name,
                "role": a.role,
                "status": a.status,
                "answers": a.answers,
                "skips": a.skips,
                "gold_answers": a.gold_answers,
                "gold_accuracy": a.gold_accuracy,
                "accuracy_low": a.accuracy_low,
                "accuracy_high": a.accuracy_high,
                "median_seconds": a.median_seconds,
            }


# Results are built by SQLite itself (json_object for JSONL): a million rows stream at SQLite's
# speed instead of through a Python dict and json.dumps each.
_LABEL_SQL = {
    "multi": "json(v.label)",
    "rating": "CASE WHEN CAST(v.label AS INTEGER) = CAST(v.label AS REAL)"
    " THEN CAST(v.label AS INTEGER) ELSE CAST(v.label AS REAL) END",
}
_RESULTS_FROM = """FROM items i LEFT JOIN verdicts v ON v.item_id = i.id
    WHERE i.project_id = ? AND i.gold IS NULL ORDER BY i.seq"""
_RESULTS_JSONL = (
    """SELECT json_object('id', i.ext_id,
    'label', CASE WHEN COALESCE(v.status, i.status) = 'resolved' THEN {label} END,
    'status', COALESCE(v.status, i.status), 'confidence', ROUND(v.confidence, 4),
    'votes', json(COALESCE(v.votes, '{{}}')), 'n_answers', COALESCE(v.n_answers, 0),
    'method', COALESCE(v.method, ?)) """
    + _RESULTS_FROM
)
_RESULTS_CSV = (
    """SELECT i.ext_id,
    CASE WHEN COALESCE(v.status, i.status) = 'resolved' THEN {label} END,
    COALESCE(v.status, i.status), ROUND(v.confidence, 4), COALESCE(v.votes, '{{}}'),
    COALESCE(v.n_answers, 0), COALESCE(v.method, ?) """
    + _RESULTS_FROM
)


async def _result_batches(
    service: LabelingService, project: str, fmt: Format
) -> AsyncIterator[list[Any]]:
    """Results in batches: one JSON text per row (jsonl) or a tuple of CSV cells."""
    rules = service.rules[project]
    if rules.method == "dawid-skene":
        await quality.recompute(service, project)  # batch verdicts, fresh for the export
    sql = _RESULTS_JSONL if fmt == "jsonl" else _RESULTS_CSV
    label = _LABEL_SQL.get(rules.kind, "v.label")
    params = (rules.method, service.pids[project])
    async for batch in service.db.stream_batches(sql.format(label=label), params):
        yield batch


async def _results(service: LabelingService, project: str, fmt: Format, out: TextIO) -> int:
    n = 0
    if fmt == "jsonl":
        async for batch in _result_batches(service, project, fmt):
            out.write("\n".join(r[0] for r in batch) + "\n")
            n += len(batch)
        return n
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS["results"])
    async for batch in _result_batches(service, project, fmt):
        writer.writerows(batch)
        n += len(batch)
    return n


async def write(
    service: LabelingService, project: str, what: What, fmt: Format, out: TextIO
) -> int:
    """Write an export to a text stream; returns the number of rows."""
    if what == "results":
        return await _results(service, project, fmt, out)
    n = 0
    if fmt == "jsonl":
        async for row in rows(service, project, what):
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
        return n
    writer = csv.DictWriter(out, fieldnames=COLUMNS[what], lineterminator="\n")
    writer.writeheader()
    async for row in rows(service, project, what):
        writer.writerow(
            {
                k: json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else v
                for k, v in row.items()
            }
        )
        n += 1
    return n


async def results_file(service: LabelingService, project: str) -> tuple[str, bytes]:
    """The results of a project as a JSONL file (name, bytes), for chat /export commands."""
    buf = io.StringIO()
    await write(service, project, "results", "jsonl", buf)
    return f"{project}-results.jsonl", buf.getvalue().encode("utf-8")
