"""The coordinators' report: one self-contained HTML file, and the same figures as PNG files.

Written in one language (the project's, or the one asked for): headings, captions and chart
words come from the catalog's [report] and [chart] sections, numbers and dates from Babel.
"""

from __future__ import annotations

import asyncio
import base64
import html
import io
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from .charts import (
    ESCALATED_COLOUR,
    REMAINING_COLOUR,
    RESOLVED_COLOUR,
    bar_chart_png,
    fit_text,
    heatmap_png,
    progress_png,
)
from .conversation import Catalog
from .conversation.catalog import Texts
from .conversation.render import cut, reason_text
from .media import load_font
from .service import quality
from .service.labeling import LabelingService
from .service.reports import Reports
from .service.types import AnnotatorRow, Disagreement, Progress, ProjectInfo
from .service.volunteer_types import ReportedItem

MAX_CONFUSIONS = 12  # per-annotator confusion matrices drawn, most gold answers first
MAX_KAPPA = 20  # annotators in the pairwise kappa heatmap, most answers first
MIN_SHARED = 5  # items two annotators must share for their Cohen's kappa to be shown
INTERVAL = 0.95  # the confidence level of the accuracy intervals (core.gold's Wilson interval)
_INK, _MUTED, _GRID = (34, 34, 34), (110, 110, 110), (225, 225, 225)


@dataclass(frozen=True)
class Figure:
    """One chart: file name, caption, PNG bytes."""

    name: str
    caption: str
    png: bytes


@dataclass(frozen=True)
class ReportData:
    """Everything the report shows, read from the service in one go."""

    project: str
    info: ProjectInfo  # the title in each language
    kind: str
    method: str
    generated: datetime
    min_gold_accuracy: float
    progress: Progress
    annotators: list[AnnotatorRow]
    agreement: dict[str, float | int]
    with_verdict: dict[str, tuple[float, int]]
    kappas: dict[tuple[str, str], tuple[float, int]]
    confusions: dict[str, quality.Confusion]
    settled: list[float]
    disagreements: list[Disagreement]
    recompute: quality.RecomputeSummary | None
    reported: list[ReportedItem] = field(default_factory=list)


@dataclass(frozen=True)
class Written:
    """Where a report went."""

    html: Path
    figures: list[Path]


async def gather(service: LabelingService, project: str) -> ReportData:
    """Read the report's figures; dawid-skene projects are recomputed first (on demand)."""
    rules = service.rules[project]
    summary = None
    if rules.method == quality.DS_METHOD:
        summary = await quality.recompute(service, project)
    reports = Reports(service)
    return ReportData(
        project=project,
        info=service.info(project),
        kind=rules.kind,
        method=rules.method,
        generated=datetime.fromtimestamp(service.clock()),
        min_gold_accuracy=rules.min_gold_accuracy,
        # The same calls /progress and /agreement make, so the numbers match the chat.
        progress=await reports.progress(project),
        annotators=await reports.annotators(project, limit=1_000_000),
        agreement=await reports.agreement(project),
        with_verdict=await quality.agreement_with_verdicts(service, project),
        kappas=await quality.pairwise_kappa(service, project, min_shared=MIN_SHARED),
        confusions=await quality.confusions(service, project),
        settled=await reports.settled_times(project),
        disagreements=await reports.disagreements(project, limit=15),
        recompute=summary,
        reported=await reports.reported(project),
    )


def figures(d: ReportData, t: Texts) -> list[Figure]:
    """The report's charts in `t`'s language, in the order the HTML shows them."""
    p = d.progress
    title = d.info.title_in(t.lang)
    out = [
        Figure(
            "progress.png",
            t("report.caption_progress", command="/progress"),
            progress_png(p, t, title),
        )
    ]
    out.append(
        Figure(
            "settled.png",
            t("report.caption_settled"),
            settled_chart(t("chart.settled_title", title=title), d.settled, p.items, t=t),
        )
    )
    total = sum(p.labels.values())
    shares = {k: v / total for k, v in p.labels.items()} if total else {}
    out.append(
        Figure(
            "labels.png",
            t("report.caption_labels", n=p.resolved),
            bar_chart_png(t("chart.labels_title"), shares, t=t),
        )
    )
    scored = [a for a in d.annotators if a.gold_answers]
    out.append(
        Figure(
            "accuracy.png",
            t(
                "report.caption_accuracy",
                level=t.percent(INTERVAL),
                min=t.percent(d.min_gold_accuracy),
            ),
            accuracy_chart(scored, d.min_gold_accuracy, t=t),
        )
    )
    pooled = _pool(list(d.confusions.values()))
    if pooled is not None and pooled.total:
        out.append(
            Figure(
                "confusion-all.png",
                t("report.caption_confusion_all", correct=pooled.correct, n=pooled.total),
                _heatmap(t("chart.all_annotators"), pooled, t),
            )
        )
    names = _names(d)
    ranked = sorted(d.confusions.items(), key=lambda kv: (-kv[1].total, kv[0]))
    for key, conf in ranked[:MAX_CONFUSIONS]:
        out.append(
            Figure(
                f"confusion-{_slug(key)}.png",
                t("report.caption_confusion", name=names[key], correct=conf.correct, n=conf.total),
                _heatmap(names[key], conf, t),
            )
        )
    kappa = _kappa_matrix(d)
    if kappa is not None:
        keys, matrix = kappa
        shown = [names[k] for k in keys]
        out.append(
            Figure(
                "kappa.png",
                t("report.caption_kappa", n=MIN_SHARED),
                heatmap_png(
                    t("chart.kappa_title"),
                    matrix,
                    shown,
                    shown,
                    t=t,
                    fmt=lambda v: t.decimal(v, 2),
                ),
            )
        )
    return out


async def write_report(
    service: LabelingService, project: str, out_dir: Path | str, language: str | None = None
) -> Written:
    """Write report.html (figures embedded) and each figure as a PNG file into `out_dir`.

    `language`: a shipped language code; default the project's configured language, else English.
    """
    data = await gather(service, project)
    t = Catalog().texts(language or data.info.language)
    # Drawing and writing take a while on a big project; keep them off the event loop.
    return await asyncio.to_thread(_write, Path(out_dir), data, t)


def _write(out: Path, data: ReportData, t: Texts) -> Written:
    out.mkdir(parents=True, exist_ok=True)
    figs = figures(data, t)
    paths = [_atomic_write(out / f.name, f.png) for f in figs]
    page = _atomic_write(out / "report.html", render_html(data, figs, t).encode("utf-8"))
    return Written(page, paths)


def _atomic_write(path: Path, data: bytes) -> Path:
    # A report opened while it is rewritten should be the old one or the new one, not half.
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


# -- HTML -------------------------------------------------------------------------------------

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#222;margin:2em auto;
max-width:980px;padding:0 1em}h1{margin-bottom:.1em}h2{margin-top:2em;border-bottom:1px solid #ddd}
.muted{color:#666}table{border-collapse:collapse;margin:.6em 0}td,th{padding:.25em .7em;
border-bottom:1px solid #eee;text-align:right}td:first-child,th:first-child{text-align:left}
th{background:#f5f5f5}figure{margin:1.2em 0}img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#555;font-size:.92em}.grid{display:flex;flex-wrap:wrap;gap:1em}
.grid figure{flex:1 1 280px;max-width:460px}.sus{color:#b36b00}
"""


def _html(t: Texts, key: str, markup: Mapping[str, str] | None = None, **plain: Any) -> str:
    """A catalog text as HTML: the text and `plain` values escaped, `markup` values as they are."""
    # Markup goes in through stand-ins, so the catalog's own text is escaped like any value.
    stand_in = {name: f"\x00{i}\x00" for i, name in enumerate(markup or {})}
    text = html.escape(t(key, **plain, **stand_in))
    for name, token in stand_in.items():
        text = text.replace(token, (markup or {})[name])
    return text


def _img(f: Figure) -> str:
    data = base64.b64encode(f.png).decode("ascii")
    alt = html.escape(f.caption, quote=True)
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{alt}">'
        f"<figcaption>{html.escape(f.caption)} <span class=muted>({f.name})</span>"
        "</figcaption></figure>"
    )


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _count(t: Texts, x: float | int | None) -> str:
    """A count (or a weighted vote) in `t`'s language: whole, or with two decimals."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return t("common.not_available")
    return t.number(x, 0 if float(x).is_integer() else 2)


def render_html(d: ReportData, figs: list[Figure], t: Texts) -> str:
    """The report page in `t`'s language; every value escaped, every figure embedded."""
    e = html.escape
    p = d.progress
    by_name = {f.name: f for f in figs}
    title = d.info.title_in(t.lang)
    method = _word(t, "report.method", d.method)
    summary = _table(
        ["", ""],
        [
            [e(k), e(v)]
            for k, v in [
                (t("report.items"), t.number(p.items)),
                (t("report.gold_items"), t.number(p.gold_items)),
                (t("report.resolved"), t.number(p.resolved)),
                (t("report.escalated"), t.number(p.escalated)),
                (t("report.open"), t.number(p.pending)),
                (t("report.answers"), t.number(p.answers)),
                (t("report.last_hour"), t.number(p.answers_last_hour)),
                (t("report.eta"), t.duration(p.eta_seconds)),
                (
                    t("report.annotators"),
                    t("report.annotators_value", active=p.annotators_active, n=p.annotators_total),
                ),
                (t("report.suspended"), t.number(p.suspended)),
                (t("report.verdict_method"), method),
            ]
        ],
    )
    kind = _word(t, "report.kind", d.kind)
    subtitle = _html(
        t,
        "report.subtitle",
        {"project": f"<code>{e(d.project)}</code>"},
        kind=kind,
        when=t.when(d.generated),
    )
    parts = [
        f'<!doctype html><html lang="{e(t.lang)}"><head><meta charset=utf-8>',
        '<meta name=viewport content="width=device-width,initial-scale=1">',
        f"<title>{e(t('report.page_title', title=title))}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{e(title)}</h1><p class=muted>{subtitle}</p>",
        f"<h2>{e(t('report.progress'))}</h2>",
        summary,
        _img(by_name["progress.png"]),
        _img(by_name["settled.png"]),
        _img(by_name["labels.png"]),
    ]
    if d.recompute is not None and d.recompute.ran:
        r = d.recompute
        said = t(
            "report.recomputed",
            items=r.items,
            answers=r.answers,
            anchors=r.anchors,
            written=r.written,
            changed=r.changed,
            iterations=r.iterations,
        )
        if not r.converged:
            said += " " + t("report.not_converged")
        parts.append(f"<p>{e(said)}</p>")
    parts += [
        f"<h2>{e(t('report.annotators'))}</h2>",
        _annotator_table(d, t),
        _img(by_name["accuracy.png"]),
    ]
    confusions = [f for f in figs if f.name.startswith("confusion-")]
    if confusions:
        parts.append(f"<h2>{e(t('report.confusion'))}</h2><div class=grid>")
        parts += [_img(f) for f in confusions]
        parts.append("</div>")
    a = d.agreement
    parts += [
        f"<h2>{e(t('report.agreement'))}</h2>",
        _table(
            [t("report.measure"), t("report.value")],
            [
                [e(t("report.fleiss")), e(t.decimal(a.get("fleiss_kappa")))],
                [e(t("report.krippendorff")), e(t.decimal(a.get("krippendorff_alpha")))],
                [e(t("report.items_multi")), e(_count(t, a.get("items")))],
                [e(t("report.answers")), e(_count(t, a.get("answers")))],
            ],
        ),
    ]
    if d.kappas:
        names = _names(d)
        rows = sorted(d.kappas.items(), key=lambda kv: (-kv[1][1], kv[0]))[:30]
        parts.append(
            _table(
                [t("report.pair"), t("report.cohen"), t("report.shared")],
                [
                    [e(f"{names.get(x, x)} · {names.get(y, y)}"), e(t.decimal(k)), e(t.number(n))]
                    for (x, y), (k, n) in rows
                ],
            )
        )
    if "kappa.png" in by_name:
        parts.append(_img(by_name["kappa.png"]))
    if d.disagreements:
        parts += [
            f"<h2>{e(t('report.disagreements'))}</h2>",
            _table(
                [t("report.item"), t("report.status"), t("report.votes"), t("report.confidence")],
                [
                    [
                        e(x.item_id),
                        e(_word(t, "verdict", x.status)),
                        e(
                            t.join(
                                f"{k}: {_count(t, v)}"
                                for k, v in sorted(x.votes.items(), key=lambda kv: -kv[1])
                            )
                        ),
                        e(t.decimal(x.confidence, 2)),
                    ]
                    for x in d.disagreements
                ],
            ),
        ]
    if d.reported:
        parts += [f"<h2>{e(t('report.reported'))}</h2>", _reported_table(d.reported, t)]
    parts.append("</body></html>")
    return "\n".join(parts)


def _reported_table(rows: list[ReportedItem], t: Texts) -> str:
    """Items people reported: what they are, why, and what a coordinator decided."""
    e = html.escape
    decided = {None: "report.decision_open", "restored": "report.decision_restored"}
    return _table(
        [t("report.item"), t("report.status"), t("report.reports"), t("report.reasons"),
         t("report.decision")],
        [
            [
                f"{e(r.item_id)} <span class=muted>{e(cut(r.text or '', 80))}</span>",
                e(_word(t, "verdict", r.status)),
                e(t.number(r.reports)),
                e(t.join(_word(t, "problem", x) for x in r.reasons if x)),
                e(t(decided.get(r.decision, "report.decision_removed"))),
            ]
            for r in rows
        ],
    )  # fmt: skip


def _word(t: Texts, section: str, value: str) -> str:
    """A status, role or verdict in `t`'s language (the stored value if the catalog has none)."""
    try:
        return t(f"{section}.{value}")
    except KeyError:
        return value


def _annotator_table(d: ReportData, t: Texts) -> str:
    e = html.escape
    rows = []
    for a in d.annotators:
        acc = t("common.not_available")
        if a.gold_accuracy is not None:
            of = t("annotators.accuracy_of", accuracy=t.percent(a.gold_accuracy), n=a.gold_answers)
            acc = f"{of} ({t.percent(a.accuracy_low)}–{t.percent(a.accuracy_high)})"
        share, n = d.with_verdict.get(a.key, (None, 0))
        agree = (
            t("common.not_available")
            if share is None
            else t("annotators.accuracy_of", accuracy=t.percent(share), n=n)
        )
        word = _word(t, "status", a.status)
        if a.role != "annotator":
            word += f" ({_word(t, 'role', a.role)})"
        status = e(word) if a.status == "active" else f"<span class=sus>{e(word)}</span>"
        if a.reason:
            status += f" <span class=muted>{e(reason_text(t, a.reason))}</span>"
        seconds = (
            t("common.not_available")
            if a.median_seconds is None
            else t("annotators.seconds", seconds=t.number(a.median_seconds, 1))
        )
        rows.append(
            [
                e(a.name or a.key),
                e(t.number(a.answers)),
                e(t.number(a.skips)),
                e(acc),
                e(agree),
                e(seconds),
                status,
            ]
        )
    return _table(
        [
            t("report.annotator"),
            t("report.answers"),
            t("report.skips"),
            t("report.gold_accuracy", level=t.percent(INTERVAL)),
            t("report.agrees"),
            t("report.median_time"),
            t("report.status"),
        ],
        rows,
    )


# -- figures the chart module does not draw ---------------------------------------------------


def _names(d: ReportData) -> dict[str, str]:
    """Display name per annotator key (the key itself when they have no name)."""
    names: dict[str, str] = {k: k for k in d.confusions}
    names.update({a.key: a.name or a.key for a in d.annotators})
    return names


def _slug(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", key).strip("-") or "annotator"


def _pool(confs: list[quality.Confusion]) -> quality.Confusion | None:
    """The sum of confusion matrices over the union of their labels."""
    if not confs:
        return None
    labels = list(dict.fromkeys(lab for c in confs for lab in c.labels))
    index = {lab: i for i, lab in enumerate(labels)}
    total = [[0] * len(labels) for _ in labels]
    for c in confs:
        for i, gi in enumerate(c.labels):
            for j, aj in enumerate(c.labels):
                total[index[gi]][index[aj]] += c.counts[i][j]
    return quality.Confusion(tuple(labels), tuple(tuple(r) for r in total))


def _heatmap(title: str, c: quality.Confusion, t: Texts) -> bytes:
    return heatmap_png(
        title,
        c.counts,
        c.labels,
        c.labels,
        t=t,
        row_title=t("chart.gold_axis"),
        col_title=t("chart.answered_axis"),
    )


def _kappa_matrix(d: ReportData) -> tuple[list[str], list[list[float]]] | None:
    if not d.kappas:
        return None
    paired = {k for pair in d.kappas for k in pair}
    order = [a.key for a in d.annotators if a.key in paired][:MAX_KAPPA]
    if len(order) < 2:
        return None
    matrix = [[math.nan] * len(order) for _ in order]
    for i, x in enumerate(order):
        matrix[i][i] = 1.0
        for j, y in enumerate(order):
            hit = d.kappas.get((x, y)) or d.kappas.get((y, x))
            if hit is not None:
                matrix[i][j] = hit[0]
    return order, matrix


def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def accuracy_chart(
    rows: list[AnnotatorRow], threshold: float, *, t: Texts, width: int = 900
) -> bytes:
    """PNG: one line per annotator, a dot at their gold accuracy and a bar for its interval."""
    title_f, body_f, small_f = load_font(30, bold=True), load_font(20), load_font(17)
    row_h, top, margin = 34, 80, 30
    rows = sorted(rows, key=lambda a: (-(a.gold_accuracy or 0.0), -a.gold_answers, a.key))
    height = top + max(1, len(rows)) * row_h + 60
    im = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(im)
    heading = fit_text(draw, t("chart.accuracy_title"), title_f, width - 2 * margin)
    draw.text((margin, margin - 8), heading, font=title_f, fill=_INK)
    if not rows:
        draw.text((margin, top), t("chart.no_gold"), font=body_f, fill=_MUTED)
        return _png(im)
    widest = max(draw.textlength(a.name or a.key, font=body_f) for a in rows)
    name_w = math.ceil(min(260, widest)) + 20  # ceil: the widest name must not lose a letter
    x0, x1 = margin + name_w, width - margin - 90
    bottom = top + len(rows) * row_h

    def x(v: float) -> float:
        return x0 + (x1 - x0) * min(1.0, max(0.0, v))

    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        draw.line((x(tick), top - 6, x(tick), bottom), fill=_GRID)
        draw.text((x(tick), bottom + 6), t.percent(tick), font=small_f, fill=_MUTED, anchor="mt")
    for y in range(top - 6, bottom, 10):  # dashed: the suspension threshold
        draw.line((x(threshold), y, x(threshold), min(y + 5, bottom)), fill=ESCALATED_COLOUR)
    for i, a in enumerate(rows):
        cy = top + i * row_h + row_h // 2
        colour = ESCALATED_COLOUR if a.status == "suspended" else RESOLVED_COLOUR
        label = fit_text(draw, a.name or a.key, body_f, name_w - 20)
        draw.text((x0 - 10, cy), label, font=body_f, fill=_INK, anchor="rm")
        lo, hi = a.accuracy_low or 0.0, a.accuracy_high or 1.0
        draw.line((x(lo), cy, x(hi), cy), fill=colour, width=4)
        for end in (lo, hi):
            draw.line((x(end), cy - 7, x(end), cy + 7), fill=colour, width=2)
        v = a.gold_accuracy or 0.0
        draw.ellipse((x(v) - 7, cy - 7, x(v) + 7, cy + 7), fill=colour, outline=(255, 255, 255))
        right = round(v * a.gold_answers)
        score = f"{t.number(right)}/{t.number(a.gold_answers)}"
        draw.text((x1 + 14, cy), score, font=small_f, fill=_MUTED, anchor="lm")
    return _png(im)


def settled_chart(
    title: str, times: list[float], total: int, *, t: Texts, width: int = 900, height: int = 420
) -> bytes:
    """PNG: cumulative items settled over time, against the number of items."""
    title_f, small_f = load_font(30, bold=True), load_font(17)
    im = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(im)
    margin = 30
    draw.text(
        (margin, margin - 8),
        fit_text(draw, title, title_f, width - 2 * margin),
        font=title_f,
        fill=_INK,
    )
    if not times:
        draw.text((margin, 90), t("chart.nothing_settled"), font=small_f, fill=_MUTED)
        return _png(im)
    ymax = max(total, len(times), 1)
    left, right, top, bottom = margin + 60, width - margin, 80, height - margin - 30
    t0, t1 = times[0], times[-1]
    span = (t1 - t0) or 1.0

    def xy(at: float, n: float) -> tuple[float, float]:
        return left + (right - left) * (at - t0) / span, bottom - (bottom - top) * n / ymax

    for frac in (0.0, 0.5, 1.0):
        y = bottom - (bottom - top) * frac
        draw.line((left, y, right, y), fill=_GRID)
        tick = t.number(round(ymax * frac))
        draw.text((left - 8, y), tick, font=small_f, fill=_MUTED, anchor="rm")
    # A step line: the count only moves when an item settles.
    points = [xy(t0, 0)]
    for n, at in enumerate(times, start=1):
        points += [xy(at, n - 1), xy(at, n)]
    points.append(xy(t1, len(times)))
    draw.polygon([(points[0][0], bottom), *points, (points[-1][0], bottom)], fill=REMAINING_COLOUR)
    draw.line(points, fill=RESOLVED_COLOUR, width=3)
    day = "" if span <= 12 * 3600 else "MMMd"  # within half a day the hour says it all
    for at, anchor in ((t0, "lt"), (t1, "rt")):
        stamp = t.when(datetime.fromtimestamp(at), day)  # local time, as the progress chart
        draw.text((xy(at, 0)[0], bottom + 8), stamp, font=small_f, fill=_MUTED, anchor=anchor)
    draw.text(
        (right, top - 4),
        t("chart.settled_of", settled=len(times), total=total),
        font=small_f,
        fill=_INK,
        anchor="rb",
    )
    return _png(im)
