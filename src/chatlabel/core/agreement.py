"""Inter-annotator agreement: Fleiss' kappa, Krippendorff's alpha, Cohen's kappa and friends.

Undefined values (no pairable ratings, or chance agreement of 1 so the formula is 0/0) come
back as ``float("nan")``, never as a warning or an exception; callers display them as "n/a".
Where an annotator answered the same item more than once, their last answer counts.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any, Literal, TypeVar

import krippendorff
import numpy as np

__all__ = [
    "agreement_with_verdict",
    "cohen_kappa",
    "count_matrix",
    "fleiss_kappa",
    "krippendorff_alpha",
    "pairwise_cohen",
]

Level = Literal["nominal", "ordinal", "interval", "ratio"]
Item = TypeVar("Item", bound=Hashable)
Who = TypeVar("Who", bound=Hashable)
Label = TypeVar("Label", bound=Hashable)
Units = Mapping[Any, Mapping[Any, float | str]]  # unit -> {coder: value}

_NAN = float("nan")


def _last_answers(
    answers: Iterable[tuple[Item, Who, Label]],
) -> dict[tuple[Item, Who], Label]:
    # A dict keeps the last write, which is the "last answer counts" rule.
    return {(item, annotator): label for item, annotator, label in answers}


def count_matrix(
    answers: Iterable[tuple[Item, Hashable, Label]], labels: Sequence[Label] | None = None
) -> tuple[np.ndarray, list[Item], list[Label]]:
    """Items x labels count matrix from (item, annotator, label) answers, for fleiss_kappa."""
    last = _last_answers(answers)
    label_list = list(labels) if labels is not None else list(dict.fromkeys(last.values()))
    label_index = {label: j for j, label in enumerate(label_list)}
    item_index: dict[Item, int] = {}
    rows: list[int] = []
    cols: list[int] = []
    for (item, _), label in last.items():
        if label not in label_index:
            raise ValueError(f"label {label!r} of item {item!r} is not in the label set")
        rows.append(item_index.setdefault(item, len(item_index)))
        cols.append(label_index[label])
    counts = np.zeros((len(item_index), len(label_list)), dtype=np.int64)
    np.add.at(counts, (np.asarray(rows, dtype=np.intp), np.asarray(cols, dtype=np.intp)), 1)
    return counts, list(item_index), label_list


def fleiss_kappa(counts: np.ndarray) -> float:
    """Fleiss' kappa of an items x categories count matrix; nan where undefined.

    Items may have different numbers of raters n_i. Items with fewer than 2 ratings carry
    no agreement information and are dropped. Per-item agreement is
    P_i = sum_j n_ij (n_ij - 1) / (n_i (n_i - 1)), P_bar is their unweighted mean, and
    p_j = sum_i n_ij / sum_i n_i pools all ratings; kappa = (P_bar - P_e) / (1 - P_e) with
    P_e = sum_j p_j^2. With equal n_i this is exactly Fleiss (1971). If every rating falls in
    one category P_e = 1 and kappa is 0/0: nan.
    """
    c = np.asarray(counts, dtype=float)
    if c.ndim != 2:
        raise ValueError(f"counts must be a 2-D items x categories matrix, got shape {c.shape}")
    if np.any(c < 0) or not np.all(np.isfinite(c)):
        raise ValueError("counts must be finite and non-negative")
    n = c.sum(axis=1)
    keep = n >= 2
    c, n = c[keep], n[keep]
    if c.shape[0] == 0:
        return _NAN
    p_items = ((c * (c - 1)).sum(axis=1)) / (n * (n - 1))
    p_bar = float(p_items.mean())
    p_cat = c.sum(axis=0) / n.sum()
    p_e = float((p_cat**2).sum())
    if math.isclose(p_e, 1.0, rel_tol=0.0, abs_tol=1e-12):
        return _NAN
    return (p_bar - p_e) / (1.0 - p_e)


def krippendorff_alpha(
    data: Units | np.ndarray,
    level: Level = "nominal",
    *,
    value_order: Sequence[float | str] | None = None,
) -> float:
    """Krippendorff's alpha of units -> {coder: value} or a coders x units matrix; nan if undefined.

    Nominal values may be any strings or numbers (mapped to ints). Ordinal, interval and ratio
    need numbers, or for ordinal an explicit ``value_order`` that ranks string values (a
    rating scale such as ["bad", "ok", "good"]). In a matrix, NaN marks a missing rating.
    Alpha is undefined (nan) when no unit has two ratings or all pairable ratings are equal
    (Krippendorff: D_o = D_e = 0).
    """
    matrix = _reliability_matrix(data, level, value_order)
    if matrix.ndim != 2:
        raise ValueError(f"reliability matrix must be 2-D coders x units, got {matrix.shape}")
    rated = ~np.isnan(matrix)
    pairable = rated.sum(axis=0) >= 2
    values = matrix[:, pairable][rated[:, pairable]]
    if values.size == 0 or np.unique(values).size < 2:
        return _NAN
    with np.errstate(all="ignore"):
        return float(krippendorff.alpha(reliability_data=matrix, level_of_measurement=level))


def _reliability_matrix(
    data: Units | np.ndarray,
    level: Level,
    value_order: Sequence[float | str] | None,
) -> np.ndarray:
    if level not in ("nominal", "ordinal", "interval", "ratio"):
        raise ValueError(f"unknown level of measurement {level!r}")
    if not isinstance(data, Mapping):
        arr = np.asarray(data)
        if arr.dtype.kind not in "iuf":
            raise ValueError("a reliability matrix must be numeric with NaN for missing ratings")
        return arr.astype(float)
    units = list(data)
    coders = list(dict.fromkeys(c for ratings in data.values() for c in ratings))
    coder_index = {c: i for i, c in enumerate(coders)}
    code = _value_coder(data, level, value_order)
    matrix = np.full((len(coders), len(units)), np.nan)
    for j, unit in enumerate(units):
        for coder, value in data[unit].items():
            matrix[coder_index[coder], j] = code[value]
    return matrix


def _value_coder(
    data: Units,
    level: Level,
    value_order: Sequence[float | str] | None,
) -> dict[float | str, float]:
    if value_order is not None:
        if level in ("interval", "ratio"):
            raise ValueError("value_order ranks values, so it only applies to nominal or ordinal")
        rank = {v: float(i) for i, v in enumerate(value_order)}
        missing = {v for r in data.values() for v in r.values() if v not in rank}
        if missing:
            raise ValueError(f"values not in value_order: {sorted(map(str, missing))}")
        return rank
    seen = list(dict.fromkeys(v for r in data.values() for v in r.values()))
    if level == "nominal":
        # Only identity matters for nominal data, so any stable numbering will do.
        return {v: float(i) for i, v in enumerate(seen)}
    bad = [v for v in seen if isinstance(v, bool) or not isinstance(v, numbers.Real)]
    if bad:
        raise ValueError(f"{level} alpha needs numeric values (or value_order), got {bad[0]!r}")
    return {v: float(v) for v in seen}


def _kappa_from_counts(agree: int, n: int, chance: int) -> float:
    # kappa = (p_o - p_e) / (1 - p_e) with p_o = agree / n and p_e = chance / n^2, kept in
    # integers so that "p_e is exactly 1" is an exact test, not a float comparison.
    denom = n * n - chance
    if n == 0 or denom == 0:
        return _NAN
    return (agree * n - chance) / denom


def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float:
    """Cohen's kappa of two raters' labels on the same items (a[i], b[i]); nan if undefined."""
    if len(a) != len(b):
        raise ValueError(f"a and b must have the same length, got {len(a)} and {len(b)}")
    agree = sum(1 for x, y in zip(a, b, strict=True) if x == y)
    count_a: dict[Hashable, int] = {}
    count_b: dict[Hashable, int] = {}
    for x in a:
        count_a[x] = count_a.get(x, 0) + 1
    for y in b:
        count_b[y] = count_b.get(y, 0) + 1
    chance = sum(n * count_b.get(label, 0) for label, n in count_a.items())
    return _kappa_from_counts(agree, len(a), chance)


def pairwise_cohen(
    answers: Iterable[tuple[Hashable, Who, Hashable]], min_shared: int = 10
) -> dict[tuple[Who, Who], tuple[float, int]]:
    """Cohen's kappa and shared-item count for each annotator pair sharing >= min_shared items.

    Keys are (a, b) with str(a) < str(b). Work is proportional to the number of co-rating pairs,
    sum over items of m(m-1)/2 for m raters; pairs that never share an item cost nothing.
    """
    if min_shared < 1:
        raise ValueError("min_shared must be >= 1")
    rows = list(answers)
    if not rows:
        return {}
    # Encoding through dict lookups in map/fromiter stays in C; it is most of the runtime.
    item, _ = _codes([r[0] for r in rows])
    ann_col = [r[1] for r in rows]
    annotators = sorted(dict.fromkeys(ann_col), key=str)
    ann_index = {a: i for i, a in enumerate(annotators)}
    ann = np.fromiter(map(ann_index.__getitem__, ann_col), dtype=np.int64, count=len(rows))
    lab, label_list = _codes([r[2] for r in rows])
    # Sorted by item, then annotator (lexsort is stable, so repeated answers stay in order
    # and the last of each (item, annotator) run is the one that counts). Inside an item
    # every later row then has a larger annotator index: pairs come out in (a < b) order.
    order = np.lexsort((ann, item))
    item, ann, lab = item[order], ann[order], lab[order]
    last = np.r_[(item[1:] != item[:-1]) | (ann[1:] != ann[:-1]), True]
    item, ann, lab = item[last], ann[last], lab[last]
    first, second = _pairs_within_groups(item)
    if first.size == 0:
        return {}
    n_ann, n_lab = len(annotators), len(label_list)
    pair_code = ann[first] * n_ann + ann[second]
    pairs, inverse, shared = np.unique(pair_code, return_inverse=True, return_counts=True)
    kept = np.flatnonzero(shared >= min_shared)
    if kept.size == 0:
        return {}
    slot = np.full(pairs.size, -1, dtype=np.int64)
    slot[kept] = np.arange(kept.size)
    row_slot = slot[inverse.ravel()]
    use = row_slot >= 0
    row_slot, la, lb = row_slot[use], lab[first[use]], lab[second[use]]
    n_kept = kept.size
    agree = np.bincount(row_slot, weights=(la == lb), minlength=n_kept).astype(np.int64)
    marg_a = np.bincount(row_slot * n_lab + la, minlength=n_kept * n_lab).reshape(n_kept, n_lab)
    marg_b = np.bincount(row_slot * n_lab + lb, minlength=n_kept * n_lab).reshape(n_kept, n_lab)
    chance = (marg_a * marg_b).sum(axis=1)
    n = shared[kept].astype(np.int64)
    # Same integer form as _kappa_from_counts, vectorized; a zero denominator is p_e = 1.
    num = agree * n - chance
    den = n * n - chance
    kappa = np.full(n_kept, np.nan)
    np.divide(num, den, out=kappa, where=den != 0)
    first_ann, second_ann = np.divmod(pairs[kept], n_ann)
    keys = zip(
        map(annotators.__getitem__, first_ann.tolist()),
        map(annotators.__getitem__, second_ann.tolist()),
        strict=True,
    )
    return dict(zip(keys, zip(kappa.tolist(), n.tolist(), strict=True), strict=True))


def _codes(values: list[Label]) -> tuple[np.ndarray, list[Label]]:
    """Integer codes of hashable values in order of first appearance, and the distinct values."""
    index = {v: i for i, v in enumerate(dict.fromkeys(values))}
    codes = np.fromiter(map(index.__getitem__, values), dtype=np.int64, count=len(values))
    return codes, list(index)


def _pairs_within_groups(group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row index pairs (i, j), i < j, of rows in the same run of a sorted group array."""
    size = group.size
    if size < 2:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    ends = np.r_[starts[1:], size]
    end_of_row = np.repeat(ends, ends - starts)
    later = end_of_row - np.arange(size) - 1  # rows after this one in its group
    total = int(later.sum())
    first = np.repeat(np.arange(size, dtype=np.int64), later)
    block_start = np.repeat(np.cumsum(later) - later, later)
    second = first + (np.arange(total, dtype=np.int64) - block_start) + 1
    return first, second


def agreement_with_verdict(
    answers: Iterable[tuple[Hashable, Who, Hashable]], verdicts: Mapping[Any, Hashable]
) -> dict[Who, tuple[float, int]]:
    """Per annotator: share of their answers on items with a verdict that equal it, and count.

    Answers on items without a verdict are ignored; annotators with none are left out.
    """
    hits: dict[Who, int] = {}
    totals: dict[Who, int] = {}
    for (item, annotator), label in _last_answers(answers).items():
        if item not in verdicts:
            continue
        totals[annotator] = totals.get(annotator, 0) + 1
        hits[annotator] = hits.get(annotator, 0) + (label == verdicts[item])
    return {a: (hits[a] / n, n) for a, n in totals.items()}


def agreement_figures(rows: list[tuple[int, int, str]], kind: str) -> dict[str, float | int]:
    """Fleiss' kappa and Krippendorff's alpha for (item, annotator, value) rows."""
    by_item: dict[int, dict[str, str]] = {}
    for item, annotator, value in rows:
        by_item.setdefault(item, {})[str(annotator)] = value
    shared = {k: list(v.values()) for k, v in by_item.items() if len(v) >= 2}
    cats = sorted({v for vs in shared.values() for v in vs})
    out: dict[str, float | int] = {"items": len(shared), "answers": len(rows)}
    if not shared or kind in ("multi", "text"):
        out.update(fleiss_kappa=float("nan"), krippendorff_alpha=float("nan"))
        return out
    index = {c: i for i, c in enumerate(cats)}
    counts = np.zeros((len(shared), len(cats)))
    for r, vs in enumerate(shared.values()):
        for v in vs:
            counts[r, index[v]] += 1
    out["fleiss_kappa"] = fleiss_kappa(counts)
    units = {str(item): by_item[item] for item in shared}
    level: Level = "interval" if kind == "rating" else "nominal"
    if kind == "rating":
        out["krippendorff_alpha"] = krippendorff_alpha(
            {u: {c: float(v) for c, v in cs.items()} for u, cs in units.items()}, level=level
        )
    else:
        out["krippendorff_alpha"] = krippendorff_alpha(units, level=level)
    return out
