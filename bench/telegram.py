"""Telegram benchmark: the real bot (`chatlabel run` in its own process) against the Bot API
emulator, with 200 simulated annotators answering as fast as they can.

Phases, all in one run so the figures share the machine's mood:

  floor      a bare python-telegram-bot client (the bot's own HTTPXRequest settings, 32 calls in
             flight like the bot's 32 concurrent updates) calling sendMessage in a loop against
             the same emulator, in its own process: what one Bot API round trip costs here
  unlimited  `chatlabel run` with TelegramTransport.max_rate set to 0 (no bot-wide send limit):
             the bot's own capacity; answers per second end to end, the bot process's CPU per
             answer (read from /proc/<pid>/stat), Bot API calls per answer, and the time from a
             press to the next item arriving
  limited    the same with Telegram's real limit (max_rate = 30 messages per second): the
             throughput people would see against the real Telegram
  aiohttp    unlimited again with chatlabel's own aiohttp request backend
             (transports/telegram_http.py, the default since this benchmark showed the gap);
             the first two phases use python-telegram-bot's stock HTTPXRequest as the baseline

Each answer costs the bot one update to read, one database transaction (the answer and the
next item's lease together) and three Bot API calls (answerCallbackQuery, editMessageText,
sendMessage). The emulator and the simulated people run in this process and
compete with the bot for the same cores, so "answers/s" is end to end; "capacity" is 1 / (bot CPU
seconds per answer), what the bot alone would do with one core to itself.

    python bench/telegram.py                  # 200 annotators, 10 s + 8 s measured, ~40 s
    python bench/telegram.py --seconds 5 --limited-seconds 4 --annotators 100
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# This file shares its name with python-telegram-bot's package: import that package (through
# chatlabel) with this folder off the path, then put the folder back, last, for _util.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
from telegram import Bot  # noqa: E402  (python-telegram-bot)
from telegram.request import HTTPXRequest  # noqa: E402

from chatlabel.emulators.telegram import (  # noqa: E402
    BotApiEmulator,
    Chat,
    ChatMessage,
    SimUser,
)

sys.path.append(str(_HERE))
from _util import human, load, machine, pct, table  # noqa: E402

TOKEN = "987654:BENCH-TOKEN"
LABELS = ("positive", "negative", "neutral")
CONCURRENCY = 32  # TelegramTransport.max_concurrent_updates
TICK = os.sysconf("SC_CLK_TCK")

# `chatlabel run`, with the bot-wide send limit set first (class attributes, read at start()).
LAUNCHER = """
import os, sys
from chatlabel.transports.telegram import TelegramTransport
TelegramTransport.max_rate = float(sys.argv[1])
if TelegramTransport.max_rate == 0:  # no limit at all: no pacing per chat either
    TelegramTransport.chat_limit = None
from chatlabel.cli import main
if os.environ.get("BENCH_REQUEST") != "aiohttp":
    import functools
    from telegram.request import HTTPXRequest
    TelegramTransport.request_class = functools.partial(
        HTTPXRequest, httpx_kwargs={"trust_env": False})
if os.environ.get("BENCH_PROFILE"):
    import cProfile
    prof = cProfile.Profile()
    prof.enable()
    try:
        main(["run", sys.argv[2]], prog_name="chatlabel", standalone_mode=False)
    finally:
        prof.disable()
        prof.dump_stats(os.environ["BENCH_PROFILE"])
else:
    main(["run", sys.argv[2]], prog_name="chatlabel")
"""


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICK


class BenchEmulator(BotApiEmulator):
    """The emulator, telling each simulated person at once about every new bot message
    (waiting on the shared change signal would wake all 200 people on every call)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.inbox: dict[int, asyncio.Queue[ChatMessage]] = {}

    def add_message(self, chat: Chat, *, from_bot: bool, **fields: Any) -> ChatMessage:
        message = super().add_message(chat, from_bot=from_bot, **fields)
        queue = self.inbox.get(chat.id)
        if from_bot and queue is not None:
            queue.put_nowait(message)
        return message


def _answer_buttons(m: ChatMessage) -> list[str]:
    data = [str(b.get("callback_data", "")) for b in m.buttons]
    return [d for d in data if d.startswith("a:")]


@dataclass
class Annotator:
    """A simulated person who presses a label the moment an item arrives."""

    user: SimUser
    queue: asyncio.Queue[ChatMessage]
    rng: random.Random
    current: ChatMessage | None = None
    pressed: set[str] = field(default_factory=set)  # assignment ids
    pressed_at: float | None = None
    latencies: list[float] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)  # an item is in front of them

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            m = self.current
            if m is not None and _answer_buttons(m):
                asg = _answer_buttons(m)[0].split(":")[1]
                if asg not in self.pressed:
                    self.pressed.add(asg)
                    self.pressed_at = time.perf_counter()
                    await self.user.press_raw(m.message_id, self.rng.choice(_answer_buttons(m)))
            try:
                new = await asyncio.wait_for(self.queue.get(), 0.5)
            except TimeoutError:
                continue
            if _answer_buttons(new):
                if self.pressed_at is not None:
                    self.latencies.append(time.perf_counter() - self.pressed_at)
                    self.pressed_at = None
                self.current = new
                self.ready.set()


# -- the floor: a bare client in its own process ------------------------------------------------


async def floor_client(base_url: str, chats: list[int], seconds: float, kind: str) -> None:
    """Call sendMessage as fast as CONCURRENCY callers can; print calls and CPU as JSON."""
    backend: Any = HTTPXRequest
    if kind == "aiohttp":
        from chatlabel.transports.telegram_http import AiohttpRequest

        backend = AiohttpRequest

    def request(pool: int) -> Any:  # exactly as TelegramTransport builds its requests
        return backend(
            connection_pool_size=pool, pool_timeout=10.0, httpx_kwargs={"trust_env": False}
        )

    calls = 0
    async with Bot(TOKEN, base_url=base_url, request=request(64),
                   get_updates_request=request(2)) as bot:  # fmt: skip
        for chat in chats[:CONCURRENCY]:  # warm the connection pool
            await bot.send_message(chat, "warm-up")
        stop = time.perf_counter() + seconds
        cpu0, t0 = time.process_time(), time.perf_counter()

        async def caller(n: int) -> None:
            nonlocal calls
            i = n
            while time.perf_counter() < stop:
                await bot.send_message(chats[i % len(chats)], f"item {i}")
                calls += 1
                i += CONCURRENCY

        await asyncio.gather(*(caller(n) for n in range(CONCURRENCY)))
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    print(json.dumps({"calls": calls, "seconds": elapsed, "cpu": cpu}))


async def measure_floor(
    emu: BenchEmulator, chats: list[int], seconds: float, kind: str = "httpx"
) -> dict[str, float]:
    """Run the bare client in a subprocess against the emulator served from this process."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--floor-client", emu.base_url, ",".join(map(str, chats)),
        str(seconds), kind, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    cpu0 = time.process_time()
    out, err = await asyncio.wait_for(proc.communicate(), seconds + 60)
    here = time.process_time() - cpu0
    if proc.returncode != 0:
        raise RuntimeError(f"the floor client failed:\n{err.decode()[-2000:]}")
    got = json.loads(out.decode().strip().splitlines()[-1])
    got["emulator_cpu"] = here
    return got


# -- the bot --------------------------------------------------------------------------------------


def write_config(folder: Path, base_url: str) -> Path:
    cfg = folder / "chatlabel.toml"
    cfg.write_text(
        f"""
[storage]
database = "chatlabel.db"

[[project]]
name = "bench"
labels = {json.dumps(list(LABELS))}
overlap = 1
max_overlap = 1
lease_seconds = 3600

[project.quality]
qualification = 0
gold_rate = 0.0

[telegram]
token_env = "BENCH_TELEGRAM_TOKEN"
base_url = "{base_url}"
""",
        encoding="utf-8",
    )
    return cfg


async def import_items(cfg: Path, n: int) -> None:
    from chatlabel.app import open_service
    from chatlabel.config import load_config
    from chatlabel.importer import import_file

    data = cfg.parent / "items.jsonl"
    with data.open("w", encoding="utf-8") as f:
        for i in range(n):
            row = {"id": f"i{i}", "text": f"Review number {i}: fine, I guess, if a bit long."}
            f.write(json.dumps(row) + "\n")
    db, svc = await open_service(load_config(cfg))
    try:
        await import_file(svc, "bench", data)
    finally:
        await db.close()


@dataclass
class Run:
    """What one measured window of the bot produced."""

    name: str
    answers: int
    seconds: float
    bot_cpu: float
    driver_cpu: float
    calls: dict[str, int]
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.answers / self.seconds

    @property
    def cpu_per_answer(self) -> float:
        return self.bot_cpu / max(self.answers, 1)


async def run_bot(
    name: str,
    emu: BenchEmulator,
    cfg: Path,
    people: list[Annotator],
    *,
    max_rate: float,
    seconds: float,
    start: bool,
    profile: Path | None = None,
    request: str = "httpx",
) -> Run:
    """Start `chatlabel run`, let everyone answer, measure a window of `seconds`, stop it."""
    log = cfg.parent / f"bot-{name}.log"
    env = {**os.environ, "BENCH_TELEGRAM_TOKEN": TOKEN, "BENCH_REQUEST": request,
           "BENCH_DIR": str(_HERE)}  # fmt: skip
    if profile:
        env["BENCH_PROFILE"] = str(profile)
    polls = len(emu.calls_to("getUpdates"))
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", LAUNCHER, str(max_rate), str(cfg),
            stdout=out, stderr=asyncio.subprocess.STDOUT, env=env, cwd=cfg.parent,
        )  # fmt: skip
    stop = asyncio.Event()
    workers: list[asyncio.Task[None]] = []
    try:
        ok = await emu.signal.wait_until(lambda: len(emu.calls_to("getUpdates")) > polls, 30)
        if not ok:
            raise RuntimeError(f"the bot did not start:\n{log.read_text()[-2000:]}")
        for p in people:
            shown = _answer_buttons(p.current) if p.current is not None else []
            if start or (shown and shown[0].split(":")[1] in p.pressed):
                # New, or their last press met the previous bot stopping: /start shows the
                # item they hold (or the next one), as a person would do.
                p.current = None
                p.ready.clear()
                await p.user.send("/start")
        workers = [asyncio.create_task(p.run(stop)) for p in people]
        # Warm up: everyone has an item in front of them, then a moment of steady state.
        await asyncio.wait_for(asyncio.gather(*(p.ready.wait() for p in people)), 120)
        await asyncio.sleep(1.0)
        for p in people:
            p.latencies.clear()
        calls0 = len(emu.calls)
        acked0 = _acked(emu)
        cpu0, driver0, t0 = cpu_seconds(proc.pid), time.process_time(), time.perf_counter()
        await asyncio.sleep(seconds)
        cpu1, driver1, t1 = cpu_seconds(proc.pid), time.process_time(), time.perf_counter()
        acked1 = _acked(emu)
        window = emu.calls[calls0:]
        latencies = [x for p in people for x in p.latencies]
    finally:
        stop.set()
        await asyncio.gather(*workers)
        proc.terminate()
        code = await asyncio.wait_for(proc.wait(), 60)
        if code != 0:
            raise RuntimeError(f"the bot exited with {code}:\n{log.read_text()[-2000:]}")
    calls: dict[str, int] = {}
    for c in window:
        calls[c.method] = calls.get(c.method, 0) + 1
    return Run(name, acked1 - acked0, t1 - t0, cpu1 - cpu0, driver1 - driver0, calls, latencies)


def _acked(emu: BotApiEmulator) -> int:
    """Presses the bot has answered so far (each answered press is a recorded answer)."""
    return sum(1 for q in emu.callback_queries.values() if q.answered)


def check_database(db: Path, pressed: int, acked: int) -> tuple[int, int]:
    """(answers, answers recorded twice) in the bot's database after the run; every press the
    bot acknowledged must be there."""
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        answers = conn.execute("SELECT COUNT(*) FROM answers").fetchone()[0]
        twice = conn.execute(
            """SELECT COUNT(*) FROM
                 (SELECT assignment_id FROM answers GROUP BY 1 HAVING COUNT(*) > 1)"""
        ).fetchone()[0]
    finally:
        conn.close()
    if not acked <= answers <= pressed:
        raise AssertionError(f"{answers} answers recorded for {pressed} presses ({acked} acked)")
    return answers, twice


async def main(args: argparse.Namespace) -> None:
    print(f"machine: {machine()}; {load()}")
    print(
        f"{args.annotators} annotators, {human(args.items)} items; floor {args.floor_seconds} s, "
        f"unlimited {args.seconds} s, limited {args.limited_seconds} s measured\n"
    )
    with tempfile.TemporaryDirectory(prefix="chatlabel-bench-tg-") as tmp:
        folder = Path(tmp)
        async with BenchEmulator(token=TOKEN) as emu:
            rng = random.Random(7)
            people = []
            for n in range(args.annotators):
                user = emu.user(100_000 + n, f"a{n}")
                emu.inbox[user.id] = asyncio.Queue()
                people.append(Annotator(user, emu.inbox[user.id], random.Random(rng.random())))
            chats = [p.user.id for p in people]

            for p in people:
                p.user.chat.started = True  # the floor writes to them before they say a word
            floor = await measure_floor(emu, chats, args.floor_seconds)
            floor_aio = (
                await measure_floor(emu, chats, args.floor_seconds, "aiohttp")
                if args.aiohttp
                else None
            )
            for q in emu.inbox.values():
                while not q.empty():
                    q.get_nowait()
            for p in people:
                p.user.chat.started = False

            cfg = write_config(folder, emu.base_url)
            await import_items(cfg, args.items)
            free = await run_bot(
                "unlimited", emu, cfg, people, max_rate=0, seconds=args.seconds, start=True,
                profile=args.profile,
            )  # fmt: skip
            capped = await run_bot("limited", emu, cfg, people, max_rate=30,
                                   seconds=args.limited_seconds, start=False)  # fmt: skip
            fast = await run_bot(
                "unlimited, aiohttp", emu, cfg, people, max_rate=0, seconds=args.seconds,
                start=False, request="aiohttp",
            ) if args.aiohttp else None  # fmt: skip
            pressed = sum(len(p.pressed) for p in people)
            acked = _acked(emu)
            answers, twice = check_database(folder / "chatlabel.db", pressed, acked)

    floor_rate = floor["calls"] / floor["seconds"]
    floor_cpu = floor["cpu"] / floor["calls"]
    per_answer = {m: n / max(free.answers, 1) for m, n in sorted(free.calls.items())}
    api_calls = sum(n for m, n in per_answer.items() if m != "getUpdates")
    print("floor: bare sendMessage loop, same client settings, 32 in flight")
    floors = [("PTB + httpx (the bot's)", floor)]
    if floor_aio:
        floors.append(("PTB + aiohttp", floor_aio))
    print(table(
        ["client", "calls/s", "client CPU per call", "emulator CPU per call"],
        [[name, f"{f['calls'] / f['seconds']:,.0f}", f"{f['cpu'] / f['calls'] * 1e3:.2f} ms",
          f"{f['emulator_cpu'] / f['calls'] * 1e3:.2f} ms"] for name, f in floors],
    ))  # fmt: skip
    print()
    rows = []
    for r in (free, capped, *([fast] if fast else [])):
        rows.append([
            r.name, f"{r.rate:,.0f}", f"{r.cpu_per_answer * 1e3:.2f} ms",
            f"{1 / r.cpu_per_answer:,.0f}" if r.answers else "n/a",
            f"{r.driver_cpu / max(r.answers, 1) * 1e3:.2f} ms",
            f"{pct(r.latencies, 50) * 1e3:,.0f} ms", f"{pct(r.latencies, 99) * 1e3:,.0f} ms",
            human(r.answers),
        ])  # fmt: skip
    print(table(
        ["bot", "answers/s", "bot CPU/answer", "capacity (1 core)", "emulator+people CPU/answer",
         "press→next p50", "p99", "answers"],
        rows,
    ))  # fmt: skip
    print()
    print(
        "Bot API calls per answer (unlimited): "
        + ", ".join(f"{m} {v:.2f}" for m, v in per_answer.items())
    )
    floor_answers = floor_rate / api_calls
    print(
        f"ratios: end-to-end answers/s = {free.rate / floor_answers:.2f} x the floor's "
        f"{floor_answers:,.0f} answers/s ({floor_rate:,.0f} calls/s / {api_calls:.2f} calls "
        f"per answer); bot CPU per answer = {free.cpu_per_answer / (floor_cpu * api_calls):.1f}"
        f" x the bare client's CPU for the same calls; capacity = "
        f"{1 / free.cpu_per_answer / 30:.0f} x Telegram's 30 messages/s"
    )
    print(
        f"limited to 30 messages/s: {capped.rate:.1f} answers/s "
        f"(each answer sends one message: the next item)"
    )
    if fast and floor_aio:
        aio_answers = floor_aio["calls"] / floor_aio["seconds"] / api_calls
        print(
            f"aiohttp: end-to-end answers/s = {fast.rate / aio_answers:.2f} x its floor's "
            f"{aio_answers:,.0f} answers/s; bot CPU per answer = "
            f"{fast.cpu_per_answer / (floor_aio['cpu'] / floor_aio['calls'] * api_calls):.1f}"
            f" x the bare aiohttp client's CPU for the same calls"
        )
        print(
            f"with an aiohttp request backend (chatlabel's default) instead of PTB's "
            f"HTTPXRequest: {fast.rate:,.0f} answers/s, bot CPU {fast.cpu_per_answer * 1e3:.2f}"
            f" ms per answer = capacity {1 / fast.cpu_per_answer:,.0f} answers/s "
            f"({fast.cpu_per_answer / free.cpu_per_answer:.2f} x the httpx bot's CPU)"
        )
    print(
        f"database: {human(answers)} answers for {human(pressed)} presses, of which "
        f"{human(acked)} acknowledged (all recorded; the rest met a bot stopping and got no "
        f"reply); {twice} recorded twice"
    )
    if args.profile:
        import pstats

        print(f"\nprofile of the unlimited bot's main thread ({args.profile}):")
        pstats.Stats(str(args.profile)).sort_stats("tottime").print_stats(25)


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--annotators", type=int, default=200)
    ap.add_argument("--items", type=int, default=30_000)
    ap.add_argument("--seconds", type=float, default=10.0, help="unlimited window")
    ap.add_argument("--limited-seconds", type=float, default=8.0, help="30 msg/s window")
    ap.add_argument("--floor-seconds", type=float, default=5.0)
    ap.add_argument("--profile", type=Path, help="cProfile the unlimited bot into this file")
    ap.add_argument(
        "--no-aiohttp", dest="aiohttp", action="store_false",
        help="skip the experiment with an aiohttp request backend instead of PTB's httpx one",
    )  # fmt: skip
    return ap.parse_args()


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--floor-client":
        asyncio.run(floor_client(
            sys.argv[2], [int(c) for c in sys.argv[3].split(",")], float(sys.argv[4]), sys.argv[5]
        ))  # fmt: skip
    else:
        asyncio.run(main(parse()))
