"""Import items from JSONL, CSV or a folder of images: validated, streamed, all or nothing."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .core.model import Rules
from .core.values import canonical
from .media import MEDIA_KINDS, MediaError, check_media
from .service.labeling import LabelingService
from .storage import repo

FIELDS = (
    "id",
    "text",
    "image",
    "audio",
    "video",
    "context",
    "gold",
    "gold_reason",
    "suggestion",
    "boxes",
    "meta",
)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
MAX_LINE = 1 << 20  # a JSONL line or CSV field over 1 MiB is an error, not a memory spike
MAX_TEXT = 20_000


class ImportError_(ValueError):
    """A row that cannot be imported; the message names the file, line and reason."""


@dataclass
class ImportSummary:
    """What an import did."""

    items: int = 0
    gold: int = 0
    duplicates: int = 0
    rows: int = 0


@dataclass(frozen=True)
class Record:
    """One validated item, ready to insert."""

    ext_id: str
    text: str | None
    media_kind: str | None
    media_path: str | None
    context: str | None
    gold: str | None
    gold_reason: str | None
    suggestion: str | None
    boxes: str | None
    meta: str | None


def _fail(path: Path, line: int, reason: str) -> ImportError_:
    return ImportError_(f"{path}:{line}: {reason}")


def _read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open("rb") as f:
        number = 0
        while True:
            raw = f.readline(MAX_LINE + 1)
            if not raw:
                return
            number += 1
            if len(raw) > MAX_LINE and not raw.endswith(b"\n"):
                raise _fail(path, number, "line is longer than 1 MiB")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise _fail(path, number, f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as exc:
                raise _fail(
                    path, number, f"malformed JSON: {exc.msg} (column {exc.colno})"
                ) from None
            if not isinstance(row, dict):
                raise _fail(path, number, "expected a JSON object")
            yield number, row


def _read_csv(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    csv.field_size_limit(MAX_LINE)
    with path.open("rb") as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        reader = csv.reader(text)
        try:
            header = next(reader)
        except StopIteration:
            return
        except UnicodeDecodeError as exc:
            raise _fail(path, 1, f"not UTF-8 ({exc.reason})") from None
        header = [h.strip().lstrip("\ufeff") for h in header]
        if len(set(header)) != len(header):
            raise _fail(path, 1, "column names repeat")
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except UnicodeDecodeError as exc:
                raise _fail(path, reader.line_num + 1, f"not UTF-8 ({exc.reason})") from None
            except csv.Error as exc:
                raise _fail(path, reader.line_num, f"bad CSV: {exc}") from None
            if not cells:
                continue
            if len(cells) != len(header):
                raise _fail(
                    path, reader.line_num, f"expected {len(header)} columns, found {len(cells)}"
                )
            row: dict[str, Any] = {}
            extra: dict[str, str] = {}
            for key, value in zip(header, cells, strict=True):
                if key in FIELDS:
                    if value != "":
                        row[key] = value
                else:
                    extra[key] = value
            if extra:
                row["meta"] = {
                    **_json_field(row.get("meta"), path, reader.line_num, "meta"),
                    **extra,
                }
            if isinstance(row.get("boxes"), str):
                row["boxes"] = _json_field(row["boxes"], path, reader.line_num, "boxes")
            yield reader.line_num, row


def _json_field(value: Any, path: Path, line: int, name: str) -> Any:
    if value is None or not isinstance(value, str):
        return value or {}
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        raise _fail(path, line, f"{name} is not valid JSON") from None


def _read_folder(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    for number, p in enumerate(files, start=1):
        yield number, {"id": str(p.relative_to(path)), "image": str(p)}


def _content_id(row: dict[str, Any]) -> str:
    # Items without an id get one from their content, so re-importing adds nothing.
    body = {k: row.get(k) for k in FIELDS if k not in ("id", "gold", "gold_reason")}
    digest = hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()
    return digest[:16]


def _str(row: dict[str, Any], key: str, path: Path, line: int, limit: int = MAX_TEXT) -> str | None:
    value = row.get(key)
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise _fail(path, line, f"{key} must be a string")
    if len(value) > limit:
        raise _fail(path, line, f"{key} is longer than {limit} characters")
    return value


def validate(
    rows: Iterator[tuple[int, dict[str, Any]]], path: Path, rules: Rules, base: Path
) -> Iterator[tuple[int, Record]]:
    """Check each row and turn it into a Record; the first bad row raises ImportError_."""
    for line, row in rows:
        unknown = set(row) - set(FIELDS)
        if unknown:
            raise _fail(
                path,
                line,
                f"unknown field {sorted(unknown)[0]!r} "
                f"(fields: {', '.join(FIELDS)}; put extra data in meta)",
            )
        ext_id = _str(row, "id", path, line, 200) or _content_id(row)
        text = _str(row, "text", path, line)
        media = [(k, row[k]) for k in MEDIA_KINDS if row.get(k)]
        if len(media) > 1:
            raise _fail(path, line, "an item has at most one of image, audio, video")
        media_kind = media_path = None
        if media:
            media_kind, rel = media[0]
            if not isinstance(rel, str):
                raise _fail(path, line, f"{media_kind} must be a file path")
            full = (base / rel).resolve()
            try:
                check_media(full, media_kind)
            except MediaError as exc:
                raise _fail(path, line, f"{media_kind} {rel}: {exc}") from None
            media_path = str(full)
        if not text and not media_path:
            raise _fail(path, line, "an item needs text or a media file")
        gold = row.get("gold")
        if gold is not None and gold != "":
            try:
                gold = canonical(rules, gold if isinstance(gold, list) else str(gold))
            except ValueError as exc:
                raise _fail(path, line, f"gold: {exc}") from None
        else:
            gold = None
        boxes = row.get("boxes")
        if boxes is not None and not (
            isinstance(boxes, list) and all(isinstance(b, dict) for b in boxes)
        ):
            raise _fail(path, line, "boxes must be a list of objects with x, y, w, h")
        meta = row.get("meta")
        if meta is not None and not isinstance(meta, dict):
            raise _fail(path, line, "meta must be an object")
        yield (
            line,
            Record(
                ext_id=ext_id,
                text=text,
                media_kind=media_kind,
                media_path=media_path,
                context=_str(row, "context", path, line),
                gold=gold,
                gold_reason=_str(row, "gold_reason", path, line),
                suggestion=_str(row, "suggestion", path, line, 1000),
                boxes=json.dumps(boxes) if boxes else None,
                meta=json.dumps(meta, ensure_ascii=False) if meta else None,
            ),
        )


def read_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Rows of a data file or folder, by its kind."""
    if path.is_dir():
        return _read_folder(path)
    if not path.exists():
        raise ImportError_(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return _read_jsonl(path)
    if suffix in (".csv", ".tsv"):
        return _read_csv(path)
    raise ImportError_(f"{path}: unknown format (use .jsonl, .csv or a folder of images)")


def _insert(
    conn: sqlite3.Connection,
    project_id: int,
    overlap: int,
    records: Iterator[tuple[int, Record]],
    path: Path,
    now: float,
    progress: Callable[[int], None] | None,
) -> ImportSummary:
    summary = ImportSummary()
    seq = repo.max_seq(conn)
    first_seq = seq + 1
    for line, r in records:
        seq += 1
        summary.rows += 1
        inserted = repo.insert_item(
            conn,
            (
                project_id,
                r.ext_id,
                r.text,
                r.media_kind,
                r.media_path,
                r.context,
                r.gold,
                r.gold_reason,
                r.suggestion,
                r.boxes,
                r.meta,
                overlap,
                seq,
                now,
            ),
        )
        if not inserted:
            if repo.item_seq(conn, project_id, r.ext_id) >= first_seq:
                raise _fail(
                    path, line, f"duplicate id {r.ext_id!r} (it appears earlier in this file)"
                )
            summary.duplicates += 1
        else:
            summary.items += 1
            summary.gold += r.gold is not None
        if progress is not None and summary.rows % 1000 == 0:
            progress(summary.rows)
    return summary


async def import_file(
    service: LabelingService,
    project: str,
    path: Path | str,
    *,
    progress: Callable[[int], None] | None = None,
) -> ImportSummary:
    """Import a file or folder into a project in one transaction: all rows or none."""
    path = Path(path)
    rules = service.rules[project]
    base = path if path.is_dir() else path.parent
    records = validate(read_rows(path), path, rules, base)
    summary = await service.db.write(
        _insert,
        service.pids[project],
        service.projects[project].overlap,
        records,
        path,
        service.clock(),
        progress,
    )
    if summary.items:
        service.notify()
    return summary
