"""Tests for chatlabel.charts: valid PNGs of the requested size that show the right shares."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from PIL import Image, ImageDraw

from chatlabel.charts import (
    ESCALATED_COLOUR,
    LABEL_COLOUR,
    REMAINING_COLOUR,
    RESOLVED_COLOUR,
    _fit,
    _pct,
    bar_chart_png,
    heatmap_png,
    progress_chart,
)
from chatlabel.media import load_font

T0 = 1_700_000_000.0


def decode(png: bytes) -> Image.Image:
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    im = Image.open(io.BytesIO(png))
    im.load()
    assert im.format == "PNG"
    return im.convert("RGB")


def row_counts(im: Image.Image, colour: tuple[int, int, int]) -> list[int]:
    """How many pixels of exactly `colour` each row of the image has."""
    return [int(n) for n in (np.asarray(im) == colour).all(axis=2).sum(axis=1)]


def bar_shares(im: Image.Image) -> tuple[float, float, float]:
    """Resolved/escalated/remaining shares measured along the progress bar's widest row."""
    per_colour = [
        np.array(row_counts(im, c)) for c in (RESOLVED_COLOUR, ESCALATED_COLOUR, REMAINING_COLOUR)
    ]
    y = int(np.argmax(sum(per_colour)))  # first row of the bar: no text crosses it
    res, esc, rem = (int(c[y]) for c in per_colour)
    whole = res + esc + rem
    assert whole > im.width * 0.8
    return res / whole, esc / whole, rem / whole


LABELS = {"positive": 412, "negative": 233, "neutral": 150, "unsure": 12}
TIMELINE = [(T0 + i * 3600, 40 * i + 3 * i * i) for i in range(25)]


def test_progress_chart_is_png_of_requested_size() -> None:
    im = decode(
        progress_chart(
            "Sentiment",
            total=1200,
            resolved=640,
            escalated=48,
            pending_answers=17,
            labels=LABELS,
            timeline=TIMELINE,
        )
    )
    assert im.size == (900, 600)
    im = decode(
        progress_chart(
            "Sentiment",
            total=10,
            resolved=1,
            escalated=1,
            labels=LABELS,
            timeline=TIMELINE,
            width=640,
            height=1000,
        )
    )
    assert im.size == (640, 1000)


@pytest.mark.parametrize(
    ("total", "resolved", "escalated"), [(1000, 250, 100), (1000, 700, 0), (40, 10, 30)]
)
def test_progress_bar_segments_are_proportional(total: int, resolved: int, escalated: int) -> None:
    im = decode(
        progress_chart("p", total=total, resolved=resolved, escalated=escalated, labels=LABELS)
    )
    res, esc, rem = bar_shares(im)
    assert res == pytest.approx(resolved / total, abs=0.01)
    assert esc == pytest.approx(escalated / total, abs=0.01)
    assert rem == pytest.approx((total - resolved - escalated) / total, abs=0.01)


def test_label_bars_sorted_and_scaled() -> None:
    im = decode(
        progress_chart("p", total=10, resolved=5, escalated=0, labels={"small": 25, "big": 100})
    )
    counts = [c for c in row_counts(im, LABEL_COLOUR) if c]
    widest, narrowest = max(counts), min(counts)
    assert narrowest == pytest.approx(widest / 4, rel=0.05)
    # The larger label is drawn first (higher up).
    first_row = next(i for i, c in enumerate(row_counts(im, LABEL_COLOUR)) if c)
    assert row_counts(im, LABEL_COLOUR)[first_row + 2] == widest


@pytest.mark.parametrize(
    "labels",
    [
        {},
        {"only": 5},
        {"zero": 0},
        {f"label {i}": 100 - i for i in range(30)},
        {"положительный": 3, "負面": 2, "😀 happy": 1, "x" * 300: 7},
    ],
    ids=["none", "one", "zero-count", "thirty", "unicode"],
)
def test_progress_chart_edge_cases(labels: dict[str, int]) -> None:
    for timeline in ((), [(T0, 3)], list(reversed(TIMELINE))):
        for total, resolved, escalated in ((0, 0, 0), (5, 5, 0), (3, 5, 1)):
            im = decode(
                progress_chart(
                    "Ünïcödé title " * 8,
                    total=total,
                    resolved=resolved,
                    escalated=escalated,
                    labels=labels,
                    timeline=timeline,
                )
            )
            assert im.size == (900, 600)


def test_progress_chart_many_labels_collapses_to_other() -> None:
    many = {f"label {i}": 100 - i for i in range(30)}
    im = decode(progress_chart("p", total=1, resolved=0, escalated=0, labels=many))
    bar_rows = row_counts(im, LABEL_COLOUR)
    bars = sum(1 for a, b in zip([0, *bar_rows], bar_rows, strict=False) if b and not a)
    assert 3 <= bars < 30  # the rest went into one grey "other" bar
    assert any(row_counts(im, (170, 170, 170)))


def test_progress_chart_rejects_negative_counts() -> None:
    with pytest.raises(ValueError, match="resolved"):
        progress_chart("p", total=3, resolved=-1, escalated=0, labels={})


def test_bar_chart_png() -> None:
    im = decode(bar_chart_png("Accuracy", {"alice": 1.0, "bob": 0.5, "nan": math.nan}))
    assert im.width == 900
    counts = [c for c in row_counts(im, RESOLVED_COLOUR) if c]
    assert min(counts) == pytest.approx(max(counts) / 2, rel=0.05)
    im = decode(bar_chart_png("Speed", {"a": 12.5, "b": 3.0}, fmt="{:.1f}s", width=500, height=300))
    assert im.size == (500, 300)


@pytest.mark.parametrize(
    "values",
    [{}, {"one": 0.3}, {f"annotator {i}": i / 40 for i in range(40)}, {"ß ✓ 日本": -0.2}],
)
def test_bar_chart_edge_cases(values: dict[str, float]) -> None:
    im = decode(bar_chart_png("t", values, height=400))
    assert im.size == (900, 400)
    assert decode(bar_chart_png("t", values)).width == 900


def test_heatmap_png() -> None:
    labels = ["pos", "neg", "a rather long label name"]
    matrix = [[50, 3, 2], [4, 40, 6], [0, 0, 12]]
    im = decode(
        heatmap_png("Confusion", matrix, labels, labels, row_title="gold", col_title="answered")
    )
    darkest = (8, 48, 107)  # the top of the colour ramp, used for the largest value
    assert sum(row_counts(im, darkest)) > 1000
    big = decode(
        heatmap_png(
            "Big",
            [[float(i == j) for j in range(30)] for i in range(30)],
            [f"c{i}" for i in range(30)],
            [f"column {i}" for i in range(30)],
        )
    )
    assert big.width > 30 * 30
    decode(heatmap_png("empty-ish", [[math.nan]], ["a"], ["b"]))


def test_heatmap_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="row labels"):
        heatmap_png("x", [[1, 2]], ["a", "b"], ["c", "d"])
    with pytest.raises(ValueError, match="row 1 has 1 cells"):
        heatmap_png("x", [[1, 2], [3]], ["a", "b"], ["c", "d"])


def test_pct_never_rounds_to_the_extremes() -> None:
    assert _pct(1, 1000) == "<1%"
    assert _pct(999, 1000) == "99%"
    assert _pct(1000, 1000) == "100%"
    assert _pct(0, 0) == "0%"
    assert _pct(1, 3) == "33%"


def test_fit_cuts_with_ellipsis() -> None:
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    font = load_font(20)
    assert _fit(draw, "short", font, 500) == "short"
    cut = _fit(draw, "a very long label name indeed", font, 80)
    assert cut.endswith("…")
    assert draw.textlength(cut, font=font) <= 80
