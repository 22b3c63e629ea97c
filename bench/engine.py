"""Engine benchmark: the answer-then-next-item cycle, at a million items and at ten thousand.

Builds a project straight into a SQLite file through chatlabel's real schema (default:
1,000,000 items, 10,000 annotators, 3,000,000 answers, overlap 5 so the project is about 60 %
done and has open work), then runs the cycle one tap on a button triggers:
LabelingService.answer (record, score gold, settle the item) followed by
LabelingService.next_task (lease the next item), through the real service and its one aiosqlite
connection.

Phases, run on the large project and again on one of --compare-items items:

  floor      the same two transaction functions (the service's answer_in and next_in inside
             storage.db's BEGIN IMMEDIATE wrapper) on a plain sqlite3 connection set up like
             storage.db's write connection, in one thread, annotators taking turns: what this SQL
             can reach with no event loop
  saturated  --concurrency annotators answering as fast as they can: throughput, and latency
             that is mostly waiting for the single writer
  paced      --paced-annotators annotators with random think time offering --rates cycles/s in
             total: the latency a volunteer sees at that load (300/s is ten times what
             Telegram lets one bot send; 1,000/s is half the 2,000/s target)

--combined runs each cycle as one transaction, as the bots do (LabelingService.answer with
then_next=True; the floor then runs both functions in one transaction).

    python bench/engine.py            # 1M items (built in ~40 s; ~90 s in all) and 10k items
    python bench/engine.py --small    # 100k and 10k items, 1,000 annotators: ~25 s
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from _util import human, load, machine, pct, table
from chatlabel.app import tune_gc_for_serving
from chatlabel.config import Config, parse_config
from chatlabel.service.labeling import LabelingService
from chatlabel.service.types import Task, UserRef
from chatlabel.storage.db import inline_pragmas, run_group
from chatlabel.storage.schema import migrate
from chatlabel.storage.store import make_store

LABELS = ("positive", "negative", "neutral")
QUALIFICATION = 4
GOLD_RATE = 0.1
ACCURACY = 0.85  # simulated annotators pick the true label this often
AGREEMENT = 0.6
DAY = 86400.0
CHUNK = 200_000


# -- building the project -----------------------------------------------------------------


@dataclass(frozen=True)
class Built:
    """What went into a bench database."""

    items: int
    gold_items: int
    annotators: int
    answers: int
    open_slots: int
    seconds: float


def project_config(
    db: Path, overlap: int, method: str = "majority", url: str | None = None, pool: int = 4
) -> Config:
    """The bench deployment: one single-choice project with gold, in the bench database
    (the SQLite file `db`, or the PostgreSQL database at `url`)."""
    return parse_config(
        {
            "storage": {"url": url, "pool_size": pool} if url else {"database": str(db)},
            "project": [
                {
                    "name": "bench",
                    "labels": list(LABELS),
                    "overlap": overlap,
                    "max_overlap": overlap + 2,
                    "agreement": AGREEMENT,
                    "lease_seconds": 900,
                    "method": method,
                    "quality": {
                        "qualification": QUALIFICATION,
                        "gold_rate": GOLD_RATE,
                        "min_gold_accuracy": 0.7,
                    },
                }
            ],
        },
        db.with_suffix(".toml"),
    )


def _chunks(rows: Iterator[tuple[Any, ...]]) -> Iterator[list[tuple[Any, ...]]]:
    batch: list[tuple[Any, ...]] = []
    for r in rows:
        batch.append(r)
        if len(batch) >= CHUNK:
            yield batch
            batch = []
    if batch:
        yield batch


def _insert(conn: sqlite3.Connection, sql: str, rows: Iterator[tuple[Any, ...]]) -> None:
    for batch in _chunks(rows):
        conn.executemany(sql, batch)


def build(
    path: Path, n_items: int, n_annotators: int, n_answers: int, overlap: int, seed: int
) -> Built:
    """Fill a fresh database file with a project in mid-flight, as the service would leave it.

    Items are labelled in import order (the queue is fullest-first): the first ones are
    resolved with `overlap` answers, then a fifth of the rest are partly answered, the rest
    untouched. Every 100th item is gold; each annotator has answered the first gold items in
    order (the order next_gold_item hands them out) and passed qualification.
    """
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    now = time.time()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = OFF")
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA cache_size = -1000000")
    migrate(conn)

    idx = np.arange(n_items)
    truth = idx % len(LABELS)
    n_gold = max(QUALIFICATION + 20, n_items // 100)
    stride = max(1, n_items // n_gold)
    is_gold = np.zeros(n_items, dtype=bool)
    is_gold[idx[stride - 1 :: stride][:n_gold]] = True
    gold_idx = np.flatnonzero(is_gold)
    n_gold = int(gold_idx.size)
    plain = np.flatnonzero(~is_gold)

    per_annotator = n_answers / n_annotators
    gq = min(n_gold, QUALIFICATION + round(GOLD_RATE * per_annotator))
    m_plain = n_answers - n_annotators * gq
    if m_plain < n_answers / 2:
        # Few answers per annotator (a small project, many people): everyone still passed
        # qualification, and the gold answers come on top of n_answers.
        m_plain = n_answers
    n_partial = len(plain) // 5
    partial_counts = rng.integers(1, overlap, size=n_partial)  # 1 .. overlap-1
    n_resolved = max(0, (m_plain - int(partial_counts.sum())) // overlap)
    if n_resolved + n_partial > len(plain):
        raise SystemExit(
            f"{n_answers:,} answers do not fit {n_items:,} items at overlap "
            f"{overlap}: raise --items or --overlap"
        )
    counts = np.zeros(len(plain), dtype=np.int64)
    counts[:n_resolved] = overlap
    counts[n_resolved : n_resolved + n_partial] = partial_counts
    n_ans_item = np.zeros(n_items, dtype=np.int64)
    n_ans_item[plain] = counts

    # Plain answers: item k gets counts[k] distinct, consecutive annotators from a random base.
    a_item = np.repeat(plain, counts)
    starts = np.cumsum(counts) - counts
    within = np.arange(a_item.size) - np.repeat(starts, counts)
    a_who = np.repeat(rng.integers(0, n_annotators, size=len(plain)), counts) + within
    a_who %= n_annotators
    right = rng.random(a_item.size) < ACCURACY
    must = math.ceil(AGREEMENT * overlap)
    right |= (within < must) & (np.repeat(np.arange(len(plain)) < n_resolved, counts))
    a_val = np.where(
        right, truth[a_item], (truth[a_item] + rng.integers(1, len(LABELS), size=a_item.size)) % 3
    )
    # Gold answers: annotator w answered gold_idx[0:gq]; qualification ones are right.
    g_item = np.tile(gold_idx[:gq], n_annotators)
    g_who = np.repeat(np.arange(n_annotators), gq)
    g_right = (rng.random(g_item.size) < ACCURACY) | (
        np.tile(np.arange(gq), n_annotators) < QUALIFICATION
    )
    g_val = np.where(
        g_right, truth[g_item], (truth[g_item] + rng.integers(1, len(LABELS), size=g_item.size)) % 3
    )

    ans_item = np.concatenate([a_item, g_item])
    ans_who = np.concatenate([a_who, g_who])
    ans_val = np.concatenate([a_val, g_val])
    ans_gold = np.concatenate([np.zeros(a_item.size, bool), np.ones(g_item.size, bool)])
    order = np.argsort(ans_item, kind="stable")
    ans_item, ans_who, ans_val, ans_gold = (
        ans_item[order],
        ans_who[order],
        ans_val[order],
        ans_gold[order],
    )
    total = int(ans_item.size)
    at = np.linspace(now - 30 * DAY, now - 3600, total) if total else np.zeros(0)

    conn.execute("BEGIN")
    conn.execute(
        "INSERT INTO projects (id, name, created_at) VALUES (1, 'bench', ?)", (now - 31 * DAY,)
    )
    _insert(
        conn,
        "INSERT INTO annotators (id, key, platform, address, name, project_id, "
        "created_at) VALUES (?, ?, 'telegram', ?, ?, 1, ?)",
        (
            (w + 1, f"telegram:{w + 1}", str(w + 1), f"annotator {w + 1}", now - 31 * DAY)
            for w in range(n_annotators)
        ),
    )

    status = np.full(n_items, "pending", dtype=object)
    status[plain[:n_resolved]] = "resolved"
    _insert(
        conn,
        "INSERT INTO items (id, project_id, ext_id, text, gold, status, needed, "
        "n_answers, seq, created_at) VALUES (?, 1, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            (
                i + 1,
                f"i{i}",
                f"Review {i}: the battery lasts about {i % 97} hours.",
                LABELS[t] if g else None,
                s,
                overlap,
                n,
                i + 1,
                now - 31 * DAY,
            )
            for i, t, g, s, n in zip(
                idx.tolist(),
                truth.tolist(),
                is_gold.tolist(),
                status.tolist(),
                n_ans_item.tolist(),
                strict=True,
            )
        ),
    )

    ids = np.arange(1, total + 1)
    _insert(
        conn,
        "INSERT INTO assignments (id, item_id, annotator_id, state, created_at, "
        "expires_at) VALUES (?, ?, ?, 'answered', ?, ?)",
        (
            (a, i + 1, w + 1, t - 5.0, t + 895.0)
            for a, i, w, t in zip(
                ids.tolist(), ans_item.tolist(), ans_who.tolist(), at.tolist(), strict=True
            )
        ),
    )
    gold_of = np.where(is_gold, truth, -1)
    correct = np.where(ans_gold, (ans_val == gold_of[ans_item]).astype(np.int64), -1)
    _insert(
        conn,
        "INSERT INTO answers (id, item_id, annotator_id, assignment_id, value, "
        "is_gold, correct, seconds, answered_at) VALUES (?, ?, ?, ?, ?, ?, ?, 5.0, ?)",
        (
            (a, i + 1, w + 1, a, LABELS[v], int(g), None if c < 0 else c, t)
            for a, i, w, v, g, c, t in zip(
                ids.tolist(),
                ans_item.tolist(),
                ans_who.tolist(),
                ans_val.tolist(),
                ans_gold.tolist(),
                correct.tolist(),
                at.tolist(),
                strict=True,
            )
        ),
    )

    # Verdicts of the answered plain items, as _settle leaves them.
    plain_pos = np.full(n_items, -1)
    plain_pos[plain] = np.arange(len(plain))
    votes = np.bincount(plain_pos[a_item] * 3 + a_val, minlength=len(plain) * 3)
    votes = votes.reshape(len(plain), 3)
    answered = np.flatnonzero(counts > 0)

    def verdicts() -> Iterator[tuple[Any, ...]]:
        for k in answered.tolist():
            v = votes[k]
            n = int(counts[k])
            top = int(v.argmax())
            resolved = k < n_resolved
            yield (
                int(plain[k]) + 1,
                "resolved" if resolved else "pending",
                LABELS[top] if resolved else None,
                float(v[top]) / n,
                json.dumps({LABELS[j]: float(v[j]) for j in range(3) if v[j]}),
                n,
                now - 3600,
            )

    _insert(
        conn,
        "INSERT INTO verdicts (item_id, status, label, confidence, votes, n_answers, "
        "method, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'majority', ?)",
        verdicts(),
    )

    # Members: counters consistent with the answers above.
    n_by = np.bincount(ans_who, minlength=n_annotators)
    g_correct = np.bincount(g_who, weights=g_right, minlength=n_annotators).astype(np.int64)
    q = min(QUALIFICATION, gq)
    _insert(
        conn,
        "INSERT INTO members (project_id, annotator_id, answers, gold_answers, "
        "gold_correct, qual_answers, qual_correct, joined_at) "
        "VALUES (1, ?, ?, ?, ?, ?, ?, ?)",
        (
            (w + 1, n, gq, c, q, q, now - 31 * DAY)
            for w, n, c in zip(range(n_annotators), n_by.tolist(), g_correct.tolist(), strict=True)
        ),
    )
    conn.execute("COMMIT")
    conn.close()
    # Built with synchronous=OFF: flush now, or the first checkpoint's fsync in the timed
    # phases would pay for writing the whole file.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    open_slots = int(len(plain) * overlap - counts.sum())
    return Built(n_items, n_gold, n_annotators, total, open_slots, time.perf_counter() - started)


# -- the simulated annotators -------------------------------------------------------------


def user(n: int) -> UserRef:
    """The n-th bench annotator (1-based), as the Telegram transport would describe them."""
    return UserRef("telegram", str(n), f"annotator {n}", str(n))


def choose(task: Task, rng: random.Random) -> str:
    """An answer that is right ACCURACY of the time (the truth is the item number mod 3)."""
    t = int(task.item_id[1:]) % len(LABELS)
    if rng.random() >= ACCURACY:
        t = (t + rng.randint(1, len(LABELS) - 1)) % len(LABELS)
    return LABELS[t]


@dataclass
class Phase:
    """The figures of one phase."""

    name: str
    short: str
    cycles: int
    seconds: float
    cpu: float
    latencies: list[float]
    errors: int = 0
    server_cpu: float | None = None  # a local PostgreSQL server's CPU seconds in the phase

    @property
    def rate(self) -> float:
        """Cycles per second."""
        return self.cycles / self.seconds if self.seconds else 0.0


def _transaction(conn: sqlite3.Connection, fn: Any, args: tuple[Any, ...]) -> Any:
    """One write transaction on a plain connection, exactly as storage.db runs it."""
    ((ok, value),) = run_group(conn, [(fn, args)])
    if not ok:
        raise value
    return value


def floor_cycle(
    conn: sqlite3.Connection,
    svc: LabelingService,
    u: UserRef,
    assignment: int,
    value: str,
    combined: bool,
) -> tuple[Any, Any]:
    """One cycle with plain sqlite3: the service's two transaction functions, or both in one."""

    def answer(c: sqlite3.Connection) -> Any:
        return svc.answer_in(c, u, assignment, value, time.time())

    def lease(c: sqlite3.Connection) -> Any:
        return svc.next_in(c, u, time.time())

    if combined:
        return _transaction(conn, lambda c: (answer(c), lease(c)), ())
    return _transaction(conn, answer, ()), _transaction(conn, lease, ())


async def service_cycle(
    svc: LabelingService, u: UserRef, assignment: int, value: str, combined: bool
) -> tuple[Any, Any]:
    """One cycle through the service: answer then next_task, or both in one transaction."""
    if combined:
        out = await svc.answer(u, assignment, value, then_next=True)
        return out, out.next
    out = await svc.answer(u, assignment, value)
    return out, await svc.next_task(u)


def run_floor(
    db: Path,
    config: Config,
    pids: dict[str, int],
    users: Sequence[UserRef],
    cycles: int,
    seed: int,
    combined: bool = False,
) -> Phase:
    """The same transactions on a plain sqlite3 connection, in one thread."""
    conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    # Set up as storage.db sets up the connection a button press writes through (its page
    # cache included), so that the floor and the service run the same SQL on the same terms.
    inline_pragmas(conn)
    svc = LabelingService(None, config, rng=random.Random(seed))  # type: ignore[arg-type]
    svc.shared.pids = dict(pids)
    svc.shared.names = {v: k for k, v in pids.items()}
    tasks = {u: _transaction(conn, svc.next_in, (u, time.time())) for u in users}

    def cycle(u: UserRef, task: Task, value: str) -> tuple[Any, Any]:
        return floor_cycle(conn, svc, u, task.assignment_id, value, combined)

    phase = floor_phase("floor (sqlite3, 1 thread)", tasks, cycles, random.Random(seed), cycle)
    conn.close()
    return phase


def floor_phase(
    name: str,
    tasks: dict[UserRef, Any],
    cycles: int,
    rng: random.Random,
    cycle: Callable[[UserRef, Task, str], tuple[Any, Any]],
    server_cpu: Callable[[], float] | None = None,
) -> Phase:
    """The floor's loop: annotators with a task take turns running `cycle` (its outcome, the
    next task) until `cycles` are done or nobody has work; `server_cpu` reads a server's CPU."""
    live = [u for u, t in tasks.items() if isinstance(t, Task)]
    lat: list[float] = []
    errors = 0
    cpu0, t0 = time.process_time(), time.perf_counter()
    server0 = server_cpu() if server_cpu else 0.0
    done = 0
    while done < cycles and live:
        u = live[done % len(live)]
        task = tasks[u]
        value = choose(task, rng)
        s = time.perf_counter()
        out, nxt = cycle(u, task, value)
        lat.append(time.perf_counter() - s)
        errors += not out.ok
        done += 1
        if isinstance(nxt, Task):
            tasks[u] = nxt
        else:
            live.remove(u)
    return Phase(
        name,
        "floor",
        done,
        time.perf_counter() - t0,
        time.process_time() - cpu0,
        lat,
        errors,
        server_cpu() - server0 if server_cpu else None,
    )


async def run_saturated(
    svc: LabelingService, users: Sequence[UserRef], cycles: int, seed: int, combined: bool = False
) -> Phase:
    """Annotators answering as fast as the service lets them."""
    rng = random.Random(seed)
    first = await asyncio.gather(*(svc.next_task(u) for u in users))
    lat: list[float] = []
    errors = 0
    left = cycles

    async def annotator(u: UserRef, task: Any) -> None:
        nonlocal left, errors
        while left > 0 and isinstance(task, Task):
            left -= 1
            s = time.perf_counter()
            out, task = await service_cycle(svc, u, task.assignment_id, choose(task, rng), combined)
            lat.append(time.perf_counter() - s)
            errors += not out.ok

    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(annotator(u, t) for u, t in zip(users, first, strict=True)))
    return Phase(
        f"saturated ({len(users)} annotators)",
        "saturated",
        len(lat),
        time.perf_counter() - t0,
        time.process_time() - cpu0,
        lat,
        errors,
    )


async def run_paced(
    svc: LabelingService,
    users: Sequence[UserRef],
    rate: float,
    seconds: float,
    seed: int,
    combined: bool = False,
) -> Phase:
    """Annotators who think between taps (exponential think time), offering `rate` in total."""
    rng = random.Random(seed)
    first = await asyncio.gather(*(svc.next_task(u) for u in users))
    think = len(users) / rate
    lat: list[float] = []
    errors = 0
    busy: set[UserRef] = set()
    stopping = False
    last_done = 0.0  # when the latest cycle finished

    async def annotator(u: UserRef, task: Any) -> None:
        nonlocal errors, last_done
        while isinstance(task, Task):
            await asyncio.sleep(rng.expovariate(1.0 / think))
            if stopping:
                return
            busy.add(u)
            s = time.perf_counter()
            out, task = await service_cycle(svc, u, task.assignment_id, choose(task, rng), combined)
            last_done = time.perf_counter()
            lat.append(last_done - s)
            errors += not out.ok
            busy.discard(u)

    cpu0, t0 = time.process_time(), time.perf_counter()
    tasks = {u: asyncio.create_task(annotator(u, t)) for u, t in zip(users, first, strict=True)}
    await asyncio.sleep(seconds)
    stopping = True
    for u, t in tasks.items():
        if u not in busy:
            t.cancel()  # thinking: it would not start another cycle
    await asyncio.gather(*tasks.values(), return_exceptions=True)
    # Until the last cycle started in the window is done: an overloaded engine finishes many
    # of them after it, and counting those against the window alone overstated its rate.
    elapsed = max(seconds, last_done - t0)
    cpu = time.process_time() - cpu0
    return Phase(
        f"paced ({len(users)} annotators, {rate:,.0f}/s offered)",
        f"paced {rate:,.0f}/s",
        len(lat),
        elapsed,
        cpu,
        lat,
        errors,
    )


async def run_service(
    db: Path, config: Config, args: argparse.Namespace, floor_users: int
) -> list[Phase]:
    """Open the real Database and LabelingService and run the service phases."""
    async with make_store(config) as database:
        svc = LabelingService(database, config, rng=random.Random(args.seed))
        await svc.start()
        # As `chatlabel run` does once its bots are up (the build's garbage goes first).
        tune_gc_for_serving()
        sat_users = [user(n) for n in range(floor_users + 1, floor_users + args.concurrency + 1)]
        first_paced = floor_users + args.concurrency + 1
        paced_users = [user(n) for n in range(first_paced, first_paced + args.paced_annotators)]
        phases = [await run_saturated(svc, sat_users, args.cycles, args.seed, args.combined)]
        for rate in args.rates:
            phases.append(
                await run_paced(
                    svc, paced_users, rate, args.paced_seconds, args.seed, args.combined
                )
            )
        return phases


Group = tuple[str, list[Phase]]  # (storage, its phases, the floor first)


def bench_size(workdir: Path, n_items: int, args: argparse.Namespace) -> tuple[Built, list[Group]]:
    """Build a project of n_items and run every phase on it, on each --storage."""
    n_answers = args.answers if n_items == args.items and args.answers else n_items * 3
    db = workdir / f"engine-{n_items}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    print(
        f"building {n_items:,} items, {args.annotators:,} annotators, "
        f"{n_answers:,} answers in {db} ...",
        flush=True,
    )
    built = build(db, n_items, args.annotators, n_answers, args.overlap, args.seed)
    print(
        f"  built in {built.seconds:.1f} s ({built.answers:,} answers, {built.gold_items:,} "
        f"gold items, {built.open_slots:,} open answer slots, "
        f"{db.stat().st_size / 2**20:,.0f} MiB)",
        flush=True,
    )
    need = (
        args.cycles * 2
        + sum(args.rates) * args.paced_seconds * 1.2
        + args.concurrency * 2
        + args.paced_annotators
    )
    if need > built.open_slots * 0.8:
        print(
            f"  warning: the phases may use up to {need:,.0f} of {built.open_slots:,} open "
            "slots; the queue may run dry",
            flush=True,
        )
    config = project_config(db, args.overlap, args.method)
    # The service creates the project row's id mapping; the floor reuses it.
    pids = {"bench": 1}
    floor_users = [user(n) for n in range(1, args.concurrency + 1)]
    groups: list[Group] = []
    for spec in args.storage:
        if spec == "sqlite":
            print("  SQLite ...", flush=True)
            floor = run_floor(db, config, pids, floor_users, args.cycles, args.seed, args.combined)
            phases = asyncio.run(run_service(db, config, args, len(floor_users)))
            check(db)
            groups.append(("SQLite", [floor, *phases]))
        else:
            groups += bench_postgres(db, spec, args, floor_users)
    if not args.keep:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
    return built, groups


def bench_postgres(
    db: Path, spec: str, args: argparse.Namespace, floor_users: list[UserRef]
) -> list[Group]:
    """The phases on PostgreSQL: one process, then two, each on a fresh copy of the project."""
    import engine_pg

    with ExitStack() as stack:
        base = engine_pg.server(spec, stack)
        print(f"  PostgreSQL at {base.rsplit('@', 1)[-1]} ...", flush=True)
        engine_pg.load(db, base)
        first = len(floor_users) + 1
        one_url = engine_pg.fresh(base, "chatlabel_bench_1")
        floor = engine_pg.run_floor(one_url, args, floor_users)
        one = engine_pg.run_one(one_url, args, first)
        engine_pg.check(one_url)
        two_url = engine_pg.fresh(base, "chatlabel_bench_2")
        floor2 = engine_pg.run_floor_two(two_url, args, floor_users)
        two = engine_pg.run_two(two_url, args, first)
        engine_pg.check(two_url)
        engine_pg.drop(base, "chatlabel_bench_1", "chatlabel_bench_2")
    name = "PostgreSQL (Unix socket)" if spec == "postgresql-socket" else "PostgreSQL"
    return [(f"{name}, 1 process", [floor, *one]), (f"{name}, 2 processes", [floor2, *two])]


def check(db: Path) -> None:
    """After the run: open leases match the items' lease counters; no item is over-answered."""
    conn = sqlite3.connect(db)
    try:
        check_counts(conn)
    finally:
        conn.close()


def check_counts(conn: Any) -> None:
    """Compare open leases with the items' counters and look for over-answered items, on a
    sqlite3 or PostgreSQL connection; exit if the database is inconsistent."""
    leases = conn.execute("SELECT COALESCE(SUM(n_leases), 0) FROM items").fetchone()[0]
    pending = conn.execute("SELECT COUNT(*) FROM assignments WHERE state = 'pending'").fetchone()[0]
    over = conn.execute(
        "SELECT COUNT(*) FROM items WHERE gold IS NULL AND n_answers + n_leases > needed"
    ).fetchone()[0]
    ok = leases == pending and over == 0
    print(
        f"  check: {pending:,} open leases, items count {leases:,}; {over} items over-answered"
        f" -> {'ok' if ok else 'INCONSISTENT'}",
        flush=True,
    )
    if not ok:
        raise SystemExit("the database is inconsistent after the run")


def report(built: Built, storage: str, phases: list[Phase]) -> list[list[str]]:
    """Table rows for one project size on one storage."""
    floor = phases[0]
    rows = []
    for p in phases:
        rows.append(
            [
                f"{built.items:,}",
                storage,
                p.name,
                human(p.cycles),
                human(p.rate),
                f"{pct(p.latencies, 50) * 1e3:.2f}",
                f"{pct(p.latencies, 99) * 1e3:.2f}",
                f"{p.cpu / p.cycles * 1e6:.0f}" if p.cycles else "-",
                f"{p.server_cpu / p.cycles * 1e6:.0f}" if p.cycles and p.server_cpu else "-",
                f"{p.rate / floor.rate:.2f}"
                if floor.rate and not p.name.startswith("paced")
                else "-",
                str(p.errors),
            ]
        )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Parse flags, build both project sizes, run the phases and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--small", action="store_true", help="100k items, 1,000 annotators: a quick run"
    )
    ap.add_argument("--items", type=int, default=None, help="large project (default 1,000,000)")
    ap.add_argument(
        "--compare-items",
        type=int,
        default=10_000,
        help="small project to compare against (0 = skip)",
    )
    ap.add_argument("--annotators", type=int, default=None, help="default 10,000")
    ap.add_argument("--answers", type=int, default=None, help="default 3 per item")
    ap.add_argument("--overlap", type=int, default=5)
    ap.add_argument(
        "--method",
        choices=("majority", "weighted"),
        default="majority",
        help="the project's verdict method (weighted reads gold weights per settle)",
    )
    ap.add_argument(
        "--cycles",
        type=int,
        default=None,
        help="cycles in the floor and saturated phases (default 4,000)",
    )
    ap.add_argument(
        "--concurrency", type=int, default=200, help="annotators in the floor and saturated phases"
    )
    ap.add_argument(
        "--rates",
        default="300,1000",
        help="cycles/s offered in the paced phases, comma-separated ('' = none)",
    )
    ap.add_argument("--paced-annotators", type=int, default=2000)
    ap.add_argument("--paced-seconds", type=float, default=3.0)
    ap.add_argument(
        "--combined",
        action="store_true",
        help="one transaction per cycle: service.answer_and_next (if the service "
        "has it) and, for the floor, both functions in one transaction",
    )
    ap.add_argument(
        "--storage",
        action="append",
        default=None,
        help="sqlite (default), postgresql (a throwaway local server: needs Debian's "
        "postgresql binaries), postgresql-socket (the same, reached through its Unix socket), "
        "or postgresql://USER@HOST:PORT/postgres (a server of yours; "
        "bench databases are created and dropped there); repeat to compare, side by side",
    )
    ap.add_argument("--pool", type=int, default=4, help="PostgreSQL connections per process")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dir", type=Path, default=None, help="where to build (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the database files (with --dir)")
    args = ap.parse_args(argv)
    args.rates = [float(r) for r in args.rates.split(",") if r.strip()]
    args.storage = args.storage or ["sqlite"]
    args.items = args.items or (100_000 if args.small else 1_000_000)
    args.annotators = args.annotators or (1_000 if args.small else 10_000)
    args.cycles = args.cycles or (2_000 if args.small else 4_000)
    if args.small:
        args.paced_seconds = min(args.paced_seconds, 2.0)
    if args.concurrency * 2 + args.paced_annotators > args.annotators:
        args.paced_annotators = max(10, args.annotators - args.concurrency * 2)

    print(f"machine: {machine()}; {load()} at start")
    sizes = [args.items] + ([args.compare_items] if args.compare_items else [])
    results: list[tuple[Built, list[Group]]] = []
    with tempfile.TemporaryDirectory(prefix="chatlabel-bench-", dir=args.dir) as tmp:
        workdir = args.dir if args.keep and args.dir else Path(tmp)
        for n in sizes:
            results.append(bench_size(workdir, n, args))

    rows = [
        r
        for built, groups in results
        for storage, phases in groups
        for r in report(built, storage, phases)
    ]
    print()
    print(
        table(
            [
                "items",
                "storage",
                "phase",
                "cycles",
                "cycles/s",
                "median ms",
                "p99 ms",
                "CPU µs/cycle",
                "server CPU µs/cycle",
                "× floor",
                "errors",
            ],
            rows,
        )
    )
    if len(results) == 2 and len(results[0][1]) == 1:
        (big, [(_, pb)]), (small, [(_, ps)]) = results
        print()
        for i, name in enumerate(p.short for p in pb):
            print(
                f"{name:>14}: {pb[i].rate:,.0f} cycles/s at {big.items:,} items vs "
                f"{ps[i].rate:,.0f} at {small.items:,} "
                f"(ratio {pb[i].rate / ps[i].rate:.2f}); p99 {pct(pb[i].latencies, 99) * 1e3:.2f}"
                f" vs {pct(ps[i].latencies, 99) * 1e3:.2f} ms"
            )
    print(f"{load()} at end")
    return (
        0
        if all(p.errors == 0 for _, groups in results for _, phases in groups for p in phases)
        else 1
    )


if __name__ == "__main__":
    sys.exit(main())
