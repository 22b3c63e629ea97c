"""Dawid-Skene EM over annotator answers, vectorized with numpy, with optional gold labels.

Model (Dawid & Skene, 1979): each item has a hidden true label z ~ priors; annotator w answering
an item whose true label is k picks label l with probability confusion[w, k, l]. EM alternates:

- E-step: posterior over z for every item from the priors and the confusion rows of the
  annotators who answered it (in log space, so hundreds of answers per item cannot underflow);
  a gold label counts as the answer of one more annotator, "gold", whose confusion matrix EM
  estimates like anyone's;
- M-step: priors are the mean posterior, confusion rows are the posterior-weighted counts of
  the answers plus ``smoothing`` pseudo-counts in every cell (and ``diagonal`` more on the
  diagonal), normalised per true label.

With ``smoothing`` near 0 and ``diagonal=0`` this is the same EM as crowd-kit's DawidSkene.
``diagonal`` is a Dirichlet prior that annotators beat chance: it helps when each annotator has
few answers (overlap 3), and costs nothing measurable when they have many.

EM starts from the soft majority vote with gold items clamped to their known label, so the first
confusion matrices (gold's included: a perfect annotator) are anchored by gold; from then on a
gold label weighs as much as its agreement with the crowd earns, which stays overwhelming where
the crowd is unsure, and a gold label the whole crowd contradicts (a slip, or a wrong truth)
no longer forces every worker's matrix to agree with it. Gold items are reported with their
known label. EM stops when the observed-data log-likelihood per answer changes by less than
``tol`` (or after ``max_iter`` iterations). Items without answers get the priors. Exact ties
in the posterior go to the lowest label index.

Every pass over answers is a numpy gather or ``np.bincount`` scatter; the only Python loops run
over labels and iterations, so millions of answers take seconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["DawidSkeneResult", "dawid_skene", "dawid_skene_labels"]

# Floor for probabilities before taking logs (crowd-kit clips at the same value): with
# smoothing=0 an unseen (true, answered) pair would otherwise give log(0) = -inf.
_EPS = 1e-10


@dataclass(frozen=True)
class DawidSkeneResult:
    """What Dawid-Skene estimated; label indices refer to ``range(n_labels)``."""

    posteriors: np.ndarray  # (n_items, K): P(true label = k | answers); one-hot for gold items
    labels: np.ndarray  # (n_items,) argmax of posteriors; exact ties go to the lowest index
    confidence: np.ndarray  # (n_items,) max posterior
    confusion: np.ndarray  # (n_workers, K, K): [w, true, answered], each row sums to 1
    priors: np.ndarray  # (K,) class prevalence
    iterations: int  # EM iterations run (0 when there were no answers)
    converged: bool  # log-likelihood per answer changed by less than tol


def _as_index(name: str, values: np.ndarray, upper: int) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integers, got dtype {arr.dtype}")
    arr = arr.astype(np.intp, copy=False)
    if arr.size and (arr.min() < 0 or arr.max() >= upper):
        raise ValueError(f"{name} must lie in [0, {upper}), got [{arr.min()}, {arr.max()}]")
    return arr


def _m_step(
    post: np.ndarray,
    items: np.ndarray,
    wl: np.ndarray,
    n_workers: int,
    smoothing: float,
    diagonal: float,
) -> np.ndarray:
    """Confusion (W, K, K) from label-major posteriors (K, n_items)."""
    k_count = post.shape[0]
    size = n_workers * k_count
    counts = np.empty((k_count, size))
    for k in range(k_count):
        # counts[k, w*K + l]: expected number of times w answered l on items whose truth is k
        counts[k] = np.bincount(wl, weights=post[k][items], minlength=size)
    conf = counts.reshape(k_count, n_workers, k_count).transpose(1, 0, 2) + smoothing
    if diagonal:
        conf += diagonal * np.eye(k_count)
    np.maximum(conf, _EPS, out=conf)
    conf /= conf.sum(axis=2, keepdims=True)
    return conf


def _priors(post: np.ndarray, observed: np.ndarray, smoothing: float) -> np.ndarray:
    """Class prevalence from label-major posteriors over items with evidence (0/1 float mask)."""
    # Items with no answers and no gold carry no evidence; counting them would only drag
    # the priors toward whatever they were initialised with.
    # A matrix-vector product with the 0/1 mask avoids copying a (K, n_items) selection.
    mass = post @ observed + smoothing
    total = mass.sum()
    if total <= 0:
        return np.full(post.shape[0], 1.0 / post.shape[0])
    pri = np.maximum(mass / total, _EPS)
    return pri / pri.sum()


def dawid_skene(
    items: np.ndarray,
    workers: np.ndarray,
    labels: np.ndarray,
    n_items: int,
    n_workers: int,
    n_labels: int,
    *,
    gold: np.ndarray | None = None,
    max_iter: int = 100,
    tol: float = 1e-5,
    smoothing: float = 0.01,
    diagonal: float = 0.0,
) -> DawidSkeneResult:
    """Estimate true labels and annotator confusion matrices by EM from integer-coded answers."""
    if n_items < 0 or n_workers < 0 or n_labels < 1:
        raise ValueError("n_items and n_workers must be >= 0 and n_labels >= 1")
    if smoothing < 0 or diagonal < 0 or max_iter < 0:
        raise ValueError("smoothing, diagonal and max_iter must be >= 0")
    it = _as_index("items", items, n_items)
    wk = _as_index("workers", workers, n_workers)
    lb = _as_index("labels", labels, n_labels)
    if not (it.size == wk.size == lb.size):
        raise ValueError("items, workers and labels must have the same length")
    k_count = n_labels

    gold_idx = np.zeros(0, dtype=np.intp)
    gold_lab = np.zeros(0, dtype=np.intp)
    if gold is not None:
        g = np.asarray(gold)
        if g.shape != (n_items,) or (g.size and not np.issubdtype(g.dtype, np.integer)):
            raise ValueError(f"gold must be an integer array of shape ({n_items},)")
        if g.size and (g.min() < -1 or g.max() >= k_count):
            raise ValueError(f"gold labels must lie in [-1, {k_count})")
        gold_idx = np.flatnonzero(g >= 0)
        gold_lab = g[gold_idx].astype(np.intp)
    crowd_answers = it.size
    # Gold labels are the answers of one more annotator (index n_workers) whose confusion EM
    # learns like anyone's: gold is evidence as strong as it proves, not infallible, so one
    # wrong gold label that the whole crowd contradicts cannot bend every worker's matrix.
    n_sources = n_workers + int(gold_idx.size > 0)
    if gold_idx.size:
        it = np.concatenate([it, gold_idx])
        wk = np.concatenate([wk, np.full(gold_idx.size, n_workers, dtype=np.intp)])
        lb = np.concatenate([lb, gold_lab])

    # Sorting by item turns the per-item scatter and gather into sequential memory access,
    # which is most of the speed at a million items.
    if it.size > 1 and np.any(it[1:] < it[:-1]):
        order = np.argsort(it, kind="stable")
        it, wk, lb = it[order], wk[order], lb[order]
    wl = wk * k_count + lb  # row of the (worker, answered label) pair in the flat tables

    n_answers = np.bincount(it, minlength=n_items)
    observed = n_answers > 0
    observed[gold_idx] = True
    evidence = observed.astype(float)

    # Posteriors are kept label-major (K, n_items) so each per-label pass is contiguous.
    # Start from the soft majority vote: the share of each label among an item's answers.
    post = np.bincount(lb * n_items + it, minlength=k_count * n_items).astype(float)
    post = post.reshape(k_count, n_items)
    with np.errstate(invalid="ignore", divide="ignore"):
        post /= n_answers
    post[:, ~observed] = 1.0 / k_count
    post[:, gold_idx] = 0.0
    post[gold_lab, gold_idx] = 1.0
    priors = _priors(post, evidence, smoothing)
    post[:, ~observed] = priors[:, None]

    if crowd_answers == 0:
        conf = np.full((n_workers, k_count, k_count), 1.0 / k_count)
        return _result(post, conf, priors, 0, True)

    conf = _m_step(post, it, wl, n_sources, smoothing, diagonal)
    prev_ll = -np.inf
    converged = False
    iterations = 0
    while iterations < max_iter:
        iterations += 1
        # E-step: log P(z=k) + sum over the item's answers of log confusion[w, k, l]
        log_conf = np.log(conf).transpose(1, 0, 2).reshape(k_count, n_sources * k_count)
        log_post = np.empty((k_count, n_items))
        for k in range(k_count):
            log_post[k] = np.bincount(it, weights=log_conf[k][wl], minlength=n_items)
        log_post += np.log(priors)[:, None]
        top = log_post.max(axis=0)
        np.exp(log_post - top, out=post)
        norm = post.sum(axis=0)
        post /= norm
        # Observed-data log-likelihood per answer (gold's answers included).
        ll = float((top + np.log(norm)) @ evidence) / it.size
        # M-step
        priors = _priors(post, evidence, smoothing)
        conf = _m_step(post, it, wl, n_sources, smoothing, diagonal)
        if abs(ll - prev_ll) < tol:
            converged = True
            break
        prev_ll = ll

    # Answerless items kept the prior of the last E-step; give them the final one. Gold items
    # are reported with their known label: what EM believed of them only weighed the evidence.
    post[:, ~observed] = priors[:, None]
    post[:, gold_idx] = 0.0
    post[gold_lab, gold_idx] = 1.0
    return _result(post, conf[:n_workers], priors, iterations, converged)


def _result(
    post: np.ndarray, conf: np.ndarray, priors: np.ndarray, iterations: int, converged: bool
) -> DawidSkeneResult:
    posteriors = np.ascontiguousarray(post.T)
    # np.argmax returns the first maximum, which is the documented tie rule: lowest index.
    best = posteriors.argmax(axis=1) if posteriors.size else np.zeros(0, dtype=np.intp)
    confidence = posteriors[np.arange(posteriors.shape[0]), best]
    return DawidSkeneResult(
        posteriors=posteriors,
        labels=best,
        confidence=confidence,
        confusion=conf,
        priors=priors,
        iterations=iterations,
        converged=converged,
    )


def dawid_skene_labels(
    answers: Iterable[tuple[str, str, str]],
    label_set: Sequence[str],
    gold: Mapping[str, str] | None = None,
    **kw: Any,
) -> dict[str, tuple[str, float]]:
    """Run Dawid-Skene on (item, annotator, label) strings; return item -> (label, confidence).

    Every item that has an answer or a gold label is returned; gold items come back with
    their gold label and confidence 1.0. Ties go to the label listed first in ``label_set``.
    """
    label_index = {label: i for i, label in enumerate(label_set)}
    if len(label_index) != len(label_set):
        raise ValueError("label_set has duplicates")
    rows = list(answers)
    n = len(rows)
    lb = np.fromiter((label_index.get(r[2], -1) for r in rows), dtype=np.intp, count=n)
    if n and lb.min() < 0:
        item, _, label = rows[int(np.argmin(lb))]
        raise ValueError(f"answer {label!r} for item {item!r} is not in the label set")
    gold = gold or {}
    for item, label in gold.items():
        if label not in label_index:
            raise ValueError(f"gold {label!r} for item {item!r} is not in the label set")
    # dict.fromkeys and map keep the encoding in C: a Python statement per answer would cost
    # as much as the EM itself at a few million answers.
    item_keys = [r[0] for r in rows]
    item_index = {item: i for i, item in enumerate(dict.fromkeys([*item_keys, *gold]))}
    worker_index = {w: i for i, w in enumerate(dict.fromkeys(r[1] for r in rows))}
    it = np.fromiter(map(item_index.__getitem__, item_keys), dtype=np.intp, count=n)
    wk = np.fromiter((worker_index[r[1]] for r in rows), dtype=np.intp, count=n)
    gold_arr = None
    if gold:
        gold_arr = np.full(len(item_index), -1, dtype=np.intp)
        for item, label in gold.items():
            gold_arr[item_index[item]] = label_index[label]
    result = dawid_skene(
        it,
        wk,
        lb,
        len(item_index),
        len(worker_index),
        len(label_set),
        gold=gold_arr,
        **kw,
    )
    names = [label_set[k] for k in result.labels.tolist()]
    return dict(zip(item_index, zip(names, result.confidence.tolist(), strict=True), strict=True))
