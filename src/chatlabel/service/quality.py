"""Batch label quality: Dawid-Skene verdicts, gold confusion matrices, agreement per annotator."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Hashable
from dataclasses import dataclass, field

import numpy as np

from ..core import agreement as agr
from ..core.dawid_skene import dawid_skene
from ..core.model import Verdict, Vote
from ..core.routing import SUGGESTION_VOTER, as_stored
from ..core.verdict import decide, normalize_text
from ..storage import quality_queries as qq
from ..storage.exports import EXPORTED_DIGITS
from .labeling import LabelingService
from .rounds import exclusive_round

log = logging.getLogger("chatlabel.quality")

# Dawid-Skene needs categories; free text and label sets (multi) are not one category each.
DS_KINDS = ("single", "verify", "rating")
# Dirichlet pseudo-count on each confusion row's diagonal ("annotators beat chance"). 0 runs
# crowd-kit's EM exactly (plus gold as an annotator): on the real crowds of bench/quality.py a
# pseudo-count of 1 moved accuracy by less than half a point either way, costing most where
# annotators have many answers (dog: -0.4 pp), so the reference EM is kept.
DS_DIAGONAL = 0.0
DS_METHOD = "dawid-skene"
# Verdicts a pass rewrites per transaction: each well under a millisecond on SQLite's writer.
WRITE_CHUNK = 64


@dataclass(frozen=True)
class RecomputeSummary:
    """What one Dawid-Skene pass over a project did."""

    project: str
    ran: bool  # False when the project's kind has no categories (multi, text) or no answers
    items: int = 0  # items Dawid-Skene labeled (gold and expert-settled included)
    answers: int = 0  # answers it read
    anchors: int = 0  # items with a known label: gold, or settled by an expert
    written: int = 0  # verdicts rewritten with Dawid-Skene's label and posterior
    changed: int = 0  # of those, verdicts whose label changed
    iterations: int = 0
    converged: bool = True
    # ext_id -> (label, posterior) for every ordinary item with answers, pending ones included
    labels: dict[str, tuple[str, float]] = field(default_factory=dict, repr=False)


async def recompute(
    service: LabelingService, project: str, *, write: bool | None = None
) -> RecomputeSummary:
    """Run Dawid-Skene over a project's answers and, for dawid-skene projects, store its verdicts.

    Gold items and items an expert settled anchor EM with their known label. Only settled
    crowd verdicts are rewritten: an item still collecting answers stays pending (its
    online verdict decides when it has enough), and an expert's verdict is never overridden.
    """
    rules = service.rules[project]
    pid = service.pids[project]
    if write is None:
        write = rules.method == DS_METHOD
    if rules.kind not in DS_KINDS:
        return RecomputeSummary(project, ran=False)

    def read(conn: sqlite3.Connection) -> tuple[list[sqlite3.Row], list[sqlite3.Row]]:
        return qq.ds_answers(conn, pid), qq.item_states(conn, pid)

    answers, states = await service.db.read(read)
    if not answers:
        return RecomputeSummary(project, ran=False)
    choices = rules.choices
    label_index = {c: k for k, c in enumerate(choices)}
    item_index: dict[int, int] = {}
    worker_index: dict[int, int] = {}
    it, wk, lb = [], [], []
    for item_id, annotator_id, value in answers:
        k = label_index.get(value)
        if k is None:  # a value outside the label set (labels edited since): not evidence
            continue
        it.append(item_index.setdefault(item_id, len(item_index)))
        wk.append(worker_index.setdefault(annotator_id, len(worker_index)))
        lb.append(k)
    known: dict[int, int] = {}
    for s in states:
        if s["gold"] is not None and s["gold"] in label_index:
            known[s["id"]] = label_index[s["gold"]]
        elif s["method"] == "expert" and s["label"] in label_index:
            # An expert's answer is the last word, so it anchors the confusion matrices too.
            known[s["id"]] = label_index[s["label"]]
    for item_id in known:
        item_index.setdefault(item_id, len(item_index))
    gold = np.full(len(item_index), -1, dtype=np.intp)
    for item_id, k in known.items():
        gold[item_index[item_id]] = k
    result = await asyncio.to_thread(
        dawid_skene,
        np.asarray(it, dtype=np.intp),
        np.asarray(wk, dtype=np.intp),
        np.asarray(lb, dtype=np.intp),
        len(item_index),
        len(worker_index),
        len(choices),
        gold=gold,
        diagonal=DS_DIAGONAL,
    )
    best = result.labels.tolist()
    conf = result.confidence.tolist()
    labels: dict[str, tuple[str, float]] = {}
    updates: list[tuple[str, float, str, int]] = []
    changed = 0
    for s in states:
        j = item_index.get(s["id"])
        if j is None or s["gold"] is not None:
            continue
        label, posterior = choices[best[j]], float(conf[j])
        labels[s["ext_id"]] = (label, posterior)
        if s["status"] == "pending" or s["method"] in (None, "expert"):
            continue
        was = s["confidence"]
        kept = was is not None and round(was, EXPORTED_DIGITS) == round(posterior, EXPORTED_DIGITS)
        if kept and (label, DS_METHOD) == (s["label"], s["method"]):
            continue  # as it was, to the digits exports show: nothing to write
        updates.append((label, posterior, DS_METHOD, s["id"]))
        changed += label != s["label"]
    written = 0
    if write:
        # Small background transactions: a first pass over a big project rewrites every
        # verdict, and presses go on between the chunks (storage/give_way.py).
        for start in range(0, len(updates), WRITE_CHUNK):
            chunk = updates[start : start + WRITE_CHUNK]
            written += await service.db.write(
                qq.write_batch_verdicts, chunk, short=True, background=True
            )
    return RecomputeSummary(
        project,
        ran=True,
        items=len(item_index),
        answers=len(it),
        anchors=len(known),
        written=written,
        changed=changed if write else 0,
        iterations=result.iterations,
        converged=result.converged,
        labels=labels,
    )


class BatchRecompute:
    """Keeps dawid-skene verdicts fresh: one recompute per `every` new answers, never per press."""

    def __init__(self, service: LabelingService, every: int = 200) -> None:
        self.service = service
        self.every = every
        self._seen: dict[str, int] = {}  # project -> newest answer id the last pass saw

    def projects(self) -> list[str]:
        """The projects whose verdicts come from Dawid-Skene."""
        return [n for n, r in self.service.rules.items() if r.method == DS_METHOD]

    async def check(self) -> list[RecomputeSummary]:
        """Recompute every dawid-skene project that got `every` answers since its last pass."""
        done = []
        for name in self.projects():
            pid = self.service.pids[name]
            last = self._seen.get(name, 0)
            new = await self.service.db.read(qq.answers_after, pid, last)
            if new < self.every:
                continue
            newest = await self.service.db.read(qq.last_answer_id, pid)
            done.append(await recompute(self.service, name))
            self._seen[name] = newest
        return done

    async def run(self, stop: asyncio.Event, interval: float = 60.0, settle: float = 2.0) -> None:
        """Check after answers arrive (and every `interval`) until `stop` is set."""
        while not stop.is_set():
            await self.service.wait_for_change(interval)
            # Let a burst of answers land first: one pass per burst, not per answer.
            await asyncio.sleep(settle)
            await exclusive_round(
                self.service.exclusive,
                "dawid-skene",
                self.check,
                lambda: log.exception(
                    "Dawid-Skene recompute failed; verdicts keep their online labels"
                ),
            )


# -- per-annotator quality --------------------------------------------------------------------


@dataclass(frozen=True)
class Confusion:
    """An annotator's answers on gold items: counts[gold][answered] over `labels`."""

    labels: tuple[str, ...]
    counts: tuple[tuple[int, ...], ...]

    @property
    def total(self) -> int:
        """Gold answers counted."""
        return sum(map(sum, self.counts))

    @property
    def correct(self) -> int:
        """Gold answers on the diagonal."""
        return sum(self.counts[i][i] for i in range(len(self.labels)))


def _confusion(pairs: list[tuple[str, str]], choices: tuple[str, ...], text: bool) -> Confusion:
    """Confusion counts over the project's labels, plus any other values that occur."""
    if text:
        pairs = [(normalize_text(g), normalize_text(v)) for g, v in pairs]
    labels = list(choices)
    for g, v in pairs:
        for x in (g, v):
            if x not in labels:
                labels.append(x)
    index = {x: i for i, x in enumerate(labels)}
    counts = [[0] * len(labels) for _ in labels]
    for g, v in pairs:
        counts[index[g]][index[v]] += 1
    return Confusion(tuple(labels), tuple(tuple(r) for r in counts))


async def confusion(service: LabelingService, project: str, annotator_key: str) -> Confusion:
    """One annotator's confusion matrix against gold (rows: gold label, columns: their answer)."""
    pid = service.pids[project]
    rows = await service.db.read(qq.gold_pairs, pid, annotator_key)
    rules = service.rules[project]
    return _confusion([(g, v) for g, v in rows], rules.choices, rules.kind == "text")


async def confusions(service: LabelingService, project: str) -> dict[str, Confusion]:
    """Every annotator's confusion matrix against gold, keyed by annotator, in one query."""
    pid = service.pids[project]
    rules = service.rules[project]
    by_key: dict[str, list[tuple[str, str]]] = {}
    for key, g, v in await service.db.read(qq.all_gold_pairs, pid):
        by_key.setdefault(key, []).append((g, v))
    return {k: _confusion(p, rules.choices, rules.kind == "text") for k, p in by_key.items()}


async def agreement_with_verdicts(
    service: LabelingService, project: str
) -> dict[str, tuple[float, int]]:
    """Per annotator: the share of their counted answers on resolved items equal to the verdict."""
    pid = service.pids[project]
    text = service.rules[project].kind == "text"

    def read(conn: sqlite3.Connection) -> tuple[list[sqlite3.Row], list[sqlite3.Row]]:
        return qq.crowd_answers(conn, pid), qq.resolved_labels(conn, pid)

    answers, resolved = await service.db.read(read)
    norm = normalize_text if text else str
    verdicts: dict[Hashable, Hashable] = {i: norm(label) for i, label in resolved}
    return agr.agreement_with_verdict(((i, k, norm(v)) for i, k, v in answers), verdicts)


async def pairwise_kappa(
    service: LabelingService, project: str, min_shared: int = 10
) -> dict[tuple[str, str], tuple[float, int]]:
    """Cohen's kappa for each pair of annotators sharing at least `min_shared` items."""
    if service.rules[project].kind == "text":
        return {}  # free text has no fixed categories to agree on by chance
    rows = await service.db.read(qq.crowd_answers, service.pids[project])
    return agr.pairwise_cohen(((i, k, v) for i, k, v in rows), min_shared=min_shared)


async def current_verdicts(service: LabelingService, project: str) -> dict[str, Verdict]:
    """Each ordinary item's verdict as the online path would compute it now, pending ones too."""
    pid = service.pids[project]
    rules = service.rules[project]

    def read(conn: sqlite3.Connection) -> dict[str, Verdict]:
        votes: dict[int, list[tuple[str, int, str, bool]]] = {}
        for r in qq.counted_votes(conn, pid):
            votes.setdefault(r[0], []).append((r[1], r[2], r[3], bool(r[4])))
        weights: dict[int | None, float] | None = None
        if rules.method != "majority":
            ids = sorted({aid for vs in votes.values() for _, aid, _, _ in vs})
            # The service's own weights, so this is exactly what its online verdict would say.
            weights = service.settling.weights(conn, pid, rules, ids)
        suggestion = service.settling.stands_in(project)
        out = {}
        for s in qq.item_states(conn, pid):
            if s["gold"] is not None:
                continue
            vs: list[tuple[str, int | None, str, bool]] = list(votes.get(s["id"], []))
            stand_in = int(suggestion and s["rejected"] is not None)
            if stand_in:
                vs.insert(0, (SUGGESTION_VOTER, None, s["rejected"], False))
            w = None if weights is None else {k: weights.get(a, 1.0) for k, a, _, _ in vs}
            verdict = decide(rules, [Vote(k, value, e) for k, _, value, e in vs], w)
            out[s["ext_id"]] = as_stored(verdict, stand_in)
        return out

    return await service.db.read(read)


__all__ = [
    "BatchRecompute",
    "Confusion",
    "RecomputeSummary",
    "agreement_with_verdicts",
    "confusion",
    "confusions",
    "current_verdicts",
    "pairwise_kappa",
    "recompute",
]
