"""Limits benchmark: the real Telegram bot against the emulator with Telegram's flood limits on.

Phases, all in one run (so they share the machine's mood), each with `chatlabel`'s bot, the
Bot API emulator and the simulated people in this process:

  ceiling    12 annotators pressing as fast as they can, no emulated limits, the bot unpaced:
             what the bot and this machine do on their own
  unpaced    the same crowd against Telegram's limits (3 sends/edits per chat and 30 new
             messages per second, 429 with growing retry_after), the bot pacing only its new
             messages bot-wide (what it did before the pacer): the collapse
  paced      the same with the bot's pacer (per chat and bot-wide, a 429 holds only its chat)
  storm      paced, with 2 s in which every call gets 429: how long the crowd takes to get
             through a fixed number of answers, against the same without the storm
  flood      paced; 8 people labeling at a human pace (0.8 s to read an item) while one
             person sends 300 messages: press -> next item, against the same without the flood

The platform's pace for the crowd is 12 chats x 3 calls per second / 2 calls per answer
(an edit showing the choice and the next item) = 18 answers/s; the paced figure is given as a
share of it.

    python bench/limits.py                 # ~60 s
    python bench/limits.py --seconds 4     # shorter phases
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
from chatlabel.emulators.crowd import LABELS, Annotator  # noqa: E402
from chatlabel.emulators.telegram import (  # noqa: E402
    BotApiEmulator,
    Faults,
    FloodLimits,
)
from chatlabel.service import LabelingService, Reports  # noqa: E402
from chatlabel.storage.db import Database  # noqa: E402
from chatlabel.transports.telegram import TelegramTransport  # noqa: E402

sys.path.append(str(_HERE))
from _util import load, machine, pct, table  # noqa: E402

PLATFORM_PACE = 12 * 3 / 2  # answers/s: 12 chats, 3 calls/s each, 2 calls per answer


@dataclass
class Bot:
    emu: BotApiEmulator
    db: Database
    transport: TelegramTransport

    async def answers(self) -> int:
        def q(c: sqlite3.Connection) -> int:
            return int(c.execute("SELECT COUNT(*) FROM answers").fetchone()[0])

        return await self.db.read(q)


@asynccontextmanager
async def bot(
    tmp: Path, *, paced: bool, flood: bool, items: int, overlap: int
) -> AsyncIterator[Bot]:
    """Emulator (flood limits on or off), database, service and the bot, with items."""
    cfg = parse_config(
        {
            "storage": {"database": str(tmp / "db.sqlite"), "media_cache": str(tmp / "cache")},
            "project": [
                {
                    "name": "animals",
                    "labels": list(LABELS),
                    "overlap": overlap,
                    "max_overlap": overlap,
                    "undo_seconds": 2,
                    "quality": {"qualification": 0, "gold_rate": 0.0},
                }
            ],
            "telegram": {},
        },
        tmp / "chatlabel.toml",
    )
    async with BotApiEmulator() as emu:
        db = await Database(cfg.database_path()).open()
        try:
            service = LabelingService(db, cfg, rng=random.Random(1))
            await service.start()
            rows = [
                (service.pids["animals"], f"i{n}", f"Item number {n}.", None, None, None, None,
                 None, None, None, None, overlap, n + 1, time.time())
                for n in range(items)
            ]  # fmt: skip

            def insert(c: sqlite3.Connection) -> None:
                c.executemany(
                    """INSERT INTO items (project_id, ext_id, text, media_kind, media_path,
                       context, gold, gold_reason, suggestion, boxes, meta, needed, seq,
                       created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                    rows,
                )

            await db.write(insert)
            transport = TelegramTransport(
                service,
                Reports(service),
                Telegram(base_url=emu.base_url),
                emu.token,
                media_cache=cfg.media_cache_path(),
            )
            transport.push_interval = 0.5
            transport.max_rate = 30.0 if (paced or flood) else 0.0
            transport.chat_limit = TelegramTransport.chat_limit if paced else None
            transport.inbound = (1.0, 8.0)
            emu.flood = FloodLimits() if flood else None
            await transport.start()
            try:
                yield Bot(emu, db, transport)
            finally:
                await transport.stop()
        finally:
            await db.close()


async def crowd(tmp: Path, seconds: float, *, paced: bool, flood: bool) -> dict[str, Any]:
    """12 people pressing as fast as they can for `seconds`."""
    async with bot(tmp, paced=paced, flood=flood, items=2000, overlap=12) as b:
        people = [Annotator(b.emu.user(100 + n, f"p{n}")) for n in range(12)]
        stop = asyncio.Event()
        tasks = [asyncio.create_task(p.run(stop)) for p in people]
        await asyncio.sleep(1.5)  # everyone has joined
        before, started = await b.answers(), time.monotonic()
        await asyncio.sleep(seconds)
        answers, elapsed = await b.answers() - before, time.monotonic() - started
        counted = [
            c
            for c in b.emu.calls
            if started <= c.time < started + elapsed and c.method.startswith(("send", "edit"))
        ]
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
        waits = [w for p in people for w in p.waits]
        return {
            "answers/s": answers / elapsed,
            "messages/s": sum(1 for c in counted if c.ok) / elapsed,
            "429": sum(1 for c in counted if c.status == 429),
            "p50": pct(waits, 50),
            "p99": pct(waits, 99),
        }


async def storm(tmp: Path, with_storm: bool) -> dict[str, Any]:
    """8 people through 96 answers; with a 2 s 429 storm a second in."""
    async with bot(tmp, paced=True, flood=True, items=48, overlap=2) as b:
        people = [Annotator(b.emu.user(200 + n, f"s{n}")) for n in range(8)]
        stop = asyncio.Event()
        started = time.monotonic()
        tasks = [asyncio.create_task(p.run(stop)) for p in people]
        if with_storm:
            await asyncio.sleep(1.0)
            b.emu.faults = Faults(rate_429=1.0, retry_after=1, seed=2)
            await asyncio.sleep(2.0)
            b.emu.faults = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            told = all(p.told_nothing_left() for p in people)
            if await b.answers() >= 96 and told:
                break
            await asyncio.sleep(0.05)
        elapsed = time.monotonic() - started
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
        stranded = sum(1 for p in people if not p.told_nothing_left())
        return {
            "seconds": elapsed,
            "answers": await b.answers(),
            "429": sum(1 for c in b.emu.calls if c.status == 429),
            "stranded": stranded,
        }


async def flood(tmp: Path, seconds: float, with_flood: bool) -> dict[str, Any]:
    """8 people at a human pace; one more sends 300 messages."""
    async with bot(tmp, paced=True, flood=True, items=400, overlap=8) as b:
        people = [Annotator(b.emu.user(300 + n, f"c{n}"), think=0.8) for n in range(8)]
        stop = asyncio.Event()
        tasks = [asyncio.create_task(p.run(stop)) for p in people]
        await asyncio.sleep(1.5)
        for p in people:
            p.waits.clear()
        flooder = b.emu.user(399, "flood")
        if with_flood:
            for n in range(300):
                await flooder.send(f"hello {n}" if n % 3 else "/stats")
        await asyncio.sleep(seconds)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
        waits = [w for p in people for w in p.waits]
        return {
            "presses": len(waits),
            "p50": pct(waits, 50),
            "p99": pct(waits, 99),
            "max": max(waits, default=0.0),
            "flooder replies": len(flooder.messages),
            "429": sum(1 for c in b.emu.calls if c.status == 429),
        }


async def main(seconds: float) -> None:
    logging.basicConfig(level=logging.ERROR)
    print(f"# {machine()}; {load()}")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        ceiling = await crowd(tmp / "a", seconds, paced=False, flood=False)
        unpaced = await crowd(tmp / "b", seconds, paced=False, flood=True)
        paced = await crowd(tmp / "c", seconds, paced=True, flood=True)
        calm = await storm(tmp / "d", with_storm=False)
        stormy = await storm(tmp / "e", with_storm=True)
        quiet = await flood(tmp / "f", seconds, with_flood=False)
        flooded = await flood(tmp / "g", seconds, with_flood=True)
    print(f"# load after the run: {load()}")
    rows = [
        (name, f"{r['answers/s']:.1f}", f"{r['messages/s']:.1f}", r["429"],
         f"{r['p50']:.2f} / {r['p99']:.2f}")
        for name, r in (("ceiling (no limits)", ceiling), ("limits on, unpaced", unpaced),
                        ("limits on, paced", paced))
    ]  # fmt: skip
    print("\n12 annotators pressing as fast as they can, phases of", seconds, "s")
    print(table(["phase", "answers/s", "sends+edits/s", "429s", "press -> next p50 / p99 s"], rows))
    share = paced["answers/s"] / PLATFORM_PACE
    gain = paced["answers/s"] / max(unpaced["answers/s"], 0.01)
    print(
        f"paced: {share:.2f} of the platform's pace ({PLATFORM_PACE:.0f} answers/s), "
        f"{gain:.1f}x the unpaced bot"
    )
    print("\n8 annotators through 96 answers, paced, limits on")
    print(
        table(
            ["run", "seconds", "answers", "429s", "people stranded"],
            [
                ("no storm", f"{calm['seconds']:.1f}", calm["answers"], calm["429"],
                 calm["stranded"]),
                ("2 s of 429 on every call", f"{stormy['seconds']:.1f}", stormy["answers"],
                 stormy["429"], stormy["stranded"]),
            ],
        )
    )  # fmt: skip
    print(f"storm / no storm: {stormy['seconds'] / calm['seconds']:.2f}x the time")
    print("\n8 annotators reading 0.8 s per item, paced, limits on")
    print(
        table(
            ["run", "presses", "press -> next p50 / p99 / max s", "flooder's replies", "429s"],
            [
                (name, r["presses"], f"{r['p50']:.3f} / {r['p99']:.3f} / {r['max']:.3f}",
                 r["flooder replies"], r["429"])
                for name, r in (("no flood", quiet), ("300 messages from one person", flooded))
            ],
        )
    )  # fmt: skip
    print(f"flood / no flood p99: {flooded['p99'] / max(quiet['p99'], 1e-6):.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="length of the timed phases")
    args = parser.parse_args()
    asyncio.run(main(args.seconds))
