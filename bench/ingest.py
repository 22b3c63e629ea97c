"""Ingest benchmark: import and export of JSONL items at 100,000 and 1,000,000 rows.

Import goes through `chatlabel import`'s code path (importer.import_file: read, validate, insert
in one transaction on the service's connection), once as it runs by default (JSONL validated in
worker processes: one per spare core, at most two) and once in one process; export through
exporter.write (streamed from a read-only connection), as `chatlabel export` does. Each phase
runs in a fresh subprocess so its peak memory (which counts SQLite's own allocations too) is its
own; "CPU µs/row" of an import counts its worker processes too.

Baselines (the floor), measured in the same run on the same files:
  import  json.loads per line + executemany of the same INSERT on a plain sqlite3 connection
          (no validation)
  export  the same SELECT on a plain sqlite3 connection and a plain loop writing the same rows
          (checked: the table says whether the outputs hold the same data)

    python bench/ingest.py            # 100k and 1M items (about two minutes)
    python bench/ingest.py --small    # 10k and 100k items
    python bench/ingest.py --sizes 100000,1000000,3000000
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import hashlib
import json
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _util import human, load, machine, table
from chatlabel.exporter import _ISO

LABELS = ("positive", "negative", "neutral")
SUBJECTS = (
    "The battery",
    "Delivery",
    "The screen",
    "Customer support",
    "The price",
    "The camera",
    "Setup",
    "The manual",
    "Sound quality",
    "Packaging",
)
PHRASES = (
    "is excellent, I love it",
    "broke after two days",
    "is as described",
    "was faster than promised",
    "is a total waste of money",
    "arrived on Tuesday",
)


def write_items(path: Path, n: int) -> None:
    """A JSONL file of n review items: text, meta, some context, 1 % gold."""
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            row: dict[str, Any] = {
                "id": f"item-{i:08d}",
                "text": f"{SUBJECTS[i % 10]} {PHRASES[i % 6]}. (review {i}, ★{i % 5 + 1})",
                "meta": {"source": "shop", "order": i * 7 % 100_003},
            }
            if i % 10 == 0:
                row["context"] = f"Product page {i % 997}"
            if i % 100 == 99:
                row["gold"] = LABELS[i % 3]
                row["gold_reason"] = "Obvious from the wording."
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def config_for(db: Path) -> Any:
    """The bench deployment: one single-choice project in db."""
    from chatlabel.config import parse_config

    return parse_config(
        {
            "storage": {"database": str(db)},
            "project": [{"name": "bench", "labels": list(LABELS), "overlap": 3}],
        },
        db.with_suffix(".toml"),
    )


def add_verdicts(db: Path) -> None:
    """Give 90 % of the ordinary items a verdict, as a labelled project would have."""
    conn = sqlite3.connect(db, isolation_level=None)
    now = time.time()
    conn.execute("BEGIN")
    conn.execute(
        """INSERT INTO verdicts (item_id, status, label, confidence, votes, n_answers, method,
                                 updated_at)
           SELECT id, 'resolved', CASE id % 3 WHEN 0 THEN 'positive' WHEN 1 THEN 'negative'
                  ELSE 'neutral' END, 0.6667,
                  '{"positive": 2.0, "negative": 1.0}', 3, 'majority', ?
           FROM items WHERE gold IS NULL AND id % 10 != 0""",
        (now,),
    )
    conn.execute(
        "UPDATE items SET status = 'resolved', n_answers = 3 WHERE gold IS NULL AND id % 10 != 0"
    )
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


# -- phases, each run in its own process ----------------------------------------------------


def _rss_kb() -> int:
    """This process's peak resident memory in KiB.

    VmHWM belongs to the process's own address space; ru_maxrss would carry over the peak of
    the parent that forked it.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _figures(
    rows: int, seconds: float, cpu: float, rss_before: int, **extra: Any
) -> dict[str, Any]:
    """A phase's figures as the driver reads them; rss is this process's peak so far."""
    return {
        "rows": rows,
        "seconds": seconds,
        "cpu": cpu,
        "rss_before": rss_before,
        "rss": _rss_kb(),
        **extra,
    }


def _children_cpu() -> float:
    """CPU seconds of this process's finished child processes (the import's workers)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


async def _with_service(db: Path, fn: Any) -> Any:
    from chatlabel.service.labeling import LabelingService
    from chatlabel.storage.db import Database

    async with Database(db) as database:
        svc = LabelingService(database, config_for(db))
        await svc.start()
        return await fn(svc)


def phase_import(db: Path, data: Path, workers: str = "auto") -> dict[str, Any]:
    """importer.import_file into a fresh database, as `chatlabel import` runs it."""
    from chatlabel import importer

    n_workers = importer.default_workers(data) if workers == "auto" else int(workers)

    seen = [0]

    def progress(n: int) -> None:  # the CLI updates a progress bar every 1,000 rows
        seen[0] = n

    async def go(svc: Any) -> int:
        before = _rss_kb()
        t0, c0 = time.perf_counter(), time.process_time()
        summary = await importer.import_file(
            svc, "bench", data, progress=progress, workers=n_workers
        )
        wall = time.perf_counter() - t0
        return summary.items, before, wall, time.process_time() - c0 + _children_cpu() - k0

    k0 = _children_cpu()
    rows, before, wall, cpu = asyncio.run(_with_service(db, go))
    # cpu counts the worker processes too; rss is this process's peak
    return _figures(rows, wall, cpu, before, workers=n_workers)


def phase_import_floor(db: Path, data: Path) -> dict[str, Any]:
    """The same INSERT with plain sqlite3: json.loads per line, executemany in one transaction."""
    from chatlabel.storage import repo
    from chatlabel.storage.db import pragmas
    from chatlabel.storage.schema import migrate

    conn = sqlite3.connect(db, isolation_level=None)
    pragmas(conn)
    migrate(conn)
    conn.execute("INSERT INTO projects (id, name, created_at) VALUES (1, 'bench', 0)")
    insert = repo._INSERT_ITEM
    before = _rss_kb()
    t0, c0 = time.perf_counter(), time.process_time()
    now = time.time()

    def values() -> Any:
        with data.open("rb") as f:
            for seq, line in enumerate(f, start=1):
                r = json.loads(line)
                meta = r.get("meta")
                yield (
                    1,
                    r["id"],
                    r.get("text"),
                    None,
                    None,
                    r.get("context"),
                    r.get("gold"),
                    r.get("gold_reason"),
                    None,
                    None,
                    json.dumps(meta, ensure_ascii=False) if meta else None,
                    3,
                    seq,
                    now,
                )

    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(insert, values())
    conn.execute("COMMIT")
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    rows = conn.execute("SELECT COUNT(*) FROM items").fetchone()[0]
    conn.close()
    return _figures(rows, wall, cpu, before)


def phase_export(db: Path, out: Path, what: str, fmt: str) -> dict[str, Any]:
    """exporter.write to a file, as `chatlabel export` runs it."""
    from chatlabel import exporter

    async def go(svc: Any) -> tuple[int, int, float, float]:
        before = _rss_kb()
        t0, c0 = time.perf_counter(), time.process_time()
        with out.open("w", encoding="utf-8", newline="") as f:
            n = await exporter.write(svc, "bench", what, fmt, f)  # type: ignore[arg-type]
        return n, before, time.perf_counter() - t0, time.process_time() - c0

    rows, before, wall, cpu = asyncio.run(_with_service(db, go))
    return _figures(rows, wall, cpu, before, bytes=out.stat().st_size, sha256=_digest(out))


EXPORT_SQL = {
    "results": """SELECT i.ext_id, v.label, COALESCE(v.status, i.status) AS status, v.confidence,
                         v.votes, COALESCE(v.n_answers, 0) AS n, v.method
                  FROM items i LEFT JOIN verdicts v ON v.item_id = i.id
                  WHERE i.project_id = 1 AND i.gold IS NULL ORDER BY i.seq""",
    # answered_at formatted by SQLite as the export does: Python's rounding to milliseconds
    # differs from SQLite's in the last digit now and then.
    "answers": f"""SELECT i.ext_id, a.key, x.value, x.is_gold, x.correct, x.seconds,
                         {_ISO}
                  FROM answers x JOIN items i ON i.id = x.item_id
                  JOIN annotators a ON a.id = x.annotator_id
                  WHERE i.project_id = 1 ORDER BY x.id""",
}


def _results_row(r: tuple[Any, ...]) -> dict[str, Any]:
    return {
        "id": r[0],
        "label": r[1] if r[2] == "resolved" else None,
        "status": r[2],
        "confidence": round(r[3], 4) if r[3] is not None else None,
        "votes": json.loads(r[4]) if r[4] else {},
        "n_answers": r[5],
        "method": r[6] or "majority",
    }


def _answers_row(r: tuple[Any, ...]) -> dict[str, Any]:
    return {
        "item_id": r[0],
        "annotator": r[1],
        "label": r[2],
        "skipped": r[2] is None,
        "is_gold": bool(r[3]),
        "correct": None if r[4] is None else bool(r[4]),
        "seconds": round(r[5], 3),
        "answered_at": r[6],
    }


def phase_export_floor(db: Path, out: Path, what: str, fmt: str) -> dict[str, Any]:
    """The same SELECT and the same output bytes, from a plain loop over a sqlite3 cursor."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    make = _results_row if what == "results" else _answers_row
    before = _rss_kb()
    t0, c0 = time.perf_counter(), time.process_time()
    n = 0
    with out.open("w", encoding="utf-8", newline="") as f:
        cur = conn.execute(EXPORT_SQL[what])
        if fmt == "jsonl":
            for r in cur:
                f.write(json.dumps(make(r), ensure_ascii=False) + "\n")
                n += 1
        else:
            w = csv.writer(f, lineterminator="\n")
            from chatlabel.exporter import COLUMNS

            w.writerow(COLUMNS[what])
            for r in cur:
                row = make(r)
                w.writerow(
                    [
                        json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else v
                        for v in row.values()
                    ]
                )
                n += 1
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    conn.close()
    return _figures(n, wall, cpu, before, bytes=out.stat().st_size, sha256=_digest(out))


def _digest(path: Path) -> str:
    """A digest of the data in an export: CSV byte for byte, JSONL line by line as parsed.

    SQLite's json_object writes compact JSON and Python's json.dumps puts spaces after the
    separators; the rows are the same either way.
    """
    h = hashlib.sha256()
    with path.open("rb") as f:
        if path.suffix == ".jsonl":
            for line in f:
                h.update(json.dumps(json.loads(line), sort_keys=True).encode() + b"\n")
        else:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()


PHASES = {
    "import": phase_import,
    "import-floor": phase_import_floor,
    "export": phase_export,
    "export-floor": phase_export_floor,
}


def child(argv: Sequence[str]) -> int:
    """Run one phase in this process and print its figures as JSON."""
    name, *rest = argv
    result = PHASES[name](*(Path(a) if i < 2 else a for i, a in enumerate(rest)))
    print(json.dumps(result))
    return 0


def run_phase(*args: str | Path) -> dict[str, Any]:
    """Run a phase in a fresh interpreter; its figures come back as JSON."""
    proc = subprocess.run(
        [sys.executable, __file__, "--phase", *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"phase {args[0]} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- driver ---------------------------------------------------------------------------------


def fresh(db: Path) -> Path:
    """Remove a database file and its WAL."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    return db


def bench_size(work: Path, n: int, answers: bool) -> list[tuple[str, dict[str, Any], str]]:
    """Every phase at one size: (operation, figures, which floor it is compared with)."""
    data = work / f"items-{n}.jsonl"
    t0 = time.perf_counter()
    write_items(data, n)
    print(
        f"{n:,} items: wrote {data.stat().st_size / 2**20:,.0f} MiB of JSONL in "
        f"{time.perf_counter() - t0:.1f} s",
        flush=True,
    )
    out: list[tuple[str, dict[str, Any], str]] = []
    floor_db, db = fresh(work / f"floor-{n}.db"), fresh(work / f"ingest-{n}.db")
    out.append(("import floor", run_phase("import-floor", floor_db, data), ""))
    out.append(("import, 1 process", run_phase("import", db, data, 0), "import floor"))
    fresh(db)
    out.append(("import", run_phase("import", db, data, "auto"), "import floor"))
    print(f"  imported: {out[-1][1]['rows']:,} items", flush=True)
    fresh(floor_db)
    add_verdicts(db)
    for fmt in ("jsonl", "csv"):
        target = work / f"results-{n}.{fmt}"
        out.append(
            (
                f"export results {fmt} floor",
                run_phase("export-floor", db, target, "results", fmt),
                "",
            )
        )
        out.append(
            (
                f"export results {fmt}",
                run_phase("export", db, target, "results", fmt),
                f"export results {fmt} floor",
            )
        )
        target.unlink()
    fresh(db)
    if answers:
        # An answers export of n rows: a labelled project built by the engine bench.
        import engine

        adb = fresh(work / f"answers-{n}.db")
        engine.build(adb, max(n // 3, 100), 1000, n, 5, 1)
        target = work / f"answers-{n}.jsonl"
        out.append(
            (
                "export answers jsonl floor",
                run_phase("export-floor", adb, target, "answers", "jsonl"),
                "",
            )
        )
        out.append(
            (
                "export answers jsonl",
                run_phase("export", adb, target, "answers", "jsonl"),
                "export answers jsonl floor",
            )
        )
        target.unlink()
        fresh(adb)
    data.unlink()
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Parse flags, run every phase at every size and print the figures."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--phase"]:
        return child(argv[1:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", action="store_true", help="10k and 100k items")
    ap.add_argument("--sizes", default=None, help="comma-separated item counts")
    ap.add_argument("--no-answers", action="store_true", help="skip the answers export")
    ap.add_argument("--dir", type=Path, default=None, help="where to work (default: a temp dir)")
    args = ap.parse_args(argv)
    sizes = [
        int(s)
        for s in (args.sizes or ("10000,100000" if args.small else "100000,1000000")).split(",")
    ]
    print(f"machine: {machine()}; {load()} at start")
    rows = []
    by_size: dict[int, dict[str, dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="chatlabel-ingest-", dir=args.dir) as tmp:
        for n in sizes:
            figures = bench_size(Path(tmp), n, not args.no_answers)
            by_size[n] = {op: f for op, f, _ in figures}
            for op, f, floor in figures:
                rate = f["rows"] / f["seconds"]
                base = by_size[n].get(floor)
                rows.append(
                    [
                        f"{n:,}",
                        op,
                        human(f["rows"]),
                        f"{f['seconds']:.2f}",
                        human(rate),
                        f"{f['cpu'] / f['rows'] * 1e6:.1f}",
                        f"{f['rss'] / 1024:.0f}",
                        f"{(f['rss'] - f['rss_before']) / 1024:.0f}",
                        f"{rate / (base['rows'] / base['seconds']):.2f}" if base else "1.00",
                        ("same rows as floor" if f["sha256"] == base["sha256"] else "DIFFERS")
                        if base and "sha256" in f
                        else f"{f['workers']} worker processes"
                        if "workers" in f
                        else "",
                    ]
                )
    print()
    print(
        table(
            [
                "items",
                "operation",
                "rows",
                "seconds",
                "rows/s",
                "CPU µs/row",
                "peak RSS MiB",
                "growth MiB",
                "× floor",
                "output",
            ],
            rows,
        )
    )
    if len(sizes) >= 2:
        lo, hi = by_size[sizes[0]], by_size[sizes[-1]]
        print()
        for op in hi:
            if "floor" in op:
                continue
            print(
                f"{op:>22}: peak RSS {lo[op]['rss'] / 1024:.0f} MiB at {sizes[0]:,} vs "
                f"{hi[op]['rss'] / 1024:.0f} MiB at {sizes[-1]:,}; rate "
                f"{lo[op]['rows'] / lo[op]['seconds']:,.0f} vs "
                f"{hi[op]['rows'] / hi[op]['seconds']:,.0f} rows/s"
            )
    print(f"{load()} at end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
