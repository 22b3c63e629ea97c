"""Import items from JSONL, CSV or a folder of images: validated, streamed, all or nothing.

Reading and validating run in batches; a large JSONL file is cut into chunks at line ends and
its chunks are validated in worker processes while this process inserts the batches before
them, in file order, in one transaction. Errors still name the first bad line of the file.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from .core.model import ITEM_FIELDS, Rules
from .core.values import canonical
from .media import MEDIA_KINDS, MediaError, check_media
from .service.items import DuplicateItem, ImportSummary, ItemBatch, ItemTarget

if TYPE_CHECKING:
    from .service.labeling import LabelingService

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
_FIELDSET = frozenset(FIELDS)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
MAX_LINE = 1 << 20  # a JSONL line or CSV field over 1 MiB is an error, not a memory spike
MAX_TEXT = 20_000
# meta, boxes and gold nest at most this deep: deeper JSON is an error, never a RecursionError
# (json.loads recurses in C), and SQLite's JSON functions, which exports use, stop at 1000.
MAX_DEPTH = 64
CHUNK_BYTES = 1 << 20  # JSONL is validated in chunks of about this size
BATCH_ROWS = 5000  # CSV and folder rows per insert batch
PARALLEL_BYTES = 32 << 20  # about 250,000 items; for fewer, starting processes costs what they save
MAX_WORKERS = 2  # the insert in this process is the limit; more workers wait on it
_GOLD = ITEM_FIELDS.index("gold")
# One encoder each: json.dumps with non-default options builds a new encoder on every call.
_encode_meta = json.JSONEncoder(ensure_ascii=False).encode
_encode_boxes = json.JSONEncoder().encode

log = logging.getLogger(__name__)

Values = tuple[Any, ...]  # one item row, in ITEM_FIELDS order


class ImportError_(ValueError):
    """A row that cannot be imported; the message names the file, line and reason."""


@dataclass(frozen=True)
class Target:
    """Where validated rows go and what they are checked against (sent to worker processes)."""

    path: Path
    base: Path  # media paths are relative to this folder
    # Media must resolve (symlinks followed) to a file under one of these folders: the data
    # file's own, plus any the operator allowed. Resolved absolute paths.
    roots: tuple[Path, ...]
    rules: Rules
    project_id: int
    overlap: int
    seq0: int  # a row's seq is seq0 + its line number: file order, unique
    now: float


@dataclass(frozen=True)
class Batch:
    """Validated rows of a stretch of the file, and the error that ends the file there, if any."""

    rows: list[Values]
    error: str | None = None


def _fail(path: Path, line: int, reason: str) -> ImportError_:
    return ImportError_(f"{path}:{line}: {reason}")


_TOO_DEEP = f"nested too deeply (JSON may nest at most {MAX_DEPTH} levels)"


def _too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """True when lists and objects nest more than `limit` levels (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        children = v.values() if isinstance(v, dict) else v if isinstance(v, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return False


# -- reading ---------------------------------------------------------------------------------


def _jsonl_chunks(path: Path) -> Iterator[tuple[int, bytes, str | None]]:
    """(first line number, whole lines, error after them) of a JSONL file, CHUNK_BYTES at a time.

    Never holds more than a chunk and one line of at most MAX_LINE bytes, so a 2 GB line is an
    error, not a 2 GB allocation. The error of an over-long line travels with the chunk before
    it, so it is raised only if nothing earlier in the file is wrong.
    """
    line, tail = 1, b""
    with path.open("rb") as f:
        while block := f.read(CHUNK_BYTES):
            data = tail + block
            cut = data.rfind(b"\n") + 1
            chunk, tail = data[:cut], data[cut:]
            if len(tail) > MAX_LINE:
                after = line + chunk.count(b"\n")
                yield line, chunk, f"{path}:{after}: line is longer than 1 MiB"
                return
            if chunk:
                yield line, chunk, None
                line += chunk.count(b"\n")
    if tail:
        yield line, tail, None


def _jsonl_row(path: Path, number: int, raw: bytes) -> dict[str, Any] | None:
    """One JSONL line as an object; None for a blank line."""
    if len(raw) > MAX_LINE:
        raise _fail(path, number, "line is longer than 1 MiB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _fail(path, number, f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
    if not text.strip():
        return None
    try:
        row = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _fail(path, number, f"malformed JSON: {exc.msg} (column {exc.colno})") from None
    except RecursionError:
        raise _fail(path, number, _TOO_DEEP) from None
    if not isinstance(row, dict):
        raise _fail(path, number, "expected a JSON object")
    return row


def check_jsonl_chunk(target: Target, first: int, data: bytes, error: str | None) -> Batch:
    """Validate the lines of a JSONL chunk; the batch stops at the first bad line."""
    rows: list[Values] = []
    try:
        for number, raw in enumerate(data.split(b"\n"), start=first):
            row = _jsonl_row(target.path, number, raw)
            if row is not None:
                rows.append(check_row(target, number, row))
    except ImportError_ as exc:
        return Batch(rows, str(exc))
    return Batch(rows, error)


def _utf8_lines(path: Path, raw: BinaryIO) -> Iterator[str]:
    """The file's lines, decoded one at a time, so a bad byte is reported on its own line.

    A TextIOWrapper decodes 8 KiB ahead of the CSV reader, and its error came out hundreds of
    lines early (a byte on line 3002 was reported at 2700).
    """
    number = 0
    while line := raw.readline(MAX_LINE + 1):
        number += 1
        if len(line) > MAX_LINE:
            raise _fail(path, number, "line is longer than 1 MiB")
        try:
            yield line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _fail(path, number, f"not UTF-8 ({exc.reason} at byte {exc.start})") from None


def _read_csv(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    csv.field_size_limit(MAX_LINE)
    with path.open("rb") as raw:
        reader = csv.reader(_utf8_lines(path, raw))
        try:
            header = next(reader)
        except StopIteration:
            return
        header = [h.strip().lstrip("\ufeff") for h in header]
        if len(set(header)) != len(header):
            raise _fail(path, 1, "column names repeat")
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
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
                if key in _FIELDSET:
                    if value != "":
                        row[key] = value
                else:
                    extra[key] = value
            if isinstance(row.get("meta"), str):
                row["meta"] = _json_field(row["meta"], path, reader.line_num, "meta")
            if extra:
                meta = row.get("meta") or {}
                if not isinstance(meta, dict):
                    raise _fail(path, reader.line_num, "meta must be an object")
                row["meta"] = {**meta, **extra}
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
    except RecursionError:
        raise _fail(path, line, f"{name}: {_TOO_DEEP}") from None


def _read_folder(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    for number, p in enumerate(files, start=1):
        yield number, {"id": str(p.relative_to(path)), "image": str(p)}


# -- validating ------------------------------------------------------------------------------


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


def _media(target: Target, line: int, row: dict[str, Any]) -> tuple[str | None, str | None]:
    """The item's media kind and absolute path, checked; (None, None) for a text item."""
    media = [(k, row[k]) for k in MEDIA_KINDS if row.get(k)]
    if not media:
        return None, None
    if len(media) > 1:
        raise _fail(target.path, line, "an item has at most one of image, audio, video")
    kind, rel = media[0]
    if not isinstance(rel, str):
        raise _fail(target.path, line, f"{kind} must be a file path")
    full = (target.base / rel).resolve()
    if not any(full.is_relative_to(root) for root in target.roots):
        # "/etc/…" or "../secret.png" would otherwise be sent to annotators.
        allowed = ", ".join(str(r) for r in target.roots)
        raise _fail(
            target.path,
            line,
            f"{kind} {rel}: outside the allowed media folders ({allowed}); allow its folder "
            "with --media-root DIR or [storage] media_roots",
        )
    try:
        check_media(full, kind)
    except MediaError as exc:
        raise _fail(target.path, line, f"{kind} {rel}: {exc}") from None
    return kind, str(full)


def check_row(target: Target, line: int, row: dict[str, Any]) -> Values:
    """One row as insert values (ITEM_FIELDS order); a bad row raises ImportError_."""
    path = target.path
    if not _FIELDSET.issuperset(row):
        unknown = sorted(set(row) - _FIELDSET)[0]
        raise _fail(
            path,
            line,
            f"unknown field {unknown!r} (fields: {', '.join(FIELDS)}; put extra data in meta)",
        )
    for key, value in row.items():
        if isinstance(value, (dict, list)) and _too_deep(value):
            raise _fail(path, line, f"{key}: {_TOO_DEEP}")
    ext_id = _str(row, "id", path, line, 200) or _content_id(row)
    text = _str(row, "text", path, line)
    media_kind, media_path = _media(target, line, row)
    if not text and not media_path:
        raise _fail(path, line, "an item needs text or a media file")
    gold = row.get("gold")
    if gold is not None and gold != "":
        try:
            gold = canonical(target.rules, gold if isinstance(gold, list) else str(gold))
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
    return (
        target.project_id,
        ext_id,
        text,
        media_kind,
        media_path,
        _str(row, "context", path, line),
        gold,
        _str(row, "gold_reason", path, line),
        _str(row, "suggestion", path, line, 1000),
        _encode_boxes(boxes) if boxes else None,
        _encode_meta(meta) if meta else None,
        target.overlap,
        target.seq0 + line,
        target.now,
    )


def _check_rows(target: Target, rows: Iterator[tuple[int, dict[str, Any]]]) -> Iterator[Batch]:
    """Validate parsed rows (CSV, folder) in batches; the first bad row ends the last batch."""
    batch: list[Values] = []
    try:
        for line, row in rows:
            batch.append(check_row(target, line, row))
            if len(batch) == BATCH_ROWS:
                yield Batch(batch)
                batch = []
    except ImportError_ as exc:
        yield Batch(batch, str(exc))
        return
    yield Batch(batch)


Chunk = tuple[int, bytes, str | None]  # what _jsonl_chunks yields


def _in_workers(target: Target, workers: int) -> Iterator[Batch]:
    """JSONL chunks validated in worker processes, yielded in file order.

    If the workers die (killed, or a main script without the `if __name__ == "__main__"` guard
    that spawned processes need), the remaining chunks are validated here instead.
    """
    # spawn, not fork: this process has threads (the database's, the event loop's).
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    pending: deque[tuple[Future[Batch] | None, Chunk]] = deque()
    broken = False

    def submit(chunk: Chunk) -> Future[Batch] | None:
        try:
            return None if broken else pool.submit(check_jsonl_chunk, target, *chunk)
        except BrokenProcessPool:
            return None

    def result(future: Future[Batch] | None, chunk: Chunk) -> Batch:
        nonlocal broken
        if future is not None:
            try:
                return future.result()
            except BrokenProcessPool:
                if not broken:
                    log.warning("import: a worker process died; validating in this process")
                broken = True
        return check_jsonl_chunk(target, *chunk)

    try:
        for chunk in _jsonl_chunks(target.path):
            pending.append((submit(chunk), chunk))
            if len(pending) > 2 * workers:  # enough to keep the workers busy, memory bounded
                yield result(*pending.popleft())
        while pending:
            yield result(*pending.popleft())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _kind(path: Path) -> str:
    """jsonl, csv or folder, from the path; a clear error for anything else."""
    if path.is_dir():
        return "folder"
    if not path.exists():
        raise ImportError_(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix in (".csv", ".tsv"):
        return "csv"
    raise ImportError_(f"{path}: unknown format (use .jsonl, .csv or a folder of images)")


def default_workers(path: Path) -> int:
    """Worker processes worth starting for this file: none for small files or one core."""
    if _kind(path) != "jsonl" or path.stat().st_size < PARALLEL_BYTES:
        return 0
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(0, min(cpus - 1, MAX_WORKERS))  # a core for the insert


def batches(target: Target, workers: int = 0) -> Iterator[Batch]:
    """Validated batches of a data file or folder, in file order."""
    kind = _kind(target.path)
    if kind == "jsonl":
        if workers:
            return _in_workers(target, workers)
        return (check_jsonl_chunk(target, *c) for c in _jsonl_chunks(target.path))
    rows = _read_folder(target.path) if kind == "folder" else _read_csv(target.path)
    return _check_rows(target, rows)


async def import_file(
    service: LabelingService,
    project: str,
    path: Path | str,
    *,
    progress: Callable[[int], None] | None = None,
    workers: int | None = None,
    media_roots: Sequence[Path | str] = (),
) -> ImportSummary:
    """Import a file or folder into a project in one transaction: all rows or none.

    workers: processes that validate a JSONL file (None: as many as pay off for its size).
    media_roots: folders media may come from besides the data file's own folder (added to
    the config's `storage.media_roots`).
    """
    path = Path(path)
    if workers is None:
        workers = default_workers(path)
    base = path if path.is_dir() else path.parent
    folders = (base, *service.config.media_roots_paths(), *media_roots)

    def produce(to: ItemTarget) -> Iterator[ItemBatch]:
        roots = tuple(Path(f).resolve() for f in folders)
        target = Target(path, base, roots, to.rules, to.project_id, to.overlap, to.seq0, to.now)
        for batch in batches(target, workers):
            failure = ImportError_(batch.error) if batch.error is not None else None
            yield ItemBatch(batch.rows, failure)

    try:
        return await service.add_items(project, produce, progress)
    except DuplicateItem as exc:
        reason = f"duplicate id {exc.ext_id!r} (it appears earlier in this file)"
        raise _fail(path, exc.line, reason) from None
