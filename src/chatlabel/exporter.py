"""Export results, answers or annotators as JSONL or CSV, streamed row by row."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from typing import Any, Literal, TextIO

from .service import quality
from .service.items import ExportWhat
from .service.labeling import LabelingService
from .service.reports import Reports

What = Literal["results", "answers", "annotators", "reports"]
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
        "skip_reason",
        "comment",
    ),
    "reports": (
        "item_id",
        "annotator",
        "reason",
        "comment",
        "reported_at",
        "item_status",
        "decision",
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


async def rows(service: LabelingService, project: str, what: What) -> AsyncIterator[dict[str, Any]]:
    """The export's rows as dicts, streamed from a read-only connection."""
    if what in ("results", "answers", "reports"):
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
            }


async def _sql_batches(
    service: LabelingService, project: str, what: ExportWhat, fmt: Format
) -> AsyncIterator[list[Any]]:
    """Rows in batches: one JSON text per row (jsonl) or a tuple of CSV cells."""
    if what == "results" and service.rules[project].method == "dawid-skene":
        await quality.recompute(service, project)  # batch verdicts, fresh for the export
    async for batch in service.export_batches(project, what, fmt):
        yield batch


async def _sql_export(
    service: LabelingService, project: str, what: ExportWhat, fmt: Format, out: TextIO
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


async def write(
    service: LabelingService, project: str, what: What, fmt: Format, out: TextIO
) -> int:
    """Write an export to a text stream; returns the number of rows."""
    if what in ("results", "answers", "reports"):
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
