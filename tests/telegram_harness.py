"""A running chatlabel Telegram bot against the Bot API emulator, for the end-to-end tests.

Everything is real except time: python-telegram-bot talks HTTP to the emulator, the service
writes a SQLite file (or a PostgreSQL database: see `storage_url`), and the service's clock is
a FakeClock the test moves forward.
"""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chatlabel.config import Config, Telegram, parse_config
from chatlabel.emulators.telegram import BotApiEmulator, ChatMessage, SimUser
from chatlabel.mechanics import Limit
from chatlabel.service import LabelingService, Reports
from chatlabel.storage.store import Store, open_store
from chatlabel.transports.telegram import TelegramTransport

COORDINATOR_ID = 900
# Where running_bot keeps its data: None for a SQLite file in the test's folder, else a
# database URL (a module that runs on both backends sets it per test, see conftest.py).
storage_url: str | None = None
T0 = 1_700_000_000.0


class FakeClock:
    """The service's clock: stands still until a test moves it."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.now += seconds


def project(name: str = "animals", **overrides: Any) -> dict[str, Any]:
    """A project table for the config; by default single choice, no gold."""
    base: dict[str, Any] = {
        "name": name,
        "title": name.title(),
        "instructions": f"Label the {name}.",
        "kind": "single",
        "labels": ["cat", "dog", "bird"],
        "overlap": 2,
        "max_overlap": 3,
        "lease_seconds": 600,
        "undo_seconds": 60,
        "quality": {"qualification": 0, "gold_rate": 0.0},
    }
    quality = {**base["quality"], **overrides.pop("quality", {})}
    return {**base, **overrides, "quality": quality}


def make_config(tmp: Path, projects: list[dict[str, Any]], **access: Any) -> Config:
    """A config with these projects, a coordinator and a [telegram] section."""
    where = {"url": storage_url} if storage_url else {"database": str(tmp / "chatlabel.db")}
    data = {
        "storage": {**where, "media_cache": str(tmp / "cache")},
        "project": projects,
        "access": {"coordinators": [f"telegram:{COORDINATOR_ID}"], **access},
        "telegram": {},
    }
    return parse_config(data, tmp / "chatlabel.toml")


@dataclass
class Bench:
    """The emulator, the database, the service and the running bot."""

    emu: BotApiEmulator
    db: Store
    service: LabelingService
    reports: Reports
    transport: TelegramTransport
    clock: FakeClock
    tmp: Path
    exports: list[str] = field(default_factory=list)

    async def add_items(self, name: str, rows: list[dict[str, Any]]) -> None:
        """Insert items straight into the database (the importer's job in production)."""
        await insert_items(self.db, self.service, self.clock(), name, rows)

    async def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """Rows of a read-only query, for assertions on database state."""
        return await self.db.read(lambda c: [tuple(r) for r in c.execute(sql, args).fetchall()])

    async def answers(self, user: SimUser | None = None) -> list[tuple[str, str | None]]:
        """(item ext_id, value) of every answer, or of one user's."""
        rows = await self.query(
            """SELECT a.key, i.ext_id, x.value FROM answers x JOIN items i ON i.id = x.item_id
               JOIN annotators a ON a.id = x.annotator_id ORDER BY x.id"""
        )
        key = None if user is None else f"telegram:{user.id}"
        return [(r[1], r[2]) for r in rows if key is None or r[0] == key]

    def user(self, user_id: int, name: str | None = None) -> SimUser:
        """A simulated Telegram user."""
        return self.emu.user(user_id, name or f"User{user_id}")

    async def start(self, user: SimUser, arg: str = "") -> ChatMessage:
        """/start, then the first item (or whatever the bot says last)."""
        before = len(user.messages)
        await user.send(f"/start {arg}".strip())
        await user.wait_for(lambda: len(user.messages) >= before + 2, what="welcome and item")
        return user.messages[-1]


async def insert_items(
    db: Store, service: LabelingService, now: float, name: str, rows: list[dict[str, Any]]
) -> None:
    """Insert items straight into the database, then wake the push loops (as the importer does)."""
    pid = service.pids[name]
    needed = service.projects[name].overlap

    def tx(conn: sqlite3.Connection) -> None:
        seq = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM items").fetchone()[0]
        for n, r in enumerate(rows, start=seq + 1):
            gold = r.get("gold")
            if isinstance(gold, list):
                gold = json.dumps(gold)
            conn.execute(
                """INSERT INTO items (project_id, ext_id, text, media_kind, media_path,
                     context, gold, gold_reason, suggestion, boxes, needed, seq, created_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (
                    pid,
                    r["id"],
                    r.get("text"),
                    r.get("media_kind"),
                    r.get("media_path"),
                    r.get("context"),
                    gold,
                    r.get("gold_reason"),
                    r.get("suggestion"),
                    json.dumps(r["boxes"]) if r.get("boxes") else None,
                    needed,
                    n,
                    now,
                ),
            )

    await db.write(tx)
    service.notify()


def is_item(m: ChatMessage) -> bool:
    """Whether a bot message shows an item (it has a Skip button)."""
    return any(str(b.get("callback_data", "")).startswith("s:") for b in m.buttons)


async def next_item(user: SimUser, after: int = 0, timeout: float = 5.0) -> ChatMessage:  # noqa: ASYNC109
    """The first item message newer than message id `after`."""
    return await user.wait_for_message(lambda m: is_item(m) and m.message_id > after, timeout)


async def new_message(
    user: SimUser,
    after: int,
    match: Callable[[ChatMessage], bool] = lambda m: True,
    timeout: float = 5.0,  # noqa: ASYNC109
) -> ChatMessage:
    """A bot message newer than message id `after` that satisfies `match`."""
    return await user.wait_for_message(lambda m: m.message_id > after and match(m), timeout)


async def export_stub(name: str) -> tuple[str, bytes]:
    """A stand-in for the lead's exporter."""
    return f"{name}-results.csv", b"item,label\nt1,cat\n"


@asynccontextmanager
async def running_bot(
    tmp: Path,
    projects: list[dict[str, Any]] | None = None,
    *,
    access: dict[str, Any] | None = None,
    retry_delays: tuple[float, ...] = (0.05, 0.1, 0.2, 0.4, 0.8),
    max_rate: float = 0.0,
    chat_limit: Limit | None = None,
) -> AsyncIterator[Bench]:
    """Start emulator, database, service and bot; close all of them afterwards."""
    config = make_config(tmp, projects or [project()], **(access or {}))
    clock = FakeClock()
    async with BotApiEmulator() as emu:
        db = await open_store(config)
        try:
            service = LabelingService(db, config, clock=clock, rng=random.Random(3))
            await service.start()
            reports = Reports(service)
            transport = TelegramTransport(
                service,
                reports,
                Telegram(base_url=emu.base_url),
                emu.token,
                media_cache=config.media_cache_path(),
                export_results=export_stub,
            )
            # The emulator has no flood limits unless a test sets emu.flood: keep tests quick.
            transport.max_rate = max_rate
            transport.chat_limit = chat_limit
            transport.push_interval = 0.2  # the lease-expiry timer, shortened
            transport.retry_delays = retry_delays
            # Tests type fast; flood control is tested in test_faults_limits.py.
            transport.inbound = (1000.0, 1000.0)
            await transport.start()
            try:
                yield Bench(emu, db, service, reports, transport, clock, tmp)
            finally:
                await transport.stop()
        finally:
            await db.close()
