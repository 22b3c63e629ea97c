"""The command line: init, import, status, export, and clean failures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from chatlabel.cli import main

from .test_import_export import db_digest


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chatlabel", *args], capture_output=True, text=True, timeout=60
    )


def test_init_import_status_export(tmp_path: Path) -> None:
    runner = CliRunner()
    d = tmp_path / "demo"
    r = runner.invoke(main, ["init", str(d), "--items", "12"])
    assert r.exit_code == 0, r.output
    cfg = d / "chatlabel.toml"
    r = runner.invoke(main, ["import", str(cfg), str(d / "items.jsonl")])
    assert r.exit_code == 0, r.output
    assert "Imported 12 items" in r.output
    r = runner.invoke(main, ["import", str(cfg), str(d / "items.jsonl")])
    assert "skipped 12 already there" in r.output
    r = runner.invoke(main, ["status", str(cfg)])
    assert r.exit_code == 0 and "Review sentiment" in r.output
    out = tmp_path / "results.csv"
    r = runner.invoke(main, ["export", str(cfg), "-o", str(out), "--format", "csv"])
    assert r.exit_code == 0, r.output
    lines = out.read_text().splitlines()
    assert (
        lines[0]
        == "id,label,status,confidence,votes,n_answers,method,suggestion,suggestion_score,model"
    )
    assert len(lines) == 1 + 12 - 4  # gold items are not results
    assert not (tmp_path / "results.csv.part").exists()
    for what, header in (
        ("answers", "item_id,annotator,label,skipped,is_gold,correct,seconds,answered_at,"
                    "skip_reason,comment,check"),
        ("reports", "item_id,annotator,reason,comment,reported_at,item_status,decision"),
    ):  # fmt: skip
        out = tmp_path / f"{what}.csv"
        r = runner.invoke(
            main, ["export", str(cfg), "--what", what, "--format", "csv", "-o", str(out)]
        )
        assert r.exit_code == 0, r.output
        assert out.read_text().splitlines() == [header]  # nobody has answered or reported yet


def test_init_refuses_to_overwrite(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["init", str(tmp_path)]).exit_code == 0
    r = runner.invoke(main, ["init", str(tmp_path)])
    assert r.exit_code != 0 and "not overwriting" in r.output


def test_bad_import_exits_non_zero_and_changes_nothing(tmp_path: Path) -> None:
    assert run("init", str(tmp_path)).returncode == 0
    cfg = tmp_path / "chatlabel.toml"
    assert run("import", str(cfg), str(tmp_path / "items.jsonl")).returncode == 0
    before = db_digest(tmp_path / "chatlabel.db")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "n1", "text": "fine"}) + "\n{oops\n", encoding="utf-8")
    r = run("import", str(cfg), str(bad))
    assert r.returncode == 1
    assert f"{bad}:2: malformed JSON" in r.stderr
    assert db_digest(tmp_path / "chatlabel.db") == before


def test_bad_config_exits_non_zero(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[[project]]\nname = 'p'\nlabels = ['a', 'b']\noverlap = 0\n")
    r = run("status", str(cfg))
    assert r.returncode == 1
    assert f"{cfg}: project[0].overlap" in r.stderr


_SRC = str(Path(__file__).resolve().parents[1] / "src")


def test_run_without_platforms_explains(tmp_path: Path) -> None:
    assert run("init", str(tmp_path)).returncode == 0
    r = subprocess.run(
        [sys.executable, "-m", "chatlabel", "run", str(tmp_path / "chatlabel.toml")],
        capture_output=True,
        text=True,
        timeout=60,
        # This checkout's code, whether or not (or wherever) the package is installed.
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": _SRC},
    )
    assert r.returncode == 1
    assert "CHATLABEL_TELEGRAM_TOKEN is not set" in r.stderr
    assert "no platform to run" in r.stderr


def test_status_shows_the_model_apart_from_the_people(tmp_path: Path) -> None:
    cfg = tmp_path / "chatlabel.toml"
    cfg.write_text(
        "[storage]\ndatabase = 'c.db'\n\n[[project]]\nname = 'spam'\nlabels = ['ham', 'spam']\n"
        "\n[project.model]\nkind = 'import'\nauto_threshold = 0.9\n",
        encoding="utf-8",
    )
    rows = [
        {"id": f"g{n}", "text": f"gold {n}", "gold": "spam", "suggestion": "spam",
         "suggestion_score": 0.95} for n in range(3)
    ] + [
        {"id": "t1", "text": "WIN", "suggestion": "spam", "suggestion_score": 0.97},
        {"id": "t2", "text": "hi", "suggestion": "ham", "suggestion_score": 0.6},
    ]  # fmt: skip
    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert run("import", str(cfg), str(items)).returncode == 0
    r = run("status", str(cfg))
    assert r.returncode == 0, r.stderr
    # Only the model has a gold record: the people's column says so, the model's line has it.
    table_row = next(line for line in r.stdout.splitlines() if line.startswith("│ spam"))
    assert "n/a" in table_row
    assert (
        "spam: model import, routing on; 5 suggested, 0 settled by one yes, 0 sent on by a no; "
        "right on 3 of 3 gold items and audits"
    ) in r.stdout
