"""The coordinators' report: one self-contained HTML file, and the same figures as PNG files."""

from __future__ import annotations

import asyncio
import base64
import html
import io
import math
import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from PIL import Image, ImageDraw

from .charts import (
    ESCALATED_COLOUR,
    REMAINING_COLOUR,
    RESOLVED_COLOUR,
    bar_chart_png,
    heatmap_png,
    progress_png,
)
from .conversation import Catalog
from .conversation.render import reason_text
from .media import load_font
from .service import quality
from .service.labeling import LabelingService
from .service.reports import Reports
from .service.types import AnnotatorRow, Disagreement, Progress

MAX_CONFUSIONS = 12  # per-annotator confusion matrices drawn, most gold answers first
MAX_KAPPA = 20  # annotators in the pairwise kappa heatmap, most answers first
MIN_SHARED = 5  # items two annotators must share for their Cohen's kappa to be shown
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
    title: str
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
        title=service.projects[project].title,
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
    )


def figures(d: ReportData) -> list[Figure]:
    """The report's charts, in the order the HTML shows them."""
    p = d.progress
    out = [
        Figure(
            "progress.png",
            "Progress, label distribution and answers over time (the chart /progress sends).",
            progress_png(p),
        )
    ]
    out.append(
        Figure(
            "settled.png",
            "Items settled (resolved or escalated) over time.",
            settled_chart(f"Items settled — {p.title}", d.settled, p.items),
        )
    )
    total = sum(p.labels.values())
    shares = {k: v / total for k, v in p.labels.items()} if total else {}
    out.append(
        Figure(
            "labels.png",
            f"Label distribution over {total} resolved items.",
            bar_chart_png("Label distribution", shares),
        )
    )
    scored = [a for a in d.annotators if a.gold_answers]
    out.append(
        Figure(
            "accuracy.png",
            "Gold accuracy per annotator with its 95% interval; "
            f"the dashed line is the {d.min_gold_accuracy:.0%} minimum, orange marks "
            "suspended annotators.",
            accuracy_chart(scored, d.min_gold_accuracy),
        )
    )
    pooled = _pool(list(d.confusions.values()))
    if pooled is not None and pooled.total:
        out.append(
            Figure(
                "confusion-all.png",
                f"All annotators against gold: {pooled.correct} "
                f"of {pooled.total} right; rows are the gold label, columns the answer.",
                _heatmap("All annotators", pooled),
            )
        )
    names = _names(d)
    ranked = sorted(d.confusions.items(), key=lambda kv: (-kv[1].total, kv[0]))
    for key, conf in ranked[:MAX_CONFUSIONS]:
        out.append(
            Figure(
                f"confusion-{_slug(key)}.png",
                f"{names[key]} against gold: {conf.correct} of {conf.total} right.",
                _heatmap(names[key], conf),
            )
        )
    kappa = _kappa_matrix(d)
    if kappa is not None:
        keys, matrix = kappa
        shown = [names[k] for k in keys]
        out.append(
            Figure(
                "kappa.png",
                f"Cohen's kappa for annotator pairs sharing at least "
                f"{MIN_SHARED} items (– where they share fewer).",
                heatmap_png("Pairwise Cohen's kappa", matrix, shown, shown, fmt="{:.2f}"),
            )
        )
    return out


async def write_report(service: LabelingService, project: str, out_dir: Path | str) -> Written:
    """Write report.html (figures embedded) and each figure as a PNG file into `out_dir`."""
    data = await gather(service, project)
    # Drawing and writing take a while on a big project; keep them off the event loop.
    return await asyncio.to_thread(_write, Path(out_dir), data)


def _write(out: Path, data: ReportData) -> Written:
    out.mkdir(parents=True, exist_ok=True)
    figs = figures(data)
    paths = [_atomic_write(out / f.name, f.png) for f in figs]
    page = _atomic_write(out / "report.html", render_html(data, figs).encode("utf-8"))
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


def _fmt(x: float | int | None, spec: str = "{:.3f}") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return spec.format(x)


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


def render_html(d: ReportData, figs: list[Figure]) -> str:
    """The report page; every value from the data is escaped, every figure embedded."""
    e = html.escape
    p = d.progress
    by_name = {f.name: f for f in figs}
    eta = "n/a" if p.eta_seconds is None else f"{p.eta_seconds / 3600:.1f} h"
    summary = _table(
        ["", ""],
        [
            [e(k), e(v)]
            for k, v in [
                ("items", f"{p.items} (+ {p.gold_items} gold)"),
                ("resolved", str(p.resolved)),
                ("escalated", str(p.escalated)),
                ("open", str(p.pending)),
                ("answers", str(p.answers)),
                ("answers in the last hour", str(p.answers_last_hour)),
                ("ETA", eta),
                ("annotators", f"{p.annotators_active} active today of {p.annotators_total}"),
                ("suspended", str(p.suspended)),
                ("verdict method", d.method),
            ]
        ],
    )
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        '<meta name=viewport content="width=device-width,initial-scale=1">',
        f"<title>{e(d.title)} — chatlabel report</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(d.title)}</h1><p class=muted>Project <code>{e(d.project)}</code> · "
        f"{e(d.kind)} · generated {d.generated:%Y-%m-%d %H:%M}</p>",
        "<h2>Progress</h2>",
        summary,
        _img(by_name["progress.png"]),
        _img(by_name["settled.png"]),
        _img(by_name["labels.png"]),
    ]
    if d.recompute is not None and d.recompute.ran:
        r = d.recompute
        parts.append(
            f"<p>Dawid-Skene recomputed for this report: {r.items} items, {r.answers} answers, "
            f"{r.anchors} anchored by gold or experts, {r.written} verdicts written "
            f"({r.changed} changed label), {r.iterations} iterations"
            f"{'' if r.converged else ' (not converged)'}.</p>"
        )
    parts += ["<h2>Annotators</h2>", _annotator_table(d), _img(by_name["accuracy.png"])]
    confusions = [f for f in figs if f.name.startswith("confusion-")]
    if confusions:
        parts.append("<h2>Confusion against gold</h2><div class=grid>")
        parts += [_img(f) for f in confusions]
        parts.append("</div>")
    a = d.agreement
    parts += [
        "<h2>Agreement</h2>",
        _table(
            ["measure", "value"],
            [
                ["Fleiss' kappa", _fmt(a.get("fleiss_kappa"))],
                ["Krippendorff's alpha", _fmt(a.get("krippendorff_alpha"))],
                ["items with 2+ answers", _fmt(a.get("items"), "{}")],
                ["answers", _fmt(a.get("answers"), "{}")],
            ],
        ),
    ]
    if d.kappas:
        names = _names(d)
        rows = sorted(d.kappas.items(), key=lambda kv: (-kv[1][1], kv[0]))[:30]
        parts.append(
            _table(
                ["pair", "Cohen's kappa", "shared items"],
                [
                    [e(f"{names.get(x, x)} · {names.get(y, y)}"), _fmt(k), str(n)]
                    for (x, y), (k, n) in rows
                ],
            )
        )
    if "kappa.png" in by_name:
        parts.append(_img(by_name["kappa.png"]))
    if d.disagreements:
        parts += [
            "<h2>Disagreements</h2>",
            _table(
                ["item", "status", "votes", "confidence"],
                [
                    [
                        e(x.item_id),
                        e(x.status),
                        e(
                            ", ".join(
                                f"{k}: {v:g}"
                                for k, v in sorted(x.votes.items(), key=lambda kv: -kv[1])
                            )
                        ),
                        _fmt(x.confidence, "{:.2f}"),
                    ]
                    for x in d.disagreements
                ],
            ),
        ]
    parts.append("</body></html>")
    return "\n".join(parts)


def _annotator_table(d: ReportData) -> str:
    e = html.escape
    rows = []
    for a in d.annotators:
        acc = "n/a"
        if a.gold_accuracy is not None:
            acc = (
                f"{a.gold_accuracy:.0%} of {a.gold_answers} "
                f"({_fmt(a.accuracy_low, '{:.0%}')}–{_fmt(a.accuracy_high, '{:.0%}')})"
            )
        share, n = d.with_verdict.get(a.key, (None, 0))
        agree = "n/a" if share is None else f"{share:.0%} of {n}"
        status = e(a.status) if a.status == "active" else f"<span class=sus>{e(a.status)}</span>"
        if a.reason:
            status += f" <span class=muted>{e(reason_text(Catalog().texts('en'), a.reason))}</span>"
        rows.append(
            [
                e(a.name or a.key),
                str(a.answers),
                str(a.skips),
                acc,
                agree,
                _fmt(a.median_seconds, "{:.1f} s"),
                status,
            ]
        )
    return _table(
        [
            "annotator",
            "answers",
            "skips",
            "gold accuracy (95% interval)",
            "agrees with verdict",
            "median time",
            "status",
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


def _heatmap(title: str, c: quality.Confusion) -> bytes:
    return heatmap_png(title, c.counts, c.labels, c.labels, row_title="gold", col_title="answered")


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


def accuracy_chart(rows: list[AnnotatorRow], threshold: float, width: int = 900) -> bytes:
    """PNG: one line per annotator, a dot at their gold accuracy and a bar for its interval."""
    title_f, body_f, small_f = load_font(30, bold=True), load_font(20), load_font(17)
    row_h, top, margin = 34, 80, 30
    rows = sorted(rows, key=lambda a: (-(a.gold_accuracy or 0.0), -a.gold_answers, a.key))
    height = top + max(1, len(rows)) * row_h + 60
    im = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(im)
    draw.text((margin, margin - 8), "Gold accuracy per annotator", font=title_f, fill=_INK)
    if not rows:
        draw.text((margin, top), "no gold answers yet", font=body_f, fill=_MUTED)
        return _png(im)
    widest = max(draw.textlength(a.name or a.key, font=body_f) for a in rows)
    name_w = int(min(260, widest)) + 20
    x0, x1 = margin + name_w, width - margin - 90
    bottom = top + len(rows) * row_h

    def x(v: float) -> float:
        return x0 + (x1 - x0) * min(1.0, max(0.0, v))

    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        draw.line((x(tick), top - 6, x(tick), bottom), fill=_GRID)
        draw.text((x(tick), bottom + 6), f"{tick:.0%}", font=small_f, fill=_MUTED, anchor="mt")
    for y in range(top - 6, bottom, 10):  # dashed: the suspension threshold
        draw.line((x(threshold), y, x(threshold), min(y + 5, bottom)), fill=ESCALATED_COLOUR)
    for i, a in enumerate(rows):
        cy = top + i * row_h + row_h // 2
        colour = ESCALATED_COLOUR if a.status == "suspended" else RESOLVED_COLOUR
        label = a.name or a.key
        while draw.textlength(label, font=body_f) > name_w - 20 and len(label) > 2:
            label = label[:-2] + "…"
        draw.text((x0 - 10, cy), label, font=body_f, fill=_INK, anchor="rm")
        lo, hi = a.accuracy_low or 0.0, a.accuracy_high or 1.0
        draw.line((x(lo), cy, x(hi), cy), fill=colour, width=4)
        for end in (lo, hi):
            draw.line((x(end), cy - 7, x(end), cy + 7), fill=colour, width=2)
        v = a.gold_accuracy or 0.0
        draw.ellipse((x(v) - 7, cy - 7, x(v) + 7, cy + 7), fill=colour, outline=(255, 255, 255))
        right = round(v * a.gold_answers)
        draw.text(
            (x1 + 14, cy), f"{right}/{a.gold_answers}", font=small_f, fill=_MUTED, anchor="lm"
        )
    return _png(im)


def settled_chart(
    title: str, times: list[float], total: int, width: int = 900, height: int = 420
) -> bytes:
    """PNG: cumulative items settled over time, against the number of items."""
    title_f, small_f = load_font(30, bold=True), load_font(17)
    im = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(im)
    margin = 30
    draw.text((margin, margin - 8), title, font=title_f, fill=_INK)
    if not times:
        draw.text((margin, 90), "nothing settled yet", font=small_f, fill=_MUTED)
        return _png(im)
    ymax = max(total, len(times), 1)
    left, right, top, bottom = margin + 60, width - margin, 80, height - margin - 30
    t0, t1 = times[0], times[-1]
    span = (t1 - t0) or 1.0

    def xy(t: float, n: float) -> tuple[float, float]:
        return left + (right - left) * (t - t0) / span, bottom - (bottom - top) * n / ymax

    for frac in (0.0, 0.5, 1.0):
        y = bottom - (bottom - top) * frac
        draw.line((left, y, right, y), fill=_GRID)
        draw.text((left - 8, y), f"{round(ymax * frac):,}", font=small_f, fill=_MUTED, anchor="rm")
    # A step line: the count only moves when an item settles.
    points = [xy(t0, 0)]
    for n, t in enumerate(times, start=1):
        points += [xy(t, n - 1), xy(t, n)]
    points.append(xy(t1, len(times)))
    draw.polygon([(points[0][0], bottom), *points, (points[-1][0], bottom)], fill=REMAINING_COLOUR)
    draw.line(points, fill=RESOLVED_COLOUR, width=3)
    fmt = "%H:%M" if span <= 12 * 3600 else "%d %b %H:%M"
    for t, anchor in ((t0, "lt"), (t1, "rt")):
        stamp = datetime.fromtimestamp(t).strftime(fmt)  # local time, as the progress chart
        draw.text((xy(t, 0)[0], bottom + 8), stamp, font=small_f, fill=_MUTED, anchor=anchor)
    draw.text(
        (right, top - 4),
        f"{len(times):,} of {total:,} settled",
        font=small_f,
        fill=_INK,
        anchor="rb",
    )
    return _png(im)
