"""The built-in text model: a calibrated linear classifier over TF-IDF, trained in a worker.

Training and prediction run in one spawned worker process, never on the event loop: fitting
takes seconds, and a button press must not wait for it. scikit-learn is imported only there
(and only when the `model` extra is installed), so the bot itself stays light.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from .base import Predictions, Suggested, WorkSource

log = logging.getLogger("chatlabel.model")

# Calibration folds (sigmoid, Platt): its probabilities are what routing compares with
# auto_threshold, so they must mean what they say. Three keeps training quick.
CALIBRATION_FOLDS = 3
# Folds for scoring the model on gold: each gold item is predicted by a model that did not
# learn from it, as a person meets a gold item without knowing its answer.
GOLD_FOLDS = 5

Row = tuple[int, str]  # (item id, text)
Scored = list[tuple[int, str, float]]  # (item id, label, probability of that label)


def fit_predict(
    labeled: list[tuple[int, str, str, bool]], items: list[Row], seed: int = 0
) -> tuple[Scored, Scored] | None:
    """In the worker: fit on (id, text, label, gold) rows; predict `items` and the gold rows.

    Returns (items' predictions, gold predictions made out of fold), or None when there is
    not enough to learn from (fewer than two labels with CALIBRATION_FOLDS examples each).

    The classifier learns from every labeled item, but its probabilities are calibrated on
    gold alone: verdicts carry the crowd's mistakes, and probabilities calibrated against
    them could never say more than "as sure as the crowd" (on SMS spam a model trained on
    257 verdicts of an 88 %-accurate crowd scored 7 items of 1,300 above 0.95, against 655
    with gold alone). Gold items are scored out of fold: each by a model that did not learn
    from it, as a person meets a gold item without knowing its answer.
    """
    import numpy as np
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion
    from sklearn.svm import LinearSVC

    counts = Counter(label for _, _, label, _ in labeled)
    usable = {label for label, n in counts.items() if n >= CALIBRATION_FOLDS}
    if len(usable) < 2:
        return None
    rows = [r for r in labeled if r[2] in usable]
    classes = sorted(usable)
    # Words and character n-grams within words: the second catches "fr33", "W1N" and the like.
    features = FeatureUnion(
        [
            ("words", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)),
            (
                "chars",
                TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True),
            ),
        ]
    )
    # Fitted on every text at hand, labeled or not: TF-IDF learns no labels, and the items to
    # predict share its vocabulary and weights.
    x_all = features.fit_transform([t for _, t, _, _ in rows] + [t for _, t in items])
    x_rows, x_items = x_all[: len(rows)], x_all[len(rows) :]
    y = np.array([label for _, _, label, _ in rows])
    every = np.arange(len(rows))
    gold_at = np.array([n for n, r in enumerate(rows) if r[3]], dtype=int)

    def margins(index: np.ndarray, x: Any) -> np.ndarray:
        """Decision values (n, classes) of a linear SVM fitted on rows `index`."""
        svm = LinearSVC(C=1.0, random_state=seed).fit(x_rows[index], y[index])
        d = svm.decision_function(x)
        d = np.column_stack([-d, d]) if d.ndim == 1 else d
        out = np.full((x.shape[0], len(classes)), -10.0)  # a label it never saw: no chance
        for k, c in enumerate(svm.classes_):
            out[:, classes.index(c)] = d[:, k]
        return out

    def scored(proba: np.ndarray, labels: Any, ids: list[int]) -> Scored:
        top = proba.argmax(axis=1)
        return [
            (i, str(labels[k]), float(p[k]))
            for i, k, p in zip(ids, top.tolist(), proba, strict=True)
        ]

    ids = [i for i, _ in items]
    gold_y = y[gold_at]
    gold_counts = Counter(gold_y.tolist())
    if (
        len(gold_at) >= 2 * GOLD_FOLDS
        and set(gold_counts) == set(classes)
        and min(gold_counts.values()) >= 2
    ):
        # Out-of-fold margins of gold items, then one calibrator from margins to gold labels.
        rng = np.random.default_rng(seed)
        oof = np.zeros((len(gold_at), len(classes)))
        order = rng.permutation(len(gold_at))
        for part in np.array_split(order, GOLD_FOLDS):
            held = np.setdiff1d(every, gold_at[part])
            if len(set(y[held].tolist())) < 2:
                return None
            oof[part] = margins(held, x_rows[gold_at[part]])
        calibrator = LogisticRegression(C=10.0, max_iter=1000).fit(oof, gold_y)
        final = margins(every, x_items) if ids else np.zeros((0, len(classes)))
        predicted = scored(calibrator.predict_proba(final), calibrator.classes_, ids) if ids else []
        gold_ids = [rows[n][0] for n in gold_at]
        return predicted, scored(calibrator.predict_proba(oof), calibrator.classes_, gold_ids)
    # Too little gold to calibrate on: sigmoid calibration over every labeled item.
    least = min(Counter(y.tolist()).values())
    model = CalibratedClassifierCV(
        LinearSVC(C=1.0, random_state=seed), method="sigmoid", cv=min(CALIBRATION_FOLDS, least)
    ).fit(x_rows, y)
    predicted = scored(model.predict_proba(x_items), model.classes_, ids) if ids else []
    return predicted, []


class BuiltinText:
    """The `builtin-text` model: learns from gold and resolved verdicts, in a worker process."""

    kind = "builtin-text"
    learns = True

    def __init__(self, labels: Sequence[str], min_examples: int = 20) -> None:
        self.labels = tuple(labels)
        self.min_examples = min_examples
        self._pool: ProcessPoolExecutor | None = None
        self.worker_pid: int | None = None  # the process that trains (tests check it is not us)

    def _ensure_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn, not fork: this process has threads (the database's, the event loop's).
            ctx = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(1, mp_context=ctx, initializer=_background)
        return self._pool

    async def suggest(self, source: WorkSource) -> Suggested | None:
        """Read the round's work, train and predict, all in the worker process."""
        pool = self._ensure_pool()
        job = pool.submit(_round, source, self.labels, self.min_examples)
        try:
            pid, got = await asyncio.wrap_future(job)
        except BrokenProcessPool:
            # The worker died (killed, out of memory): a fresh one next round.
            self._pool = None
            raise
        self.worker_pid = pid
        if got is None:
            return None
        items, gold, examples = got
        return Suggested(self.kind, _predictions(*items), _predictions(*gold), examples=examples)

    async def close(self) -> None:
        """Stop the worker; a training in progress is abandoned, not waited for."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        # No public way to stop a busy worker before Python 3.14 (terminate_workers).
        workers = list(getattr(pool, "_processes", {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for worker in workers:
            if worker.is_alive():
                worker.terminate()
        await asyncio.to_thread(pool.shutdown, True)


def _background() -> None:
    """The worker yields the CPU to the bots: training can wait, a press cannot."""
    import contextlib
    import os

    # Linux's idle class runs it only on a core nobody else wants, and a woken bot takes the
    # core back at once; a high nice value (elsewhere) still let it hold a core for a time
    # slice, and the p99 of a press through the bot tripled during a retrain.
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        return
    with contextlib.suppress(AttributeError, OSError):  # not everywhere, or not allowed
        os.nice(19)


Packed = tuple[Any, Any, list[str], Any]  # (ids, label indices, labels, scores) as arrays


def _round(
    source: WorkSource, labels: tuple[str, ...], min_examples: int
) -> tuple[int, tuple[Packed, Packed, int] | None]:
    """The worker's job: read the work, fit, predict; its pid (for tests) and the result.

    Predictions come back as numpy arrays: they cross the process boundary as a few buffers,
    where lists of a hundred thousand tuples would keep a thread of the bots' process busy
    unpickling them (and the event loop waiting for the GIL).
    """
    import os

    work = source()
    known = [n for n, label in enumerate(work.example_labels) if label in labels]
    if len(known) < min_examples:
        return os.getpid(), None
    labeled = [
        (work.example_ids[n], work.example_texts[n], work.example_labels[n], work.example_gold[n])
        for n in known
    ]
    result = fit_predict(labeled, list(zip(work.item_ids, work.item_texts, strict=True)))
    if result is None:
        return os.getpid(), None
    predicted, out_of_fold = result
    return os.getpid(), (_pack(predicted, labels), _pack(out_of_fold, labels), len(labeled))


def _pack(scored: Scored, labels: tuple[str, ...]) -> Packed:
    import numpy as np

    index = {label: k for k, label in enumerate(labels)}
    return (
        np.array([i for i, _, _ in scored], dtype=np.int64),
        np.array([index[lab] for _, lab, _ in scored], dtype=np.int16),
        list(labels),
        np.array([p for _, _, p in scored], dtype=np.float64),
    )


def _predictions(ids: Any, which: Any, labels: list[str], scores: Any) -> Predictions:
    return Predictions(ids.tolist(), [labels[k] for k in which.tolist()], scores.tolist())
