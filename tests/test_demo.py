"""`chatlabel demo` end to end: emulator, real bot, simulated crowd, results."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from chatlabel.demo import personas, run_demo

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
