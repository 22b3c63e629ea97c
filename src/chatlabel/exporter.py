"""Export results, answers or annotators as JSONL or CSV, streamed row by row."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from typing import Any, Literal, TextIO

from . import label_studio
from .service import quality
from .service.items import ExportFormat, ExportWhat
from .service.labeling import LabelingService
from .service.reports import Reports

What = Literal["results", "answers", "annotators"]
Format = Literal["jsonl", "csv", "label-studio"]

COLUMNS: dict[str, tuple[str, ...]] = {
    "results": (
        "id",
        "label",
        "status",
        "confidence",
        "votes",
        "n_answers",
        "method",
        "suggestion",
        "suggestion_score",
        "model",
    ),
    "answers": (
        "item_id",
        "annotator",
        "label",
        "skipped",
        "is_gold",
        "correct",
        "seconds",
        "answered_at",
        "check",
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
        "reason",
    ),
}


async def rows(service: LabelingService, project: str, what: What) -> AsyncIterator[dict[str, Any]]:
    """The export's rows as dicts, streamed from a read-only connection."""
    if what in ("results", "answers"):
        async for batch in _sql_batches(service, project, what, "jsonl"):
            for (line,) in batch:
                yield json.loads(line)
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
                # Why a person was suspended (or routing by the model switched off), as data.
                "reason": {"code": a.reason.code, **a.reason.params} if a.reason else None,
            }


async def _sql_batches(
    service: LabelingService, project: str, what: ExportWhat, fmt: ExportFormat
) -> AsyncIterator[list[Any]]:
    """Rows in batches: one JSON text per row (jsonl) or a tuple of CSV cells."""
    if what == "results" and service.rules[project].method == "dawid-skene":
        await quality.recompute(service, project)  # batch verdicts, fresh for the export
    async for batch in service.export_batches(project, what, fmt):
        yield batch


async def _sql_export(
    service: LabelingService, project: str, what: ExportWhat, fmt: ExportFormat, out: TextIO
) -> int:
    n = 0
    if fmt == "jsonl":
        async for batch in _sql_batches(service, project, what, fmt):
            out.write("\n".join(r[0] for r in batch) + "\n")
            n += len(batch)
        return n
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS[what])
    async for batch in _sql_batches(service, project, what, fmt):
        writer.writerows(batch)
        n += len(batch)
    return n


async def label_studio_tasks(service: LabelingService, project: str, out: TextIO) -> int:
    """Write every item as a Label Studio task (data, prediction, result): a JSON array."""
    p = service.projects[project]
    if p.method == "dawid-skene":
        await quality.recompute(service, project)  # batch verdicts, fresh for the export
    n = 0
    out.write("[")
    async for batch in service.task_batches(project):
        for row in batch:
            task = label_studio.task_of(row, p.kind, tuple(p.labels), p.label_studio)
            out.write(("\n" if n == 0 else ",\n") + json.dumps(task, ensure_ascii=False))
            n += 1
    out.write("\n]\n")
    return n


async def write(
    service: LabelingService, project: str, what: What, fmt: Format, out: TextIO
) -> int:
    """Write an export to a text stream; returns the number of rows."""
    if fmt == "label-studio":
        if what != "results":
            raise ValueError("Label Studio's format holds tasks and their results only")
        return await label_studio_tasks(service, project, out)
    if what in ("results", "answers"):
        return await _sql_export(service, project, what, fmt, out)
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
