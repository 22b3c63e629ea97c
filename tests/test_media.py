"""Tests for chatlabel.media: validation, preparation, caching and drawn boxes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from chatlabel import media
from chatlabel.media import (
    BOX_COLOURS,
    MEDIA_KINDS,
    MediaError,
    check_media,
    fit_photo,
    image_size,
    prepare_image,
    sniff_container,
)

GREY = (128, 128, 128)


def close(a: object, b: tuple[int, ...], tol: int = 40) -> bool:
    """Colours equal within `tol` per channel (JPEG is lossy)."""
    assert isinstance(a, tuple), a
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


def make(path: Path, size: tuple[int, int], colour: tuple[int, ...] = GREY) -> Path:
    Image.new("RGB", size, colour).save(path)
    return path


def noisy_jpeg(path: Path, size: tuple[int, int] = (640, 480)) -> Path:
    Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3)).save(path, quality=90)
    return path


# --- check_media ---------------------------------------------------------------------------


def test_media_kinds() -> None:
    assert MEDIA_KINDS == ("image", "audio", "video")


def test_good_image_passes(tmp_path: Path) -> None:
    check_media(noisy_jpeg(tmp_path / "a.jpg"), "image")
    check_media(make(tmp_path / "b.png", (10, 10)), "image")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="file not found"):
        check_media(tmp_path / "nope.jpg", "image")


def test_empty_file(tmp_path: Path) -> None:
    p = tmp_path / "empty.jpg"
    p.touch()
    for kind in MEDIA_KINDS:
        with pytest.raises(MediaError, match="file is empty"):
            check_media(p, kind)


def test_text_named_jpg_rejected(tmp_path: Path) -> None:
    p = tmp_path / "fake.jpg"
    p.write_text("definitely not a picture\n")
    with pytest.raises(MediaError, match="not an image file") as e:
        check_media(p, "image")
    assert "fake.jpg" in str(e.value)


def test_truncated_jpeg_rejected(tmp_path: Path) -> None:
    good = noisy_jpeg(tmp_path / "good.jpg")
    data = good.read_bytes()
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError, match="truncated image"):
        check_media(bad, "image")
    with pytest.raises(MediaError, match="truncated image"):
        prepare_image(bad, tmp_path / "cache")
    assert not list(tmp_path.glob("cache/*"))


def test_unknown_kind(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="unknown media kind"):
        check_media(make(tmp_path / "a.png", (4, 4)), "document")


HEADERS = {
    "mp3": b"ID3\x04\x00\x00\x00\x00\x00\x00",
    "mp3-frame": b"\xff\xfb\x90\x64\x00\x00\x00\x00",
    "ogg": b"OggS\x00\x02\x00\x00",
    "wav": b"RIFF\x24\x08\x00\x00WAVEfmt ",
    "m4a": b"\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00",
    "mp4": b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00",
    "webm": b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01",
    "flac": b"fLaC\x00\x00\x00\x22",
    "avi": b"RIFF\x24\x08\x00\x00AVI LIST",
}


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("mp3", "audio"),
        ("mp3-frame", "audio"),
        ("ogg", "audio"),
        ("wav", "audio"),
        ("m4a", "audio"),
        ("webm", "audio"),
        ("flac", "audio"),
        ("mp4", "video"),
        ("webm", "video"),
        ("ogg", "video"),
        ("avi", "video"),
    ],
)
def test_audio_video_accepted(tmp_path: Path, name: str, kind: str) -> None:
    p = tmp_path / f"clip.{name}"
    p.write_bytes(HEADERS[name] + b"\x00" * 64)
    check_media(p, kind)


@pytest.mark.parametrize(("name", "kind"), [("mp3", "video"), ("wav", "video"), ("avi", "audio")])
def test_wrong_kind_rejected(tmp_path: Path, name: str, kind: str) -> None:
    p = tmp_path / f"clip.{name}"
    p.write_bytes(HEADERS[name] + b"\x00" * 64)
    with pytest.raises(MediaError, match=f"not a recognised {kind} file"):
        check_media(p, kind)


def test_unrecognised_audio_rejected(tmp_path: Path) -> None:
    p = tmp_path / "song.mp3"
    p.write_text("hello, this is text")
    with pytest.raises(MediaError, match="not a recognised audio file"):
        check_media(p, "audio")
    assert sniff_container(p) is None
    png = make(tmp_path / "pic.png", (4, 4))
    with pytest.raises(MediaError, match="not a recognised video file"):
        check_media(png, "video")


# --- prepare_image -------------------------------------------------------------------------


def test_exif_orientation_applied(tmp_path: Path) -> None:
    # Stored landscape: left half red, right half blue. Orientation 6 = rotate 90° clockwise,
    # so the displayed picture is portrait with red on top.
    im = Image.new("RGB", (400, 200), (0, 0, 255))
    im.paste((255, 0, 0), (0, 0, 200, 200))
    exif = Image.Exif()
    exif[0x0112] = 6
    src = tmp_path / "rot.jpg"
    im.save(src, exif=exif.tobytes(), quality=95)

    assert image_size(src) == (200, 400)
    with Image.open(prepare_image(src, tmp_path / "c")) as out:
        assert out.size == (200, 400)
        assert close(out.getpixel((100, 50)), (255, 0, 0))
        assert close(out.getpixel((100, 350)), (0, 0, 255))


def test_alpha_flattened_onto_white(tmp_path: Path) -> None:
    im = Image.new("RGBA", (100, 100), (0, 0, 0, 0))
    im.paste((200, 0, 0, 255), (50, 0, 100, 100))
    src = tmp_path / "alpha.png"
    im.save(src)
    with Image.open(prepare_image(src, tmp_path / "c")) as out:
        assert out.mode == "RGB"
        assert out.format == "JPEG"
        assert close(out.getpixel((10, 50)), (255, 255, 255), 8)
        assert close(out.getpixel((90, 50)), (200, 0, 0), 30)


def test_large_image_resized(tmp_path: Path) -> None:
    src = make(tmp_path / "big.jpg", (5000, 3000))
    with Image.open(prepare_image(src, tmp_path / "c")) as out:
        assert out.size == (1280, 768)
    with Image.open(prepare_image(src, tmp_path / "c", max_side=500)) as out:
        assert out.size == (500, 300)


def test_small_image_not_upscaled(tmp_path: Path) -> None:
    src = make(tmp_path / "small.png", (300, 200))
    with Image.open(prepare_image(src, tmp_path / "c")) as out:
        assert out.size == (300, 200)


def test_cache_reused_without_reencoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = noisy_jpeg(tmp_path / "a.jpg")
    cache = tmp_path / "cache"
    first = prepare_image(src, cache, boxes=[{"x": 0.1, "y": 0.1, "w": 0.5, "h": 0.5}])
    mtime = first.stat().st_mtime_ns

    def boom(*a: object, **k: object) -> None:
        raise AssertionError("re-encoded a cached image")

    monkeypatch.setattr(media, "_render", boom)
    second = prepare_image(src, cache, boxes=[{"x": 0.1, "y": 0.1, "w": 0.5, "h": 0.5}])
    assert second == first
    assert second.stat().st_mtime_ns == mtime
    # Same bytes under another name hit the same entry: the key is the content.
    copy = tmp_path / "copy.jpg"
    copy.write_bytes(src.read_bytes())
    assert prepare_image(copy, cache, boxes=[{"x": 0.1, "y": 0.1, "w": 0.5, "h": 0.5}]) == first
    assert sorted(p.name for p in cache.iterdir()) == [first.name]  # no temp files left


def test_cache_key_depends_on_parameters(tmp_path: Path) -> None:
    src = noisy_jpeg(tmp_path / "a.jpg")
    cache = tmp_path / "cache"
    paths = {
        prepare_image(src, cache),
        prepare_image(src, cache, quality=60),
        prepare_image(src, cache, max_side=300),
        prepare_image(src, cache, boxes=[{"x": 1, "y": 1, "w": 10, "h": 10}]),
    }
    assert len(paths) == 4
    assert len(list(cache.iterdir())) == 4


def test_bad_parameters(tmp_path: Path) -> None:
    src = make(tmp_path / "a.png", (10, 10))
    with pytest.raises(MediaError, match="max_side"):
        prepare_image(src, tmp_path / "c", max_side=0)
    with pytest.raises(MediaError, match="quality"):
        prepare_image(src, tmp_path / "c", quality=0)
    with pytest.raises(MediaError, match="file not found"):
        prepare_image(tmp_path / "missing.png", tmp_path / "c")


# --- boxes ---------------------------------------------------------------------------------


def test_fractional_box_drawn(tmp_path: Path) -> None:
    src = make(tmp_path / "a.png", (1000, 500))
    out = prepare_image(src, tmp_path / "c", boxes=[{"x": 0.1, "y": 0.2, "w": 0.5, "h": 0.6}])
    with Image.open(out) as im:
        assert im.size == (1000, 500)
        # Left edge of the box is at x = 100, top at y = 100.
        assert close(im.getpixel((101, 250)), BOX_COLOURS[0])
        assert close(im.getpixel((300, 101)), BOX_COLOURS[0])
        assert close(im.getpixel((300, 250)), GREY, 10)
        assert close(im.getpixel((80, 250)), GREY, 10)


def test_pixel_box_uses_original_coordinates(tmp_path: Path) -> None:
    src = make(tmp_path / "a.png", (2000, 1000))
    frac = [{"x": 0.2, "y": 0.2, "w": 0.4, "h": 0.4}]
    pix = [{"x": 400, "y": 200, "w": 800, "h": 400}]
    outs = [prepare_image(src, tmp_path / "c", max_side=1000, boxes=b) for b in (frac, pix)]
    assert outs[0] != outs[1]
    for out in outs:
        with Image.open(out) as im:
            assert im.size == (1000, 500)
            # In the 1000×500 output the box spans x 200..600, y 100..300.
            assert close(im.getpixel((201, 200)), BOX_COLOURS[0])
            assert close(im.getpixel((598, 200)), BOX_COLOURS[0])
            assert close(im.getpixel((400, 298)), BOX_COLOURS[0])
            assert close(im.getpixel((400, 200)), GREY, 10)
            assert close(im.getpixel((180, 200)), GREY, 10)


def test_labels_get_tags_and_own_colours(tmp_path: Path) -> None:
    src = make(tmp_path / "a.png", (800, 800))
    boxes = [
        {"x": 100, "y": 200, "w": 200, "h": 200, "label": "cat"},
        {"x": 500, "y": 200, "w": 200, "h": 200, "label": "dög"},
    ]
    with Image.open(prepare_image(src, tmp_path / "c", boxes=boxes)) as im:
        assert close(im.getpixel((102, 300)), BOX_COLOURS[0])
        assert close(im.getpixel((502, 300)), BOX_COLOURS[1])
        # The tag sits above the box's top-left corner; its edge pixels are tag background.
        assert close(im.getpixel((101, 197)), BOX_COLOURS[0])
        assert close(im.getpixel((501, 197)), BOX_COLOURS[1])


@pytest.mark.parametrize(
    ("boxes", "message"),
    [
        ([{"x": 0.1, "y": 0.1, "w": 0.2}], r"box 0: field 'h' is missing"),
        (
            [{"x": 0.1, "y": 0.1, "w": 0.2, "h": 0.2}, {"x": "a", "y": 0, "w": 1, "h": 1}],
            r"box 1: field 'x' must be a finite number",
        ),
        ([{"x": True, "y": 0, "w": 1, "h": 1}], r"box 0: field 'x' must be a finite number"),
        ([{"x": float("nan"), "y": 0, "w": 1, "h": 1}], r"box 0: field 'x'"),
        ([{"x": -5, "y": 0, "w": 10, "h": 10}], r"box 0: field 'x' must not be negative"),
        ([{"x": 0, "y": 0, "w": 0, "h": 0.5}], r"box 0: field 'w' must be greater than zero"),
        ([{"x": 0.8, "y": 0, "w": 0.5, "h": 0.5}], r"box 0: x \+ w = 1.3 goes past"),
        ([{"x": 50, "y": 50, "w": 100, "h": 10}], r"box 0: .* goes past the edge of a.png"),
        (["not a box"], r"box 0: expected a mapping"),
        ([{"x": 0, "y": 0, "w": 1, "h": 1, "label": 3}], r"box 0: field 'label' must be text"),
        ({"x": 0, "y": 0, "w": 1, "h": 1}, r"boxes must be a list"),
    ],
)
def test_bad_boxes_rejected(tmp_path: Path, boxes: object, message: str) -> None:
    src = make(tmp_path / "a.png", (100, 100))
    with pytest.raises(MediaError, match=message):
        prepare_image(src, tmp_path / "c", boxes=boxes)  # type: ignore[arg-type]
    cache = tmp_path / "c"
    assert not cache.exists() or not any(cache.iterdir())


def test_image_size_errors(tmp_path: Path) -> None:
    assert image_size(make(tmp_path / "a.png", (30, 20))) == (30, 20)
    p = tmp_path / "x.jpg"
    p.write_bytes(b"nope")
    with pytest.raises(MediaError, match="not an image file"):
        image_size(p)


@pytest.mark.parametrize(
    ("size", "fitted"),
    [
        ((1280, 40), (1280, 64)),  # a line crop: padded to a ratio of 20
        ((40, 1280), (64, 1280)),
        ((9000, 2000), (8181, 1818)),  # sides adding up past 10,000: scaled
        ((10000, 10), (9523, 477)),  # both
        ((800, 600), (800, 600)),  # fits: the same file
    ],
)
def test_fit_photo_meets_telegrams_photo_limits(
    tmp_path: Path, size: tuple[int, int], fitted: tuple[int, int]
) -> None:
    src = tmp_path / "in.png"
    Image.new("RGB", size, (10, 20, 30)).save(src)
    out = fit_photo(src, tmp_path / "cache")
    with Image.open(out) as im:
        assert im.size == fitted
        assert im.width + im.height <= 10_000 and max(im.size) <= 20 * min(im.size)
    assert (out == src) == (size == fitted)
    assert fit_photo(src, tmp_path / "cache") == out  # cached
