"""Dawid-Skene: hand-checked cases, gold clamping, and parity with crowd-kit on simulated crowds."""

from __future__ import annotations

import numpy as np
import pytest

from chatlabel.core.dawid_skene import dawid_skene, dawid_skene_labels


def _simulate(
    seed: int,
    n_items: int,
    confusions: np.ndarray,
    per_item: int,
    priors: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Answers of workers with known confusion matrices [w, true, answered]."""
    rng = np.random.default_rng(seed)
    n_workers, k, _ = confusions.shape
    truth = rng.choice(k, size=n_items, p=priors)
    items = np.repeat(np.arange(n_items), per_item)
    workers = np.concatenate(
        [rng.choice(n_workers, per_item, replace=False) for _ in range(n_items)]
    )
    cum = confusions[workers, truth[items]].cumsum(axis=1)
    labels = (rng.random(items.size)[:, None] > cum).sum(axis=1)
    return items, workers, np.minimum(labels, k - 1), truth


def _symmetric(accuracy: np.ndarray, k: int) -> np.ndarray:
    conf = np.repeat(((1 - accuracy) / (k - 1))[:, None, None], k, axis=1).repeat(k, axis=2)
    conf[:, np.arange(k), np.arange(k)] = accuracy[:, None]
    return conf


def test_adversarial_worker_is_learned_and_inverted() -> None:
    # Workers 0 and 1 are always right, worker 2 always answers the other label. On item 20
    # only worker 2 answered "1": a vote would say 1, DS knows worker 2 and says 0.
    truth = [0, 1] * 10
    items, workers, labels = [], [], []
    for i, t in enumerate(truth):
        for w, ans in ((0, t), (1, t), (2, 1 - t)):
            items.append(i)
            workers.append(w)
            labels.append(ans)
    items.append(20)
    workers.append(2)
    labels.append(1)
    r = dawid_skene(np.array(items), np.array(workers), np.array(labels), 21, 3, 2)
    assert r.labels[:20].tolist() == truth
    assert r.labels[20] == 0
    assert r.confidence[20] > 0.9
    assert r.confusion[2, 0, 1] > 0.95 and r.confusion[2, 1, 0] > 0.95
    assert r.confusion[0, 0, 0] > 0.95 and r.confusion[0, 1, 1] > 0.95
    assert r.converged


def test_gold_clamping_fixes_items_a_colluding_majority_gets_wrong() -> None:
    # A is right, B and C both flip. Without gold the 2-vs-1 majority wins every item; three
    # gold items reveal who is who, and the other items follow A.
    truth = np.array([0, 1, 1, 0, 1, 0, 0, 1, 1, 0])
    items = np.repeat(np.arange(10), 3)
    workers = np.tile([0, 1, 2], 10)
    labels = np.where(workers == 0, truth[items], 1 - truth[items])
    no_gold = dawid_skene(items, workers, labels, 10, 3, 2)
    assert (no_gold.labels == 1 - truth).all()

    gold = np.full(10, -1)
    gold[:3] = truth[:3]
    clamped = dawid_skene(items, workers, labels, 10, 3, 2, gold=gold)
    assert (clamped.labels == truth).all()
    assert np.allclose(clamped.posteriors[:3], np.eye(2)[truth[:3]])
    assert (clamped.confidence[:3] == 1.0).all()
    assert clamped.confusion[1, 0, 1] > 0.9


def test_gold_rescues_a_crowd_with_an_adversarial_majority() -> None:
    # Six of ten workers are mostly wrong: gold-less DS locks onto the flipped solution.
    conf = _symmetric(np.array([0.9] * 4 + [0.2] * 6), 2)
    items, workers, labels, truth = _simulate(3, 400, conf, per_item=5)
    rng = np.random.default_rng(3)
    gold = np.full(400, -1)
    picked = rng.choice(400, 40, replace=False)
    gold[picked] = truth[picked]
    scored = gold < 0
    plain = dawid_skene(items, workers, labels, 400, 10, 2)
    clamped = dawid_skene(items, workers, labels, 400, 10, 2, gold=gold)
    assert (plain.labels[scored] == truth[scored]).mean() < 0.2
    assert (clamped.labels[scored] == truth[scored]).mean() > 0.9


def test_a_gold_label_the_whole_crowd_contradicts_does_not_bend_their_matrices() -> None:
    # Five workers agree on every item. Items 0 and 1 are gold, both labelled 1: item 1's is
    # right, item 0's a slip the whole crowd contradicts. Gold is an annotator EM learns, so
    # the workers' matrices stay clean; clamped, every worker's row for label 1 would carry a
    # tenth of "answers 0" from that one item.
    truth = np.array([0, 1] * 10)
    items = np.repeat(np.arange(20), 5)
    workers = np.tile(np.arange(5), 20)
    labels = truth[items]
    gold = np.full(20, -1)
    gold[0] = 1
    gold[1] = 1
    r = dawid_skene(items, workers, labels, 20, 5, 2, gold=gold)
    assert (r.confusion[:, 1, 0] < 0.01).all()
    assert (r.labels[2:] == truth[2:]).all()
    # Gold items are still reported with their gold label, at certainty.
    assert r.labels[0] == 1 and r.confidence[0] == 1.0
    assert r.confusion.shape == (5, 2, 2)  # gold's own matrix is not one of the workers'


def test_exact_tie_goes_to_the_lowest_label() -> None:
    for labels in ([0, 1], [1, 0]):
        r = dawid_skene(np.array([0, 0]), np.array([0, 1]), np.array(labels), 1, 2, 2)
        assert r.posteriors[0, 0] == r.posteriors[0, 1]
        assert r.labels[0] == 0
        assert r.confidence[0] == 0.5


def test_shapes_normalisation_and_unanswered_items_get_the_prior() -> None:
    conf = _symmetric(np.array([0.8, 0.7, 0.9, 0.6, 0.85]), 3)
    items, workers, labels, _ = _simulate(1, 200, conf, per_item=3)
    n_items = 205  # the last five items have no answers
    r = dawid_skene(items, workers, labels, n_items, 6, 3)  # worker 5 never answered
    assert r.posteriors.shape == (n_items, 3)
    assert r.confusion.shape == (6, 3, 3)
    assert np.allclose(r.posteriors.sum(axis=1), 1.0)
    assert np.allclose(r.confusion.sum(axis=2), 1.0)
    assert np.isclose(r.priors.sum(), 1.0)
    assert np.allclose(r.posteriors[200:], r.priors)
    assert np.allclose(r.confusion[5], 1 / 3)
    assert np.array_equal(r.labels, r.posteriors.argmax(axis=1))
    assert np.array_equal(r.confidence, r.posteriors.max(axis=1))


def test_answer_order_does_not_matter() -> None:
    conf = _symmetric(np.array([0.8, 0.6, 0.7, 0.9]), 3)
    items, workers, labels, _ = _simulate(2, 300, conf, per_item=3)
    perm = np.random.default_rng(0).permutation(items.size)
    a = dawid_skene(items, workers, labels, 300, 4, 3)
    b = dawid_skene(items[perm], workers[perm], labels[perm], 300, 4, 3)
    assert np.allclose(a.posteriors, b.posteriors, atol=1e-9)
    assert a.iterations == b.iterations


def test_no_answers_gives_priors_from_gold_or_uniform() -> None:
    empty = np.zeros(0, dtype=int)
    r = dawid_skene(empty, empty, empty, 3, 2, 4)
    assert r.iterations == 0
    assert np.allclose(r.posteriors, 0.25)
    g = dawid_skene(empty, empty, empty, 3, 2, 2, gold=np.array([1, -1, -1]), smoothing=0)
    assert g.labels.tolist() == [1, 1, 1]
    assert np.allclose(g.priors, [0.0, 1.0], atol=1e-9)


def test_bad_input_is_refused() -> None:
    ok = np.array([0, 1])
    with pytest.raises(ValueError, match="labels"):
        dawid_skene(ok, ok, np.array([0, 2]), 2, 2, 2)
    with pytest.raises(ValueError, match="same length"):
        dawid_skene(ok, ok, np.array([0]), 2, 2, 2)
    with pytest.raises(ValueError, match="gold"):
        dawid_skene(ok, ok, ok, 2, 2, 2, gold=np.array([0, 5]))
    with pytest.raises(ValueError, match="integers"):
        dawid_skene(ok.astype(float), ok, ok, 2, 2, 2)


def test_string_wrapper() -> None:
    answers = [
        ("i1", "ann", "cat"),
        ("i1", "bob", "cat"),
        ("i1", "eve", "dog"),
        ("i2", "ann", "dog"),
        ("i2", "bob", "dog"),
        ("i2", "eve", "cat"),
        ("g1", "ann", "cat"),
    ]
    out = dawid_skene_labels(answers, ["cat", "dog"], gold={"g1": "cat", "g2": "dog"})
    assert set(out) == {"i1", "i2", "g1", "g2"}
    assert out["i1"][0] == "cat" and out["i2"][0] == "dog"
    assert out["g1"] == ("cat", 1.0) and out["g2"] == ("dog", 1.0)
    assert 0.5 < out["i1"][1] <= 1.0
    with pytest.raises(ValueError, match="bird"):
        dawid_skene_labels([("i1", "ann", "bird")], ["cat", "dog"])


crowdkit_ds = pytest.importorskip("crowdkit.aggregation").DawidSkene
pd = pytest.importorskip("pandas")
# crowd-kit 1.4 trips pandas deprecation warnings on every call; they are not ours to fix.
crowdkit_quiet = pytest.mark.filterwarnings("ignore::Warning:crowdkit")


def _crowdkit(items: np.ndarray, workers: np.ndarray, labels: np.ndarray, **kw: float) -> object:
    df = pd.DataFrame({"task": items, "worker": workers, "label": labels})
    return crowdkit_ds(**kw).fit(df)


@crowdkit_quiet
def test_same_em_iterates_as_crowdkit() -> None:
    # With no smoothing and a fixed number of iterations both run the same EM, so the
    # posteriors agree to crowd-kit's clipping floor (1e-10).
    rng = np.random.default_rng(7)
    acc = rng.uniform(0.4, 0.95, size=30)
    items, workers, labels, _ = _simulate(7, 500, _symmetric(acc, 3), per_item=4)
    ck = _crowdkit(items, workers, labels, n_iter=6, tol=-1e9)
    mine = dawid_skene(items, workers, labels, 500, 30, 3, smoothing=0, max_iter=6, tol=0)
    theirs = ck.probas_.reindex(index=range(500), columns=range(3)).to_numpy()  # type: ignore[attr-defined]
    assert np.abs(theirs - mine.posteriors).max() < 1e-6


@crowdkit_quiet
@pytest.mark.parametrize("seed", [11, 12])
def test_labels_agree_with_crowdkit_on_simulated_crowds(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_workers, k = 40, 3
    # Full confusion matrices: diagonal-heavy rows with random off-diagonal mass, plus a few
    # spammers who always answer label 0 and one adversary.
    conf = rng.dirichlet(np.ones(k), size=(n_workers, k)) * 0.4
    conf[:, np.arange(k), np.arange(k)] += 0.6
    conf[:3] = np.array([1.0, 0.0, 0.0])
    conf[3] = np.roll(np.eye(k), 1, axis=1)
    conf /= conf.sum(axis=2, keepdims=True)
    items, workers, labels, truth = _simulate(
        seed, 2000, conf, per_item=5, priors=np.array([0.5, 0.3, 0.2])
    )
    ck = _crowdkit(items, workers, labels, n_iter=100)
    theirs = ck.labels_.reindex(range(2000)).to_numpy().astype(int)  # type: ignore[attr-defined]
    mine = dawid_skene(items, workers, labels, 2000, n_workers, k)
    assert (mine.labels == theirs).mean() >= 0.99
    assert (mine.labels == truth).mean() > 0.85
