"""Queue benchmark: presses by active annotators while 5,000 reminders wait to go out.

The real Telegram bot against the Bot API emulator with Telegram's flood limits on (30 new
messages a second bot-wide, a few calls a second per chat, 429 with retry_after), the bot pacing
its calls by priority, in this process. Phases, in one run so they share the machine's mood:

  quiet      10 annotators labeling at a human pace (0.8 s to read an item), nothing else
  reminders  the same 10, with 5,000 idle members due a reminder: the scheduler queues 5,000
             outbox rows (timed), and the sender drains them at BULK priority meanwhile

Reported per phase: press -> next item p50 / p99 / max, the reminders the platform accepted
per second, 429s; and the ratio of the two p99s. The target: p99 under 1 s with the queue full.

    python bench/reminders.py                 # ~60 s
    python bench/reminders.py --seconds 10 --reminders 1000
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# This folder holds telegram.py, which would shadow python-telegram-bot's package: import
# chatlabel (and through it the package) with this folder off the path, then put it back.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
from chatlabel.config import Telegram, parse_config  # noqa: E402
from chatlabel.emulators import telegram as tg_emulator  # noqa: E402
from chatlabel.emulators.crowd import LABELS, Annotator  # noqa: E402
from chatlabel.emulators.telegram import BotApiEmulator  # noqa: E402
from chatlabel.service import LabelingService, Reports  # noqa: E402
from chatlabel.storage.db import Database  # noqa: E402
from chatlabel.transports.telegram import TelegramTransport  # noqa: E402

sys.path.append(str(_HERE))
from _util import human, load, machine, pct, table  # noqa: E402

PEOPLE = 10  # annotators labeling at a human pace
THINK = 0.8  # seconds a person looks at an item before pressing
T0 = 1_714_986_000.0  # 2024-05-06 09:00 UTC: no quiet hours in the way
IDLE_SINCE = T0 - 6 * 3600  # the 5,000 answered last six hours ago


@dataclass
class Bot:
    emu: BotApiEmulator
    service: LabelingService
    transport: TelegramTransport
    clock: list[float]

    def sent_reminders(self, since: float) -> int:
        return sum(
            1
            for c in self.emu.calls
            if c.time >= since and c.method == "sendMessage" and c.ok
            and "waiting for answers" in str(c.params.get("text", ""))
        )  # fmt: skip

    def refused(self, since: float) -> int:
        return sum(1 for c in self.emu.calls if c.time >= since and c.status == 429)


@asynccontextmanager
async def bot(tmp: Path, idle: int) -> AsyncIterator[Bot]:
    """Emulator with flood limits, database with `idle` members due a reminder, the bot."""
    cfg = parse_config(
        {
            "storage": {"database": str(tmp / "db.sqlite"), "media_cache": str(tmp / "cache")},
            "project": [
                {
                    "name": "animals",
                    "labels": list(LABELS),
                    "overlap": PEOPLE,
                    "max_overlap": PEOPLE,
                    "undo_seconds": 2,
                    "quality": {"qualification": 0, "gold_rate": 0.0},
                    "reminders": {"after": "2h", "every": "1d", "quiet_hours": ""},
                }
            ],
            "telegram": {},
        },
        tmp / "chatlabel.toml",
    )
    clock = [T0]
    async with BotApiEmulator() as emu:
        flood = getattr(tg_emulator, "FloodLimits", None)
        if flood is not None:
            emu.flood = flood()  # Telegram's limits, as the pacing work emulates them
        db = await Database(cfg.database_path()).open()
        try:
            service = LabelingService(db, cfg, clock=lambda: clock[0], rng=random.Random(1))
            await service.start()
            await db.write(_fill, service.pids["animals"], idle)
            for n in range(idle):  # their chats exist: they talked to the bot before
                emu.user(10_000 + n, f"idle{n}").chat.started = True
            transport = TelegramTransport(
                service,
                Reports(service),
                Telegram(base_url=emu.base_url),
                emu.token,
                media_cache=cfg.media_cache_path(),
            )
            transport.push_interval = 0.5
            transport.max_rate = 30.0
            transport.inbound = (1.0, 8.0)
            await transport.start()
            try:
                yield Bot(emu, service, transport, clock)
            finally:
                await transport.stop()
        finally:
            await db.close()


def _fill(c: sqlite3.Connection, pid: int, idle: int) -> None:
    """400 items; `idle` members who answered six hours ago and have work waiting."""
    c.executemany(
        """INSERT INTO items (project_id, ext_id, text, needed, seq, created_at)
           VALUES (?, ?, ?, ?, ?, ?)""",
        [(pid, f"i{n}", f"Item number {n}.", PEOPLE, n + 1, T0) for n in range(400)],
    )
    c.executemany(
        """INSERT INTO annotators (key, platform, address, name, project_id, created_at)
           VALUES (?, 'telegram', ?, ?, ?, ?)""",
        [(f"telegram:{10_000 + n}", str(10_000 + n), f"idle{n}", pid, IDLE_SINCE)
         for n in range(idle)],
    )  # fmt: skip
    c.execute(
        """INSERT INTO members (project_id, annotator_id, joined_at, last_active)
           SELECT ?, id, ?, ? FROM annotators WHERE key LIKE 'telegram:1____'""",
        (pid, IDLE_SINCE, IDLE_SINCE),
    )


async def phase(tmp: Path, seconds: float, idle: int) -> dict[str, Any]:
    """PEOPLE people at a human pace for `seconds`; with `idle` reminders queued first."""
    async with bot(tmp, idle) as b:
        people = [Annotator(b.emu.user(300 + n, f"c{n}"), think=THINK) for n in range(PEOPLE)]
        stop = asyncio.Event()
        tasks = [asyncio.create_task(p.run(stop)) for p in people]
        await asyncio.sleep(1.5)  # everyone has joined and holds an item
        for p in people:
            p.waits.clear()
        started = time.monotonic()
        queued_in = 0.0
        if idle:
            t = time.perf_counter()
            tick = await b.service.tick()
            queued_in = time.perf_counter() - t
            assert tick.reminders == idle, tick
        await asyncio.sleep(seconds)
        elapsed = time.monotonic() - started
        sent = b.sent_reminders(started)
        refused = b.refused(started)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
        waits = [w for p in people for w in p.waits]
        return {
            "presses": len(waits),
            "p50": pct(waits, 50),
            "p99": pct(waits, 99),
            "max": max(waits, default=0.0),
            "queued_in": queued_in,
            "reminders/s": sent / elapsed,
            "sent": sent,
            "429": refused,
        }


async def main(seconds: float, reminders: int) -> None:
    logging.basicConfig(level=logging.ERROR)
    print(f"# {machine()}; {load()}")
    limits = "on" if hasattr(tg_emulator, "FloodLimits") else "off (this emulator has none)"
    print(f"# Telegram's flood limits in the emulator: {limits}")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        quiet = await phase(tmp / "a", seconds, 0)
        busy = await phase(tmp / "b", seconds, reminders)
    print(f"# load after the run: {load()}")
    print(f"\n{PEOPLE} annotators reading 0.8 s per item, phases of {seconds:g} s")
    rows = [
        (name, r["presses"], f"{r['p50']:.3f} / {r['p99']:.3f} / {r['max']:.3f}",
         f"{r['reminders/s']:.1f}", r["429"])
        for name, r in (("no reminders", quiet), (f"{human(reminders)} reminders queued", busy))
    ]  # fmt: skip
    print(
        table(["phase", "presses", "press -> next p50 / p99 / max s", "reminders/s", "429s"], rows)
    )
    print(
        f"{human(reminders)} reminders queued in {busy['queued_in']:.2f} s "
        f"({reminders / max(busy['queued_in'], 1e-9):,.0f} rows/s); {human(busy['sent'])} sent "
        f"in the phase, the rest at that pace in "
        f"{(reminders - busy['sent']) / max(busy['reminders/s'], 1e-9):.0f} s"
    )
    print(f"p99 with the queue full / without: {busy['p99'] / max(quiet['p99'], 1e-6):.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    parser.add_argument("--reminders", type=int, default=5000, help="reminders queued")
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.reminders))
