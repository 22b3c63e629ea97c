"""`chatlabel migrate-db`: SQLite to PostgreSQL and back, verified, and never into a used database."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import pg
from chatlabel.cli import main
from chatlabel.config import load_config
from chatlabel.service.labeling import LabelingService
from chatlabel.service.types import Task, UserRef
from chatlabel.storage.store import open_store
from chatlabel.storage.transfer import _open, digest

from .conftest import write_jsonl

pytestmark = pytest.mark.timeout(90)


def _write_config(path: Path, storage: str) -> Path:
    path.write_text(
        f"""[storage]
{storage}

[[project]]
name = "p"
labels = ["a", "b", "c"]
overlap = 2
max_overlap = 3

[project.quality]
qualification = 0
gold_rate = 0.2

[project.model]
kind = "import"
auto_threshold = 0.9
audit_rate = 0.0
""",
        encoding="utf-8",
    )
    return path


async def _label(cfg_path: Path, tmp_path: Path, users: range, import_items: bool) -> int:
    """Some real work through the service: an import, answers, skips, verdicts, a gold score."""
    from chatlabel.importer import import_file

    cfg = load_config(cfg_path)
    db = await open_store(cfg)
    svc = LabelingService(db, cfg, rng=random.Random(1))
    await svc.start()
    try:
        if import_items:
            rows: list[dict[str, Any]] = [
                {"id": f"i{i}", "text": f"ítem {i} — ünïcode", "meta": {"n": i}} for i in range(30)
            ]
            # Scored suggestions: confident ones become one-person checks (routes, the model).
            for i, row in enumerate(rows[:12]):
                row.update(suggestion="abc"[i % 3], suggestion_score=0.5 + 0.04 * i)
                row["model_version"] = "m-1"
            rows += [{"id": f"g{i}", "text": f"gold {i}", "gold": "a"} for i in range(3)]
            await import_file(svc, "p", write_jsonl(tmp_path / "items.jsonl", rows))
        answered = 0
        for n in users:
            u = UserRef("telegram", str(n), f"user {n}", str(n))
            await svc.join(u)
            for k in range(6):
                task = await svc.next_task(u)
                if not isinstance(task, Task):
                    break
                if k == 3:
                    out = await svc.skip(u, task.assignment_id)
                elif task.check:
                    out = await svc.answer(u, task.assignment_id, "yes" if k % 2 else "no")
                else:
                    out = await svc.answer(u, task.assignment_id, "abc"[(n + k) % 3])
                assert out.ok, out
                answered += 1
        await svc.save_media_file_id("f" * 64, "telegram", "file-1")
        return answered
    finally:
        await db.close()


def _digests(url: str) -> dict[str, tuple[int, str]]:
    side = _open(url, None)
    try:
        return {
            t: digest(side, t, side.columns(t)) for t in side.tables() if t != "chatlabel_schema"
        }
    finally:
        side.close()


def test_sqlite_to_postgresql_and_back_verified(tmp_path: Path) -> None:
    source = _write_config(tmp_path / "chatlabel.toml", 'database = "chatlabel.db"')
    asyncio.run(_label(source, tmp_path, range(1, 6), True))
    original = _digests(f"sqlite:///{tmp_path / 'chatlabel.db'}")
    assert original["answers"][0] >= 15 and original["verdicts"][0] > 0
    assert original["models"][0] == 1  # the model's record moves with the rest
    src_url = f"sqlite:///{tmp_path / 'chatlabel.db'}"
    assert pg.rows(src_url, "SELECT COUNT(*) FROM answers WHERE checked = 1")[0][0] > 0

    url = pg.fresh_database(migrated=False)
    runner = CliRunner()
    res = runner.invoke(main, ["migrate-db", str(source), "--to", url])
    assert res.exit_code == 0, res.output
    assert "every table's count and digest match" in res.output
    assert f"answers: {original['answers'][0]:,} rows" in res.output
    assert _digests(url) == original

    # A second copy into the same database is refused: it is not empty any more.
    again = runner.invoke(main, ["migrate-db", str(source), "--to", url])
    assert again.exit_code == 1 and "not empty" in again.output, again.output
    assert _digests(url) == original

    # The copy is a working database: labeling goes on there, new rows after the copied ids.
    on_pg = _write_config(tmp_path / "pg.toml", f'url = "{url}"')
    assert asyncio.run(_label(on_pg, tmp_path, range(6, 9), False)) > 0
    moved = _digests(url)
    assert moved["answers"][0] > original["answers"][0]

    # And back to SQLite: the same rows as PostgreSQL holds, digest for digest.
    back = tmp_path / "back" / "copy.db"
    res = runner.invoke(main, ["migrate-db", str(on_pg), "--to", f"sqlite:///{back}"])
    assert res.exit_code == 0, res.output
    assert _digests(f"sqlite:///{back}") == moved


def test_refusals_name_the_problem(tmp_path: Path) -> None:
    source = _write_config(tmp_path / "chatlabel.toml", 'database = "chatlabel.db"')
    asyncio.run(_label(source, tmp_path, range(1, 3), True))
    runner = CliRunner()
    res = runner.invoke(main, ["migrate-db", str(source), "--to", "mysql://x@y/z"])
    assert res.exit_code == 1 and "--to: must be sqlite:///FILE or postgresql://" in res.output
    res = runner.invoke(main, ["migrate-db", str(source), "--to", "postgresql://u:secret@h/db"])
    assert res.exit_code == 1 and "password must not be in the file" in res.output
    # A database that is not chatlabel's (a table of someone else's) is never written to.
    url = pg.fresh_database(migrated=False)
    import psycopg

    with psycopg.connect(url, autocommit=True) as c:
        c.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    res = runner.invoke(main, ["migrate-db", str(source), "--to", url])
    assert res.exit_code == 1 and "not a chatlabel database" in res.output, res.output
    # An unreachable server: a clear error, not a traceback.
    from chatlabel.storage.pgtemp import free_port

    res = runner.invoke(
        main, ["migrate-db", str(source), "--to", f"postgresql://x@127.0.0.1:{free_port()}/db"]
    )
    assert res.exit_code == 1 and "failed" in res.output and "Traceback" not in res.output
