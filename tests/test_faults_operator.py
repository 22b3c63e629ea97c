"""Operator faults: a database from a newer chatlabel, two `run`s on one database, another
process polling the same bot token, and a backup taken while the bot is writing.

Everything runs the real CLI (`python -m chatlabel`) or the real service on real SQLite files.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The installed command line, as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "chatlabel", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def write_config(tmp: Path, extra: str = "") -> Path:
    """A one-project config whose database is tmp/chatlabel.db."""
    cfg = tmp / "chatlabel.toml"
    cfg.write_text(
        '[storage]\ndatabase = "chatlabel.db"\n\n'
        '[[project]]\nname = "p"\nlabels = ["a", "b"]\n' + extra,
        encoding="utf-8",
    )
    return cfg


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- a database from a newer chatlabel --------------------------------------------------------


@pytest.mark.parametrize("journal", ["wal", "delete"])
def test_a_newer_database_is_refused_in_one_line_and_left_byte_identical(
    tmp_path: Path, journal: str
) -> None:
    cfg = write_config(tmp_path)
    items = tmp_path / "items.jsonl"
    items.write_text('{"id": "n1", "text": "hello"}\n', encoding="utf-8")
    db = tmp_path / "chatlabel.db"
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA journal_mode = {journal}")
    conn.execute("CREATE TABLE future (x)")
    conn.execute("INSERT INTO future VALUES ('from chatlabel 9')")
    conn.execute("PRAGMA user_version = 99")
    conn.commit()
    conn.close()
    before = sha(db)
    for args in (
        ("status", str(cfg)),
        ("import", str(cfg), str(items)),
        ("export", str(cfg)),
        ("run", str(cfg)),
    ):
        r = cli(*args)
        assert r.returncode == 1, (args, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in r.stderr, (args, r.stderr)
        assert str(db) in lines[0] and "newer chatlabel" in lines[0], lines[0]
        assert "schema version 99" in lines[0]
        # Not even the journal mode: the first thing the old code did was switch it to WAL.
        assert sha(db) == before, args
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("chatlabel.db")) == [
            "chatlabel.db"
        ]


def test_a_file_that_is_not_a_database_is_refused_in_one_line(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    db = tmp_path / "chatlabel.db"
    db.write_bytes(b"these are not the pages you are looking for\n" * 200)
    before = sha(db)
    r = cli("status", str(cfg))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert "not a chatlabel database" in r.stderr
    assert sha(db) == before
