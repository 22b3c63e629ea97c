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


# -- media outside the data folder --------------------------------------------------------------


def png(path: Path, size: tuple[int, int] = (32, 24), mode: str = "RGB") -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size).save(path)
    return path


async def test_media_outside_the_data_folder_is_refused_unless_allowed(
    service_factory: Any, tmp_path: Path
) -> None:
    svc = await service_factory()
    db = svc.config.database_path()
    data = tmp_path / "data"
    png(data / "inside.png")
    png(data / "sub" / "deeper.png")
    private = png(tmp_path / "private" / "secret.png")
    (data / "link.png").symlink_to(private)  # a symlink in the data folder pointing out
    (data / "linkdir").symlink_to(private.parent, target_is_directory=True)
    before = db_digest(db)
    outside = {
        "absolute": str(private),
        "dot-dot": "../private/secret.png",
        "dot-dot via a subfolder": "sub/../../private/secret.png",
        "symlinked file": "link.png",
        "symlinked folder": "linkdir/secret.png",
        "system file": "/etc/hostname",
    }
    for name, rel in outside.items():
        rows = [{"id": "ok", "text": "t", "image": "inside.png"}, {"id": "x", "image": rel}]
        with pytest.raises(ImportError_) as caught:
            await import_file(svc, "p", write_jsonl(data / "items.jsonl", rows))
        message = str(caught.value)
        assert f"items.jsonl:2: image {rel}: outside the allowed media folders" in message, name
        assert "--media-root" in message
        assert db_digest(db) == before, name
    # Inside the data folder, including subfolders, is fine as before.
    rows = [{"id": "a", "image": "inside.png"}, {"id": "b", "image": "sub/deeper.png"}]
    assert (await import_file(svc, "p", write_jsonl(data / "ok.jsonl", rows))).items == 2
    # The operator may allow another folder explicitly.
    rows = [{"id": "c", "image": "../private/secret.png"}, {"id": "d", "image": "link.png"}]
    s = await import_file(
        svc, "p", write_jsonl(data / "more.jsonl", rows), media_roots=[private.parent]
    )
    assert s.items == 2
    stored = await svc.db.read(
        lambda c: [r[0] for r in c.execute("SELECT media_path FROM items ORDER BY seq")]
    )
    assert stored[-2:] == [str(private), str(private)]


def test_a_media_root_from_the_config_and_from_the_cli(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from chatlabel.cli import main

    data = tmp_path / "data"
    png(data / "inside.png")
    allowed = png(tmp_path / "media" / "pic.png")
    other = png(tmp_path / "other" / "pic.png")
    cfg = tmp_path / "chatlabel.toml"
    cfg.write_text(
        '[storage]\ndatabase = "chatlabel.db"\nmedia_roots = ["media"]\n\n'
        '[[project]]\nname = "p"\nlabels = ["a", "b"]\n',
        encoding="utf-8",
    )
    items = write_jsonl(
        data / "items.jsonl",
        [{"id": "1", "image": str(allowed)}, {"id": "2", "image": "../other/pic.png"}],
    )
    runner = CliRunner()
    r = runner.invoke(main, ["import", str(cfg), str(items)])
    assert r.exit_code == 1
    assert "items.jsonl:2: image ../other/pic.png: outside the allowed media folders" in r.output
    assert "Traceback" not in r.output
    r = runner.invoke(main, ["import", str(cfg), str(items), "--media-root", str(other.parent)])
    assert r.exit_code == 0, r.output
    assert "Imported 2 items" in r.output


async def test_a_folder_import_refuses_a_symlink_out_of_the_folder(
    service_factory: Any, tmp_path: Path
) -> None:
    svc = await service_factory()
    folder = tmp_path / "pics"
    png(folder / "a.png")
    secret = png(tmp_path / "elsewhere" / "b.png")
    (folder / "b.png").symlink_to(secret)
    with pytest.raises(ImportError_, match=r"pics:2: image .*b.png: outside the allowed"):
        await import_file(svc, "p", folder)


# -- media size -----------------------------------------------------------------------------------


def sparse(path: Path, head: bytes, size: int) -> Path:
    """A file of `size` bytes that starts with `head` (sparse: instant, no disk used)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        f.write(head)
        f.truncate(size)
    return path


MP4 = b"\0\0\0\x18ftypmp42"
MiB = 1024 * 1024


async def test_media_over_the_size_caps_is_refused_at_import(
    service_factory: Any, tmp_path: Path
) -> None:
    svc = await service_factory()
    db = svc.config.database_path()
    before = db_digest(db)
    data = tmp_path / "data"
    sparse(data / "ok.mp4", MP4, 50 * MiB)  # exactly Telegram's limit: fine
    sparse(data / "big.mp4", MP4, 50 * MiB + 1)
    sparse(data / "huge.mp4", MP4, 3 * 1024 * MiB)  # the 3 GiB video of the report
    sparse(data / "big.mp3", b"ID3", 51 * MiB)
    cases = {
        "video just over": ("video", "big.mp4", "50.0 MiB, over 50 MiB"),
        "3 GiB video": ("video", "huge.mp4", "3072.0 MiB, over 50 MiB"),
        "audio": ("audio", "big.mp3", "51.0 MiB, over 50 MiB"),
    }
    for name, (kind, file, expected) in cases.items():
        rows = [{"id": "fine", "video": "ok.mp4"}, {"id": name, kind: file}]
        with pytest.raises(ImportError_) as caught:
            await import_file(svc, "p", write_jsonl(data / "items.jsonl", rows))
        assert f"items.jsonl:2: {kind} {file}: " in str(caught.value), name
        assert expected in str(caught.value), (name, str(caught.value))
        assert db_digest(db) == before
    s = await import_file(
        svc, "p", write_jsonl(data / "ok.jsonl", [{"id": "v", "video": "ok.mp4"}])
    )
    assert s.items == 1


async def test_images_over_the_pixel_cap_are_refused_before_decoding(
    service_factory: Any, tmp_path: Path
) -> None:
    import struct
    import zlib

    from chatlabel.media import MAX_IMAGE_PIXELS, MediaError, prepare_image

    svc = await service_factory()
    db = svc.config.database_path()
    before = db_digest(db)
    data = tmp_path / "data"
    png(data / "wide.png", (8000, 7000), mode="1")  # 56 MP, a real, whole image
    png(data / "fine.png", (7000, 7000), mode="1")  # 49 MP

    # 13000 x 13000 RGB (169 MP) in the header and nothing decodable after it: refused by the
    # header alone (decoding it would take 507 MB; a check after decoding would say "corrupt").
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", 13000, 13000, 8, 2, 0, 0, 0))
    (data / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", b"x" * 20))
    sparse(data / "heavy.png", b"\x89PNG\r\n\x1a\n" + header, 101 * MiB)
    cases = {
        "wide.png": "image is 8000×7000 pixels (56 MP), over the 50 MP limit",
        "bomb.png": "image is 13000×13000 pixels (169 MP), over the 50 MP limit",
        "heavy.png": "file is 101.0 MiB, over 100 MiB (for an image)",
    }
    for file, expected in cases.items():
        rows = [{"id": "ok", "image": "fine.png"}, {"id": file, "image": file}]
        with pytest.raises(ImportError_) as caught:
            await import_file(svc, "p", write_jsonl(data / "items.jsonl", rows))
        assert f"items.jsonl:2: image {file}: " in str(caught.value)
        assert expected in str(caught.value), str(caught.value)
        assert db_digest(db) == before
    assert MAX_IMAGE_PIXELS == 50_000_000
    # Preparing for sending refuses it too (an item imported before the cap existed).
    for file in ("wide.png", "bomb.png"):
        with pytest.raises(MediaError, match="over the 50 MP limit"):
            prepare_image(data / file, tmp_path / "cache")
    assert (
        await import_file(svc, "p", write_jsonl(data / "ok.jsonl", [{"image": "fine.png"}]))
    ).items == 1
