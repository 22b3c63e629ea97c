"""Agreement statistics against published worked examples and reference implementations."""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Iterator

import krippendorff
import numpy as np
import pytest

from chatlabel.core.agreement import (
    Level,
    agreement_with_verdict,
    cohen_kappa,
    count_matrix,
    fleiss_kappa,
    krippendorff_alpha,
    pairwise_cohen,
)

# Fleiss (1971) as worked on Wikipedia's "Fleiss' kappa" page: 10 subjects, 14 raters each,
# 5 categories; P_bar = 0.378, P_e = 0.213, kappa = 0.210.
FLEISS_EXAMPLE = np.array(
    [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
)

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", p. 8: 4 coders x 12 units
# with missing values; published alpha: nominal .743, ordinal .815, interval .849, ratio .797.
NAN = np.nan
KRIPP_EXAMPLE = np.array(
    [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
        [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN],
    ]
)


@pytest.fixture
def no_warnings() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def test_fleiss_worked_example() -> None:
    assert round(fleiss_kappa(FLEISS_EXAMPLE), 3) == 0.210
    assert fleiss_kappa(FLEISS_EXAMPLE) == pytest.approx(0.20993, abs=1e-5)


def test_fleiss_unequal_raters_hand_computed() -> None:
    # Item 1: 2 raters agree (P=1); item 2: 3 raters split 1/2 (P=2/6); the single-rating item
    # is dropped. P_bar = 2/3, p = (3/5, 2/5), P_e = 13/25, kappa = 11/36.
    counts = np.array([[2, 0], [1, 2], [0, 1]])
    assert fleiss_kappa(counts) == pytest.approx(11 / 36)


@pytest.mark.usefixtures("no_warnings")
def test_fleiss_degenerate_cases() -> None:
    assert fleiss_kappa(np.array([[3, 0], [2, 1], [4, 0]])) < 1.0
    assert fleiss_kappa(np.array([[3, 0], [0, 3]])) == 1.0
    assert math.isnan(fleiss_kappa(np.array([[3, 0], [2, 0]])))  # one category: 0/0
    assert math.isnan(fleiss_kappa(np.array([[1, 0], [0, 1]])))  # no item with 2 ratings
    assert math.isnan(fleiss_kappa(np.zeros((0, 3))))
    with pytest.raises(ValueError):
        fleiss_kappa(np.array([[-1, 2]]))


def test_count_matrix_feeds_fleiss() -> None:
    answers = [("a", "x", "pos"), ("a", "y", "pos"), ("b", "x", "neg"), ("b", "y", "pos")]
    answers.append(("b", "x", "pos"))  # x changed their mind: the last answer counts
    counts, items, labels = count_matrix(answers, ["pos", "neg"])
    assert items == ["a", "b"] and labels == ["pos", "neg"]
    assert counts.tolist() == [[2, 0], [2, 0]]
    with pytest.raises(ValueError, match="maybe"):
        count_matrix([("a", "x", "maybe")], ["pos", "neg"])


@pytest.mark.parametrize(
    ("level", "expected"),
    [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849), ("ratio", 0.797)],
)
def test_krippendorff_published_example(level: Level, expected: float) -> None:
    assert round(krippendorff_alpha(KRIPP_EXAMPLE, level), 3) == expected


def _as_units(matrix: np.ndarray) -> dict[str, dict[str, float]]:
    return {
        f"unit{j}": {
            f"coder{i}": float(matrix[i, j])
            for i in range(matrix.shape[0])
            if not np.isnan(matrix[i, j])
        }
        for j in range(matrix.shape[1])
    }


def test_krippendorff_mapping_input_with_labels() -> None:
    scale = ["awful", "bad", "ok", "good", "great"]
    units = {
        u: {c: scale[int(v) - 1] for c, v in ratings.items()}
        for u, ratings in _as_units(KRIPP_EXAMPLE).items()
    }
    assert round(krippendorff_alpha(units, "nominal"), 3) == 0.743
    assert round(krippendorff_alpha(units, "ordinal", value_order=scale), 3) == 0.815
    assert round(krippendorff_alpha(_as_units(KRIPP_EXAMPLE), "interval"), 3) == 0.849
    with pytest.raises(ValueError, match="numeric"):
        krippendorff_alpha(units, "interval")


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval", "ratio"])
def test_krippendorff_matches_the_package(seed: int, level: Level) -> None:
    rng = np.random.default_rng(seed)
    truth = rng.integers(1, 6, size=60)
    noise = rng.integers(-1, 2, size=(5, 60)) * (rng.random((5, 60)) < 0.4)
    matrix = np.clip(truth + noise, 1, 5).astype(float)
    matrix[rng.random(matrix.shape) < 0.3] = np.nan
    expected = krippendorff.alpha(reliability_data=matrix, level_of_measurement=level)
    assert krippendorff_alpha(matrix, level) == pytest.approx(expected)
    assert krippendorff_alpha(_as_units(matrix), level) == pytest.approx(expected)


@pytest.mark.usefixtures("no_warnings")
def test_krippendorff_degenerate_cases() -> None:
    assert math.isnan(krippendorff_alpha({"u1": {"a": "x", "b": "x"}, "u2": {"a": "x"}}))
    assert math.isnan(krippendorff_alpha({"u1": {"a": "x"}, "u2": {"b": "y"}}))
    assert math.isnan(krippendorff_alpha(np.array([[1.0, NAN], [NAN, 2.0]]), "interval"))
    assert krippendorff_alpha({"u1": {"a": "x", "b": "x"}, "u2": {"a": "y", "b": "y"}}) == 1.0


def test_cohen_hand_computed() -> None:
    # Wikipedia's example: 50 proposals, yes/yes 20, yes/no 5, no/yes 10, no/no 15:
    # p_o = 0.7, p_e = 0.5 * 0.6 + 0.5 * 0.4 = 0.5, kappa = 0.4.
    a = ["yes"] * 25 + ["no"] * 25
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    assert cohen_kappa(["x", "y", "x"], ["x", "y", "x"]) == 1.0


@pytest.mark.usefixtures("no_warnings")
def test_cohen_degenerate_cases() -> None:
    assert math.isnan(cohen_kappa(["x"] * 4, ["x"] * 4))  # p_e = 1
    assert math.isnan(cohen_kappa([], []))
    assert cohen_kappa(["x"] * 4, ["y"] * 4) == 0.0
    with pytest.raises(ValueError):
        cohen_kappa(["x"], ["x", "y"])


def test_cohen_matches_sklearn() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(5)
    for _ in range(20):
        a = rng.integers(0, 4, size=50)
        b = np.where(rng.random(50) < 0.6, a, rng.integers(0, 4, size=50))
        assert cohen_kappa(a.tolist(), b.tolist()) == pytest.approx(metrics.cohen_kappa_score(a, b))


def _random_answers(
    seed: int, n_items: int, n_annotators: int, overlap: int
) -> list[tuple[str, str, str]]:
    rng = np.random.default_rng(seed)
    answers = []
    for i in range(n_items):
        truth = int(rng.integers(0, 3))
        for a in rng.choice(n_annotators, overlap, replace=False):
            label = truth if rng.random() < 0.7 else int(rng.integers(0, 3))
            answers.append((f"item{i}", f"ann{a:03d}", f"L{label}"))
    return answers


def test_pairwise_cohen_matches_brute_force() -> None:
    answers = _random_answers(1, 400, 12, overlap=4)
    by_annotator: dict[str, dict[str, str]] = {}
    for item, ann, label in answers:
        by_annotator.setdefault(ann, {})[item] = label
    expected = {}
    for x, y in itertools.combinations(sorted(by_annotator), 2):
        shared = sorted(by_annotator[x].keys() & by_annotator[y].keys())
        if len(shared) >= 40:
            a = [by_annotator[x][i] for i in shared]
            b = [by_annotator[y][i] for i in shared]
            expected[(x, y)] = (cohen_kappa(a, b), len(shared))
    got = pairwise_cohen(answers, min_shared=40)
    assert 0 < len(expected) < 66  # the threshold drops some pairs and keeps others
    assert got.keys() == expected.keys()
    for pair, (kappa, n) in expected.items():
        assert got[pair][1] == n
        assert got[pair][0] == pytest.approx(kappa)


def test_pairwise_cohen_last_answer_and_degenerate_pairs() -> None:
    answers = [(f"i{i}", "bob", "x") for i in range(3)] + [(f"i{i}", "amy", "x") for i in range(3)]
    answers.append(("i0", "amy", "y"))  # amy's last answer on i0 replaces her first
    got = pairwise_cohen(answers, min_shared=3)
    assert list(got) == [("amy", "bob")]
    assert got[("amy", "bob")] == (0.0, 3)
    same = pairwise_cohen([(f"i{i}", a, "x") for i in range(5) for a in "pq"], min_shared=1)
    assert math.isnan(same[("p", "q")][0]) and same[("p", "q")][1] == 5
    assert pairwise_cohen([("i1", "solo", "x")], min_shared=1) == {}


def test_pairwise_cohen_scales_to_thousands_of_annotators() -> None:
    rng = np.random.default_rng(9)
    n_items, overlap = 30_000, 3
    annotators = rng.integers(0, 3000, size=(n_items, overlap))
    answers = [
        (i, f"a{a}", int(rng.integers(0, 2)))
        for i in range(n_items)
        for a in set(annotators[i].tolist())
    ]
    pairs: set[tuple[str, str]] = set()
    for i in range(n_items):
        names = sorted({f"a{a}" for a in annotators[i].tolist()})
        pairs.update(itertools.combinations(names, 2))
    got = pairwise_cohen(answers, min_shared=1)
    assert got.keys() == pairs
    assert sum(n for _, n in got.values()) == sum(
        len(s) * (len(s) - 1) // 2 for s in (set(row.tolist()) for row in annotators)
    )


def test_agreement_with_verdict() -> None:
    answers = [
        ("i1", "amy", "cat"),
        ("i2", "amy", "dog"),
        ("i3", "amy", "dog"),
        ("i1", "bob", "dog"),
        ("i4", "bob", "cat"),  # no verdict: ignored
        ("i4", "cy", "cat"),
    ]
    got = agreement_with_verdict(answers, {"i1": "cat", "i2": "cat", "i3": "dog"})
    assert got == {"amy": (2 / 3, 3), "bob": (0.0, 1)}
