"""Tests for chatlabel.charts: valid PNGs of the requested size that show the right shares,
worded in the reader's language."""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from chatlabel import charts, media
from chatlabel.charts import (
    ESCALATED_COLOUR,
    LABEL_COLOUR,
    REMAINING_COLOUR,
    RESOLVED_COLOUR,
    _pct,
    bar_chart_png,
    fit_text,
    heatmap_png,
    progress_chart,
)
from chatlabel.conversation import Catalog
from chatlabel.media import FONT_ENV, covers, load_font

T0 = 1_700_000_000.0
CATALOG = Catalog()
EN, ES, RU = (CATALOG.texts(lang) for lang in ("en", "es", "ru"))


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
            t=EN,
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
            t=EN,
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
        progress_chart(
            "p", t=EN, total=total, resolved=resolved, escalated=escalated, labels=LABELS
        )
    )
    res, esc, rem = bar_shares(im)
    assert res == pytest.approx(resolved / total, abs=0.01)
    assert esc == pytest.approx(escalated / total, abs=0.01)
    assert rem == pytest.approx((total - resolved - escalated) / total, abs=0.01)


def test_label_bars_sorted_and_scaled() -> None:
    im = decode(
        progress_chart(
            "p", t=EN, total=10, resolved=5, escalated=0, labels={"small": 25, "big": 100}
        )
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
                    t=EN,
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
    im = decode(progress_chart("p", t=EN, total=1, resolved=0, escalated=0, labels=many))
    bar_rows = row_counts(im, LABEL_COLOUR)
    bars = sum(1 for a, b in zip([0, *bar_rows], bar_rows, strict=False) if b and not a)
    assert 3 <= bars < 30  # the rest went into one grey "other" bar
    assert any(row_counts(im, (170, 170, 170)))


def test_progress_chart_rejects_negative_counts() -> None:
    with pytest.raises(ValueError, match="resolved"):
        progress_chart("p", t=EN, total=3, resolved=-1, escalated=0, labels={})


def test_bar_chart_png() -> None:
    im = decode(bar_chart_png("Accuracy", {"alice": 1.0, "bob": 0.5, "nan": math.nan}, t=EN))
    assert im.width == 900
    counts = [c for c in row_counts(im, RESOLVED_COLOUR) if c]
    assert min(counts) == pytest.approx(max(counts) / 2, rel=0.05)
    im = decode(
        bar_chart_png(
            "Speed",
            {"a": 12.5, "b": 3.0},
            t=EN,
            fmt=lambda v: EN("annotators.seconds", seconds=EN.number(v, 1)),
            width=500,
            height=300,
        )
    )
    assert im.size == (500, 300)


@pytest.mark.parametrize(
    "values",
    [{}, {"one": 0.3}, {f"annotator {i}": i / 40 for i in range(40)}, {"ß ✓ 日本": -0.2}],
)
def test_bar_chart_edge_cases(values: dict[str, float]) -> None:
    im = decode(bar_chart_png("t", values, t=EN, height=400))
    assert im.size == (900, 400)
    assert decode(bar_chart_png("t", values, t=EN)).width == 900


def test_heatmap_png() -> None:
    labels = ["pos", "neg", "a rather long label name"]
    matrix = [[50, 3, 2], [4, 40, 6], [0, 0, 12]]
    im = decode(
        heatmap_png(
            "Confusion",
            matrix,
            labels,
            labels,
            t=EN,
            row_title=EN("chart.gold_axis"),
            col_title=EN("chart.answered_axis"),
        )
    )
    darkest = (8, 48, 107)  # the top of the colour ramp, used for the largest value
    assert sum(row_counts(im, darkest)) > 1000
    big = decode(
        heatmap_png(
            "Big",
            [[float(i == j) for j in range(30)] for i in range(30)],
            [f"c{i}" for i in range(30)],
            [f"column {i}" for i in range(30)],
            t=EN,
        )
    )
    assert big.width > 30 * 30
    decode(heatmap_png("empty-ish", [[math.nan]], ["a"], ["b"], t=EN))


def test_heatmap_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="row labels"):
        heatmap_png("x", [[1, 2]], ["a", "b"], ["c", "d"], t=EN)
    with pytest.raises(ValueError, match="row 1 has 1 cells"):
        heatmap_png("x", [[1, 2], [3]], ["a", "b"], ["c", "d"], t=EN)


def test_pct_never_rounds_to_the_extremes() -> None:
    assert _pct(EN, 1, 1000) == "<1%"
    assert _pct(EN, 999, 1000) == "99%"
    assert _pct(EN, 1000, 1000) == "100%"
    assert _pct(EN, 0, 0) == "0%"
    assert _pct(EN, 1, 3) == "33%"
    # Written each language's way: Spanish puts a no-break space before the sign.
    assert _pct(ES, 1, 3) == "33\xa0%"
    assert _pct(ES, 1, 1000) == "<1\xa0%"


def test_fit_cuts_with_ellipsis() -> None:
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    font = load_font(20)
    assert fit_text(draw, "short", font, 500) == "short"
    cut = fit_text(draw, "a very long label name indeed", font, 80)
    assert cut.endswith("…")
    assert draw.textlength(cut, font=font) <= 80


# -- the reader's language -------------------------------------------------------------------

SHIPPED = CATALOG.languages


def ink_in_right_margin(im: Image.Image, strip: int) -> int:
    """Non-white pixels in the rightmost `strip` columns: text that ran off its place."""
    return int((np.asarray(im)[:, -strip:] != 255).any(axis=2).sum())


def draw_progress(lang: str, width: int = 900, height: int = 600) -> bytes:
    return progress_chart(
        "Тональность отзывов",
        t=CATALOG.texts(lang),
        total=1234,
        resolved=640,
        escalated=48,
        pending_answers=17,
        labels=LABELS,
        timeline=TIMELINE,
        width=width,
        height=height,
    )


@pytest.mark.parametrize("lang", SHIPPED)
@pytest.mark.parametrize("size", [(900, 600), (640, 1000), (420, 300)])
def test_progress_chart_text_fits_in_every_language(lang: str, size: tuple[int, int]) -> None:
    im = decode(draw_progress(lang, *size))
    assert im.size == size
    # Every line is fitted or wrapped inside the margins: nothing reaches the right edge.
    assert ink_in_right_margin(im, 8) == 0, lang


def test_a_russian_chart_is_worded_in_russian() -> None:
    en, ru = decode(draw_progress("en")), decode(draw_progress("ru"))
    assert en.size == ru.size
    assert np.asarray(en).tobytes() != np.asarray(ru).tobytes()
    # Only the words differ: the bar and its shares are drawn the same.
    assert bar_shares(en) == pytest.approx(bar_shares(ru), abs=0.002)
    # The text the Russian chart writes is Russian, with Russian numbers (1 234; 52 %).
    assert RU("chart.resolved_of", resolved=640, n=1234) == "Решено 640 из 1\xa0234 заданий"
    assert _pct(RU, 640, 1234) == "52\xa0%"


def test_empty_charts_say_so_in_the_language() -> None:
    for lang in SHIPPED:
        t = CATALOG.texts(lang)
        decode(progress_chart("p", t=t, total=0, resolved=0, escalated=0, labels={}))
        decode(bar_chart_png(t("chart.labels_title"), {}, t=t))
    # The empty state is words from the catalog, so two languages draw different pictures.
    empty = [bar_chart_png("t", {}, t=CATALOG.texts(lang)) for lang in ("en", "uk")]
    assert empty[0] != empty[1]


def test_bar_and_heatmap_values_follow_the_language() -> None:
    values = {"a": 0.25, "b": 0.5}
    assert bar_chart_png("t", values, t=EN) != bar_chart_png("t", values, t=ES)  # 25% / 25 %
    matrix = [[0.5, 0.25], [0.25, 0.75]]
    shown = [heatmap_png("k", matrix, ["a", "b"], ["a", "b"], t=t) for t in (EN, RU)]
    assert shown[0] != shown[1]  # 0.50 / 0,50


@pytest.fixture
def fresh_fonts(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """load_font looks for fonts again, and warns again, in this test (and after it)."""
    monkeypatch.setattr(media, "_warned", set())
    load_font.cache_clear()
    yield
    load_font.cache_clear()


def test_covers_tells_a_glyph_from_a_box() -> None:
    pillows = ImageFont.load_default(size=20)  # Pillow's own font: ASCII only
    assert covers(pillows, "Labels 42%")
    assert not covers(pillows, "é")
    assert not covers(pillows, "Метки")


def test_the_chart_font_draws_every_shipped_language(fresh_fonts: None) -> None:
    # Every word a chart can show, in every language, plus Babel's spaces and signs.
    font = load_font(20)
    for lang in SHIPPED:
        t = CATALOG.texts(lang)
        table = CATALOG.tables[lang]
        words = [v for k, v in table.items() if k.startswith(("chart.", "verdict."))]
        words = [w for v in words for w in (v.values() if isinstance(v, dict) else [v])]
        words += [_pct(t, 1, 3), t.number(12345.5, 1), t.compact(12000)]
        missing = [w for w in words if not covers(font, w)]
        assert missing == [], (lang, missing)


def test_without_a_wide_font_the_operator_is_told(
    fresh_fonts: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = ImageFont.truetype

    def no_such_font(font: object, *args: object, **kwargs: object) -> ImageFont.FreeTypeFont:
        if isinstance(font, str):  # a font file by name: none installed
            raise OSError("cannot open resource")
        return real(font, *args, **kwargs)  # type: ignore[arg-type]  # Pillow's own, in memory

    monkeypatch.setattr(ImageFont, "truetype", no_such_font)
    with caplog.at_level(logging.WARNING, logger="chatlabel.media"):
        font = load_font(20)
    assert not covers(font, "Метки")  # Pillow's fallback: boxes, as the warning says
    said = caplog.text
    assert "fonts-dejavu-core" in said and FONT_ENV in said


def test_a_font_file_can_be_named(
    fresh_fonts: None,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv(FONT_ENV, "/nowhere/NoSuchFont.ttf")
    with caplog.at_level(logging.WARNING, logger="chatlabel.media"):
        load_font(21)
    assert "/nowhere/NoSuchFont.ttf" in caplog.text  # a wrong path is said, not ignored
    seen: list[str] = []
    real = ImageFont.truetype

    def spy(font: str, *args: object, **kwargs: object) -> ImageFont.FreeTypeFont:
        seen.append(font)
        return real(font, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ImageFont, "truetype", spy)
    load_font.cache_clear()
    load_font(22)
    assert seen[0] == "/nowhere/NoSuchFont.ttf"  # the named font is tried first


@pytest.fixture
def cuts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every text a chart had to cut with an ellipsis to make it fit."""
    seen: list[str] = []

    def spy(draw: ImageDraw.ImageDraw, text: str, font: object, max_w: float) -> str:
        shown = fit_text(draw, text, font, max_w)  # type: ignore[arg-type]
        if shown != text:
            seen.append(text)
        return shown

    monkeypatch.setattr(charts, "fit_text", spy)
    return seen


@pytest.mark.parametrize("lang", SHIPPED)
def test_no_word_of_the_catalog_is_cut_at_the_usual_size(lang: str, cuts: list[str]) -> None:
    # The size /progress sends and the report shows; only people's own long texts may be cut.
    t = CATALOG.texts(lang)
    matrix = [[5, 1, 2], [0, 4, 0], [0, 0, 4]]
    labels = ["cat", "dog", "bird"]
    progress_chart(
        "Sentiment", t=t, total=1200, resolved=640, escalated=48, pending_answers=17,
        labels=LABELS, timeline=TIMELINE,
    )  # fmt: skip
    bar_chart_png(t("chart.labels_title"), {"cat": 0.5, "dog": 0.3, "bird": 0.2}, t=t)
    gold, answered = t("chart.gold_axis"), t("chart.answered_axis")
    for title in (t("chart.all_annotators"), t("chart.kappa_title")):
        heatmap_png(title, matrix, labels, labels, t=t, row_title=gold, col_title=answered)
    assert cuts == []
