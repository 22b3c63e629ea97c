"""Which PostgreSQL driver: asyncpg or psycopg 3, measured on the engine's real transactions.

A button press is one transaction of about twenty small statements (record the answer, score
it, settle the item, lease the next item). This benchmark runs real presses through the
service's transaction functions on a PostgreSQL copy of a bench project, recording every
statement with its parameters (storage.pg_conn's trace), then replays exactly those
transactions, in order, on fresh copies of the same database with each way of driving
PostgreSQL from chatlabel:

  psycopg, sync             one thread, prepared statements (the floor: no event loop at all)
  psycopg, sync in a thread the service's way: each transaction handed to a worker thread from
                            the event loop (storage.pg.PgDatabase)
  psycopg, async            AsyncConnection on the event loop, prepared statements
  asyncpg                   on the event loop, its prepared-statement cache

Replaying the same statements keeps the comparison about the drivers: the same rows change,
the same ids come back. Reported: transactions/s on one connection, and CPU per transaction
in this process (the client's share; on a 2-core machine the server shares the same cores).

    python bench/pg_driver.py                 # a throwaway local server, 10,000 items (~1 min)
    python bench/pg_driver.py --storage postgresql://me@host/postgres   # a server of yours
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from _util import load, machine, postgres_cpu, table
from chatlabel.service.labeling import LabelingService
from chatlabel.service.types import Task
from chatlabel.storage.pg_conn import PgConnection
from chatlabel.storage.transfer import transfer
from engine import build, choose, project_config, user

Tx = list[tuple[str, Any]]  # one transaction: (psycopg-style SQL, params) in order


def capture(url: str, db_file: Path, cycles: int, seed: int) -> list[Tx]:
    """Run `cycles` answer+next presses through the service's functions; their statements."""
    config = project_config(db_file, 5)
    svc = LabelingService(None, config, rng=random.Random(seed))  # type: ignore[arg-type]
    svc.shared.pids, svc.shared.names = {"bench": 1}, {1: "bench"}
    conn = PgConnection.connect(url)
    rng = random.Random(seed)
    users = [user(n) for n in range(1, 101)]

    def tx(fn: Callable[[PgConnection], Any], record: list[Tx] | None) -> Any:
        conn.trace = [] if record is not None else None
        conn.execute("BEGIN")
        out = fn(conn)
        conn.execute("COMMIT")
        if record is not None and conn.trace is not None:
            record.append(conn.trace)
        return out

    # The first leases are set-up (their own transactions, replayed too, so states agree).
    txs: list[Tx] = []
    tasks = {u: tx(lambda c, u=u: svc.next_in(c, u, time.time()), txs) for u in users}
    setup = len(txs)
    done = 0
    while done < cycles:
        for u in users:
            task = tasks[u]
            if not isinstance(task, Task):
                continue
            value = choose(task, rng)

            def both(c: PgConnection, u: Any = u, task: Task = task, value: str = value) -> Any:
                svc.answer_in(c, u, task.assignment_id, value, time.time())
                return svc.next_in(c, u, time.time())

            tasks[u] = tx(both, txs)
            done += 1
    conn.close()
    print(
        f"captured {done:,} presses ({setup} set-up transactions), "
        f"{sum(len(t) for t in txs[setup:]) / done:.1f} statements each",
        flush=True,
    )
    return txs


_PARAM = re.compile(r"%\((\w+)\)s|%s|%%")


def to_dollar(sql: str, params: Any) -> tuple[str, tuple[Any, ...]]:
    """psycopg's %s / %(name)s placeholders as asyncpg's $1, $2 ..."""
    names: list[str] = []
    order: list[Any] = []
    n = 0

    def sub(m: re.Match[str]) -> str:
        nonlocal n
        if m.group(0) == "%%":
            return "%"
        if m.group(1):
            if m.group(1) not in names:
                names.append(m.group(1))
                order.append(params[m.group(1)])
            return f"${names.index(m.group(1)) + 1}"
        n += 1
        return f"${n}"

    out = _PARAM.sub(sub, sql)
    return out, (tuple(order) if isinstance(params, dict) else tuple(params))


def _transaction(cur: Any, t: Tx) -> None:
    """One recorded transaction on a psycopg cursor, its results fetched as the service does."""
    cur.execute("BEGIN")
    for sql, params in t:
        cur.execute(sql, params)
        if cur.pgresult is not None and cur.pgresult.ntuples:
            cur.fetchall()
    cur.execute("COMMIT")


def replay_sync(url: str, txs: list[Tx]) -> tuple[float, float, float]:
    """(seconds, CPU seconds, server CPU seconds) replaying on one psycopg connection here.

    The server's CPU is read while the connection is open: a backend's CPU leaves the count
    with its process when the connection closes."""
    import psycopg

    conn = psycopg.connect(url, autocommit=True, prepare_threshold=0)
    cur = conn.cursor()
    t0, c0, s0 = time.perf_counter(), time.process_time(), postgres_cpu()
    for t in txs:
        _transaction(cur, t)
    out = time.perf_counter() - t0, time.process_time() - c0, postgres_cpu() - s0
    conn.close()
    return out


async def replay_thread(url: str, txs: list[Tx]) -> tuple[float, float, float]:
    """The same, each transaction handed to a worker thread from the event loop."""
    from concurrent.futures import ThreadPoolExecutor

    import psycopg

    conn = psycopg.connect(url, autocommit=True, prepare_threshold=0)
    cur = conn.cursor()

    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(1) as pool:
        t0, c0, s0 = time.perf_counter(), time.process_time(), postgres_cpu()
        for t in txs:
            await loop.run_in_executor(pool, _transaction, cur, t)
        out = time.perf_counter() - t0, time.process_time() - c0, postgres_cpu() - s0
    conn.close()
    return out


async def replay_psycopg_async(url: str, txs: list[Tx]) -> tuple[float, float, float]:
    """The same on psycopg's AsyncConnection."""
    import psycopg

    conn = await psycopg.AsyncConnection.connect(url, autocommit=True, prepare_threshold=0)
    cur = conn.cursor()
    t0, c0, s0 = time.perf_counter(), time.process_time(), postgres_cpu()
    for t in txs:
        await cur.execute("BEGIN")
        for sql, params in t:
            await cur.execute(sql, params)
            if cur.pgresult is not None and cur.pgresult.ntuples:
                await cur.fetchall()
        await cur.execute("COMMIT")
    out = time.perf_counter() - t0, time.process_time() - c0, postgres_cpu() - s0
    await conn.close()
    return out


async def replay_asyncpg(url: str, txs: list[Tx]) -> tuple[float, float, float]:
    """The same on asyncpg (placeholders rewritten once, statements prepared and cached)."""
    import asyncpg

    conn = await asyncpg.connect(url)
    converted = [[to_dollar(sql, params) for sql, params in t] for t in txs]
    t0, c0, s0 = time.perf_counter(), time.process_time(), postgres_cpu()
    for t in converted:
        await conn.execute("BEGIN")
        for sql, args in t:
            await conn.fetch(sql, *args)
        await conn.execute("COMMIT")
    out = time.perf_counter() - t0, time.process_time() - c0, postgres_cpu() - s0
    await conn.close()
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Build, capture, replay with each driver, print the table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--storage",
        help="postgresql:// URL of a maintenance database (default: a throwaway local server)",
    )
    ap.add_argument("--items", type=int, default=10_000)
    ap.add_argument("--cycles", type=int, default=2_000)
    ap.add_argument("--rounds", type=int, default=3, help="replays per driver (best kept)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    print(f"machine: {machine()}; {load()} at start")

    from contextlib import ExitStack

    import psycopg

    from chatlabel.storage.pgtemp import TempServer

    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="chatlabel-pgd-") as tmp:
        if args.storage:
            base = args.storage
        else:
            server = stack.enter_context(TempServer())
            base = server.url()
        admin = psycopg.connect(base, autocommit=True)
        stem = base.rsplit("/", 1)[0]
        db_file = Path(tmp) / "bench.db"
        build(db_file, args.items, 1_000, args.items * 3, 5, args.seed)
        admin.execute("DROP DATABASE IF EXISTS chatlabel_pgd_template")
        admin.execute("CREATE DATABASE chatlabel_pgd_template")
        transfer(f"sqlite:///{db_file}", f"{stem}/chatlabel_pgd_template", verify=False)
        with psycopg.connect(f"{stem}/chatlabel_pgd_template", autocommit=True) as c:
            c.execute("VACUUM ANALYZE")
        copies = iter(range(10_000))

        def fresh() -> str:
            name = f"chatlabel_pgd_{next(copies)}"
            admin.execute(f"DROP DATABASE IF EXISTS {name}")
            admin.execute(f"CREATE DATABASE {name} TEMPLATE chatlabel_pgd_template")
            return f"{stem}/{name}"

        txs = capture(fresh(), db_file, args.cycles, args.seed)
        ways: list[tuple[str, Callable[[str, list[Tx]], tuple[float, float, float]]]] = [
            ("psycopg 3, sync, one thread (floor)", replay_sync),
            (
                "psycopg 3, sync, a worker thread per transaction (chatlabel)",
                lambda u, t: asyncio.run(replay_thread(u, t)),
            ),
            ("psycopg 3, async", lambda u, t: asyncio.run(replay_psycopg_async(u, t))),
            ("asyncpg", lambda u, t: asyncio.run(replay_asyncpg(u, t))),
        ]
        rows = []
        for name, way in ways:
            best: tuple[float, float, float] | None = None
            for _ in range(args.rounds):
                secs, cpu, server_cpu = way(fresh(), txs)
                if best is None or secs < best[0]:
                    best = (secs, cpu, server_cpu)
            assert best is not None
            secs, cpu, server_cpu = best
            n = len(txs)
            rows.append(
                [
                    name,
                    f"{n / secs:,.0f}",
                    f"{secs / n * 1e3:.2f}",
                    f"{cpu / n * 1e6:,.0f}",
                    f"{server_cpu / n * 1e6:,.0f}",
                ]
            )
            print(f"  {name}: {n / secs:,.0f} transactions/s", flush=True)
        for i in range(next(copies)):
            admin.execute(f"DROP DATABASE IF EXISTS chatlabel_pgd_{i}")
        admin.execute("DROP DATABASE IF EXISTS chatlabel_pgd_template")
        admin.close()
    print()
    headers = ["driver", "transactions/s", "ms each", "client CPU µs each", "server CPU µs each"]
    print(table(headers, rows))
    print(f"{load()} at end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
