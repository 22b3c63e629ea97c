"""Media files: validation at import time and one-off preparation of images for sending."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, cast

from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

log = logging.getLogger(__name__)

__all__ = [
    "BOX_COLOURS",
    "MAX_IMAGE_BYTES",
    "MAX_IMAGE_PIXELS",
    "MAX_UPLOAD_BYTES",
    "MEDIA_KINDS",
    "MediaError",
    "file_sha256",
    "check_media",
    "covers",
    "fit_photo",
    "image_size",
    "load_font",
    "prepare_image",
    "sniff_container",
]

MEDIA_KINDS = ("image", "audio", "video")

# Telegram bots upload at most 50 MB per file; audio and video are sent as they are, so a
# bigger one could never be sent (Slack's own limit is higher).
MAX_UPLOAD_BYTES = 50 * 1024 * 1024
# Images are re-encoded before sending, so their limit is about the work of preparing them:
# the pixel count is read from the header and checked before anything is decoded (a 169 MP
# PNG took 1 GB to prepare), and the file size bounds the reading.
MAX_IMAGE_PIXELS = 50_000_000
MAX_IMAGE_BYTES = 100 * 1024 * 1024
_MIB = 1024 * 1024

# Okabe-Ito colours, ordered so the first ones stand out on typical photos.
BOX_COLOURS: tuple[tuple[int, int, int], ...] = (
    (230, 159, 0),  # orange
    (86, 180, 233),  # sky blue
    (0, 158, 115),  # bluish green
    (240, 228, 66),  # yellow
    (0, 114, 178),  # blue
    (213, 94, 0),  # vermillion
    (204, 121, 167),  # reddish purple
)

# Bump when the rendering changes, so stale cache entries are not reused.
_CACHE_VERSION = 1

_AUDIO_CONTAINERS = frozenset({"mp3", "ogg", "wav", "mp4", "webm", "flac"})
_VIDEO_CONTAINERS = frozenset({"mp4", "webm", "ogg", "avi"})
_EXPECTED = {
    "audio": "mp3, ogg, wav, m4a, webm or flac",
    "video": "mp4, mov, webm, mkv, ogg or avi",
}
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})


class MediaError(ValueError):
    """A media file or its parameters cannot be used; the message says why."""


def check_media(path: Path, kind: str) -> None:
    """Raise MediaError unless `path` is a usable, non-empty file of the given kind."""
    path = Path(path)
    if kind not in MEDIA_KINDS:
        raise MediaError(f"unknown media kind {kind!r} (expected one of {', '.join(MEDIA_KINDS)})")
    size = _check_file(path)
    limit = MAX_IMAGE_BYTES if kind == "image" else MAX_UPLOAD_BYTES
    if size > limit:
        why = "for an image" if kind == "image" else "Telegram's limit for bots' uploads"
        raise MediaError(f"{path}: file is {size / _MIB:.1f} MiB, over {limit // _MIB} MiB ({why})")
    if kind == "image":
        with _open_image(path, path) as im, _image_errors(path):
            # verify() misses truncated pixel data, so decode it all; a JPEG may decode at
            # 1/8 scale, which still reads every byte but is much faster.
            im.draft(None, (max(1, im.width // 8), max(1, im.height // 8)))
            im.load()
        return
    container = sniff_container(path)
    allowed = _AUDIO_CONTAINERS if kind == "audio" else _VIDEO_CONTAINERS
    if container not in allowed:
        found = f" (looks like {container})" if container else ""
        raise MediaError(f"{path}: not a recognised {kind} file{found}; expected {_EXPECTED[kind]}")


def sniff_container(path: Path) -> str | None:
    """Name the audio/video container of `path` from its magic bytes, or None if unknown."""
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(b"ID3"):
        return "mp3"
    if head.startswith(b"OggS"):
        return "ogg"
    if head.startswith(b"fLaC"):
        return "flac"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "webm"  # EBML: webm and mkv share it
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return "wav"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return "avi"
    if head[4:8] == b"ftyp" or head[4:8] in (b"moov", b"mdat", b"wide", b"free"):
        return "mp4"  # ISO BMFF: mp4, m4a, mov, 3gp
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        return "mp3"  # bare MPEG audio frame sync (also ADTS AAC)
    return None


def image_size(path: Path) -> tuple[int, int]:
    """Width and height of an image as displayed, i.e. after its EXIF orientation."""
    path = Path(path)
    _check_file(path)
    with _open_image(path, path, verify=False) as im:
        w, h = im.size
        if im.getexif().get(0x0112) in (5, 6, 7, 8):
            w, h = h, w
    return w, h


def prepare_image(
    src: Path,
    cache_dir: Path,
    *,
    max_side: int = 1280,
    boxes: Sequence[Mapping[str, Any]] | None = None,
    quality: int = 85,
) -> Path:
    """Rotate, flatten, shrink, draw boxes on and JPEG-encode `src` once; return the cached file."""
    src, cache_dir = Path(src), Path(cache_dir)
    if max_side < 1:
        raise MediaError(f"max_side must be positive, got {max_side}")
    if not 1 <= quality <= 100:
        raise MediaError(f"quality must be between 1 and 100, got {quality}")
    norm_boxes = _normalise_boxes(boxes or ())
    _check_file(src)
    # The source is hashed and decoded from disk, never read whole into memory.
    with src.open("rb") as f:
        key = hashlib.file_digest(f, "sha256")
    params = {"v": _CACHE_VERSION, "max_side": max_side, "quality": quality, "boxes": norm_boxes}
    key.update(json.dumps(params, sort_keys=True, ensure_ascii=False).encode())
    out = cache_dir / f"{key.hexdigest()[:40]}.jpg"
    if out.is_file():
        return out

    im = _render(src, max_side=max_side, boxes=norm_boxes)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality, optimize=True)
    _write_atomic(out, buf.getvalue())
    return out


# Sans fonts that draw Latin accents and Cyrillic (every shipped language), by file name:
# Pillow looks for them in the system's font folders. No Python dependency ships such a font,
# and Pillow's own (Aileron, used as the last resort) draws ASCII only: without one of these,
# "é" or "Привет" on a chart comes out as boxes. Debian/Ubuntu: fonts-dejavu-core.
SANS = ("DejaVuSans.ttf", "NotoSans-Regular.ttf", "LiberationSans-Regular.ttf", "FreeSans.ttf")
SANS_BOLD = (
    "DejaVuSans-Bold.ttf",
    "NotoSans-Bold.ttf",
    "LiberationSans-Bold.ttf",
    "FreeSansBold.ttf",
)
# macOS and Windows have Arial (with Cyrillic) under these names.
_SYSTEM = ("Arial.ttf",)
_SYSTEM_BOLD = ("Arial Bold.ttf", "arialbd.ttf")
FONT_ENV = "CHATLABEL_FONT"  # a .ttf/.otf file to draw every chart with, tried first
_warned: set[str] = set()


@lru_cache(maxsize=32)
def load_font(size: int, *, bold: bool = False) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """A sans font at `size` px that draws every shipped language, else Pillow's own (ASCII)."""
    own = os.environ.get(FONT_ENV, "").strip()
    names = [own] if own else []
    if bold:
        names += [*SANS_BOLD, *_SYSTEM_BOLD]
    names += [*SANS, *_SYSTEM]
    for name in names:
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            if name == own and own not in _warned:
                _warned.add(own)
                log.warning("%s=%s: cannot load that font; trying the usual ones", FONT_ENV, own)
    if "" not in _warned:
        _warned.add("")
        log.warning(
            "No font with accents and Cyrillic found (tried %s): charts use Pillow's built-in "
            "font, which draws ASCII only. Install one (Debian/Ubuntu: fonts-dejavu-core) or "
            "set %s to a .ttf file.",
            ", ".join(SANS),
            FONT_ENV,
        )
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


def covers(font: ImageFont.FreeTypeFont | ImageFont.ImageFont, text: str) -> bool:
    """Whether `font` has a glyph for every character of `text` (none drawn as a box)."""
    # A missing character is drawn as the font's "notdef" glyph, as U+FFFF (a non-character)
    # is: the same bitmap means no glyph. Spaces have empty bitmaps, unlike notdef.
    missing = _bitmap(font, "\uffff")
    return all(_bitmap(font, ch) != missing for ch in set(text) if ch not in "\n")


def _bitmap(font: ImageFont.FreeTypeFont | ImageFont.ImageFont, ch: str) -> tuple[Any, bytes]:
    mask = font.getmask(ch)
    return mask.size, bytes(mask)


def file_sha256(path: Path) -> str:
    """The sha256 of a file, read in chunks (never the whole file in memory)."""
    with Path(path).open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _check_file(path: Path) -> int:
    """The file's size; MediaError unless it is a non-empty regular file."""
    if not path.exists():
        raise MediaError(f"{path}: file not found")
    if not path.is_file():
        raise MediaError(f"{path}: not a regular file")
    size = path.stat().st_size
    if size == 0:
        raise MediaError(f"{path}: file is empty")
    return size


@contextmanager
def _image_errors(label: object) -> Iterator[None]:
    """Turn Pillow's many exception types into a MediaError naming the file."""
    try:
        yield
    except MediaError:
        raise
    except UnidentifiedImageError:
        raise MediaError(f"{label}: not an image file") from None
    except Image.DecompressionBombError as e:
        raise MediaError(f"{label}: image too large ({e})") from None
    except (OSError, SyntaxError, ValueError) as e:
        what = "truncated image" if _is_truncation(e) else "corrupt image"
        raise MediaError(f"{label}: {what} ({e})") from None


def _open_image(source: Path | io.BytesIO, label: object, *, verify: bool = True) -> Image.Image:
    """Open (not decode) an image; with `verify`, check its structure first."""
    with _image_errors(label), warnings.catch_warnings():
        # Pillow only warns between 89 and 179 MP; _check_pixels refuses far below that.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        im = Image.open(source)  # reads the header only
        try:
            _check_pixels(im, label)
            if verify:
                # verify() leaves the image unusable, hence the second open.
                im.verify()
                im.close()
                if isinstance(source, io.BytesIO):
                    source.seek(0)
                im = Image.open(source)
        except BaseException:
            im.close()
            raise
        return im


def _check_pixels(im: Image.Image, label: object) -> None:
    """Refuse an image with more than MAX_IMAGE_PIXELS, from its header, before decoding."""
    w, h = im.size
    if w * h > MAX_IMAGE_PIXELS:
        raise MediaError(
            f"{label}: image is {w}×{h} pixels ({w * h / 1e6:.0f} MP), over the "
            f"{MAX_IMAGE_PIXELS / 1e6:.0f} MP limit"
        )


def _is_truncation(e: BaseException) -> bool:
    text = str(e).lower()
    return "truncated" in text or "premature end" in text or "end of file" in text


def _normalise_boxes(boxes: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Validate boxes and turn them into plain dicts with a `frac` flag for the cache key."""
    out = []
    if isinstance(boxes, Mapping | str | bytes):
        raise MediaError("boxes must be a list of mappings with x, y, w, h")
    for i, box in enumerate(boxes):
        if not isinstance(box, Mapping):
            kind = type(box).__name__
            raise MediaError(f"box {i}: expected a mapping with x, y, w, h, got {kind}")
        vals = {}
        for field in ("x", "y", "w", "h"):
            if field not in box:
                raise MediaError(f"box {i}: field {field!r} is missing")
            v = box[field]
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise MediaError(f"box {i}: field {field!r} must be a finite number, got {v!r}")
            if v < 0:
                raise MediaError(f"box {i}: field {field!r} must not be negative, got {v!r}")
            vals[field] = float(v)
        for field in ("w", "h"):
            if vals[field] == 0:
                raise MediaError(f"box {i}: field {field!r} must be greater than zero")
        frac = all(v <= 1 for v in vals.values())
        if frac:
            for a, b in (("x", "w"), ("y", "h")):
                if vals[a] + vals[b] > 1.001:
                    raise MediaError(
                        f"box {i}: {a} + {b} = {vals[a] + vals[b]:g} goes past the image edge (1.0)"
                    )
        label = box.get("label")
        if label is not None and not isinstance(label, str):
            raise MediaError(f"box {i}: field 'label' must be text, got {label!r}")
        out.append({**vals, "label": label, "frac": frac})
    return out


def _render(src: Path, *, max_side: int, boxes: list[dict[str, Any]]) -> Image.Image:
    with _open_image(src, src) as im, _image_errors(src):
        orientation = im.getexif().get(0x0112)
        w0, h0 = im.size
        if orientation in (5, 6, 7, 8):
            w0, h0 = h0, w0
        _check_box_bounds(boxes, w0, h0, src)
        # Let JPEG decode at a reduced scale; draft never goes below the requested size.
        ratio = max_side / max(w0, h0)
        if ratio < 1:
            im.draft(None, (math.ceil(im.size[0] * ratio), math.ceil(im.size[1] * ratio)))
        im.load()
        img = ImageOps.exif_transpose(im)
    img = _flatten(img)
    img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    if boxes:
        _draw_boxes(img, boxes, img.width / w0, img.height / h0)
    return img


def _flatten(im: Image.Image) -> Image.Image:
    """RGB copy of `im`, with transparency composited onto white."""
    if (im.mode == "P" and "transparency" in im.info) or im.mode in _ALPHA_MODES:
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16/32-bit greyscale: stretch into 8 bits, else convert() clips nearly all to white.
        lo, hi = cast(tuple[float, float], im.getextrema())
        scale = 255 / max(hi - lo, 1)
        im = im.convert("F").point(lambda v: (v - lo) * scale).convert("L")
    return im.convert("RGB")


def _check_box_bounds(boxes: list[dict[str, Any]], w: int, h: int, src: Path) -> None:
    for i, b in enumerate(boxes):
        if b["frac"]:
            continue
        if b["x"] + b["w"] > w + 1 or b["y"] + b["h"] > h + 1:
            raise MediaError(
                f"box {i}: ({b['x']:g}, {b['y']:g}, {b['w']:g}×{b['h']:g}) goes past the edge "
                f"of {src.name}, which is {w}×{h} pixels"
            )


def _draw_boxes(img: Image.Image, boxes: list[dict[str, Any]], sx: float, sy: float) -> None:
    draw = ImageDraw.Draw(img)
    W, H = img.size
    line = max(2, round(max(W, H) / 160))
    font = load_font(max(12, round(max(W, H) / 36)))
    colours: dict[str | None, tuple[int, int, int]] = {}
    for b in boxes:
        colour = colours.setdefault(b["label"], BOX_COLOURS[len(colours) % len(BOX_COLOURS)])
        if b["frac"]:
            x0, y0, x1, y1 = b["x"] * W, b["y"] * H, (b["x"] + b["w"]) * W, (b["y"] + b["h"]) * H
        else:
            x0, y0 = b["x"] * sx, b["y"] * sy
            x1, y1 = (b["x"] + b["w"]) * sx, (b["y"] + b["h"]) * sy
        x0, y0 = max(0, round(x0)), max(0, round(y0))
        x1, y1 = min(W - 1, max(x0, round(x1) - 1)), min(H - 1, max(y0, round(y1) - 1))
        draw.rectangle((x0, y0, x1, y1), outline=colour, width=line)
        if b["label"]:
            _draw_tag(draw, b["label"], font, colour, x0, y0, W)


def _draw_tag(
    draw: ImageDraw.ImageDraw,
    text: str,
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
    colour: tuple[int, int, int],
    x: int,
    y: int,
    width: int,
) -> None:
    """A filled label tag on the box's top-left corner: above the box if it fits, else inside."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    pad = max(2, (bottom - top) // 4)
    tw, th = right - left + 2 * pad, bottom - top + 2 * pad
    tx = max(0, min(x, width - tw))
    ty = y - th if y - th >= 0 else y
    draw.rectangle((tx, ty, tx + tw - 1, ty + th - 1), fill=colour)
    luminance = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
    ink = (0, 0, 0) if luminance > 140 else (255, 255, 255)
    draw.text((tx + pad - left, ty + pad - top), text, font=font, fill=ink)


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# Telegram refuses a photo whose width and height add up to more than 10,000 pixels or whose
# sides differ more than 20 times (line crops, panoramas).
PHOTO_MAX_SUM = 10_000
PHOTO_MAX_RATIO = 20.0


def fit_photo(
    path: Path,
    cache_dir: Path,
    *,
    max_sum: int = PHOTO_MAX_SUM,
    max_ratio: float = PHOTO_MAX_RATIO,
    quality: int = 85,
) -> Path:
    """A prepared picture fitted to a platform's photo limits; `path` itself when it fits.

    Scaled down until its sides add up to at most `max_sum`, then padded with white on its
    short side until neither side is more than `max_ratio` times the other: a line crop stays
    readable rather than squashed. The result is cached next to the prepared files.
    """
    path, cache_dir = Path(path), Path(cache_dir)
    with _open_image(path, path, verify=False) as probe:
        w, h = probe.size
    if w + h <= max_sum and max(w, h) <= max_ratio * min(w, h):
        return path
    key = hashlib.sha256(path.read_bytes())
    key.update(json.dumps({"v": _CACHE_VERSION, "sum": max_sum, "ratio": max_ratio}).encode())
    out = cache_dir / f"{key.hexdigest()[:40]}-fit.jpg"
    if out.is_file():
        return out
    with _open_image(path, path, verify=False) as im, _image_errors(path):
        img = _flatten(im)
    if w + h > max_sum:
        scale = max_sum / (w + h)
        w, h = max(1, math.floor(w * scale)), max(1, math.floor(h * scale))
        img = img.resize((w, h), Image.Resampling.LANCZOS)
    # Pad the short side; the long one stays, so the sum may grow: shrink first if it would.
    long_side = max(w, h)
    short = math.ceil(long_side / max_ratio)
    if long_side + short > max_sum:
        scale = max_sum / (long_side + short)
        w, h = max(1, math.floor(w * scale)), max(1, math.floor(h * scale))
        img = img.resize((w, h), Image.Resampling.LANCZOS)
        long_side, short = max(w, h), math.ceil(max(w, h) / max_ratio)
    size = (w, max(h, short)) if w >= h else (max(w, short), h)
    canvas = Image.new("RGB", size, (255, 255, 255))
    canvas.paste(img, ((size[0] - w) // 2, (size[1] - h) // 2))
    buf = io.BytesIO()
    canvas.save(buf, "JPEG", quality=quality, optimize=True)
    _write_atomic(out, buf.getvalue())
    return out
