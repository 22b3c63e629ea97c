"""The HTML report: self-contained page, PNG files, the chat's numbers, and the CLI command."""

from __future__ import annotations

import asyncio
import base64
import io
import random
import re
from pathlib import Path

from click.testing import CliRunner
from PIL import Image

from chatlabel.charts import progress_chart
from chatlabel.cli import main
from chatlabel.config import load_config
from chatlabel.importer import import_file
from chatlabel.report import accuracy_chart, settled_chart, write_report
from chatlabel.service.labeling import LabelingService
from chatlabel.service.reports import Reports
from chatlabel.service.types import Task, UserRef
from chatlabel.storage.db import Database
from tests.conftest import Clock, ServiceFactory, write_jsonl

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
    assert "Dawid-Skene recomputed for this report" in page


async def test_report_numbers_are_the_chat_numbers(
    service_factory: ServiceFactory, tmp_path: Path, clock: Clock
) -> None:
    svc = await service_factory([PROJECT])
    await _fill(svc, tmp_path, clock)
    written = await write_report(svc, "p", tmp_path / "out")
    page = written.html.read_text(encoding="utf-8")
    reports = Reports(svc)
    figures = await reports.agreement("p")
    assert f"<td>Fleiss' kappa</td><td>{figures['fleiss_kappa']:.3f}</td>" in page
    assert f"<td>Krippendorff's alpha</td><td>{figures['krippendorff_alpha']:.3f}</td>" in page
    p = await reports.progress("p")
    assert f"<td>resolved</td><td>{p.resolved}</td>" in page
    # The progress figure is the very chart /progress sends.
    same = progress_chart(
        p.title,
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
    assert f"{eve.gold_accuracy:.0%} of {eve.gold_answers}" in page


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
    im = Image.open(io.BytesIO(settled_chart("t", [1.0, 2.0, 5.0], 10)))
    assert im.size == (900, 420)
    assert Image.open(io.BytesIO(accuracy_chart([], 0.7))).size[0] == 900


def test_cli_report_command(tmp_path: Path) -> None:
    cfg_path = tmp_path / "chatlabel.toml"
    cfg_path.write_text(
        '[storage]\ndatabase = "chatlabel.db"\n\n[[project]]\nname = "p"\n'
        'labels = ["cat", "dog", "bird"]\nmethod = "dawid-skene"\n\n'
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
