"""Batch quality through the service: Dawid-Skene verdicts, confusion, agreement, suspension."""

from __future__ import annotations

import math
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from chatlabel.conversation import Catalog
from chatlabel.conversation.render import reason_text
from chatlabel.core.dawid_skene import dawid_skene_labels
from chatlabel.core.gold import crowd_accuracy, reliability_weight
from chatlabel.core.model import Rules, Vote
from chatlabel.core.verdict import decide
from chatlabel.importer import import_file
from chatlabel.service import quality
from chatlabel.service.labeling import LabelingService
from chatlabel.service.types import Idle, Outcome, Task, UserRef
from chatlabel.storage import quality_queries as qq
from chatlabel.storage import volunteer_queries as vq
from tests.conftest import Clock, ServiceFactory, write_jsonl

# Service tests: on a SQLite file and on a PostgreSQL database (tests/conftest.py).
BACKENDS = ("sqlite", "postgresql")

NO_GATE = {"qualification": 0, "gold_rate": 0.0, "min_gold_accuracy": 0.0}

EN = Catalog().texts("en")  # how people read a reason


def _project(**over: Any) -> dict[str, Any]:
    p: dict[str, Any] = {
        "name": "p",
        "labels": ["a", "b"],
        "overlap": 3,
        "max_overlap": 3,
        "quality": dict(NO_GATE),
    }
    p.update(over)
    return p


async def _with_items(
    make: ServiceFactory, tmp_path: Path, items: list[dict[str, Any]], **over: Any
) -> LabelingService:
    svc: LabelingService = await make([_project(**over)])
    await import_file(svc, "p", write_jsonl(tmp_path / "items.jsonl", items))
    return svc


async def _answer(svc: LabelingService, user: UserRef, item: str, label: str) -> Outcome:
    task = await svc.lease(user, item)
    assert isinstance(task, Task), task
    return await svc.answer(user, task.assignment_id, label)


async def _users(svc: LabelingService, *names: str) -> list[UserRef]:
    users = [UserRef("t", n, n) for n in names]
    for u in users:
        await svc.join(u)
    return users


async def _verdicts(svc: LabelingService) -> dict[str, Any]:
    rows = await svc.db.read(qq.item_states, svc.pids["p"])
    return {r["ext_id"]: r for r in rows}


# -- Dawid-Skene through the service ------------------------------------------------------------


async def test_recompute_uses_gold_to_overrule_a_colluding_pair(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    # A is always right; B and C always give the other label, on gold items too. A plain vote
    # would follow the pair on every item; Dawid-Skene, anchored by the gold items, learns that
    # B and C invert and follows A (so does the gold-weighted online vote, which gives B and C
    # no weight once their gold record is known).
    truth = {f"i{n}": "ab"[n % 2] for n in range(8)}
    gold = {f"g{n}": "ab"[n % 2] for n in range(6)}
    items = [{"id": k, "text": k} for k in truth] + [
        {"id": k, "text": k, "gold": v} for k, v in gold.items()
    ]
    svc = await _with_items(service_factory, tmp_path, items, method="dawid-skene")
    a, b, c = await _users(svc, "A", "B", "C")
    flip = {"a": "b", "b": "a"}
    for g, v in gold.items():
        await _answer(svc, a, g, v)
        await _answer(svc, b, g, flip[v])
        await _answer(svc, c, g, flip[v])
    for item, v in truth.items():
        await _answer(svc, a, item, v)
        await _answer(svc, b, item, flip[v])
        await _answer(svc, c, item, flip[v])
    ext = {r["id"]: r["ext_id"] for r in (await _verdicts(svc)).values()}
    majority = {
        ext[i]: Counter(x["value"] for x in votes).most_common(1)[0][0]
        for i, votes in _group(await svc.db.read(qq.crowd_answers, svc.pids["p"]))
    }
    assert all(majority[i] == flip[v] for i, v in truth.items())

    summary = await quality.recompute(svc, "p")
    assert summary.ran and summary.anchors == len(gold) and summary.answers == 3 * 14
    assert summary.written == len(truth)
    after = await _verdicts(svc)
    for item, v in truth.items():
        assert after[item]["label"] == v
        assert after[item]["method"] == "dawid-skene"
        assert after[item]["status"] == "resolved"
        assert after[item]["confidence"] > 0.9
    again = await quality.recompute(svc, "p")
    assert again.written == 0 and again.changed == 0  # idempotent: nothing to rewrite


def _group(rows: list[Any]) -> list[tuple[int, list[Any]]]:
    """Answer rows grouped by item id."""
    out: dict[int, list[Any]] = {}
    for r in rows:
        out.setdefault(r["item_id"], []).append(r)
    return list(out.items())


async def test_recompute_leaves_pending_and_expert_verdicts_alone(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    items = [{"id": f"i{n}", "text": "x"} for n in range(3)]
    svc = await _with_items(
        service_factory,
        tmp_path,
        items,
        method="dawid-skene",
        overlap=2,
        max_overlap=2,
        agreement=1.0,
    )
    svc.config.access.experts.append("t:E")
    a, b, e = await _users(svc, "A", "B", "E")
    await _answer(svc, a, "i0", "a")
    await _answer(svc, b, "i0", "a")  # resolved
    await _answer(svc, a, "i1", "a")  # still pending: one answer of two
    await _answer(svc, a, "i2", "a")
    await _answer(svc, b, "i2", "b")  # tie at max_overlap: escalated
    task = await svc.next_task(e)  # experts are handed escalated items
    assert isinstance(task, Task) and task.item_id == "i2"
    await svc.answer(e, task.assignment_id, "b")  # the expert settles it
    summary = await quality.recompute(svc, "p")
    v = await _verdicts(svc)
    assert v["i1"]["status"] == "pending" and v["i1"]["label"] is None
    assert v["i2"]["method"] == "expert" and v["i2"]["label"] == "b"
    assert v["i0"]["method"] == "dawid-skene" and v["i0"]["label"] == "a"
    assert summary.anchors == 1  # the expert's item anchors the EM like gold
    assert summary.written == 1
    assert set(summary.labels) == {"i0", "i1", "i2"}  # pending items still get a DS label


async def test_a_recompute_rewrites_only_what_changed_and_settles_nothing_anew(
    service_factory: ServiceFactory, tmp_path: Path, clock: Clock
) -> None:
    # Verdicts settled yesterday stay settled yesterday: the digest counts "settled today" by
    # when a verdict settled, and a relabel by Dawid-Skene is not a settlement.
    items = [{"id": f"i{n}", "text": "x"} for n in range(6)]
    svc = await _with_items(service_factory, tmp_path, items, method="dawid-skene")
    users = await _users(svc, "A", "B", "C")
    for n in range(6):
        for u, label in zip(users, "aab" if n % 2 else "bba", strict=True):
            await _answer(svc, u, f"i{n}", label)
    settled_at = clock()
    clock.advance(86_400)
    first = await quality.recompute(svc, "p")
    assert first.written == 6  # each verdict becomes Dawid-Skene's
    again = await quality.recompute(svc, "p")
    assert again.written == 0 and again.changed == 0  # nothing changed: nothing rewritten
    assert await svc.db.read(vq.settled_since, svc.pids["p"], settled_at + 1) == 0
    assert await svc.db.read(vq.settled_since, svc.pids["p"], settled_at) == 6


async def test_recompute_does_not_write_for_other_methods_or_kinds(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    svc = await _with_items(service_factory, tmp_path, [{"id": "i0", "text": "x"}])
    a, b, c = await _users(svc, "A", "B", "C")
    for u in (a, b, c):
        await _answer(svc, u, "i0", "b")
    summary = await quality.recompute(svc, "p")  # a majority project: computed, not written
    assert summary.ran and summary.written == 0 and summary.labels["i0"][0] == "b"
    assert (await _verdicts(svc))["i0"]["method"] == "majority"
    text = await service_factory([_project(name="t", kind="text", labels=[])])
    assert not (await quality.recompute(text, "t")).ran


@pytest.mark.filterwarnings("ignore::Warning:crowdkit")
async def test_recompute_matches_the_core_em_and_crowdkit_on_a_generated_crowd(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    pd = pytest.importorskip("pandas")
    crowdkit = pytest.importorskip("crowdkit.aggregation")
    rng = random.Random(3)
    n_items, skill = 50, [0.92, 0.85, 0.8, 0.7, 0.6, 0.55]
    truth = {f"i{n}": rng.choice("abc") for n in range(n_items)}
    items = [{"id": k, "text": k} for k in truth]
    svc = await _with_items(
        service_factory,
        tmp_path,
        items,
        method="dawid-skene",
        labels=["a", "b", "c"],
        overlap=6,
        max_overlap=6,
        agreement=0.5,
    )
    users = await _users(svc, *(f"w{n}" for n in range(len(skill))))
    rows = []
    for item, t in truth.items():
        for user, p in zip(users, skill, strict=True):
            label = t if rng.random() < p else rng.choice([x for x in "abc" if x != t])
            await _answer(svc, user, item, label)
            rows.append((item, user.key, label))
    summary = await quality.recompute(svc, "p")
    core = dawid_skene_labels(rows, ["a", "b", "c"], diagonal=quality.DS_DIAGONAL)
    assert {k: v[0] for k, v in summary.labels.items()} == {k: v[0] for k, v in core.items()}
    df = pd.DataFrame(rows, columns=["task", "worker", "label"])
    theirs = crowdkit.DawidSkene(n_iter=100).fit_predict(df)
    same = sum(summary.labels[i][0] == theirs[i] for i in truth) / n_items
    assert same >= 0.96
    assert sum(summary.labels[i][0] == t for i, t in truth.items()) / n_items >= 0.9


async def test_batch_recompute_runs_once_per_batch_of_answers(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    items = [{"id": f"i{n}", "text": "x"} for n in range(4)]
    svc = await _with_items(service_factory, tmp_path, items, method="dawid-skene")
    batch = quality.BatchRecompute(svc, every=6)
    assert batch.projects() == ["p"]
    users = await _users(svc, "A", "B", "C")
    for item in ("i0", "i1"):
        for u in users[:2]:
            await _answer(svc, u, item, "a")
    assert await batch.check() == []  # 4 answers: not yet
    for u in users:
        await _answer(svc, u, "i2", "b")
    done = await batch.check()
    assert len(done) == 1 and done[0].ran
    assert await batch.check() == []  # nothing new since


# -- confusion, agreement ------------------------------------------------------------------------


async def test_confusion_against_gold_is_counted_by_hand(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    gold = [("g1", "a", "a"), ("g2", "a", "b"), ("g3", "b", "b"), ("g4", "b", "b")]
    items = [{"id": g, "text": g, "gold": v} for g, v, _ in gold]
    svc = await _with_items(service_factory, tmp_path, items)
    (a,) = await _users(svc, "A")
    for g, _, answered in gold:
        await _answer(svc, a, g, answered)
    m = await quality.confusion(svc, "p", "t:A")
    assert m.labels == ("a", "b")
    assert m.counts == ((1, 1), (0, 2))
    assert (m.correct, m.total) == (3, 4)
    assert await quality.confusions(svc, "p") == {"t:A": m}
    assert (await quality.confusion(svc, "p", "t:nobody")).total == 0


async def test_agreement_with_verdicts_and_pairwise_kappa(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    # Four items, A and B agree on all, C disagrees on the last two: verdicts are A's labels.
    labels = {"i0": "a", "i1": "b", "i2": "a", "i3": "b"}
    svc = await _with_items(service_factory, tmp_path, [{"id": k, "text": k} for k in labels])
    a, b, c = await _users(svc, "A", "B", "C")
    for n, (item, v) in enumerate(labels.items()):
        await _answer(svc, a, item, v)
        await _answer(svc, b, item, v)
        await _answer(svc, c, item, v if n < 2 else {"a": "b", "b": "a"}[v])
    share = await quality.agreement_with_verdicts(svc, "p")
    assert share == {"t:A": (1.0, 4), "t:B": (1.0, 4), "t:C": (0.5, 4)}
    kappa = await quality.pairwise_kappa(svc, "p", min_shared=4)
    assert kappa[("t:A", "t:B")] == (1.0, 4)
    # A vs C: observed agreement 1/2, both use a and b half the time, so chance is 1/2: 0.
    assert kappa[("t:A", "t:C")] == (0.0, 4)
    assert await quality.pairwise_kappa(svc, "p", min_shared=5) == {}


# -- suspension by the quality rules -------------------------------------------------------------


async def test_gold_suspension_uncounts_open_answers_and_reopens_items(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    gold = [{"id": f"g{n}", "text": "g", "gold": "a"} for n in range(8)]
    items = [{"id": f"i{n}", "text": "x"} for n in range(2)]
    svc = await _with_items(
        service_factory,
        tmp_path,
        gold + items,
        method="dawid-skene",
        quality={**NO_GATE, "min_gold_accuracy": 0.8, "gate": "absolute"},
    )
    bad, good = await _users(svc, "Bad", "Good")
    await _answer(svc, bad, "i0", "b")
    await _answer(svc, good, "i0", "a")
    assert (await _verdicts(svc))["i0"]["status"] == "pending"
    suspended = None
    for n in range(8):
        out = await _answer(svc, bad, f"g{n}", "b")
        suspended = out.suspended
        if suspended:
            break
    assert suspended and "accuracy" in reason_text(EN, suspended)
    # Their vote on the open item no longer counts, so it needs two more answers again.
    rows = {r["ext_id"]: r for r in await svc.db.read(qq.item_states, svc.pids["p"])}
    assert rows["i0"]["status"] == "pending"
    votes = await quality.current_verdicts(svc, "p")
    assert votes["i0"].n_answers == 1 and votes["i0"].label == "a"
    assert isinstance(await svc.lease(bad, "i1"), Idle)
    # Dawid-Skene still reads what Bad answered, i0 included: evidence of how they err (their
    # vote there no longer counts, above). Every one of their gold answers is there too.
    i0 = next(r["id"] for r in rows.values() if r["ext_id"] == "i0")
    answers = await svc.db.read(qq.ds_answers, svc.pids["p"])
    assert [r["value"] for r in answers if r["item_id"] == i0] == ["b", "a"]
    assert sum(r["value"] == "b" for r in answers) == n + 2


@pytest.mark.parametrize(
    "rule,expect",
    [
        ({"max_same_run": 4}, "same answer"),
        ({"min_seconds": 2.0}, "faster than"),
    ],
)
async def test_behaviour_rules_suspend(
    service_factory: ServiceFactory,
    tmp_path: Path,
    clock: Clock,
    rule: dict[str, Any],
    expect: str,
) -> None:
    items = [{"id": f"i{n}", "text": "x"} for n in range(12)]
    svc = await _with_items(
        service_factory, tmp_path, items, overlap=1, max_overlap=1, quality={**NO_GATE, **rule}
    )
    (u,) = await _users(svc, "U")
    reason = None
    for n in range(12):
        task = await svc.lease(u, f"i{n}")
        assert isinstance(task, Task)
        clock.advance(0.5)  # fast, and always the same label
        out = await svc.answer(u, task.assignment_id, "a")
        if out.suspended:
            reason = out.suspended
            break
    assert reason is not None and expect in reason_text(EN, reason)
    assert isinstance(await svc.lease(u, "i11"), Idle)


# -- verdict rules the benchmark relies on -------------------------------------------------------


def test_tie_goes_to_the_label_listed_first_and_never_resolves() -> None:
    rules = Rules(labels=("zebra", "aardvark"), overlap=2, max_overlap=2)
    v = decide(rules, [Vote("x", "aardvark"), Vote("y", "zebra")])
    assert v.label == "zebra" and v.status == "escalated"


def test_unscored_annotators_weigh_like_the_projects_average() -> None:
    assert crowd_accuracy(0, 0) == pytest.approx(0.7)
    avg = crowd_accuracy(90, 100)
    assert avg == pytest.approx(97 / 110)
    assert reliability_weight(0, 0, 2, avg) == pytest.approx(math.log(avg / (1 - avg)))
    assert reliability_weight(0, 0, 2) == pytest.approx(math.log(0.7 / 0.3))
    # Two lucky answers move a weight less than a long record does.
    assert reliability_weight(2, 2, 2, avg) < reliability_weight(40, 40, 2, avg)


async def test_dynamic_overlap_spends_fewer_answers_on_an_easy_project(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    rng = random.Random(5)
    truth = {f"i{n}": rng.choice("ab") for n in range(30)}
    gold = [{"id": f"g{n}", "text": "g", "gold": "ab"[n % 2]} for n in range(10)]
    base = {
        "labels": ["a", "b"],
        "overlap": 5,
        "max_overlap": 7,
        "method": "weighted",
        "quality": {"qualification": 2, "gold_rate": 0.1, "min_gold_accuracy": 0.0},
    }
    svc = await service_factory(
        [{**base, "name": "fixed"}, {**base, "name": "dynamic", "confidence_target": 0.95}]
    )
    rows = gold + [{"id": k, "text": k} for k in truth]
    for name in ("fixed", "dynamic"):
        await import_file(svc, name, write_jsonl(tmp_path / f"{name}.jsonl", rows))
    gold_of = {g["id"]: g["gold"] for g in gold}
    spent, right = {}, {}
    for name in ("fixed", "dynamic"):
        users = [UserRef(name, str(n)) for n in range(6)]
        for u in users:
            await svc.join(u, name)
        busy = set(users)
        while busy:  # annotators take turns, each asking the service for their next item
            for u in [u for u in users if u in busy]:  # a fixed order: a repeatable run
                task = await svc.next_task(u)
                if not isinstance(task, Task):
                    busy.discard(u)
                    continue
                t = gold_of.get(task.item_id) or truth[task.item_id]
                label = t if rng.random() < 0.95 else {"a": "b", "b": "a"}[t]
                assert (await svc.answer(u, task.assignment_id, label)).ok
        states = await svc.db.read(qq.item_states, svc.pids[name])
        answers = await svc.db.read(qq.crowd_answers, svc.pids[name])
        spent[name] = len(answers) / len(truth)
        right[name] = sum(s["label"] == truth[s["ext_id"]] for s in states if s["gold"] is None)
    assert spent["fixed"] >= 5.0
    assert spent["dynamic"] <= 0.7 * spent["fixed"]
    assert right["dynamic"] >= right["fixed"] - 1
