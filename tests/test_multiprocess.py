"""Two `chatlabel run` processes on one PostgreSQL database, one killed with SIGKILL mid-run.

The layout of docs/scaling.md's "several webhook workers behind a load balancer for one bot":
both processes run the same bot in webhook mode on the same database. The test plays Telegram
and the load balancer: it takes the emulator's updates and POSTs each to a worker (by the
sender's id, so each worker has half of the 100 annotators), retrying on the other worker when
one does not answer, as Telegram retries a webhook and a load balancer fails over. Once enough
presses are acknowledged, worker A gets SIGKILL; its people carry on with worker B.

Asserted: every press the bot acknowledged is in the database exactly once, no item ever has
more answers than max_overlap, every item settles (on the survivor), and the survivor stops
cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import pg
from chatlabel.emulators.telegram import BotApiEmulator
from chatlabel.storage.pgtemp import free_port

from .bot_process import chatlabel_run
from .conftest import write_jsonl
from .crash_crowd import CrashCrowd

USERS = 100
ITEMS = 150
MAX_OVERLAP = 3
TOKEN = "515151:TWO-WORKERS"
SECRET = "two-workers-secret"
_HEADER = "X-Telegram-Bot-Api-Secret-Token"


def _config(tmp_path: Path, name: str, base_url: str, url: str, port: int) -> Path:
    cfg = tmp_path / f"{name}.toml"
    cfg.write_text(
        f"""
[storage]
url = "{url}"

[[project]]
name = "together"
labels = ["a", "b"]
overlap = 2
max_overlap = {MAX_OVERLAP}
lease_seconds = 20
undo_seconds = 5

[project.quality]
qualification = 0
gold_rate = 0.0

[telegram]
token_env = "TWO_WORKERS_TOKEN"
base_url = "{base_url}"
mode = "webhook"
webhook_url = "https://labels.example.org/tg"
webhook_listen = "127.0.0.1"
webhook_port = {port}
secret_token_env = "TWO_WORKERS_SECRET"
""",
        encoding="utf-8",
    )
    return cfg


def worker(cfg: Path, log: Path) -> AbstractContextManager[subprocess.Popen[bytes]]:
    """`chatlabel run` in its own process."""
    return chatlabel_run(cfg, log, {"TWO_WORKERS_TOKEN": TOKEN, "TWO_WORKERS_SECRET": SECRET})


def _sender(update: dict[str, Any]) -> int:
    for kind in ("message", "callback_query", "my_chat_member"):
        if kind in update:
            return int(update[kind]["from"]["id"])
    return 0


async def relay(emu: BotApiEmulator, ports: list[int], stop: asyncio.Event) -> None:
    """Telegram's webhook delivery and a load balancer: each update POSTed until a worker
    answers 200, to the sender's worker first, to the other one when that one is down."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as http:

        async def deliver(update: dict[str, Any]) -> None:
            first = _sender(update) % len(ports)
            order = [ports[first], *(p for p in ports if p != ports[first])]
            while not stop.is_set():
                for port in order:
                    try:
                        async with http.post(
                            f"http://127.0.0.1:{port}/tg", json=update, headers={_HEADER: SECRET}
                        ) as r:
                            if r.status == 200:
                                return
                    except (aiohttp.ClientError, TimeoutError):
                        continue  # down (or dying): the next worker
                await asyncio.sleep(0.2)

        while not stop.is_set():
            await emu.signal.wait_until(lambda: stop.is_set() or emu.has_updates(), 0.5)
            batch = emu.take_updates(100)
            if not batch:
                continue
            await asyncio.gather(*(deliver(u) for u in batch))
            emu.confirm_updates(max(u["update_id"] for u in batch) + 1)


@pytest.mark.timeout(240)
async def test_two_processes_one_killed_every_acknowledged_answer_once(tmp_path: Path) -> None:
    from chatlabel.app import open_service
    from chatlabel.config import load_config
    from chatlabel.importer import import_file

    url = pg.fresh_database()
    async with BotApiEmulator(token=TOKEN) as emu:
        ports = [free_port(), free_port()]
        cfgs = [
            _config(tmp_path, n, emu.base_url, url, p) for n, p in zip("AB", ports, strict=True)
        ]
        db, svc = await open_service(load_config(cfgs[0]))
        try:
            rows = [{"id": f"i{i}", "text": f"item number {i}"} for i in range(ITEMS)]
            await import_file(svc, "together", write_jsonl(tmp_path / "items.jsonl", rows))
        finally:
            await db.close()

        users = [emu.user(20_000 + n, f"u{n}") for n in range(USERS)]

        def both_under_way(acked: list[tuple[int, str]]) -> bool:
            served = [sum(1 for uid, _ in acked if uid % 2 == k) for k in (0, 1)]
            return len(acked) >= 120 and min(served) >= 20  # both workers well under way

        crowd = CrashCrowd(users, both_under_way)
        acked = crowd.acked

        logs = [tmp_path / "A.log", tmp_path / "B.log"]
        halt = asyncio.Event()
        with worker(cfgs[0], logs[0]) as a, worker(cfgs[1], logs[1]) as b:
            lb = asyncio.create_task(relay(emu, ports, halt))
            workers = crowd.start()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(crowd.enough.wait(), 90)
            assert crowd.enough.is_set(), (
                f"too slow before the kill: {len(acked)}\n{logs[0].read_text()[-2000:]}"
                f"\n{logs[1].read_text()[-2000:]}"
            )
            a.send_signal(signal.SIGKILL)
            await asyncio.to_thread(a.wait, 10)
            acked_before = len(acked)
            deadline = time.monotonic() + 150
            settled = 0
            while time.monotonic() < deadline:
                settled = pg.rows(url, "SELECT COUNT(*) FROM items WHERE status != 'pending'")[0][0]
                if settled == ITEMS:
                    break
                await asyncio.sleep(0.5)
            crowd.stop.set()
            await asyncio.wait_for(asyncio.gather(*workers), 30)
            halt.set()
            await asyncio.wait_for(lb, 30)
            assert settled == ITEMS, f"{settled} of {ITEMS} settled\n{logs[1].read_text()[-3000:]}"
            b.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(b.wait, 30) == 0, logs[1].read_text()[-3000:]

    assert len(acked) > acked_before, "nobody carried on after the kill"
    killed_users = {uid for uid, _ in acked[acked_before:] if uid % 2 == 0}
    assert killed_users, "the killed worker's people did not carry on with the survivor"
    answers = pg.rows(
        url,
        """SELECT a.key, i.text FROM answers x JOIN annotators a ON a.id = x.annotator_id
           JOIN items i ON i.id = x.item_id WHERE x.value IS NOT NULL""",
    )
    recorded = {(int(str(k).split(":")[1]), str(t)) for k, t in answers}
    assert len(recorded) == len(answers), "an answer was recorded twice"
    lost = [x for x in acked if not any(x[0] == r[0] and x[1].startswith(r[1]) for r in recorded)]
    assert lost == [], f"acknowledged but not recorded: {lost[:5]}"
    over = pg.rows(
        url,
        f"""SELECT i.ext_id, COUNT(x.id) FROM items i JOIN answers x ON x.item_id = i.id
            AND x.value IS NOT NULL GROUP BY i.id, i.ext_id HAVING COUNT(x.id) > {MAX_OVERLAP}""",
    )
    assert over == [], f"items over max_overlap: {over[:5]}"
    leases = pg.rows(
        url,
        """SELECT (SELECT COALESCE(SUM(n_leases), 0) FROM items),
                  (SELECT COUNT(*) FROM assignments WHERE state = 'pending')""",
    )
    assert leases[0][0] == leases[0][1], f"lease counters drifted: {leases}"
    assert "stopped cleanly" in logs[1].read_text()


async def test_an_update_delivered_to_two_processes_counts_once(tmp_path: Path, clock: Any) -> None:
    """Two services on one PostgreSQL database, each with its own pool (as two workers behind
    a load balancer are): the same press, the same typed message and the same /start reach
    both at once, several times. Each counts once: one answer, one next item, one lease."""
    import random

    from chatlabel.importer import import_file
    from chatlabel.service.labeling import LabelingService
    from chatlabel.service.types import Task, UserRef
    from chatlabel.storage.store import open_store

    from .conftest import make_config

    url = pg.fresh_database()
    projects: list[dict[str, Any]] = [
        {"name": "p", "labels": ["a", "b"], "overlap": 2, "max_overlap": 3},
        {"name": "t", "kind": "text", "overlap": 2, "max_overlap": 3},
    ]
    for p in projects:
        p["quality"] = {"qualification": 0, "gold_rate": 0.0}
    cfg = make_config(tmp_path, projects, url=url)
    services: list[LabelingService] = []
    try:
        for n in range(2):
            db = await open_store(cfg)
            svc = LabelingService(db, cfg, clock=clock, rng=random.Random(n))
            await svc.start()
            services.append(svc)
        a, b = services
        for name in ("p", "t"):
            rows = [{"id": f"{name}{i}", "text": f"item {i}"} for i in range(6)]
            await import_file(a, name, write_jsonl(tmp_path / f"{name}.jsonl", rows))

        async def rows(query: str, *args: Any) -> list[tuple[Any, ...]]:
            return await a.db.read(lambda c: [tuple(r) for r in c.execute(query, args)])

        # A /start delivered to both: one lease, the same item shown by both.
        u = UserRef("telegram", "1", "one", "1")
        assert (await a.join(u, "p")).status == "joined"
        got = await asyncio.gather(*(s.next_task(u) for s in (a, b, a, b)))
        assert all(isinstance(t, Task) for t in got), got
        assert len({t.assignment_id for t in got if isinstance(t, Task)}) == 1
        leases = "SELECT COUNT(*) FROM assignments s JOIN annotators x ON x.id = s.annotator_id WHERE x.key = ? AND s.state = 'pending'"
        assert await rows(leases, u.key) == [(1,)]

        # The press delivered five times to each: recorded once, one next item leased.
        task = got[0]
        assert isinstance(task, Task)
        outs = await asyncio.gather(
            *(s.answer(u, task.assignment_id, "a", then_next=True) for s in (a, b) * 5)
        )
        assert [o.status for o in outs].count("recorded") == 1, outs
        assert {o.status for o in outs} == {"recorded", "duplicate"}
        assert await rows("SELECT COUNT(*) FROM answers") == [(1,)]
        assert await rows(leases, u.key) == [(1,)]

        # A typed answer (its platform message id as `source`) delivered three times to each:
        # one answer, on the item it was typed for, never also on the next one.
        v = UserRef("telegram", "2", "two", "2")
        assert (await b.join(v, "t")).status == "joined"
        first = await b.next_task(v)
        assert isinstance(first, Task)
        outs = await asyncio.gather(*(s.answer_text(v, "Paris", source="2:77") for s in (a, b) * 3))
        assert [o.status for o in outs].count("recorded") == 1, outs
        assert {o.status for o in outs} == {"recorded", "duplicate"}, outs
        assert await rows(
            "SELECT i.ext_id, x.value FROM answers x JOIN items i ON i.id = x.item_id "
            "JOIN annotators n ON n.id = x.annotator_id WHERE n.key = ?",
            v.key,
        ) == [(first.item_id, "Paris")]
        assert await rows(leases, v.key) == [(1,)]
    finally:
        for svc in services:
            await svc.db.close()
