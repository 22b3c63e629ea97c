"""`chatlabel demo` end to end: emulator, real bot, simulated crowd, results."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from rich.console import Console

from chatlabel.demo import personas, run_demo, truth_by_text
from chatlabel.demo_web import run_web_demo
from tests.web_harness import Visitor

pytestmark = pytest.mark.timeout(90)


def test_the_crowd_has_good_careless_and_spamming_people() -> None:
    assert [p.kind for p in personas(6)] == ["good"] * 4 + ["spammer", "careless"]
    assert [p.kind for p in personas(3)] == ["good", "good", "spammer"]
    with pytest.raises(ValueError, match="at least one"):
        personas(0)


@pytest.mark.parametrize("platform", ["telegram", "slack"])
async def test_the_demo_labels_the_sample_and_catches_the_spammer(
    tmp_path: Path, platform: str
) -> None:
    out = io.StringIO()
    result = await run_demo(
        annotators=5,
        items=24,
        keep=tmp_path,
        platform=platform,
        console=Console(file=out, width=120),
    )
    assert not result.timed_out and result.seconds < 30
    assert result.items == 20  # 24 sample items, 4 of them gold
    assert result.resolved + result.escalated >= 0.8 * result.items
    assert result.accuracy is not None and result.accuracy > 0.8
    [spammer] = result.annotator("spammer")
    assert spammer.status == "suspended" and spammer.reason
    assert sum(a.status == "active" for a in result.annotator("good")) >= 2
    assert result.fleiss_kappa > 0.3
    printed = out.getvalue()
    assert "Results: Review sentiment" in printed and "Spammer" in printed
    assert (tmp_path / "chatlabel.db").is_file()
    names = sorted(p.name for p in result.exports)
    assert names == ["sentiment-annotators.csv", "sentiment-answers.csv", "sentiment-results.jsonl"]
    rows = [json.loads(line) for line in (tmp_path / "sentiment-results.jsonl").open()]
    assert len(rows) == 20 and sum(r["status"] == "resolved" for r in rows) == result.resolved


async def shows(out: io.StringIO, pattern: str, seconds: float) -> str:
    """The first text matching `pattern` the demo prints (it prints to a plain buffer)."""
    async with asyncio.timeout(seconds):
        while not (found := re.search(pattern, out.getvalue())):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    return found.group(0)


async def test_the_web_demo_lets_a_person_label_beside_the_crowd(tmp_path: Path) -> None:
    out = io.StringIO()
    stop = asyncio.Event()
    demo = asyncio.create_task(
        run_web_demo(
            annotators=3, items=12, keep=tmp_path, port=0, stop=stop, open_browser=False,
            pace=(0.05, 0.3), console=Console(file=out, width=120),
        )
    )  # fmt: skip
    try:
        link = await shows(out, r"http://127\.0\.0\.1:\d+/", 20)
        person = Visitor(link)
        try:
            await person.open()
            await person.connect()
            await person.start()
            # Label as a careful person would until nothing is left.
            truth = truth_by_text(tmp_path)
            for _ in range(20):
                await person.wait_for(
                    lambda: person.open_items() or "everything for now" in person.last_text(),
                    timeout=20,
                )
                if not person.open_items():
                    break
                item = person.open_items()[0]
                assert await person.press(item, truth[item["text"]]) == 200
                await person.wait_for(
                    lambda i=item: i["ref"] not in [m["ref"] for m in person.open_items()]
                )
        finally:
            await person.close()
        await shows(out, "Every item is settled", 30)
        assert not demo.done()  # it keeps running until told to stop
    finally:
        stop.set()
        result = await asyncio.wait_for(demo, 20)
    printed = out.getvalue()
    assert "you (web:" in printed and "Results: Review sentiment" in printed
    assert result.resolved + result.escalated == result.items == 8  # 12, 4 of them gold
    with sqlite3.connect(tmp_path / "chatlabel.db") as db:
        platforms = dict(db.execute(
            "SELECT a.platform, COUNT(*) FROM answers x JOIN annotators a ON a.id = x.annotator_id"
            " GROUP BY a.platform"
        ).fetchall())  # fmt: skip
    assert platforms["web"] >= 5 and platforms["telegram"] >= 10


_SRC = str(Path(__file__).resolve().parents[1] / "src")


def test_demo_web_from_the_command_line_serves_the_page_and_stops_on_ctrl_c(
    tmp_path: Path,
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "chatlabel", "demo", "--web", "--port", "0", "--items", "12"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
        env={**os.environ, "COLUMNS": "120", "DISPLAY": "", "PYTHONPATH": _SRC},  # this checkout
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        lines = []
        deadline = time.monotonic() + 30
        link = None
        while link is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            link = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert link is not None, "".join(lines)
        with urllib.request.urlopen(link.group(0), timeout=10) as page:
            assert page.status == 200 and b'id="composer"' in page.read()
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, rest
    assert "Results: Review sentiment" in rest
