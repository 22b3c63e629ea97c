"""bench/engine.py on PostgreSQL: the same project, the same cycle, one process and two.

The project is built into SQLite by engine.build (the same rows), copied into a PostgreSQL
template database once (chatlabel's own migrate-db copy, without the digests), and every run
starts from a fresh copy of that template, so the phases compare like with like:

  floor          the service's transaction functions on one plain psycopg connection in one
                 thread (BEGIN, answer_in + next_in, COMMIT, pipelined as storage.pg sends them):
                 what this SQL costs with no event loop and no pool
  1 process      the real service on storage.pg.PgDatabase (a pool of worker threads)
  2 processes    two processes, each the real service with half of the annotators and half
                 of the offered rate, started together phase by phase (a barrier)
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import random
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from _util import postgres_cpu
from chatlabel.app import tune_gc_for_serving
from chatlabel.service.labeling import LabelingService
from chatlabel.service.types import Task
from chatlabel.storage.pg_conn import PgConnection
from chatlabel.storage.store import make_store
from chatlabel.storage.transfer import transfer
from engine import (
    Phase,
    check_counts,
    floor_phase,
    project_config,
    run_paced,
    run_saturated,
    user,
)

TEMPLATE = "chatlabel_bench_template"


def server(spec: str, stack: ExitStack) -> str:
    """A maintenance-database URL: the one given, or a throwaway local server's (reached over
    TCP on 127.0.0.1, or over its Unix socket with `postgresql-socket`)."""
    if spec.startswith("postgresql://"):
        return spec
    from chatlabel.storage.pgtemp import TempServer

    # Durable commits as an operator would run it (fsync and synchronous_commit on); a
    # bigger shared_buffers holds the 1M-item project's hot indexes.
    srv = stack.enter_context(TempServer(settings={"shared_buffers": "1GB"}))
    return srv.socket_url() if spec == "postgresql-socket" else srv.url()


def on(base: str, name: str) -> str:
    """The URL of database `name` on the server `base` names (a socket's query kept)."""
    from urllib.parse import urlsplit, urlunsplit

    return urlunsplit(urlsplit(base)._replace(path=f"/{name}"))


def _admin(base: str) -> Any:
    import psycopg

    return psycopg.connect(base, autocommit=True)


def load(db_file: Path, base: str) -> None:
    """Copy the built SQLite project into the template database (replacing an old one)."""
    with _admin(base) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {TEMPLATE}")
        admin.execute(f"CREATE DATABASE {TEMPLATE}")
    t0 = time.perf_counter()
    transfer(f"sqlite:///{db_file}", on(base, TEMPLATE), verify=False)
    with _admin(on(base, TEMPLATE)) as conn:
        conn.execute("VACUUM ANALYZE")
    print(f"  copied into PostgreSQL in {time.perf_counter() - t0:.1f} s", flush=True)


def fresh(base: str, name: str) -> str:
    """A new copy of the template; its URL."""
    with _admin(base) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    return on(base, name)


def drop(base: str, *names: str) -> None:
    """Drop bench databases."""
    with _admin(base) as admin:
        for n in (*names, TEMPLATE):
            admin.execute(f"DROP DATABASE IF EXISTS {n}")


def run_floor(url: str, args: argparse.Namespace, users: list[Any]) -> Phase:
    """The transaction functions on one plain connection in one thread."""
    config = project_config(Path("unused.db"), args.overlap, args.method, url)
    svc = LabelingService(None, config, rng=random.Random(args.seed))  # type: ignore[arg-type]
    svc.shared.pids, svc.shared.names = {"bench": 1}, {1: "bench"}
    conn = PgConnection.connect(url)

    def tx(fn: Any) -> Any:
        conn.begin()  # pipelined, as storage.pg runs a transaction
        out = fn(conn)
        conn.commit()
        return out

    def cycle(u: Any, task: Task, value: str) -> tuple[Any, Any]:
        def both(c: Any) -> Any:
            out = svc.answer_in(c, u, task.assignment_id, value, time.time())
            return out, svc.next_in(c, u, time.time())

        return tx(both)

    tasks = {u: tx(lambda c, u=u: svc.next_in(c, u, time.time())) for u in users}
    rng = random.Random(args.seed)
    # Read while the connection is open: a backend's CPU leaves with its process.
    phase = floor_phase("floor (psycopg, 1 thread)", tasks, args.cycles, rng, cycle, postgres_cpu)
    conn.close()
    return phase


async def _phases(
    url: str,
    args: argparse.Namespace,
    sat_users: list[Any],
    paced_users: list[Any],
    share: float,
    barrier: Any = None,
) -> list[Phase]:
    """The service phases in this process: saturated, then each paced rate (times `share`)."""
    config = project_config(Path("unused.db"), args.overlap, args.method, url, args.pool)
    async with make_store(config) as db:
        svc = LabelingService(db, config, rng=random.Random(args.seed + len(sat_users)))
        await svc.start()
        tune_gc_for_serving()

        async def together() -> None:
            if barrier is not None:
                await asyncio.to_thread(barrier.wait, 120)

        async def timed(phase: Any) -> Phase:
            # The server's CPU in the phase, read while this process's connections are open.
            s0 = postgres_cpu()
            p: Phase = await phase
            p.server_cpu = postgres_cpu() - s0
            return p

        await together()
        cycles = int(args.cycles * share)
        phases = [await timed(run_saturated(svc, sat_users, cycles, args.seed, args.combined))]
        for rate in args.rates:
            await together()
            phases.append(
                await timed(
                    run_paced(
                        svc, paced_users, rate * share, args.paced_seconds, args.seed, args.combined
                    )
                )
            )
        return phases


def run_one(url: str, args: argparse.Namespace, first: int) -> list[Phase]:
    """The service phases in this one process."""
    sat = [user(n) for n in range(first, first + args.concurrency)]
    p0 = first + args.concurrency
    paced = [user(n) for n in range(p0, p0 + args.paced_annotators)]
    return asyncio.run(_phases(url, args, sat, paced, 1.0))


def _worker(
    url: str, args: argparse.Namespace, sat: list[int], paced: list[int], barrier: Any, out: Any
) -> None:
    phases = asyncio.run(
        _phases(url, args, [user(n) for n in sat], [user(n) for n in paced], 0.5, barrier)
    )
    out.put(
        [
            (p.name, p.short, p.cycles, p.seconds, p.cpu, p.latencies, p.errors, p.server_cpu)
            for p in phases
        ]
    )


def run_two(url: str, args: argparse.Namespace, first: int) -> list[Phase]:
    """Two processes side by side, each with half the annotators and half the offered rate."""
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    out = ctx.Queue()
    half_sat = args.concurrency // 2
    half_paced = args.paced_annotators // 2
    p0 = first + args.concurrency
    procs = []
    for k in range(2):
        sat = list(range(first + k * half_sat, first + (k + 1) * half_sat))
        paced = list(range(p0 + k * half_paced, p0 + (k + 1) * half_paced))
        proc = ctx.Process(target=_worker, args=(url, args, sat, paced, barrier, out))
        proc.start()
        procs.append(proc)
    results = [out.get(timeout=1800) for _ in procs]
    for proc in procs:
        proc.join(60)
    merged = []
    for i, (name, short, *_rest) in enumerate(results[0]):
        parts = [r[i] for r in results]
        lat = [x for p in parts for x in p[5]]
        merged.append(
            Phase(
                _total_name(name, args),
                short,
                sum(p[2] for p in parts),
                max(p[3] for p in parts),
                sum(p[4] for p in parts),
                lat,
                sum(p[6] for p in parts),
                # Both processes saw the whole server's CPU over the same window: not a sum.
                max(p[7] or 0.0 for p in parts),
            )
        )
    return merged


def _floor_worker(
    url: str, args: argparse.Namespace, users: list[int], barrier: Any, out: Any
) -> None:
    barrier.wait(120)
    p = run_floor(url, args, [user(n) for n in users])
    out.put((p.cycles, p.seconds, p.cpu, p.latencies, p.errors, p.server_cpu))


def run_floor_two(url: str, args: argparse.Namespace, users: list[Any]) -> Phase:
    """The floor in two processes at once, each with half the cycles and half the people."""
    import copy

    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    out = ctx.Queue()
    half = copy.copy(args)
    half.cycles = args.cycles // 2
    ids = [int(u.user_id) for u in users]
    procs = [
        ctx.Process(target=_floor_worker, args=(url, half, ids[k::2], barrier, out))
        for k in range(2)
    ]
    for proc in procs:
        proc.start()
    parts = [out.get(timeout=1800) for _ in procs]
    for proc in procs:
        proc.join(60)
    return Phase(
        "floor (psycopg, 2 processes)",
        "floor",
        sum(p[0] for p in parts),
        max(p[1] for p in parts),
        sum(p[2] for p in parts),
        [x for p in parts for x in p[3]],
        sum(p[4] for p in parts),
        max(p[5] or 0.0 for p in parts),
    )


def check(url: str) -> None:
    """After a run: open leases match the items' counters; no item is over-answered."""
    conn = PgConnection.connect(url)
    try:
        check_counts(conn)
    finally:
        conn.close()


def _total_name(name: str, args: argparse.Namespace) -> str:
    """A two-process phase named by its totals (each process had half)."""
    if name.startswith("saturated"):
        return f"saturated ({args.concurrency} annotators, 2 processes)"
    rate = name.split(", ")[-1].split("/s")[0].replace(",", "")
    return (
        f"paced ({args.paced_annotators} annotators, 2 processes, {float(rate) * 2:,.0f}/s offered)"
    )
