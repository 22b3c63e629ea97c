"""The HTML report: self-contained page, PNG files, the chat's numbers, the reader's language,
and the CLI command."""

from __future__ import annotations

import asyncio
import base64
import html
import io
import json
import random
import re
import string
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from chatlabel import exporter, report
from chatlabel.charts import fit_text, progress_chart
from chatlabel.cli import main
from chatlabel.config import load_config
from chatlabel.conversation import Catalog
from chatlabel.conversation.render import why_text
from chatlabel.core.suspension import Reason
from chatlabel.importer import import_file
from chatlabel.report import accuracy_chart, settled_chart, write_report
from chatlabel.service.labeling import LabelingService
from chatlabel.service.reports import Reports
from chatlabel.service.types import AnnotatorRow, Task, UserRef
from chatlabel.storage.db import Database
from tests.conftest import Clock, ServiceFactory, write_jsonl

# Service tests: on a SQLite file and on a PostgreSQL database (tests/conftest.py).
BACKENDS = ("sqlite", "postgresql")

PROJECT = {
    "name": "p",
    "title": "Pets <&> friends",
    "labels": ["cat", "dog", "bird"],
    "overlap": 3,
    "max_overlap": 3,
    "method": "dawid-skene",
    "quality": {"qualification": 0, "gold_rate": 0.0, "min_gold_accuracy": 0.6},
}
NAMES = ["Ann", "Bob", "<b>Eve & Co</b>", "Dan"]
CATALOG = Catalog()
EN, ES, RU = (CATALOG.texts(lang) for lang in ("en", "es", "ru"))
e = html.escape


def prefix(t_key: str) -> str:
    """The English text of a key up to its first placeholder."""
    return EN(t_key, **{f: "\x00" for f in _fields(t_key)}).split("\x00")[0]


def _fields(key: str) -> set[str]:
    text = CATALOG.tables["en"][key]
    forms = text.values() if isinstance(text, dict) else [text]
    return {f for form in forms for _, f, _, _ in string.Formatter().parse(form) if f}


async def _fill(svc: LabelingService, tmp_path: Path, clock: Clock | None = None) -> None:
    """A small generated project: 12 items, 4 gold, four annotators of mixed skill."""
    rng = random.Random(2)
    truth = {f"i{n}": rng.choice(["cat", "dog", "bird"]) for n in range(12)}
    gold = {f"g{n}": ["cat", "dog", "bird", "cat"][n] for n in range(4)}
    rows = [{"id": k, "text": f"item {k}"} for k in truth]
    rows += [{"id": k, "text": f"gold {k}", "gold": v} for k, v in gold.items()]
    await import_file(svc, "p", write_jsonl(tmp_path / "items.jsonl", rows))
    skill = [0.95, 0.9, 0.4, 0.8]
    users = [UserRef("t", str(n), name) for n, name in enumerate(NAMES)]
    for u in users:
        await svc.join(u)
    for item, t in list(gold.items()) + list(truth.items()):
        for u, p in zip(users, skill, strict=True):
            if clock is not None:
                clock.advance(40)
            task = await svc.lease(u, item)
            if not isinstance(task, Task):
                continue  # settled, or a suspended annotator
            label = (
                t if rng.random() < p else rng.choice([x for x in ("cat", "dog", "bird") if x != t])
            )
            await svc.answer(u, task.assignment_id, label)


async def test_report_is_self_contained_and_writes_the_same_pngs(
    service_factory: ServiceFactory, tmp_path: Path, clock: Clock
) -> None:
    svc = await service_factory([PROJECT])
    await _fill(svc, tmp_path, clock)
    written = await write_report(svc, "p", tmp_path / "out")
    page = written.html.read_text(encoding="utf-8")
    embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(embedded) == len(written.figures) >= 6
    names = {p.name for p in written.figures}
    assert {
        "progress.png",
        "settled.png",
        "labels.png",
        "accuracy.png",
        "confusion-all.png",
        "kappa.png",
    } <= names
    for data, path in zip(embedded, written.figures, strict=True):
        png = base64.b64decode(data)
        assert png == path.read_bytes()  # the page shows exactly the files written
        assert Image.open(io.BytesIO(png)).format == "PNG"
    assert not re.search(r'src="(?!data:)', page)  # nothing loaded from elsewhere
    # Names and titles are escaped, never markup.
    assert "<b>Eve" not in page and "&lt;b&gt;Eve &amp; Co&lt;/b&gt;" in page
    assert "Pets &lt;&amp;&gt; friends" in page
    assert e(prefix("report.recomputed")) in page  # "Dawid-Skene recomputed for this report."
    assert '<html lang="en">' in page  # the project sets no language: English


async def test_report_numbers_are_the_chat_numbers(
    service_factory: ServiceFactory, tmp_path: Path, clock: Clock
) -> None:
    svc = await service_factory([PROJECT])
    await _fill(svc, tmp_path, clock)
    written = await write_report(svc, "p", tmp_path / "out")
    page = written.html.read_text(encoding="utf-8")
    reports = Reports(svc)
    figures = await reports.agreement("p")
    kappa, alpha = figures["fleiss_kappa"], figures["krippendorff_alpha"]
    assert f"<td>{e(EN('report.fleiss'))}</td><td>{kappa:.3f}</td>" in page
    assert f"<td>{e(EN('report.krippendorff'))}</td><td>{alpha:.3f}</td>" in page
    p = await reports.progress("p")
    assert f"<td>{EN('report.resolved')}</td><td>{p.resolved}</td>" in page
    # The progress figure is the very chart /progress sends.
    same = progress_chart(
        p.title,
        t=EN,
        total=p.items,
        resolved=p.resolved,
        escalated=p.escalated,
        labels=p.labels,
        timeline=p.timeline,
    )
    assert (tmp_path / "out" / "progress.png").read_bytes() == same
    people = {a.key: a for a in await reports.annotators("p")}
    eve = people["t:2"]
    assert eve.gold_accuracy is not None
    assert (
        EN("annotators.accuracy_of", accuracy=EN.percent(eve.gold_accuracy), n=eve.gold_answers)
        in page
    )


# Keys whose words the report shows: its own, the charts', and the chat's it reuses.
REPORT_KEYS = ("report.", "chart.", "status.", "verdict.", "role.", "reason.", "common.")
REUSED = ("annotators.accuracy_of", "annotators.seconds")


def english_fragments(lang: str) -> set[str]:
    """The English words of every text the report can show, split at the placeholders; pieces
    the language's own text shares (a name such as Dawid-Skene) are left out."""
    out = set()
    en, other = CATALOG.tables["en"], CATALOG.tables[lang]
    for key, text in en.items():
        if not (key.startswith(REPORT_KEYS) or key in REUSED):
            continue
        theirs = " ".join(other[key].values() if isinstance(other[key], dict) else [other[key]])
        for form in text.values() if isinstance(text, dict) else [text]:
            for literal, _, _, _ in string.Formatter().parse(form):
                piece = re.sub(r"^\W+|\W+$", "", literal)
                if sum(c.isalpha() for c in piece) >= 2 and piece not in theirs:
                    out.add(piece)
    return out


def visible_text(page: str, files: list[Path]) -> str:
    """What a reader sees: no style sheet, no image data, no file names, no tags."""
    page = re.sub(r"<style>.*?</style>", " ", page, flags=re.S)
    page = re.sub(r'src="data:[^"]*"', " ", page)
    for f in files:
        page = page.replace(f"({f.name})", " ")
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


def english_left(text: str, lang: str) -> list[str]:
    return sorted(f for f in english_fragments(lang) if re.search(rf"\b{re.escape(f)}\b", text))


async def test_report_in_spanish_has_no_english_left(
    service_factory: ServiceFactory, tmp_path: Path, clock: Clock
) -> None:
    svc = await service_factory([PROJECT])
    await _fill(svc, tmp_path, clock)
    assert await svc.suspend("p", "t:3")  # Dan: a suspension and its reason to word
    english = await write_report(svc, "p", tmp_path / "en")
    spanish = await write_report(svc, "p", tmp_path / "es", language="es")
    page = spanish.html.read_text(encoding="utf-8")
    assert '<html lang="es">' in page
    assert f"<title>{e(ES('report.page_title', title=PROJECT['title']))}</title>" in page
    for key in ("report.progress", "report.annotators", "report.agreement", "report.confusion"):
        assert f"<h2>{e(ES(key))}</h2>" in page
    text = visible_text(page, spanish.figures)
    assert english_left(text, "es") == []
    # The check sees English where there is English (and there is a lot of it).
    en_text = visible_text(english.html.read_text(encoding="utf-8"), english.figures)
    assert len(english_left(en_text, "es")) > 30
    # Numbers, shares and the date the Spanish way.
    reports = Reports(svc)
    kappa = (await reports.agreement("p"))["fleiss_kappa"]
    assert f"<td>{ES('report.fleiss')}</td><td>{ES.decimal(kappa)}</td>" in page
    assert "," in ES.decimal(kappa) and f"{kappa:.3f}" not in page
    eve = {a.key: a for a in await reports.annotators("p")}["t:2"]
    share = ES.percent(eve.gold_accuracy)
    assert (
        share.endswith("\xa0%")
        and ES("annotators.accuracy_of", accuracy=share, n=eve.gold_answers) in page
    )
    dan = {a.key: a for a in await reports.annotators("p")}["t:3"]
    assert dan.reason is not None
    said = f"<span class=sus>{e(ES('status.suspended'))}</span> <span class=muted>"
    assert said + e(why_text(ES, dan.reason)) in page  # why, in Spanish, with its figures
    assert e(ES.when(datetime.fromtimestamp(clock()))) in page
    # The figures are drawn in Spanish too: same files, other pictures.
    assert [f.name for f in spanish.figures] == [f.name for f in english.figures]
    for es_png, en_png in zip(spanish.figures, english.figures, strict=True):
        assert es_png.read_bytes() != en_png.read_bytes(), es_png.name


async def test_report_follows_the_project_language(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    svc = await service_factory(
        [{**PROJECT, "language": "uk", "translations": {"uk": {"title": "Тварини"}}}]
    )
    page = (await write_report(svc, "p", tmp_path / "uk")).html.read_text(encoding="utf-8")
    uk = CATALOG.texts("uk")
    assert '<html lang="uk">' in page and "<h1>Тварини</h1>" in page
    assert f"<h2>{e(uk('report.progress'))}</h2>" in page
    # Asked for, another language wins over the project's.
    page = (await write_report(svc, "p", tmp_path / "pt", "pt")).html.read_text(encoding="utf-8")
    assert '<html lang="pt">' in page and "<h1>Pets &lt;&amp;&gt; friends</h1>" in page


def test_report_charts_in_russian_fit(service_rows: list[AnnotatorRow]) -> None:
    times = [1_800_000_000.0 + 3600 * i for i in range(40)]
    for draw in (
        lambda t: accuracy_chart(service_rows, 0.7, t=t),
        lambda t: settled_chart(
            t("chart.settled_title", title="Очень длинное название проекта " * 3), times, 1234, t=t
        ),
    ):
        en, ru = (Image.open(io.BytesIO(draw(t))).convert("RGB") for t in (EN, RU))
        assert en.size == ru.size and en.width == 900
        assert np.asarray(en).tobytes() != np.asarray(ru).tobytes()
        # Nothing runs off the right edge, however long the Russian words.
        assert not (np.asarray(ru)[:, -10:] != 255).any()


@pytest.mark.parametrize("lang", CATALOG.languages)
def test_no_word_of_the_catalog_is_cut_in_the_report_charts(
    lang: str, service_rows: list[AnnotatorRow], monkeypatch: pytest.MonkeyPatch
) -> None:
    cut: list[str] = []

    def spy(draw: Any, text: str, font: Any, max_w: float) -> str:
        shown = fit_text(draw, text, font, max_w)
        if shown != text:
            cut.append(text)
        return shown

    monkeypatch.setattr(report, "fit_text", spy)
    t = CATALOG.texts(lang)
    short = [replace(r, name=r.name[:12]) for r in service_rows]
    accuracy_chart(short, 0.7, t=t)
    accuracy_chart([], 0.7, t=t)
    times = [1_800_000_000.0 + 86400 * i for i in range(9)]
    settled_chart(t("chart.settled_title", title="Pets"), times, 12, t=t)
    settled_chart(t("chart.settled_title", title="Pets"), [], 12, t=t)
    assert cut == []


async def test_report_of_an_empty_project(service_factory: ServiceFactory, tmp_path: Path) -> None:
    svc = await service_factory([PROJECT])
    written = await write_report(svc, "p", tmp_path / "empty")
    assert written.html.exists()
    assert {p.name for p in written.figures} == {
        "progress.png",
        "settled.png",
        "labels.png",
        "accuracy.png",
    }
    for path in written.figures:
        Image.open(path).verify()


def test_charts_drawn_here_have_a_sane_size() -> None:
    im = Image.open(io.BytesIO(settled_chart("t", [1.0, 2.0, 5.0], 10, t=EN)))
    assert im.size == (900, 420)
    assert Image.open(io.BytesIO(accuracy_chart([], 0.7, t=EN))).size[0] == 900


def test_cli_report_command(tmp_path: Path) -> None:
    cfg_path = tmp_path / "chatlabel.toml"
    cfg_path.write_text(
        '[storage]\ndatabase = "chatlabel.db"\n\n[[project]]\nname = "p"\n'
        'labels = ["cat", "dog", "bird"]\nmethod = "dawid-skene"\nlanguage = "uk"\n\n'
        "[project.quality]\nqualification = 0\ngold_rate = 0.0\n",
        encoding="utf-8",
    )

    async def build() -> None:
        cfg = load_config(cfg_path)
        db = await Database(cfg.database_path()).open()
        try:
            svc = LabelingService(db, cfg)
            await svc.start()
            await _fill(svc, tmp_path)
        finally:
            await db.close()

    asyncio.run(build())
    out = tmp_path / "rep"
    result = CliRunner().invoke(main, ["report", str(cfg_path), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "report.html").exists() and (out / "accuracy.png").exists()
    assert "report.html" in result.output
    bad = CliRunner().invoke(main, ["report", str(cfg_path), "--project", "nope"])
    assert bad.exit_code != 0 and "no project named 'nope'" in bad.output
    # The project's language by default; --language picks another shipped one.
    assert '<html lang="uk">' in (out / "report.html").read_text(encoding="utf-8")
    for asked, lang in (("es", "es"), ("pt-BR", "pt"), ("RU", "ru")):
        done = CliRunner().invoke(
            main, ["report", str(cfg_path), "-o", str(out), "--language", asked]
        )
        assert done.exit_code == 0, done.output
        assert f'<html lang="{lang}">' in (out / "report.html").read_text(encoding="utf-8")
    for unknown in ("xx", "de", "english", "es-garbage!"):
        never = tmp_path / "never"
        args = ["report", str(cfg_path), "-o", str(never), "--language", unknown]
        refused = CliRunner().invoke(main, args)
        assert refused.exit_code != 0, unknown
        assert "en, es, pt, ru, uk" in refused.output and repr(unknown) in refused.output
        assert not never.exists()  # refused before anything was written


@pytest.fixture
def service_rows() -> list[AnnotatorRow]:
    """Annotators for the accuracy chart: long names, one suspended."""

    def row(key: str, name: str, acc: float, status: str = "active") -> AnnotatorRow:
        return AnnotatorRow(
            key=key, name=name, role="annotator", status=status, answers=40, skips=1,
            gold_answers=12, gold_accuracy=acc, accuracy_low=acc - 0.2,
            accuracy_high=min(1.0, acc + 0.1), median_seconds=4.5,
            reason=Reason("gold", {"min": 0.7}) if status == "suspended" else None,
        )  # fmt: skip

    return [
        row("t:1", "Александра Константиновна Рождественская", 0.92),
        row("t:2", "Bob", 0.5, "suspended"),
    ]


async def test_the_model_is_a_row_of_the_report_and_the_annotators_export(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    """Imported suggestions scored on gold: the model's accuracy with its interval shows in the
    report's annotator table and in the annotators export, as a person's would."""
    svc = await service_factory(
        [{**PROJECT, "model": {"kind": "import", "auto_threshold": 0.9, "audit_rate": 0.0}}]
    )
    gold = [("cat", "cat"), ("dog", "dog"), ("bird", "bird"), ("cat", "dog")]
    rows = [
        {"id": f"g{n}", "text": f"gold {n}", "gold": truth, "suggestion": said,
         "suggestion_score": 0.95, "model_version": "rules-7"}
        for n, (truth, said) in enumerate(gold)
    ]  # fmt: skip
    rows.append({"id": "i1", "text": "an item", "suggestion": "cat", "suggestion_score": 0.5})
    await import_file(svc, "p", write_jsonl(tmp_path / "items.jsonl", rows))
    state = await svc.model_state("p")
    assert state is not None and (state.right, state.scored, state.version) == (3, 4, "rules-7")

    written = await write_report(svc, "p", tmp_path / "out")
    page = written.html.read_text(encoding="utf-8")
    row = next(r for r in page.split("<tr>") if "rules-7" in r)
    of = EN("annotators.accuracy_of", accuracy=EN.percent(0.75), n=4)
    assert e(of) in row and e(f"({EN('role.model')})") in row

    out = io.StringIO()
    await exporter.write(svc, "p", "annotators", "jsonl", out)
    model = json.loads(out.getvalue().splitlines()[0])
    assert (model["id"], model["name"], model["role"]) == ("model:import", "rules-7", "model")
    assert (model["gold_answers"], model["gold_accuracy"]) == (4, 0.75)
    assert 0 < model["accuracy_low"] < 0.75 < model["accuracy_high"] < 1
    assert model["status"] == "active" and model["reason"] is None
