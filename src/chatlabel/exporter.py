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
        if service.rules[project].method == "dawid-skene":
            await quality.recompute(service, project)  # batch verdicts, fresh for the export
        async for r in service.db.stream(
            """SELECT i.ext_id, v.label, COALESCE(v.status, i.status) AS status, v.confidence,
                      v.votes, COALESCE(v.n_answers, 0) AS n, v.method
               FROM items i LEFT JOIN verdicts v ON v.item_id = i.id
               WHERE i.project_id = ? AND i.gold IS NULL ORDER BY i.seq""",
            (pid,),
        ):
            yield {
                "id": r[0],
                "label": _label(kind, r[1]) if r[2] == "resolved" else None,
                "status": r[2],
                "confidence": round(r[3], 4) if r[3] is not None else None,
                "votes": json.loads(r[4]) if r[4] else {},
                "n_answers": r[5],
                "method": r[6] or service.rules[project].method,
            }
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


async def write(
    service: LabelingService, project: str, what: What, fmt: Format, out: TextIO
) -> int:
    """Write an export to a text stream; returns the number of rows."""
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
