"""Progress and quality charts as PNG bytes, drawn with Pillow alone (no matplotlib).

Every word and number on a chart is in the reader's language: the functions take that
language's `Texts` and word titles, legends and notes from the catalog's [chart] section.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING

from PIL import Image, ImageDraw, ImageFont

from chatlabel.media import load_font

from .service.types import Progress

if TYPE_CHECKING:  # the conversation package imports this module: no import cycle at run time
    from .conversation.catalog import Texts

__all__ = [
    "ESCALATED_COLOUR",
    "LABEL_COLOUR",
    "REMAINING_COLOUR",
    "RESOLVED_COLOUR",
    "bar_chart_png",
    "fit_text",
    "heatmap_png",
    "progress_chart",
    "progress_png",
]

RGB = tuple[int, int, int]
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont

# Okabe-Ito: blue/orange stay apart under every common colour-vision deficiency.
RESOLVED_COLOUR: RGB = (0, 114, 178)
ESCALATED_COLOUR: RGB = (230, 159, 0)
REMAINING_COLOUR: RGB = (222, 222, 222)
LABEL_COLOUR: RGB = (86, 180, 233)
_BG: RGB = (255, 255, 255)
_INK: RGB = (34, 34, 34)
_MUTED: RGB = (110, 110, 110)
_GRID: RGB = (232, 232, 232)
_OTHER: RGB = (170, 170, 170)
# ColorBrewer "Blues": sequential, readable in greyscale and for colour-blind viewers.
_BLUES: tuple[RGB, ...] = (
    (247, 251, 255),
    (222, 235, 247),
    (198, 219, 239),
    (158, 202, 225),
    (107, 174, 214),
    (66, 146, 198),
    (33, 113, 181),
    (8, 81, 156),
    (8, 48, 107),
)


@dataclass(frozen=True)
class _Style:
    scale: float
    title: Font
    head: Font
    body: Font
    small: Font
    margin: int

    @classmethod
    def for_size(cls, width: int, height: int) -> _Style:
        s = max(0.5, min(width / 900, height / 600))
        return cls(
            scale=s,
            title=load_font(max(14, round(34 * s)), bold=True),
            head=load_font(max(12, round(25 * s)), bold=True),
            body=load_font(max(11, round(23 * s))),
            small=load_font(max(10, round(20 * s))),
            margin=max(10, round(30 * s)),
        )


def progress_chart(
    title: str,
    *,
    t: Texts,
    total: int,
    resolved: int,
    escalated: int,
    pending_answers: int = 0,
    labels: Mapping[str, int],
    timeline: Sequence[tuple[float, int]] = (),
    width: int = 900,
    height: int = 600,
) -> bytes:
    """PNG of project progress: done/escalated bar, label distribution and answers over time."""
    _check_size(width, height)
    for name, n in (
        ("total", total),
        ("resolved", resolved),
        ("escalated", escalated),
        ("pending_answers", pending_answers),
    ):
        if n < 0:
            raise ValueError(f"{name} must not be negative, got {n}")
    # Counts come from separate queries and may race; a chart should show them, not fail.
    total = max(total, resolved + escalated)
    st = _Style.for_size(width, height)
    im = Image.new("RGB", (width, height), _BG)
    draw = ImageDraw.Draw(im)
    m = st.margin
    y = _draw_title(draw, title, st, width)

    done = resolved + escalated
    parts = [t("chart.resolved_of", resolved=resolved, n=total) if total else t("chart.no_items")]
    if pending_answers:
        parts.append(t("chart.pending", n=pending_answers))
    summary = fit_text(draw, " · ".join(parts), st.body, width - 2 * m)
    draw.text((m, y), summary, font=st.body, fill=_MUTED)
    y += _line_height(st.body) + round(10 * st.scale)

    bar_h = round(46 * st.scale)
    remaining = total - done
    segments = [
        (resolved, RESOLVED_COLOUR),
        (escalated, ESCALATED_COLOUR),
        (remaining, REMAINING_COLOUR),
    ]
    _draw_stacked_bar(draw, (m, y, width - m, y + bar_h), segments, total, st.body, t)
    y += bar_h + round(10 * st.scale)
    legend = [
        (t("verdict.resolved"), resolved, RESOLVED_COLOUR),
        (t("verdict.escalated"), escalated, ESCALATED_COLOUR),
        (t("chart.remaining"), remaining, REMAINING_COLOUR),
    ]
    y = _draw_legend(draw, (m, y, width - m), legend, total, st, t)
    y += round(22 * st.scale)

    label_box = (m, y, width - m, height - m)
    if timeline:
        if width >= height * 1.25:
            gap = round(40 * st.scale)
            mid = round((width - gap) * 0.56)
            label_box, time_box = (m, y, mid, height - m), (mid + gap, y, width - m, height - m)
        else:
            split = y + round((height - m - y) * 0.55)
            label_box = (m, y, width - m, split - round(14 * st.scale))
            time_box = (m, split, width - m, height - m)
        _draw_timeline(draw, time_box, timeline, st, t)
    _draw_labels(draw, label_box, labels, st, t)
    return _png(im)


def bar_chart_png(
    title: str,
    values: Mapping[str, float],
    *,
    t: Texts,
    fmt: Callable[[float], str] | None = None,
    width: int = 900,
    height: int | None = None,
    max_value: float | None = None,
    colour: RGB = RESOLVED_COLOUR,
) -> bytes:
    """PNG of a horizontal bar chart, largest value first; height grows with the rows if None.

    `fmt` writes each value (default: a percentage in the reader's language).
    """
    show = fmt or t.percent
    st = _Style.for_size(width, 600)
    row_h = round(_line_height(st.body) * 1.7)
    top = st.margin + _line_height(st.title) + round(20 * st.scale)
    if height is None:
        height = max(top + st.margin + row_h, top + st.margin + row_h * len(values))
    _check_size(width, height)
    im = Image.new("RGB", (width, height), _BG)
    draw = ImageDraw.Draw(im)
    y = _draw_title(draw, title, st, width) + round(8 * st.scale)
    box = (st.margin, y, width - st.margin, height - st.margin)
    finite = [v for v in values.values() if math.isfinite(v)]
    if not finite:
        _draw_empty(draw, box, t("chart.no_data"), st)
        return _png(im)
    if max_value is None:
        max_value = 1.0 if all(0 <= v <= 1 for v in finite) else max(max(finite), 0.0)
    ordered = sorted(values.items(), key=lambda kv: (not math.isfinite(kv[1]), -_num(kv[1]), kv[0]))
    na = t("common.not_available")
    rows = [(k, v, show(v) if math.isfinite(v) else na) for k, v in ordered]
    fit = _rows_that_fit(box, st)
    if len(rows) > fit:
        hidden = len(rows) - fit + 1
        rows = rows[: fit - 1] + [(t("chart.more", n=hidden), math.nan, "")]
    _draw_hbars(draw, box, rows, max_value or 1.0, colour, st)
    return _png(im)


def heatmap_png(
    title: str,
    matrix: Sequence[Sequence[float]],
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    *,
    t: Texts,
    fmt: Callable[[float], str] | None = None,
    row_title: str = "",
    col_title: str = "",
) -> bytes:
    """PNG of a matrix (e.g. a confusion matrix) as shaded cells with their values written in.

    `fmt` writes each value (default: whole numbers for counts, else two decimals).
    """
    if len(matrix) != len(row_labels):
        raise ValueError(f"matrix has {len(matrix)} rows but {len(row_labels)} row labels")
    for i, row in enumerate(matrix):
        if len(row) != len(col_labels):
            raise ValueError(f"matrix row {i} has {len(row)} cells, expected {len(col_labels)}")
    n_rows, n_cols = len(row_labels), len(col_labels)
    flat = [float(v) for row in matrix for v in row]
    if fmt is None:
        counts = all(math.isfinite(v) and v == int(v) for v in flat)
        digits = 0 if counts else 2
        fmt = partial(t.number, digits=digits)
    cell = max(40, min(90, 720 // max(n_rows, n_cols, 1)))
    st = _Style.for_size(900, 600)
    cell_font = load_font(max(11, min(24, round(cell * 0.3))))
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_cap = round(220 * st.scale)
    row_w = min(label_cap, max((probe.textlength(r, font=st.small) for r in row_labels), default=0))
    col_w = min(label_cap, max((probe.textlength(c, font=st.small) for c in col_labels), default=0))
    rotate = col_w > cell - 8
    col_h = int(col_w) if rotate else _line_height(st.small)
    m = st.margin
    side = _line_height(st.small) + 10 if row_title else 0
    left = m + side + int(row_w) + 12
    top = m + _line_height(st.title) + round(20 * st.scale)
    top += (_line_height(st.small) + 8 if col_title else 0) + col_h + 8
    # Wide enough for the title too (up to a page), so a short word list keeps its heading.
    title_w = min(900, math.ceil(probe.textlength(title, font=st.title)) + 2 * m)
    width = max(left + n_cols * cell + m, 360, title_w)
    height = top + n_rows * cell + m
    im = Image.new("RGB", (width, height), _BG)
    draw = ImageDraw.Draw(im)
    y = _draw_title(draw, title, st, width)
    if col_title:
        draw.text(
            (left + n_cols * cell / 2, y + 4), col_title, font=st.small, fill=_MUTED, anchor="mt"
        )
    if row_title:
        _paste_text(im, (m, top + n_rows * cell // 2), row_title, st.small, _MUTED, 90, "lm")
    finite = [v for v in flat if math.isfinite(v)]
    vmax = max([v for v in finite if v > 0], default=1.0)
    for j, label in enumerate(col_labels):
        cx = left + j * cell + cell // 2
        text = fit_text(draw, label, st.small, label_cap if rotate else cell - 6)
        if rotate:
            _paste_text(im, (cx, top - 8), text, st.small, _INK, 90, "mb")
        else:
            draw.text((cx, top - 8), text, font=st.small, fill=_INK, anchor="mb")
    for i, label in enumerate(row_labels):
        cy = top + i * cell + cell // 2
        draw.text(
            (left - 12, cy),
            fit_text(draw, label, st.small, label_cap),
            font=st.small,
            fill=_INK,
            anchor="rm",
        )
        for j, v in enumerate(matrix[i]):
            x0, y0 = left + j * cell, top + i * cell
            if math.isfinite(v):
                t_ = max(0.0, min(1.0, v / vmax))
                fill, text = _ramp(t_), fmt(v)
                ink = _BG if t_ > 0.55 else _INK
            else:
                fill, text, ink = _GRID, "–", _MUTED
            draw.rectangle((x0, y0, x0 + cell - 1, y0 + cell - 1), fill=fill, outline=_BG)
            text = fit_text(draw, text, cell_font, cell - 6)
            draw.text((x0 + cell / 2, y0 + cell / 2), text, font=cell_font, fill=ink, anchor="mm")
    return _png(im)


def _draw_title(draw: ImageDraw.ImageDraw, title: str, st: _Style, width: int) -> int:
    m = st.margin
    draw.text((m, m), fit_text(draw, title, st.title, width - 2 * m), font=st.title, fill=_INK)
    return m + _line_height(st.title) + round(12 * st.scale)


def _draw_stacked_bar(
    draw: ImageDraw.ImageDraw,
    box: tuple[int, int, int, int],
    segments: list[tuple[int, RGB]],
    total: int,
    font: Font,
    t: Texts,
) -> None:
    x0, y0, x1, y1 = box
    draw.rectangle(box, fill=REMAINING_COLOUR)
    if not total:
        return
    x = float(x0)
    for count, colour in segments:
        w = (x1 - x0) * count / total
        if w <= 0:
            continue
        draw.rectangle((round(x), y0, round(x + w) - 1, y1), fill=colour)
        text = _pct(t, count, total)
        if draw.textlength(text, font=font) + 12 <= w:
            draw.text((x + w / 2, (y0 + y1) / 2), text, font=font, fill=_on(colour), anchor="mm")
        x += w


def _draw_legend(
    draw: ImageDraw.ImageDraw,
    box: tuple[int, int, int],
    entries: list[tuple[str, int, RGB]],
    total: int,
    st: _Style,
    t: Texts,
) -> int:
    """Legend entries left to right, wrapping when they do not fit; returns the y below it."""
    x0, y, x1 = box
    lh = _line_height(st.small)
    sq = round(lh * 0.8)
    gap = round(26 * st.scale)
    x = x0
    for name, count, colour in entries:
        text = t("chart.legend", name=name, n=count, share=_pct(t, count, total))
        text = fit_text(draw, text, st.small, x1 - x0 - sq - 8)
        w = sq + 8 + draw.textlength(text, font=st.small)
        if x > x0 and x + w > x1:
            x, y = x0, y + lh + 8
        top = y + (lh - sq) // 2
        draw.rectangle(
            (x, top, x + sq, top + sq),
            fill=colour,
            outline=(170, 170, 170) if colour == REMAINING_COLOUR else None,
        )
        draw.text((x + sq + 8, y + lh / 2), text, font=st.small, fill=_INK, anchor="lm")
        x += round(w) + gap
    return y + lh


def _draw_labels(
    draw: ImageDraw.ImageDraw,
    box: tuple[int, int, int, int],
    labels: Mapping[str, int],
    st: _Style,
    t: Texts,
) -> None:
    x0, y0, x1, y1 = box
    draw.text(
        (x0, y0), fit_text(draw, t("chart.labels"), st.head, x1 - x0), font=st.head, fill=_INK
    )
    box = (x0, y0 + _line_height(st.head) + round(10 * st.scale), x1, y1)
    answers = sum(labels.values())
    if not answers and not labels:
        _draw_empty(draw, box, t("chart.no_labels"), st)
        return
    ordered = sorted(labels.items(), key=lambda kv: (-kv[1], kv[0]))
    vmax = max(ordered[0][1], 1)
    fit = _rows_that_fit(box, st)
    other = None
    if len(ordered) > fit:
        rest = ordered[fit - 1 :]
        ordered = ordered[: fit - 1]
        other = (t("chart.other", n=len(rest)), sum(n for _, n in rest))
    rows = [(k, float(n), f"{t.number(n)} · {_pct(t, n, answers)}") for k, n in ordered]
    if other:
        n = other[1]
        rows.append((other[0], float(n), f"{t.number(n)} · {_pct(t, n, answers)}"))
    # "other" is scaled like the rest (capped at full width) and greyed, so it cannot
    # squash the real labels' bars.
    _draw_hbars(draw, box, rows, vmax, LABEL_COLOUR, st, last_colour=_OTHER if other else None)


def _rows_that_fit(box: tuple[int, int, int, int], st: _Style) -> int:
    min_row = _line_height(st.body) + round(10 * st.scale)
    return max(1, (box[3] - box[1]) // min_row)


def _draw_hbars(
    draw: ImageDraw.ImageDraw,
    box: tuple[int, int, int, int],
    rows: list[tuple[str, float, str]],
    vmax: float,
    colour: RGB,
    st: _Style,
    last_colour: RGB | None = None,
) -> None:
    """Rows of name | bar | value text; NaN values get no bar."""
    x0, y0, x1, y1 = box
    font = st.body
    gap = round(12 * st.scale)
    name_w = min(max(draw.textlength(n, font=font) for n, _, _ in rows), (x1 - x0) * 0.36)
    value_w = max(draw.textlength(t, font=font) for _, _, t in rows)
    bar_x = x0 + name_w + gap
    bar_span = max(1.0, x1 - value_w - gap - bar_x)
    row_h = min((y1 - y0) / len(rows), _line_height(font) * 1.9)
    bar_h = max(4.0, min(row_h * 0.68, _line_height(font) * 1.25))
    for i, (name, value, text) in enumerate(rows):
        cy = y0 + row_h * i + row_h / 2
        draw.text(
            (bar_x - gap, cy), fit_text(draw, name, font, name_w), font=font, fill=_INK, anchor="rm"
        )
        end = bar_x
        if math.isfinite(value) and value > 0:
            end = bar_x + bar_span * min(1.0, value / vmax)
            draw.rectangle(
                (bar_x, round(cy - bar_h / 2), max(bar_x + 1, end), round(cy + bar_h / 2)),
                fill=last_colour if last_colour and i == len(rows) - 1 else colour,
            )
        draw.text((end + gap, cy), text, font=font, fill=_INK, anchor="lm")


def _draw_timeline(
    draw: ImageDraw.ImageDraw,
    box: tuple[int, int, int, int],
    timeline: Sequence[tuple[float, int]],
    st: _Style,
    t: Texts,
) -> None:
    x0, y0, x1, y1 = box
    heading = fit_text(draw, t("chart.answers_over_time"), st.head, x1 - x0)
    draw.text((x0, y0), heading, font=st.head, fill=_INK)
    pts = sorted((float(at), float(n)) for at, n in timeline)
    font, lh = st.small, _line_height(st.small)
    top = y0 + _line_height(st.head) + round(14 * st.scale)
    ymax = _nice_ceil(max(n for _, n in pts))
    ticks = [0.0, ymax / 2, ymax]
    tick_text = [t.compact(v) for v in ticks]
    left = x0 + max(draw.textlength(t, font=font) for t in tick_text) + 10
    bottom = y1 - lh - 8
    right = x1 - 4
    if bottom - top < lh * 2 or right - left < 40:
        return
    for v, text in zip(ticks, tick_text, strict=True):
        yy = bottom - (bottom - top) * v / ymax
        draw.line((left, yy, right, yy), fill=_GRID, width=1)
        draw.text((left - 8, yy), text, font=font, fill=_MUTED, anchor="rm")
    t0, t1 = pts[0][0], pts[-1][0]
    span = t1 - t0 or 1.0

    def xy(at: float, n: float) -> tuple[float, float]:
        x = (left + right) / 2 if t1 == t0 else left + (right - left) * (at - t0) / span
        return x, bottom - (bottom - top) * n / ymax

    line = [xy(at, n) for at, n in pts]
    lw = max(2, round(4 * st.scale))
    if len(line) > 1:
        tint = tuple(round(c + (255 - c) * 0.82) for c in RESOLVED_COLOUR)
        draw.polygon([(line[0][0], bottom), *line, (line[-1][0], bottom)], fill=tint)
        draw.line(line, fill=RESOLVED_COLOUR, width=lw, joint="curve")
    else:
        cx, cy = line[0]
        draw.ellipse((cx - lw * 2, cy - lw * 2, cx + lw * 2, cy + lw * 2), fill=RESOLVED_COLOUR)
    draw.line((left, bottom, right, bottom), fill=_MUTED, width=1)
    # Within half a day the hour says it all; within a week the weekday and hour; else the day.
    day, hour = (
        ("", True) if span <= 12 * 3600 else ("E", True) if span < 6 * 86400 else ("MMMd", False)
    )
    stamps = [(t0, "mt")] if t1 == t0 else [(t0, "lt"), ((t0 + t1) / 2, "mt"), (t1, "rt")]
    # Local time, as people read a clock.
    texts = [t.when(datetime.fromtimestamp(at), day, hour) for at, _ in stamps]
    if len(stamps) == 3 and sum(draw.textlength(s, font=font) + 24 for s in texts) > right - left:
        del stamps[1], texts[1]  # no room for a middle time stamp
    for (at, anchor), text in zip(stamps, texts, strict=True):
        draw.text((xy(at, 0)[0], bottom + 6), text, font=font, fill=_MUTED, anchor=anchor)


def _draw_empty(
    draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], text: str, st: _Style
) -> None:
    draw.text((box[0], box[1] + 4), text, font=st.body, fill=_MUTED)


def _paste_text(
    im: Image.Image,
    xy: tuple[float, float],
    text: str,
    font: Font,
    fill: RGB,
    angle: int,
    anchor: str,
) -> None:
    """Draw rotated text; `anchor` applies to the rotated block (l/m/r, t/m/b)."""
    probe = ImageDraw.Draw(im)
    l_, t_, r_, b_ = probe.textbbox((0, 0), text, font=font)
    layer = Image.new("L", (int(r_ - l_) + 2, int(b_ - t_) + 2), 0)
    ImageDraw.Draw(layer).text((1 - l_, 1 - t_), text, font=font, fill=255)
    layer = layer.rotate(angle, expand=True)
    w, h = layer.size
    x = {"l": xy[0], "m": xy[0] - w / 2, "r": xy[0] - w}[anchor[0]]
    y = {"t": xy[1], "m": xy[1] - h / 2, "b": xy[1] - h}[anchor[1]]
    im.paste(Image.new("RGB", layer.size, fill), (round(x), round(y)), layer)


def fit_text(draw: ImageDraw.ImageDraw, text: str, font: Font, max_w: float) -> str:
    """`text`, cut with an ellipsis so that it is at most `max_w` pixels wide."""
    if draw.textlength(text, font=font) <= max_w:
        return text
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if draw.textlength(text[:mid].rstrip() + "…", font=font) <= max_w:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo].rstrip() + "…"


def _pct(t: Texts, part: float, whole: float) -> str:
    """Share as a whole percentage that never claims 0% or 100% unless it is exactly that."""
    if whole <= 0 or part <= 0:
        return t.percent(0)
    p = part / whole
    if p >= 1:
        return t.percent(1)
    if p < 0.01:
        return "<" + t.percent(0.01)  # "<" reads the same in every shipped language
    return t.percent(min(99, max(1, round(p * 100))) / 100)


def _nice_ceil(v: float) -> float:
    if v <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(v))
    return next(s * exp for s in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10) if s * exp >= v)


def _ramp(t: float) -> RGB:
    pos = t * (len(_BLUES) - 1)
    i = min(int(pos), len(_BLUES) - 2)
    f = pos - i
    a, b = _BLUES[i], _BLUES[i + 1]
    return (
        round(a[0] + (b[0] - a[0]) * f),
        round(a[1] + (b[1] - a[1]) * f),
        round(a[2] + (b[2] - a[2]) * f),
    )


def _on(colour: RGB) -> RGB:
    """Black or white, whichever reads better on `colour`."""
    luminance = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
    return _INK if luminance > 150 else _BG


def _num(v: float) -> float:
    return v if math.isfinite(v) else 0.0


def _line_height(font: Font) -> int:
    l_, t_, r_, b_ = font.getbbox("Ag…")
    return int(b_) + 2


def _check_size(width: int, height: int) -> None:
    if width < 200 or height < 150:
        raise ValueError(f"chart size {width}×{height} is too small (min 200×150)")


def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def progress_png(p: Progress, t: Texts, title: str | None = None) -> bytes:
    """The chart of a project's progress figures: what /progress sends and the report shows.

    `title`: the project's title in the reader's language (default: the configured one).
    """
    return progress_chart(
        p.title if title is None else title,
        t=t,
        total=p.items,
        resolved=p.resolved,
        escalated=p.escalated,
        labels=p.labels,
        timeline=p.timeline,
    )
