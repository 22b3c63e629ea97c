"""Label quality on real crowds: each dataset replayed through the service, method by method.

    python bench/quality.py DATA            # every dataset in DATA, both gates
    python bench/quality.py DATA -d rte     # one of them

DATA holds one folder per dataset, each with answers.csv (task,worker,label: one row per answer,
in the order they were given) and truth.csv (task,truth). The datasets are not in this
repository: the README says what they are and where they are published. For every
method the benchmark builds a fresh project in a real SQLite file, imports the tasks with every
--gold-every-th row of truth.csv as a gold item (the other items are what is scored), and
replays the answers in the file's order: each worker joins as an annotator, is leased the item
they answered (LabelingService.lease) and answers it through LabelingService.answer. An
item that no longer needs the worker (settled, or the worker was suspended) is passed over, so
"answers per item" is what each method actually spent (ordinary items only; gold is extra).

Methods (all with overlap = max_overlap = the dataset's answers per item):
  majority       share of votes; ties go to the first label (see "tie rule" below)
  weighted       votes weighted by gold-derived log-odds reliability, as known when each
                 item settles (core.gold.reliability_weight; unscored = the project's average)
  dawid-skene    weighted online, then service.quality.recompute over the whole project
                 (gold items clamped) relabels every settled item
  dynamic        dawid-skene with confidence_target (--target): an item stops collecting
                 answers once its weighted posterior reaches the target

Quality gates: "on" is the product default (suspend an annotator once 95 % sure their gold
accuracy is below 70 %; their answers on open items stop counting), "off" never suspends, so
every method sees every answer, exactly as crowd-kit does.

Next to them: crowd-kit's MajorityVote and DawidSkene on all of the dataset's answers, scored
on the same (non-gold) items. Items still pending at the end (they lost answers to a
suspension) are scored by the verdict they would have now (service.quality.current_verdicts).

Tie rule: a tied vote never resolves an item by itself (it collects more answers, then goes to
an expert); an escalated tie with no expert answer reports the tied label listed first in the
project's labels. crowd-kit's MajorityVote breaks ties by the label column it meets first in
the data, which is why the two majority columns differ where ties are common (rte, dog).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _util import machine, table
from chatlabel.config import parse_config
from chatlabel.importer import import_file
from chatlabel.service import quality
from chatlabel.service.labeling import LabelingService
from chatlabel.service.types import Task, UserRef
from chatlabel.storage import quality_queries as qq
from chatlabel.storage.db import Database

DATASETS = ("bluebirds", "rte", "d_possent", "dog")
METHODS = ("majority", "weighted", "dawid-skene", "dynamic")


@dataclass(frozen=True)
class Dataset:
    """One crowd dataset: answers in file order, the truth, and the label codes."""

    name: str
    answers: list[tuple[str, str, str]]  # (task, worker, label)
    truth: dict[str, str]
    labels: tuple[str, ...]
    per_item: int  # the most answers any item has


@dataclass(frozen=True)
class Run:
    """What one method did on one dataset."""

    method: str
    accuracy: float
    answers_per_item: float
    escalated: int
    pending: int
    suspended: int
    seconds: float
    labels: dict[str, str | None] = field(default_factory=dict, repr=False)


def _label_key(x: str) -> tuple[int, float | str]:
    try:
        return (0, float(x))
    except ValueError:
        return (1, x)


def load(folder: Path) -> Dataset:
    """Read answers.csv and truth.csv of one dataset folder."""
    with (folder / "answers.csv").open(encoding="utf-8", newline="") as f:
        answers = [(r["task"], r["worker"], r["label"]) for r in csv.DictReader(f)]
    with (folder / "truth.csv").open(encoding="utf-8", newline="") as f:
        truth = {r["task"]: r["truth"] for r in csv.DictReader(f)}
    labels = tuple(sorted({lab for _, _, lab in answers} | set(truth.values()), key=_label_key))
    counts: dict[str, int] = defaultdict(int)
    for task, _, _ in answers:
        counts[task] += 1
    return Dataset(folder.name, answers, truth, labels, max(counts.values()))


def gold_tasks(ds: Dataset, every: int) -> set[str]:
    """Every `every`-th task of truth.csv: a fixed slice, chosen without looking at answers."""
    return {task for n, task in enumerate(ds.truth) if n % every == 0}


def _project(ds: Dataset, method: str, args: argparse.Namespace) -> dict[str, Any]:
    dynamic = method == "dynamic"
    return {
        "name": "bench",
        "kind": "single",
        "labels": list(ds.labels),
        "overlap": ds.per_item,
        "max_overlap": ds.per_item,
        "agreement": args.agreement,
        "method": "dawid-skene" if dynamic else method,
        "confidence_target": args.target if dynamic else 0.0,
        "lease_seconds": 3600,
        "undo_seconds": 0,
        "quality": {
            # Workers in these datasets had no qualification phase; their gold is whatever
            # they met among their work, in the data's order.
            "qualification": 0,
            "gold_rate": 0.0,
            "gold_feedback": False,
            "min_gold_accuracy": args.min_gold_accuracy,
            "suspend_confidence": 0.95,
        },
    }


async def replay(
    ds: Dataset, gold: set[str], method: str, args: argparse.Namespace, workdir: Path
) -> Run:
    """Replay a dataset through a fresh service with one method; score its verdicts."""
    folder = workdir / f"{ds.name}-{method}"
    folder.mkdir()
    items = folder / "items.csv"
    with items.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "text", "gold"])
        for task in ds.truth:
            w.writerow([task, f"task {task}", ds.truth[task] if task in gold else ""])
    cfg = parse_config(
        {
            "storage": {"database": str(folder / "bench.db")},
            "project": [_project(ds, method, args)],
        },
        folder / "chatlabel.toml",
    )
    clock = [1_800_000_000.0]
    db = await Database(cfg.database_path()).open()
    try:
        service = LabelingService(db, cfg, clock=lambda: clock[0])
        await service.start()
        await import_file(service, "bench", items)
        started = time.perf_counter()
        users: dict[str, UserRef] = {}
        for task, worker, label in ds.answers:
            user = users.get(worker)
            if user is None:
                user = users[worker] = UserRef("bench", worker, f"worker {worker}")
                await service.join(user)
            clock[0] += 5.0
            got = await service.lease(user, task)
            if not isinstance(got, Task):
                continue  # settled, or this worker is suspended: the answer is not needed
            out = await service.answer(user, got.assignment_id, label)
            if not out.ok:
                raise RuntimeError(f"{ds.name}: answer {task}/{worker} was refused: {out.message}")
        labels: dict[str, str | None] = {}
        if cfg.project[0].method == "dawid-skene":
            summary = await quality.recompute(service, "bench")
            labels.update({k: lab for k, (lab, _) in summary.labels.items()})
        else:
            # Settled items keep the verdict they got when they settled; items still pending
            # (they lost answers to a suspension) are scored by what they would get now.
            current = await quality.current_verdicts(service, "bench")
            stored = await db.read(qq.item_states, service.pids["bench"])
            for s in stored:
                if s["gold"] is not None:
                    continue
                settled = s["status"] != "pending"
                labels[s["ext_id"]] = s["label"] if settled else current[s["ext_id"]].label
        seconds = time.perf_counter() - started
        stats = await db.read(_stats)
    finally:
        await db.close()
    scored = [t for t in ds.truth if t not in gold]
    right = sum(labels.get(t) == ds.truth[t] for t in scored)
    return Run(
        method,
        right / len(scored),
        stats["answers"] / len(scored),
        stats["escalated"],
        stats["pending"],
        stats["suspended"],
        seconds,
        labels,
    )


def _stats(conn: Any) -> dict[str, int]:
    answers = conn.execute(
        "SELECT COUNT(*) FROM answers WHERE is_gold = 0 AND value IS NOT NULL"
    ).fetchone()[0]
    status = dict(
        conn.execute(
            "SELECT status, COUNT(*) FROM items WHERE gold IS NULL GROUP BY status"
        ).fetchall()
    )
    suspended = conn.execute("SELECT COUNT(*) FROM members WHERE status = 'suspended'").fetchone()[
        0
    ]
    return {
        "answers": answers,
        "escalated": status.get("escalated", 0),
        "pending": status.get("pending", 0),
        "suspended": suspended,
    }


def crowdkit_accuracy(ds: Dataset, gold: set[str]) -> tuple[float, float]:
    """crowd-kit's MajorityVote and DawidSkene on all answers, scored on the non-gold items."""
    import pandas as pd
    from crowdkit.aggregation import DawidSkene, MajorityVote

    df = pd.DataFrame(ds.answers, columns=["task", "worker", "label"])
    scored = [t for t in ds.truth if t not in gold]
    out = []
    for model in (MajorityVote(), DawidSkene(n_iter=100)):
        pred = model.fit_predict(df)
        out.append(sum(pred.get(t) == ds.truth[t] for t in scored) / len(scored))
    return out[0], out[1]


GATES = {"on": 0.7, "off": 0.0}  # min_gold_accuracy: the product default, and no suspension


async def _bench(ds: Dataset, args: argparse.Namespace) -> dict[str, Any]:
    gold = gold_tasks(ds, args.gold_every)
    runs: dict[str, list[Run]] = {}
    with tempfile.TemporaryDirectory(prefix="chatlabel-quality-") as tmp:
        for gate in args.gates:
            runs[gate] = []
            for method in args.methods:
                a = argparse.Namespace(**{**vars(args), "min_gold_accuracy": GATES[gate]})
                workdir = Path(tmp) / gate
                workdir.mkdir(exist_ok=True)
                r = await replay(ds, gold, method, a, workdir)
                runs[gate].append(r)
                print(
                    f"  {ds.name:10} gate {gate:3} {method:12} acc {r.accuracy:.4f}  "
                    f"answers/item {r.answers_per_item:5.2f}  escalated {r.escalated:4}  "
                    f"pending {r.pending:4}  suspended {r.suspended:3}  {r.seconds:5.1f}s",
                    file=sys.stderr,
                    flush=True,
                )
    ck_mv, ck_ds = crowdkit_accuracy(ds, gold)
    return {
        "dataset": ds.name,
        "items": len(ds.truth),
        "gold": len(gold),
        "per_item": ds.per_item,
        "runs": runs,
        "crowdkit_mv": ck_mv,
        "crowdkit_ds": ck_ds,
    }


def bench(folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Every method under every quality gate on one dataset, plus crowd-kit's figures."""
    return asyncio.run(_bench(load(folder), args))


def _cells(res: dict[str, Any], gate: str) -> list[str]:
    cells = [res["dataset"], gate]
    cells += [f"{r.accuracy:.2%} ({r.answers_per_item:.1f})" for r in res["runs"][gate]]
    cells += [
        f"{res['crowdkit_mv']:.2%} ({res['per_item']})",
        f"{res['crowdkit_ds']:.2%} ({res['per_item']})",
    ]
    return cells


def _headers(args: argparse.Namespace) -> list[str]:
    return ["dataset", "quality gate", *args.methods, "crowd-kit MV", "crowd-kit DS"]


def render(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    """The markdown table: accuracy (answers per item) per method and gate, then crowd-kit."""
    return table(_headers(args), [_cells(res, g) for res in results for g in args.gates])


def _rich_table(results: list[dict[str, Any]], args: argparse.Namespace) -> Any:
    from rich.table import Table

    t = Table(title="Accuracy on non-gold items (answers spent per item)")
    for h in _headers(args):
        t.add_column(h, justify="left" if h in ("dataset", "quality gate") else "right")
    for res in results:
        for g in args.gates:
            t.add_row(*_cells(res, g))
    return t


def checks(results: list[dict[str, Any]], args: argparse.Namespace) -> list[tuple[bool, str]]:
    """The issue's targets, each with whether it holds and the figures behind it."""
    out: list[tuple[bool, str]] = []
    for res in results:
        name = res["dataset"]
        for gate in args.gates:
            by = {r.method: r for r in res["runs"][gate]}
            tag = f"{name} (gate {gate})"
            if "dawid-skene" in by:
                diff = by["dawid-skene"].accuracy - res["crowdkit_ds"]
                out.append(
                    (diff >= -0.005, f"{tag}: dawid-skene {diff * 100:+.2f} pp vs crowd-kit DS")
                )
            if "weighted" in by and "majority" in by:
                w, m = by["weighted"].accuracy, by["majority"].accuracy
                out.append((w >= m, f"{tag}: weighted {w:.2%} vs majority {m:.2%}"))
            if "dynamic" in by and "majority" in by:
                # The bar: majority vote on every answer, by our tie rule or crowd-kit's,
                # whichever scores higher.
                base = max(
                    res["crowdkit_mv"],
                    *(
                        x.accuracy
                        for g in args.gates
                        for x in res["runs"][g]
                        if x.method == "majority" and x.answers_per_item >= res["per_item"] - 1e-9
                    ),
                )
                d = by["dynamic"]
                share = d.answers_per_item / res["per_item"]
                out.append(
                    (
                        d.accuracy >= base and share <= 0.70,
                        f"{tag}: dynamic {d.accuracy:.2%} with {share:.0%} of the answers "
                        f"vs majority on all answers {base:.2%}",
                    )
                )
        if name == "d_possent":
            best = max(r.accuracy for g in args.gates for r in res["runs"][g])
            out.append((best > 0.960, f"d_possent: best method {best:.2%} vs 96.0%"))
    return out


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the datasets, print the table."""
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("data", type=Path, help="folder holding one subfolder per dataset")
    p.add_argument(
        "-d",
        "--dataset",
        action="append",
        choices=DATASETS,
        help="run only this dataset (repeatable)",
    )
    p.add_argument(
        "-m",
        "--method",
        action="append",
        choices=METHODS,
        dest="methods_",
        help="run only this method (repeatable)",
    )
    p.add_argument(
        "-g",
        "--gate",
        action="append",
        choices=tuple(GATES),
        dest="gates_",
        help="quality gate: on (suspend below 70%% gold accuracy) or off (repeatable)",
    )
    p.add_argument(
        "--gold-every",
        type=int,
        default=10,
        help="every N-th task of truth.csv is a gold item (default 10: 10%%)",
    )
    p.add_argument(
        "--target",
        type=float,
        default=0.999,
        help="confidence target of the dynamic method (default 0.999)",
    )
    p.add_argument(
        "--agreement",
        type=float,
        default=0.6,
        help="share of votes the leading label needs (default 0.6)",
    )
    p.add_argument(
        "-j",
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="datasets replayed in parallel (default: one per core)",
    )
    p.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = p.parse_args(argv)
    args.methods = tuple(args.methods_ or METHODS)
    args.gates = tuple(args.gates_ or GATES)
    names = args.dataset or [d for d in DATASETS if (args.data / d).is_dir()]
    if not names:
        p.error(f"no dataset folders under {args.data}")
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=max(1, min(args.jobs, len(names)))) as pool:
        results = list(pool.map(bench, [args.data / n for n in names], [args] * len(names)))
    from rich.console import Console

    console = Console()
    console.print(_rich_table(results, args))
    for ok, text in checks(results, args):
        console.print(("[green]✓[/] " if ok else "[red]✗[/] ") + text)
    print()
    print(render(results, args))
    print(f"\nmachine: {machine()}")
    print(
        f"settings: gold = every {args.gold_every}th task of truth.csv, dynamic target "
        f"{args.target}, agreement {args.agreement}, gate on = suspend when 95% sure that "
        f"gold accuracy < {GATES['on']:.0%}; {time.perf_counter() - started:.0f} s in all"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                [
                    {
                        **r,
                        "runs": {
                            g: [{k: v for k, v in vars(x).items() if k != "labels"} for x in rs]
                            for g, rs in r["runs"].items()
                        },
                    }
                    for r in results
                ],
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
