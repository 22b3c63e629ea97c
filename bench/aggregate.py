"""Aggregation benchmark: majority, weighted and Dawid-Skene over 3,000,000 answers.

Simulated crowd: 1,000,000 items with 3 answers each from 10,000 annotators of mixed skill
(most good, some mediocre, a tenth spammers), 3 labels with unequal prevalence, 1 % gold items.

  majority     core.verdict.decide per item, as the service settles items
  weighted     decide per item with gold-accuracy weights (core.gold.reliability_weight)
  Dawid-Skene  core.dawid_skene.dawid_skene on integer codes, and dawid_skene_labels on the
               (item, annotator, label) strings the database holds

Baselines measured in the same run: a numpy bincount vote (the floor for majority and
weighted), and crowd-kit's DawidSkene on the same answers with the same iteration cap and
tolerance. Accuracy against the simulated truth is printed as a sanity check.

    python bench/aggregate.py            # 3M answers (about two to four minutes, mostly crowd-kit)
    python bench/aggregate.py --small    # 300k answers
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from _util import human, load, machine, table
from chatlabel.core.dawid_skene import dawid_skene, dawid_skene_labels
from chatlabel.core.gold import reliability_weight
from chatlabel.core.model import Rules, Vote
from chatlabel.core.verdict import decide

LABELS = ("positive", "negative", "neutral")
PRIORS = (0.5, 0.3, 0.2)


@dataclass
class Crowd:
    """Simulated answers as integer codes, plus the truth."""

    items: np.ndarray  # (n_answers,) item index, grouped by item
    workers: np.ndarray
    labels: np.ndarray
    truth: np.ndarray  # (n_items,)
    gold: np.ndarray  # (n_items,) bool: gold items
    n_items: int
    n_workers: int


def simulate(n_items: int, n_workers: int, per_item: int, seed: int) -> Crowd:
    """Answers from annotators of mixed skill; each item's answers come from distinct people."""
    rng = np.random.default_rng(seed)
    k = len(LABELS)
    truth = rng.choice(k, size=n_items, p=PRIORS)
    kind = rng.random(n_workers)
    acc = np.where(
        kind < 0.7,
        rng.uniform(0.75, 0.95, n_workers),
        np.where(kind < 0.9, rng.uniform(0.5, 0.75, n_workers), 1.0 / k),
    )
    items = np.repeat(np.arange(n_items), per_item)
    base = np.repeat(rng.integers(0, n_workers, size=n_items), per_item)
    workers = (base + np.tile(np.arange(per_item), n_items) * 7919) % n_workers
    right = rng.random(items.size) < acc[workers]
    spam = acc[workers] <= 1.0 / k + 1e-9
    wrong = (truth[items] + rng.integers(1, k, size=items.size)) % k
    labels = np.where(right, truth[items], wrong)
    labels = np.where(spam, rng.integers(0, k, size=items.size), labels)
    gold = np.zeros(n_items, dtype=bool)
    gold[::100] = True
    return Crowd(items, workers, labels, truth, gold, n_items, n_workers)


def timed(fn: Any, *args: Any, **kw: Any) -> tuple[Any, float]:
    """fn's result and its wall time."""
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t0


def vote_lists(c: Crowd, keys: list[str]) -> list[list[Vote]]:
    """Each ordinary item's votes as the service builds them from its answer rows."""
    bounds = np.flatnonzero(np.diff(c.items)) + 1
    starts = np.concatenate([[0], bounds]).tolist()
    ends = np.concatenate([bounds, [c.items.size]]).tolist()
    w, lab = c.workers.tolist(), c.labels.tolist()
    gold = c.gold.tolist()
    out = []
    for s, e in zip(starts, ends, strict=True):
        if not gold[c.items[s]]:
            out.append([Vote(keys[w[j]], LABELS[lab[j]]) for j in range(s, e)])
    return out


def gold_weights(c: Crowd) -> tuple[dict[str, float], np.ndarray]:
    """Every annotator's weight from their gold answers, by key and by index."""
    on_gold = c.gold[c.items]
    correct = (c.labels == c.truth[c.items]) & on_gold
    total = np.bincount(c.workers[on_gold], minlength=c.n_workers)
    right = np.bincount(c.workers[correct], minlength=c.n_workers)
    w = np.array(
        [
            reliability_weight(int(r), int(t), len(LABELS))
            for r, t in zip(right.tolist(), total.tolist(), strict=True)
        ]
    )
    return {f"telegram:{i}": float(x) for i, x in enumerate(w.tolist())}, w


def numpy_vote(c: Crowd, weights: np.ndarray | None) -> np.ndarray:
    """Floor: a (weighted) plurality vote per item with one bincount."""
    k = len(LABELS)
    wt = None if weights is None else weights[c.workers]
    counts = np.bincount(c.items * k + c.labels, weights=wt, minlength=c.n_items * k)
    return counts.reshape(c.n_items, k).argmax(axis=1)


def accuracy(pred: np.ndarray, c: Crowd, mask: np.ndarray | None = None) -> float:
    """Share of ordinary items whose predicted label is the truth."""
    m = ~c.gold if mask is None else mask
    return float((pred[m] == c.truth[m]).mean())


def crowdkit_ds(c: Crowd, n_iter: int, tol: float) -> tuple[np.ndarray, int]:
    """crowd-kit's DawidSkene on the same answers (task, worker, label as integers)."""
    import pandas as pd
    from crowdkit.aggregation import DawidSkene

    df = pd.DataFrame({"task": c.items, "worker": c.workers, "label": c.labels})
    ds = DawidSkene(n_iter=n_iter, tol=tol).fit(df)
    labels = ds.labels_.reindex(range(c.n_items)).to_numpy()
    return labels.astype(np.int64), len(ds.loss_history_)


def main(argv: Sequence[str] | None = None) -> int:
    """Simulate a crowd, run every method and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", action="store_true", help="300,000 answers")
    ap.add_argument("--answers", type=int, default=None, help="default 3,000,000")
    ap.add_argument("--per-item", type=int, default=3, help="answers per item")
    ap.add_argument("--annotators", type=int, default=None, help="default 10,000")
    ap.add_argument("--ds-iter", type=int, default=100, help="EM iteration cap (both DS)")
    ap.add_argument("--ds-tol", type=float, default=1e-5, help="EM tolerance (both DS)")
    ap.add_argument("--no-crowdkit", action="store_true", help="skip the crowd-kit baseline")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    n_answers = args.answers or (300_000 if args.small else 3_000_000)
    n_workers = args.annotators or (1_000 if args.small else 10_000)
    n_items = n_answers // args.per_item
    print(f"machine: {machine()}; {load()} at start")
    c = simulate(n_items, n_workers, args.per_item, args.seed)
    n_plain = int((~c.gold).sum())
    print(
        f"{c.items.size:,} answers on {n_items:,} items ({n_items - n_plain:,} gold) "
        f"from {n_workers:,} annotators",
        flush=True,
    )

    keys = [f"telegram:{i}" for i in range(n_workers)]
    rules = Rules(
        kind="single", labels=LABELS, overlap=args.per_item, max_overlap=args.per_item + 2
    )
    wrules = Rules(
        kind="single",
        labels=LABELS,
        overlap=args.per_item,
        max_overlap=args.per_item + 2,
        method="weighted",
    )
    votes, t_prep = timed(vote_lists, c, keys)
    (wmap, warr), t_w = timed(gold_weights, c)
    plain = np.flatnonzero(~c.gold)
    index = {label: i for i, label in enumerate(LABELS)}

    def run_decide(r: Rules, weights: dict[str, float] | None) -> np.ndarray:
        out = np.full(n_items, -1)
        labels = [decide(r, v, weights).label for v in votes]
        out[plain] = [index.get(x or "", -1) for x in labels]
        return out

    rows: list[list[str]] = []

    def row(
        name: str, seconds: float, base: float | None, base_name: str, acc: float, note: str = ""
    ) -> None:
        ratio = f"{seconds / base:.2f}× {base_name}" if base else "1.00 (baseline)"
        rows.append(
            [name, f"{seconds:.2f}", human(c.items.size / seconds), ratio, f"{acc:.2%}", note]
        )

    print("majority ...", flush=True)
    floor_m, t_floor_m = timed(numpy_vote, c, None)
    maj, t_maj = timed(run_decide, rules, None)
    print("weighted ...", flush=True)
    floor_w, t_floor_w = timed(numpy_vote, c, warr)
    wei, t_wei = timed(run_decide, wrules, wmap)
    print("Dawid-Skene ...", flush=True)
    ds, t_ds = timed(
        dawid_skene,
        c.items,
        c.workers,
        c.labels,
        n_items,
        n_workers,
        len(LABELS),
        max_iter=args.ds_iter,
        tol=args.ds_tol,
    )
    triples = list(
        zip(
            (f"i{i}" for i in c.items.tolist()),
            (keys[w] for w in c.workers.tolist()),
            (LABELS[x] for x in c.labels.tolist()),
            strict=True,
        )
    )
    ds_s, t_ds_s = timed(
        dawid_skene_labels, triples, LABELS, max_iter=args.ds_iter, tol=args.ds_tol
    )
    ds_s_pred = np.array([index[ds_s[f"i{i}"][0]] for i in range(n_items)])
    del triples
    ck = None
    if not args.no_crowdkit:
        print("crowd-kit Dawid-Skene ...", flush=True)
        (ck, ck_iter), t_ck = timed(crowdkit_ds, c, args.ds_iter, args.ds_tol)

    row("numpy plurality vote (floor)", t_floor_m, None, "", accuracy(floor_m, c))
    row(
        "majority: decide per item",
        t_maj,
        t_floor_m,
        "floor",
        accuracy(maj, c),
        f"+ {t_prep:.2f} s building Vote lists",
    )
    row("numpy weighted vote (floor)", t_floor_w, None, "", accuracy(floor_w, c))
    row(
        "weighted: decide per item",
        t_wei,
        t_floor_w,
        "floor",
        accuracy(wei, c),
        f"+ {t_w:.2f} s gold weights",
    )
    if ck is not None:
        row("crowd-kit DawidSkene", t_ck, None, "", accuracy(ck, c), f"{ck_iter} iterations")
    base = t_ck if ck is not None else None
    row(
        "Dawid-Skene (integer codes)",
        t_ds,
        base,
        "crowd-kit",
        accuracy(ds.labels, c),
        f"{ds.iterations} iterations"
        + (
            f"; same label as crowd-kit on {(ds.labels == ck).mean():.2%}" if ck is not None else ""
        ),
    )
    row(
        "Dawid-Skene (strings)",
        t_ds_s,
        base,
        "crowd-kit",
        accuracy(ds_s_pred, c),
        "dawid_skene_labels: encoding included",
    )
    if ck is not None:
        # Stopping rules differ (crowd-kit watches the ELBO): also run exactly as many EM
        # iterations as crowd-kit did, for a like-for-like time.
        same, t_same = timed(
            dawid_skene,
            c.items,
            c.workers,
            c.labels,
            n_items,
            n_workers,
            len(LABELS),
            max_iter=ck_iter,
            tol=0.0,
        )
        row(
            f"Dawid-Skene ({ck_iter} iterations, like crowd-kit)",
            t_same,
            base,
            "crowd-kit",
            accuracy(same.labels, c),
            f"{t_same / max(same.iterations, 1) * 1e3:.0f} ms/iteration vs crowd-kit "
            f"{t_ck / max(ck_iter, 1) * 1e3:.0f}",
        )
    print()
    print(table(["method", "seconds", "answers/s", "time vs baseline", "accuracy", "note"], rows))
    print(f"{load()} at end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
