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
from typing import Any

from .base import Example, ItemText, Prediction, Suggested

log = logging.getLogger("chatlabel.model")

# Calibration folds (sigmoid, Platt): its probabilities are what routing compares with
# auto_threshold, so they must mean what they say. Three keeps training quick.
CALIBRATION_FOLDS = 3
# Folds for scoring the model on gold: each gold item is predicted by a model that did not
# learn from it, as a person meets a gold item without knowing its answer.
GOLD_FOLDS = 5

Row = tuple[int, str]  # (item id, text)
Scored = list[tuple[int, str, float]]  # (item id, label, probability of that label)


def _text(item: ItemText) -> str:
    return f"{item.text}\n{item.context}" if item.context else item.text


def fit_predict(
    labeled: list[tuple[int, str, str, bool]], items: list[Row], seed: int = 0
) -> tuple[Scored, Scored] | None:
    """In the worker: fit on (id, text, label, gold) rows; predict `items` and the gold rows.

    Returns (items' predictions, gold predictions made out of fold), or None when there is
    not enough to learn from (fewer than two labels with CALIBRATION_FOLDS examples each).
    """
    import numpy as np
    from scipy.sparse import vstack
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion
    from sklearn.svm import LinearSVC

    counts = Counter(label for _, _, label, _ in labeled)
    usable = {label for label, n in counts.items() if n >= CALIBRATION_FOLDS}
    if len(usable) < 2:
        return None
    rows = [r for r in labeled if r[2] in usable]
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

    def fit(index: np.ndarray) -> CalibratedClassifierCV | None:
        sub = y[index]
        least = min(Counter(sub.tolist()).values())
        if len(set(sub.tolist())) < 2 or least < 2:
            return None
        folds = min(CALIBRATION_FOLDS, least)
        clf = CalibratedClassifierCV(LinearSVC(C=1.0), method="sigmoid", cv=folds)
        return clf.fit(x_rows[index], sub)

    def best(clf: CalibratedClassifierCV, x: Any, ids: list[int]) -> Scored:
        if not ids:
            return []
        proba = clf.predict_proba(x)
        top = proba.argmax(axis=1)
        return [
            (i, str(clf.classes_[k]), float(p[k]))
            for i, k, p in zip(ids, top.tolist(), proba, strict=True)
        ]

    every = np.arange(len(rows))
    model = fit(every)
    if model is None:
        return None
    predicted = best(model, x_items, [i for i, _ in items])
    gold_at = np.array([n for n, r in enumerate(rows) if r[3]], dtype=int)
    out_of_fold: Scored = []
    if len(gold_at) >= 2:
        rng = np.random.default_rng(seed)
        shuffled = rng.permutation(gold_at)
        for part in np.array_split(shuffled, min(GOLD_FOLDS, len(gold_at))):
            held = fit(np.setdiff1d(every, part))
            if held is not None:
                x_part = vstack([x_rows[n] for n in part])
                out_of_fold += best(held, x_part, [rows[n][0] for n in part])
    return predicted, out_of_fold


class BuiltinText:
    """The `builtin-text` model: learns from gold and resolved verdicts, in a worker process."""

    kind = "builtin-text"
    learns = True

    def __init__(self, labels: Sequence[str], min_examples: int = 20) -> None:
        self.labels = tuple(labels)
        self.min_examples = min_examples
        self._pool: Any = None
        self.worker_pid: int | None = None  # the process that trains (tests check it is not us)

    def _ensure_pool(self) -> Any:
        if self._pool is None:
            # spawn, not fork: this process has threads (the database's, the event loop's).
            self._pool = multiprocessing.get_context("spawn").Pool(1)
        return self._pool

    async def suggest(
        self, examples: Sequence[Example], items: Sequence[ItemText], gold: Sequence[ItemText]
    ) -> Suggested | None:
        """Train on `examples` and predict `items` (and gold out of fold), in the worker."""
        known = [e for e in examples if e.label in self.labels]
        if len(known) < self.min_examples:
            return None
        labeled = [(e.item_id, e.text, e.label, e.gold) for e in known]
        rows = [(i.item_id, _text(i)) for i in items]
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()

        def ok(result: Any) -> None:
            loop.call_soon_threadsafe(_settle, done, result, None)

        def failed(exc: BaseException) -> None:
            loop.call_soon_threadsafe(_settle, done, None, exc)

        pool = self._ensure_pool()
        pool.apply_async(_run, (labeled, rows), callback=ok, error_callback=failed)
        got = await done
        if got is None:
            return None
        pid, result = got
        self.worker_pid = pid
        if result is None:
            return None
        predicted, out_of_fold = result
        return Suggested(
            self.kind,
            [Prediction(i, label, p) for i, label, p in predicted],
            [Prediction(i, label, p) for i, label, p in out_of_fold],
            examples=len(labeled),
        )

    async def close(self) -> None:
        """Stop the worker (a training in progress is abandoned)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.terminate()
            await asyncio.to_thread(pool.join)


def _run(
    labeled: list[tuple[int, str, str, bool]], items: list[Row]
) -> tuple[int, tuple[Scored, Scored] | None]:
    """The worker's job: its pid (for tests) and fit_predict's result."""
    import os

    return os.getpid(), fit_predict(labeled, items)


def _settle(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)
