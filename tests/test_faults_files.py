"""Fault test: hostile and careless data files at import.

Deep JSON, bad bytes deep in a CSV, media outside the data folder, oversized media and images
with too many pixels: each is a `file:line: reason` error, never a traceback, and the database
is left exactly as it was.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from chatlabel.importer import MAX_DEPTH, ImportError_, import_file

from .conftest import write_jsonl
from .test_import_export import db_digest

pytestmark = pytest.mark.timeout(60)


def nested(depth: int, inner: Any = 1) -> Any:
    """A list nested `depth` levels deep, built without recursion."""
    value = inner
    for _ in range(depth):
        value = [value]
    return value


def deep_text(depth: int, opener: str = "[", closer: str = "]") -> str:
    return opener * depth + "1" + closer * depth


# -- deep JSON ----------------------------------------------------------------------------------


async def test_deep_json_is_a_line_error_not_a_recursion_error(
    service_factory: Any, tmp_path: Path
) -> None:
    svc = await service_factory()
    db = svc.config.database_path()
    await import_file(svc, "p", write_jsonl(tmp_path / "seed.jsonl", [{"id": "s", "text": "x"}]))
    before = db_digest(db)
    good = "".join(f'{{"id": "ok{n}", "text": "fine"}}\n' for n in range(3))
    cases: dict[str, str] = {}
    for depth in (MAX_DEPTH + 1, 1_000, 10_000, 100_000):
        deep_obj = '{"a":' * depth + "1" + "}" * depth
        cases[f"meta object {depth}"] = '{"text": "t", "meta": ' + deep_obj + "}"
        cases[f"meta list {depth}"] = '{"text": "t", "meta": {"x": ' + deep_text(depth) + "}}"
        cases[f"boxes {depth}"] = '{"text": "t", "boxes": ' + deep_text(depth) + "}"
        cases[f"gold {depth}"] = '{"text": "t", "gold": ' + deep_text(depth) + "}"
        cases[f"context {depth}"] = '{"text": "t", "context": ' + deep_text(depth) + "}"
        if depth >= 10_000:  # shallower, a top-level list is simply "expected a JSON object"
            cases[f"whole line {depth}"] = deep_text(depth)
            cases[f"whole object {depth}"] = deep_obj
    tried = 0
    for name, line in cases.items():
        path = tmp_path / "deep.jsonl"
        path.write_text(good + line + "\n" + '{"text": "after"}\n', encoding="utf-8")
        with pytest.raises(ImportError_) as caught:
            await import_file(svc, "p", path)
        assert "deep.jsonl:4: " in str(caught.value), (name, str(caught.value))
        assert "nested too deeply" in str(caught.value), (name, str(caught.value))
        assert db_digest(db) == before, name
        tried += 1
    assert tried == 24
    # The limit itself is fine: meta nested MAX_DEPTH levels imports as it is.
    meta = {"x": nested(MAX_DEPTH - 1)}
    s = await import_file(
        svc, "p", write_jsonl(tmp_path / "ok.jsonl", [{"id": "d", "text": "t", "meta": meta}])
    )
    assert s.items == 1
    stored = await svc.db.read(
        lambda c: c.execute("SELECT meta FROM items WHERE ext_id = 'd'").fetchone()[0]
    )
    assert json.loads(stored) == meta


async def test_deep_json_in_csv_cells_is_a_line_error(service_factory: Any, tmp_path: Path) -> None:
    svc = await service_factory()
    db = svc.config.database_path()
    before = db_digest(db)
    for column in ("boxes", "meta"):
        for depth in (MAX_DEPTH + 1, 10_000, 100_000):
            value = deep_text(depth) if column == "boxes" else '{"a":' * depth + "1" + "}" * depth
            cell = '"' + value.replace('"', '""') + '"'
            path = tmp_path / "deep.csv"
            path.write_text(f"id,text,{column}\nr1,hello,\nr2,there,{cell}\n", encoding="utf-8")
            with pytest.raises(ImportError_, match=rf"deep.csv:3: {column}: nested too deeply"):
                await import_file(svc, "p", path)
            assert db_digest(db) == before


# -- invalid UTF-8 in CSV -----------------------------------------------------------------------


@pytest.mark.parametrize("bad_line", [2, 300, 3002, 20_000])
async def test_invalid_utf8_in_csv_names_its_own_line(
    service_factory: Any, tmp_path: Path, bad_line: int
) -> None:
    svc = await service_factory()
    before = db_digest(svc.config.database_path())
    lines = ["id,text"] + [f"r{n},some text on line {n}" for n in range(2, bad_line + 200)]
    data = "\n".join(lines).encode("utf-8") + b"\n"
    # Swap one character of the bad line for a Latin-1 byte, as a spreadsheet export would.
    start = data.index(f"on line {bad_line}\n".encode())
    data = data[:start] + b"\xe9" + data[start + 1 :]
    path = tmp_path / "latin.csv"
    path.write_bytes(data)
    with pytest.raises(ImportError_, match=rf"latin.csv:{bad_line}: not UTF-8"):
        await import_file(svc, "p", path)
    assert db_digest(svc.config.database_path()) == before


async def test_invalid_utf8_inside_a_multiline_cell_names_the_physical_line(
    service_factory: Any, tmp_path: Path
) -> None:
    svc = await service_factory()
    head = b"id,text\n" + b"".join(b"r%d,plain\n" % n for n in range(2, 5000))
    # Line 5000 opens a quoted cell that ends on line 5002; the bad byte is on line 5001.
    path = tmp_path / "multi.csv"
    path.write_bytes(head + b'r5000,"first\nsecond \xff\nthird"\n')
    with pytest.raises(ImportError_, match=r"multi.csv:5001: not UTF-8"):
        await import_file(svc, "p", path)
