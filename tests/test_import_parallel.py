"""Import with validation in worker processes: same rows as in one process, same errors, and
nothing lost when a worker dies."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from chatlabel import importer
from chatlabel.importer import ImportError_, import_file

from .test_import_export import db_digest

pytestmark = pytest.mark.timeout(60)


def rows(n: int) -> list[dict[str, Any]]:
    """A mix of what item files hold: ids or none, gold, meta, context, unicode."""
    out: list[dict[str, Any]] = []
    for i in range(n):
        row: dict[str, Any] = {"text": f"item {i} — “quoted” ✓"}
        if i % 7:
            row["id"] = f"id-{i}"
        if i % 11 == 0:
            row["gold"] = "abc"[i % 3]
        if i % 5 == 0:
            row["meta"] = {"n": i, "tag": "é"}
        if i % 13 == 0:
            row["context"] = f"context {i}"
        out.append(row)
    return out


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


async def items(svc: Any) -> list[tuple[Any, ...]]:
    return await svc.db.read(
        lambda c: c.execute(
            "SELECT ext_id, text, gold, meta, context, needed FROM items ORDER BY seq"
        ).fetchall()
    )


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of ~1 KiB, so a small file spreads over many chunks and both workers."""
    monkeypatch.setattr(importer, "CHUNK_BYTES", 1024)


async def test_workers_import_the_same_rows_in_file_order(
    service_factory: Any, tmp_path: Path, small_chunks: None
) -> None:
    data = write(tmp_path / "items.jsonl", [json.dumps(r) for r in rows(600)] + [""])
    one = await service_factory(storage={"database": str(tmp_path / "one.db")})
    two = await service_factory(storage={"database": str(tmp_path / "two.db")})
    seen: list[int] = []
    s1 = await import_file(one, "p", data, workers=0)
    s2 = await import_file(two, "p", data, workers=2, progress=seen.append)
    assert (s2.items, s2.gold, s2.duplicates, s2.rows) == (s1.items, s1.gold, 0, 600)
    assert s2.gold == len([r for r in rows(600) if "gold" in r])
    assert await items(two) == await items(one)
    assert len(await items(two)) == 600
    assert len(seen) > 10 and seen == sorted(seen) and seen[-1] == 600  # per chunk, in order
    again = await import_file(two, "p", data, workers=2)
    assert (again.items, again.duplicates) == (0, 600)


@pytest.mark.parametrize(
    ("bad_line", "bad", "reason"),
    [
        (250, '{"id": "id-1", "text": "again"}', "duplicate id 'id-1'"),
        (400, '{"id": "x", "text": ', "malformed JSON"),
        (450, '{"id": "y", "text": "t", "gold": "zzz"}', "gold: unknown label 'zzz'"),
    ],
)
async def test_workers_report_the_first_bad_line_and_import_nothing(
    service_factory: Any, tmp_path: Path, small_chunks: None, bad_line: int, bad: str, reason: str
) -> None:
    svc = await service_factory()
    await import_file(svc, "p", write(tmp_path / "ok.jsonl", ['{"id": "keep", "text": "k"}']))
    before = db_digest(svc.config.database_path())
    lines = [json.dumps(r) for r in rows(600)]
    lines[bad_line - 1] = bad
    lines[580] = '{"id": "later", "text": 5, "colour": 1}'  # also wrong, but further down
    path = write(tmp_path / "bad.jsonl", lines)
    with pytest.raises(ImportError_) as err:
        await import_file(svc, "p", path, workers=2)
    assert str(err.value).startswith(f"{path}:{bad_line}: {reason}")
    assert db_digest(svc.config.database_path()) == before


async def test_long_line_is_refused_without_reading_it_whole(
    service_factory: Any, tmp_path: Path, small_chunks: None
) -> None:
    svc = await service_factory()
    before = db_digest(svc.config.database_path())
    path = tmp_path / "long.jsonl"
    with path.open("w", encoding="utf-8") as f:
        for r in rows(50):
            f.write(json.dumps(r) + "\n")
        f.write('{"text": "' + "x" * (3 << 20))  # 3 MiB and no end of line
    with pytest.raises(ImportError_, match=r"long.jsonl:51: line is longer than 1 MiB"):
        await import_file(svc, "p", path, workers=1)
    assert db_digest(svc.config.database_path()) == before


async def test_a_killed_worker_loses_nothing(
    service_factory: Any, tmp_path: Path, small_chunks: None
) -> None:
    svc = await service_factory()
    data = write(tmp_path / "items.jsonl", [json.dumps(r) for r in rows(600)])
    killed: list[int] = []

    def kill_workers(done: int) -> None:
        if not killed:
            for child in multiprocessing.active_children():
                if child.pid is not None:
                    os.kill(child.pid, signal.SIGKILL)
                    killed.append(child.pid)

    s = await import_file(svc, "p", data, workers=2, progress=kill_workers)
    assert killed  # the workers were there, and died mid-import
    assert (s.items, s.rows) == (600, 600)
    got = await items(svc)
    assert [r[0] for r in got if r[0].startswith("id-")] == [f"id-{i}" for i in range(600) if i % 7]
    assert len({r[0] for r in got}) == len(got) == 600


def test_default_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    small = write(tmp_path / "small.jsonl", ['{"text": "a"}'])
    assert importer.default_workers(small) == 0  # not worth starting processes
    monkeypatch.setattr(importer, "PARALLEL_BYTES", 1)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: {0, 1}, raising=False)
    assert importer.default_workers(small) == 1  # one core validates, one inserts
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: {0}, raising=False)
    assert importer.default_workers(small) == 0
    csv_file = tmp_path / "a.csv"
    csv_file.write_text("text\na\n", encoding="utf-8")
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: set(range(8)), raising=False)
    assert importer.default_workers(csv_file) == 0  # CSV rows may span lines: one process
    assert importer.default_workers(small) == importer.MAX_WORKERS
