"""Model in the loop on a text dataset: human answers spent and accuracy, without and with it.

    python bench/model.py DATA/sms_spam/messages.tsv
    python bench/model.py DATA.tsv --crowd CROWD --annotators 30 --limit 2000

DATA.tsv is `label<TAB>text` with a header line. Every 10th message is a gold item (its true
label known), the rest are what is scored. Simulated annotators label through the service as
the bots do (LabelingService.next_task, then answer with then_next=True: one transaction a
press); each one's confusion rates are those of a real worker drawn from the binary datasets in
--crowd (estimated from their answers against the truth, the more common true label standing
for the more common label here), spammers and inverted workers included, so the quality gate
has people to stop. A check (a confident item's one yes/no) is answered as the person would
label the item: "yes" when their label is the suggestion.

  (a) no model, overlap 3 (max_overlap 3): every item gets three answers.
  (b) the built-in model ([model] kind = "builtin-text") with routing: it trains on the gold
      items first, then on resolved verdicts every --retrain-every of them (awaited, so a run
      is reproducible); a suggestion scored --threshold or more turns its item into one check,
      --audit-rate of those get full overlap, a "no" sends the item to full overlap.

Then, on a fresh copy of (b), a latency phase: presses as fast as they come, first alone, then
while the model retrains in its worker process (the p99 of a press must stay within 2x).

The last line is parsed by other tools and keeps its exact form:
    model: human answers per item 3.00 -> 1.10 (36.7% of no-model), accuracy 97.10% -> 97.30%
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import random
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _util import load, machine, pct
from chatlabel.config import parse_config
from chatlabel.importer import import_file
from chatlabel.models.text import BuiltinText
from chatlabel.service import quality
from chatlabel.service.labeling import LabelingService
from chatlabel.service.model_loop import ModelLoop
from chatlabel.service.types import Idle, Task, UserRef
from chatlabel.storage.db import Database

GOLD_EVERY = 10
Confusion = dict[str, dict[str, float]]  # true label -> answered label -> probability


@dataclass(frozen=True)
class Data:
    """Messages with their true labels, in file order."""

    labels: tuple[str, ...]  # most common first
    rows: list[tuple[str, str, str]]  # (id, label, text)


def read_tsv(path: Path, limit: int | None) -> Data:
    """label<TAB>text with a header; the labels ordered by how common they are."""
    rows: list[tuple[str, str, str]] = []
    with path.open(encoding="utf-8", newline="") as f:
        lines = iter(f)
        next(lines)  # the header
        for n, line in enumerate(lines):
            label, _, text = line.rstrip("\n").partition("\t")
            if not label or not text.strip():
                continue
            rows.append((f"m{n}", label, text))
            if limit and len(rows) >= limit:
                break
    common = [lab for lab, _ in Counter(r[1] for r in rows).most_common()]
    return Data(tuple(common), rows)


def crowd_confusions(folder: Path, labels: tuple[str, ...], min_answers: int) -> list[Confusion]:
    """Per real worker of every two-label dataset in `folder`: their confusion rates, mapped
    onto `labels` (the dataset's more common true label standing for labels[0])."""
    out: list[Confusion] = []
    for ds in sorted(p for p in folder.iterdir() if (p / "answers.csv").is_file()):
        with (ds / "truth.csv").open(encoding="utf-8", newline="") as f:
            truth = {r["task"]: r["truth"] for r in csv.DictReader(f)}
        with (ds / "answers.csv").open(encoding="utf-8", newline="") as f:
            answers = [(r["task"], r["worker"], r["label"]) for r in csv.DictReader(f)]
        classes = [lab for lab, _ in Counter(truth.values()).most_common()]
        if len(classes) != 2 or len(labels) != 2:
            continue
        to_ours = dict(zip(classes, labels, strict=True))
        counts: dict[str, Counter[tuple[str, str]]] = defaultdict(Counter)
        for task, worker, label in answers:
            if task in truth and label in to_ours:
                counts[worker][to_ours[truth[task]], to_ours[label]] += 1
        for c in counts.values():
            if sum(c.values()) < min_answers:
                continue
            conf: Confusion = {}
            for t in labels:
                row = {a: c[t, a] + 1.0 for a in labels}  # +1: no rate is exactly 0 or 1
                total = sum(row.values())
                conf[t] = {a: v / total for a, v in row.items()}
            out.append(conf)
    return out


@dataclass
class Result:
    """What one arm spent and reached."""

    name: str
    items: int
    human_answers: int
    correct: int
    checks: int = 0
    verified: int = 0
    rejected: int = 0
    suspended: int = 0
    trainings: int = 0
    train_seconds: list[float] = field(default_factory=list)
    press_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0
    model: str = ""
    # Checks by whether the suggestion was right: {(suggested label, right): (checks, no's)}.
    check_split: dict[tuple[str, bool], list[int]] = field(default_factory=dict)

    @property
    def per_item(self) -> float:
        """Human answers spent per ordinary item."""
        return self.human_answers / self.items

    @property
    def accuracy(self) -> float:
        """Share of ordinary items whose verdict is the true label."""
        return self.correct / self.items


def project(args: argparse.Namespace, labels: tuple[str, ...], with_model: bool) -> dict[str, Any]:
    """The project both arms share; (b) adds the model section."""
    p: dict[str, Any] = {
        "name": "spam",
        "kind": "single",
        "labels": list(labels),
        "overlap": 3,
        "max_overlap": 3,
        "method": args.method,
        "lease_seconds": 3600,
        "undo_seconds": 0,
        "quality": {"qualification": 4, "gold_rate": 0.1, "gold_feedback": False},
    }
    if with_model:
        p["model"] = {
            "kind": "builtin-text",
            "auto_threshold": args.threshold,
            "audit_rate": args.audit_rate,
            "order": args.order,
            "retrain_every": args.retrain_every,
            "min_examples": 20,
        }
    return p


def write_items(folder: Path, data: Data) -> Path:
    """The messages as an items file: every GOLD_EVERY-th one a gold item."""
    folder.mkdir(parents=True)
    items = folder / "items.csv"
    with items.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "text", "gold"])
        for n, (ext, label, text) in enumerate(data.rows):
            w.writerow([ext, text, label if n % GOLD_EVERY == 0 else ""])
    return items


async def open_arm(
    folder: Path, data: Data, args: argparse.Namespace, with_model: bool
) -> tuple[Database, LabelingService, list[float]]:
    """A fresh project in its own SQLite file, with the data imported."""
    items = write_items(folder, data)
    cfg = parse_config(
        {
            "storage": {"database": str(folder / "bench.db")},
            "project": [project(args, data.labels, with_model)],
        },
        folder / "chatlabel.toml",
    )
    clock = [1_800_000_000.0]
    db = await Database(cfg.database_path()).open()
    service = LabelingService(db, cfg, clock=lambda: clock[0], rng=random.Random(args.seed))
    await service.start()
    await import_file(service, "spam", items)
    return db, service, clock


def label_of(rng: random.Random, conf: Confusion, truth: str) -> str:
    """What a simulated person answers for an item whose true label is `truth`."""
    r, acc = rng.random(), 0.0
    for label, p in conf[truth].items():
        acc += p
        if r < acc:
            return label
    return truth


async def run_arm(
    name: str, data: Data, people: list[Confusion], args: argparse.Namespace, folder: Path
) -> Result:
    """Simulated annotators label the whole set through the service; score the verdicts."""
    with_model = name == "b"
    db, svc, clock = await open_arm(folder / name, data, args, with_model)
    truth = {ext: label for ext, label, _ in data.rows}
    rng = random.Random(args.seed + 1)
    loop: ModelLoop | None = None
    res = Result(name, 0, 0, 0)
    started = time.perf_counter()
    try:
        if with_model:
            model = BuiltinText(data.labels, min_examples=20)
            loop = ModelLoop(svc, {"spam": model})

        async def train() -> None:
            assert loop is not None
            t0 = time.perf_counter()
            got = await loop.step("spam")
            if got.ran:
                res.trainings += 1
                res.train_seconds.append(time.perf_counter() - t0)

        if loop is not None:
            await train()  # on the gold items, before anyone answers
        users = [UserRef("sim", str(n), f"sim {n}") for n in range(len(people))]
        current: dict[int, Task | Idle] = {}
        for n, u in enumerate(users):
            await svc.join(u)
            current[n] = await svc.next_task(u)
        presses = 0
        while True:
            busy = [n for n, t in current.items() if isinstance(t, Task)]
            if not busy:
                break
            n = rng.choice(busy)
            task = current[n]
            assert isinstance(task, Task)
            label = label_of(rng, people[n], truth[task.item_id])
            value = ("yes" if label == task.suggestion else "no") if task.check else label
            clock[0] += 3.0
            t0 = time.perf_counter()
            out = await svc.answer(users[n], task.assignment_id, value, then_next=True)
            res.press_ms.append((time.perf_counter() - t0) * 1000)
            if not out.ok:
                raise RuntimeError(f"answer refused: {out}")
            current[n] = out.next if out.next is not None else await svc.next_task(users[n])
            presses += 1
            if loop is not None and presses % 25 == 0:
                await train()
            if presses % 200 == 0:
                # People told to wait get work again when items open up (a "no", a suspension).
                for m, t in current.items():
                    if isinstance(t, Idle) and t.reason == "no_work":
                        current[m] = await svc.next_task(users[m])
            if not any(isinstance(t, Task) for t in current.values()):
                for m, t in current.items():
                    if isinstance(t, Idle) and t.reason == "no_work":
                        current[m] = await svc.next_task(users[m])
        res.seconds = time.perf_counter() - started
        verdicts = await quality.current_verdicts(svc, "spam")
        stats = await db.read(_stats)
    finally:
        if loop is not None:
            state = await svc.model_state("spam")
            res.model = state.version or "" if state is not None else ""
            await loop.close()
        await db.close()
    scored = [ext for ext in stats["settled"] if ext in truth] + [
        ext for ext in verdicts if ext not in stats["settled"]
    ]
    res.items = len(scored)
    labels = {**{k: v.label for k, v in verdicts.items()}, **stats["settled"]}
    res.correct = sum(labels.get(ext) == truth[ext] for ext in scored)
    res.human_answers = stats["answers"]
    res.checks = stats["checks"]
    res.verified, res.rejected = stats["verified"], stats["rejected"]
    res.suspended = stats["suspended"]
    for ext, suggestion, value in stats["check_rows"]:
        cell = res.check_split.setdefault((suggestion, suggestion == truth.get(ext)), [0, 0])
        cell[0] += 1
        cell[1] += value not in ("yes", suggestion)  # a two-label no is the other label
    return res


def _stats(conn: Any) -> dict[str, Any]:
    answers, checks = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(checked), 0) FROM answers "
        "WHERE is_gold = 0 AND value IS NOT NULL"
    ).fetchone()
    settled = dict(
        conn.execute(
            "SELECT i.ext_id, v.label FROM items i JOIN verdicts v ON v.item_id = i.id "
            "WHERE i.gold IS NULL AND v.status = 'resolved'"
        ).fetchall()
    )
    routes = dict(
        conn.execute("SELECT route, COUNT(*) FROM items WHERE route IS NOT NULL GROUP BY route")
    )
    suspended = conn.execute("SELECT COUNT(*) FROM members WHERE status = 'suspended'").fetchone()
    check_rows = conn.execute(
        "SELECT i.ext_id, i.suggestion, x.value FROM answers x JOIN items i ON i.id = x.item_id "
        "WHERE x.checked = 1 AND x.is_gold = 0 AND x.value IS NOT NULL"
    ).fetchall()
    return {
        "answers": int(answers),
        "checks": int(checks),
        "settled": settled,
        "verified": int(routes.get("verified", 0)),
        "rejected": int(routes.get("rejected", 0)),
        "suspended": int(suspended[0]),
        "check_rows": [tuple(r) for r in check_rows],
    }


async def latency(data: Data, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """Presses as fast as they come: alone and while the model retrains in its worker, in turns."""
    db, svc, clock = await open_arm(folder / "latency", data, args, True)
    model = BuiltinText(data.labels, min_examples=20)
    loop = ModelLoop(svc, {"spam": model})
    try:
        await loop.step("spam")  # the worker is up and the items have suggestions
        users = [UserRef("lat", str(n)) for n in range(20)]
        tasks: dict[int, Task | Idle] = {}
        for n, u in enumerate(users):
            await svc.join(u)
            tasks[n] = await svc.next_task(u)
        rng = random.Random(args.seed)

        async def press(n: int) -> float | None:
            task = tasks[n]
            if not isinstance(task, Task):
                tasks[n] = await svc.next_task(users[n])
                return None
            value = rng.choice(task.choices)
            clock[0] += 1.0
            t0 = time.perf_counter()
            out = await svc.answer(users[n], task.assignment_id, value, then_next=True)
            took = (time.perf_counter() - t0) * 1000
            tasks[n] = out.next if out.next is not None else await svc.next_task(users[n])
            return took

        async def presses(until: asyncio.Future[Any] | None, count: int) -> list[float]:
            out: list[float] = []
            while (until is None and len(out) < count) or (until is not None and not until.done()):
                took = await press(rng.randrange(len(users)))
                if took is not None:
                    out.append(took)
                await asyncio.sleep(0.002)  # a busy bot, not a saturated one
            return out

        # Alone and during a retrain, in turns, each phase as long as the retrain before it:
        # samples of one size taken at nearby moments, so drifts in the machine's other load
        # fall on both sides (one retrain gives a few hundred presses: its p99 is a handful).
        base: list[float] = []
        during: list[float] = []
        retrains: list[float] = []
        took = 2.0
        for _ in range(args.retrains):
            base += await presses(asyncio.ensure_future(asyncio.sleep(took)), 0)
            t0 = time.perf_counter()
            training = asyncio.ensure_future(loop.step("spam", force=True))
            during += await presses(training, 0)
            await training
            took = time.perf_counter() - t0
            retrains.append(took)
    finally:
        await loop.close()
        await db.close()
    retrain = statistics.median(retrains)
    return {
        "alone_p50": pct(base, 50),
        "alone_p99": pct(base, 99),
        "during_p50": pct(during, 50),
        "during_p99": pct(during, 99),
        "during_n": len(during),
        "alone_n": len(base),
        "retrain_s": retrain,
        "worker_pid": model.worker_pid,
    }


async def main_async(args: argparse.Namespace) -> int:
    data = read_tsv(args.data, args.limit)
    pool = crowd_confusions(args.crowd, data.labels, args.min_answers)
    if not pool:
        print(f"no two-label crowd datasets under {args.crowd}", file=sys.stderr)
        return 2
    rng = random.Random(args.seed)
    people = [rng.choice(pool) for _ in range(args.annotators)]
    accs = [
        sum(c[t][t] * share for t, share in zip(data.labels, (0.87, 0.13), strict=False))
        for c in people
    ]
    print(
        f"data: {len(data.rows)} messages ({', '.join(data.labels)}), "
        f"{len(data.rows[::GOLD_EVERY])} gold; {args.annotators} annotators drawn from "
        f"{len(pool)} real workers (their accuracy here: median {pct(accs, 50):.0%}, "
        f"min {min(accs):.0%}, max {max(accs):.0%})",
        flush=True,
    )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="chatlabel-model-") as tmp:
        folder = Path(tmp)
        a = await run_arm("a", data, people, args, folder)
        report(a)
        b = await run_arm("b", data, people, args, folder)
        report(b)
        checks(b)
        lat = await latency(data, args, folder)
    ratio = lat["during_p99"] / lat["alone_p99"] if lat["alone_p99"] else float("nan")
    print(
        f"presses while the model retrains ({args.retrains} retrains, median "
        f"{lat['retrain_s']:.1f} s in worker pid "
        f"{lat['worker_pid']}): p50 {lat['during_p50']:.2f} ms, p99 {lat['during_p99']:.2f} ms "
        f"over {lat['during_n']}; without: p50 {lat['alone_p50']:.2f} ms, p99 "
        f"{lat['alone_p99']:.2f} ms over {lat['alone_n']}; p99 ratio {ratio:.2f} (target <= 2)"
    )
    per_item_share = b.per_item / a.per_item
    print(
        f"answers: (b) spends {per_item_share:.2%} of (a)'s human answers per item "
        f"(target <= 40%), accuracy {100 * (b.accuracy - a.accuracy):+.2f} points "
        f"(target >= -0.20); {time.perf_counter() - started:.0f} s in all"
    )
    print(f"machine: {machine()}; {load()}")
    print(
        f"model: human answers per item {a.per_item:.2f} -> {b.per_item:.2f} "
        f"({per_item_share:.1%} of no-model), accuracy {a.accuracy:.2%} -> {b.accuracy:.2%}"
    )
    return 0


def checks(r: Result) -> None:
    """Where the checks' no's fell: on right suggestions (wasted) or on wrong ones, by label."""
    parts = []
    for (label, right), (n, no) in sorted(r.check_split.items()):
        kind = "right" if right else "wrong"
        parts.append(f"{label} {kind} {no}/{n} ({no / n:.0%})" if n else f"{label} {kind} 0/0")
    print(f"({r.name}) no's per checked suggestion (label, right or wrong): " + ", ".join(parts))


def report(r: Result) -> None:
    """One arm's figures."""
    train = (
        f", {r.trainings} trainings (median {pct(r.train_seconds, 50):.2f} s, "
        f"max {max(r.train_seconds):.2f} s), final {r.model}"
        if r.train_seconds
        else ""
    )
    print(
        f"({r.name}) {r.items} items: {r.per_item:.2f} human answers per item "
        f"({r.human_answers} answers, {r.checks} of them checks: {r.verified} yes, "
        f"{r.rejected} no), accuracy {r.accuracy:.2%}, {r.suspended} suspended; "
        f"press p50 {pct(r.press_ms, 50):.2f} ms, p99 {pct(r.press_ms, 99):.2f} ms; "
        f"{r.seconds:.1f} s{train}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run both arms."""
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("data", type=Path, help="label<TAB>text file with a header")
    p.add_argument(
        "--crowd",
        type=Path,
        help="folder of crowd datasets to draw annotators from (default: the folder `crowd` "
        "beside DATA's folder)",
    )
    p.add_argument("--annotators", type=int, default=30, help="simulated annotators (30)")
    p.add_argument("--min-answers", type=int, default=40, help="a real worker's answers (40)")
    p.add_argument("--limit", type=int, help="only the first N messages")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--method", default="majority", help="verdict method of both arms")
    p.add_argument("--threshold", type=float, default=0.8, help="auto_threshold (0.8)")
    p.add_argument("--audit-rate", type=float, default=0.02, help="audit_rate (0.02)")
    p.add_argument("--order", default="uncertain-first", help="order (uncertain-first)")
    p.add_argument("--retrain-every", type=int, default=250, help="retrain_every (250)")
    p.add_argument(
        "--retrains", type=int, default=3, help="retrains timed against presses, in turns (3)"
    )
    args = p.parse_args(argv)
    if args.crowd is None:
        args.crowd = args.data.resolve().parent.parent / "crowd"
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
