"""Import is all-or-nothing with errors naming file, line and reason; export streams rows."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from chatlabel import exporter
from chatlabel.importer import ImportError_, import_file
from chatlabel.service.types import Task, UserRef

from .conftest import write_jsonl

# Service tests: on a SQLite file and on a PostgreSQL database (tests/conftest.py).
BACKENDS = ("sqlite", "postgresql")


def db_digest(path: Path | str) -> str:
    """A digest of every table's rows: equal digests mean the database did not change.

    `path`: a SQLite file, or a storage URL (sqlite:/// or postgresql://)."""
    import sqlite3

    if isinstance(path, str) and path.startswith("postgresql://"):
        from chatlabel.storage.transfer import _open, digest

        side = _open(path, None)
        try:
            return repr([(t, digest(side, t, side.columns(t))) for t in side.tables()])
        finally:
            side.close()
    if isinstance(path, str):
        path = Path(path.removeprefix("sqlite:///"))
    assert path.is_file(), f"no database at {path}"
    conn = sqlite3.connect(path)
    try:
        h = hashlib.sha256()
        for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name"
        ):
            for row in conn.execute(f"SELECT * FROM {name} ORDER BY 1"):
                h.update(repr(row).encode())
        return h.hexdigest()
    finally:
        conn.close()


def image(path: Path, size: tuple[int, int] = (64, 48)) -> Path:
    Image.new("RGB", size, (200, 30, 30)).save(path)
    return path


@pytest.mark.parametrize(
    ("content", "line", "reason"),
    [
        (
            '{"id": "a", "text": "x"}\n{"id": "b", "text": \n{"id": "c", "text": "z"}\n',
            2,
            "malformed JSON",
        ),
        ('{"id": "a", "text": "x", "gold": "purple"}\n', 1, "gold: unknown label 'purple'"),
        ('{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n', 2, "duplicate id 'a'"),
        ('{"id": "a", "image": "missing.png"}\n', 1, "file not found"),
        ('{"id": "a"}\n', 1, "needs text or a media file"),
        ('{"id": "a", "text": "x", "colour": 1}\n', 1, "unknown field 'colour'"),
        ("[1, 2]\n", 1, "expected a JSON object"),
    ],
)
async def test_bad_jsonl_imports_nothing(
    service_factory: Any, tmp_path: Path, content: str, line: int, reason: str
) -> None:
    svc = await service_factory()
    await import_file(svc, "p", write_jsonl(tmp_path / "ok.jsonl", [{"id": "keep", "text": "k"}]))
    before = db_digest(svc.config.storage_url())
    bad = tmp_path / "bad.jsonl"
    bad.write_text(content, encoding="utf-8")
    with pytest.raises(ImportError_) as err:
        await import_file(svc, "p", bad)
    assert f"{bad}:{line}:" in str(err.value)
    assert reason in str(err.value)
    assert db_digest(svc.config.storage_url()) == before


async def test_corrupt_image_refused_at_import(service_factory: Any, tmp_path: Path) -> None:
    svc = await service_factory()
    good = image(tmp_path / "good.jpg")
    data = good.read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    rows = [{"id": "1", "image": "good.jpg"}, {"id": "2", "image": "cut.jpg"}]
    before = db_digest(svc.config.storage_url())
    with pytest.raises(ImportError_, match=r"items.jsonl:2: image cut.jpg"):
        await import_file(svc, "p", write_jsonl(tmp_path / "items.jsonl", rows))
    assert db_digest(svc.config.storage_url()) == before


async def test_not_utf8_and_long_lines(service_factory: Any, tmp_path: Path) -> None:
    svc = await service_factory()
    bad = tmp_path / "latin.jsonl"
    bad.write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(ImportError_, match=r"latin.jsonl:2: not UTF-8"):
        await import_file(svc, "p", bad)
    huge = tmp_path / "huge.jsonl"
    huge.write_text('{"text": "' + "x" * (1 << 21) + '"}\n', encoding="utf-8")
    with pytest.raises(ImportError_, match=r"huge.jsonl:1: line is longer than 1 MiB"):
        await import_file(svc, "p", huge)


async def test_csv_import_meta_and_ragged_rows(service_factory: Any, tmp_path: Path) -> None:
    svc = await service_factory()
    good = tmp_path / "items.csv"
    good.write_text('id,text,gold,source\n1,hello,a,web\n2,"multi\nline",,mail\n', encoding="utf-8")
    s = await import_file(svc, "p", good)
    assert (s.items, s.gold) == (2, 1)
    metas = await svc.db.read(
        lambda c: [r[0] for r in c.execute("SELECT meta FROM items ORDER BY seq")]
    )
    assert [json.loads(m) for m in metas] == [{"source": "web"}, {"source": "mail"}]
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("id,text\n3,a\n4,b,extra\n", encoding="utf-8")
    with pytest.raises(ImportError_, match=r"ragged.csv:3: expected 2 columns, found 3"):
        await import_file(svc, "p", ragged)


async def test_reimport_adds_nothing_and_ids_from_content(
    service_factory: Any, tmp_path: Path
) -> None:
    svc = await service_factory()
    path = write_jsonl(tmp_path / "items.jsonl", [{"text": "no id 1"}, {"text": "no id 2"}])
    first = await import_file(svc, "p", path)
    again = await import_file(svc, "p", path)
    assert (first.items, first.duplicates) == (2, 0)
    assert (again.items, again.duplicates) == (0, 2)


async def test_folder_of_images(service_factory: Any, tmp_path: Path) -> None:
    svc = await service_factory()
    folder = tmp_path / "pics"
    (folder / "sub").mkdir(parents=True)
    image(folder / "a.png")
    image(folder / "sub" / "b.jpg")
    (folder / "notes.txt").write_text("ignored")
    s = await import_file(svc, "p", folder)
    assert s.items == 2
    ids = await svc.db.read(lambda c: sorted(r[0] for r in c.execute("SELECT ext_id FROM items")))
    assert ids == ["a.png", "sub/b.jpg"]


async def test_unknown_format(service_factory: Any, tmp_path: Path) -> None:
    svc = await service_factory()
    (tmp_path / "x.xml").write_text("<x/>")
    with pytest.raises(ImportError_, match="unknown format"):
        await import_file(svc, "p", tmp_path / "x.xml")


async def test_exports_results_answers_annotators(service_factory: Any, tmp_path: Path) -> None:
    svc = await service_factory(
        [
            {
                "name": "p",
                "kind": "multi",
                "labels": ["x", "y"],
                "overlap": 1,
                "max_overlap": 1,
                # No gold mixed in: the one item answered must be an ordinary one.
                "quality": {"qualification": 0, "gold_rate": 0.0},
            }
        ]
    )
    await import_file(
        svc,
        "p",
        write_jsonl(
            tmp_path / "i.jsonl",
            [
                {"id": "a", "text": "one"},
                {"id": "b", "text": "two"},
                {"id": "g", "text": "gold", "gold": ["x"]},
            ],
        ),
    )
    u = UserRef("telegram", "1", "ann")
    await svc.join(u)
    t = await svc.next_task(u)
    assert isinstance(t, Task)
    await svc.answer(u, t.assignment_id, ["x", "y"])
    out = io.StringIO()
    assert await exporter.write(svc, "p", "results", "jsonl", out) == 2
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    done = next(r for r in rows if r["id"] == t.item_id)
    assert done["label"] == ["x", "y"] and done["status"] == "resolved"
    assert done["votes"] == {"x": 1, "y": 1} and done["n_answers"] == 1
    pending = next(r for r in rows if r["id"] != t.item_id)
    assert pending["label"] is None and pending["status"] == "pending"
    out = io.StringIO()
    await exporter.write(svc, "p", "answers", "csv", out)
    answers = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert answers[0]["annotator"] == "telegram:1" and answers[0]["label"] == '["x", "y"]'
    assert answers[0]["answered_at"].endswith("+00:00")
    out = io.StringIO()
    await exporter.write(svc, "p", "annotators", "jsonl", out)
    people = [json.loads(line) for line in out.getvalue().splitlines()]
    assert people[0]["id"] == "telegram:1" and people[0]["answers"] == 1
