"""The quality gate on a hard task: it stops spammers, keeps honest people who score 50-65 %,
and gains accuracy; coordinators read why someone was stopped, with the figures."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from chatlabel.conversation import Catalog
from chatlabel.conversation.render import annotators_text, why_text
from chatlabel.importer import import_file
from chatlabel.service import quality
from chatlabel.service.labeling import LabelingService
from chatlabel.service.reports import Reports
from chatlabel.service.types import Task, UserRef
from tests.conftest import ServiceFactory, write_jsonl

pytestmark = pytest.mark.timeout(60)

LABELS = ["a", "b", "c", "d"]
HONEST = 6
SPAMMERS = 2
EN = Catalog().texts("en")

BACKENDS = ("sqlite", "postgresql")


def crowd(seed: int) -> list[float | None]:
    """Honest people's accuracies (errors spread over the other labels); None: a spammer."""
    rng = random.Random(seed)
    return [rng.uniform(0.5, 0.65) for _ in range(HONEST)] + [None] * SPAMMERS


async def label_it(
    make: ServiceFactory, tmp_path: Path, name: str, gate: dict[str, Any], seed: int = 4
) -> tuple[float, LabelingService, list[UserRef]]:
    """A 4-label project labeled through the service by a simulated crowd; the accuracy."""
    rng = random.Random(seed)
    truth = {f"i{n}": rng.choice(LABELS) for n in range(500)}
    gold = {f"g{n}": rng.choice(LABELS) for n in range(150)}
    svc: LabelingService = await make(
        [
            {
                "name": name,
                "labels": LABELS,
                "overlap": 3,
                "max_overlap": 5,
                "quality": {"qualification": 4, "gold_rate": 0.3, "gold_feedback": False, **gate},
            }
        ]
    )
    rows = [{"id": k, "text": k} for k in truth] + [
        {"id": k, "text": k, "gold": v} for k, v in gold.items()
    ]
    await import_file(svc, name, write_jsonl(tmp_path / f"{name}.jsonl", rows))
    people = crowd(seed)
    users = [UserRef("sim", f"{name}{n}", f"{'spam' if a is None else 'honest'} {n}")
             for n, a in enumerate(people)]  # fmt: skip
    current = {}
    for n, u in enumerate(users):
        await svc.join(u)
        current[n] = await svc.next_task(u)
    answers = {**truth, **gold}
    while busy := [n for n, t in current.items() if isinstance(t, Task)]:
        n = rng.choice(busy)
        task = current[n]
        assert isinstance(task, Task)
        right, acc = answers[task.item_id], people[n]
        if acc is None:
            label = rng.choice(LABELS)
        elif rng.random() < acc:
            label = right
        else:
            label = rng.choice([x for x in LABELS if x != right])
        out = await svc.answer(users[n], task.assignment_id, label, then_next=True)
        current[n] = out.next if out.next is not None else await svc.next_task(users[n])
    verdicts = await quality.current_verdicts(svc, name)
    states = {r["ext_id"]: r for r in await svc.db.read(_states)}
    labels = {
        k: states[k]["label"] if states[k]["status"] != "pending" else verdicts[k].label
        for k in truth
    }
    return sum(labels[k] == v for k, v in truth.items()) / len(truth), svc, users


def _states(conn: Any) -> list[Any]:
    return conn.execute(
        "SELECT i.ext_id, i.status, v.label FROM items i LEFT JOIN verdicts v ON v.item_id = i.id"
    ).fetchall()


async def test_the_default_gate_gains_accuracy_on_a_hard_task(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    on, svc, users = await label_it(service_factory, tmp_path, "on", {})
    off, _, _ = await label_it(service_factory, tmp_path, "off", {"min_gold_accuracy": 0.0})
    old, _, _ = await label_it(service_factory, tmp_path, "old", {"gate": "absolute"})
    rows = {r.key: r for r in await Reports(svc).annotators("on")}
    stopped = {u.name: rows[u.key].reason for u in users if rows[u.key].status == "suspended"}
    print(f"accuracy: relative gate {on:.3f}, no gate {off:.3f}, absolute gate {old:.3f}")
    assert {f"spam {n}" for n in range(HONEST, HONEST + SPAMMERS)} <= set(stopped)
    for name, why in stopped.items():
        # An honest person stops only at the door, having done worse than guessing there.
        if name.startswith("honest"):
            assert why is not None and why.code == "qualification", (name, why)
            assert why.params["accuracy"] < 0.25
    assert on >= off + 0.02, (on, off)
    # The old, absolute bar (70 %) stops honest people who score 50-65 % and loses accuracy.
    assert old < on, (old, on)
    # Coordinators read why, with the figures: accuracy, gold answers, the bar and the crowd.
    spam = rows[users[HONEST].key]
    assert spam.reason is not None and spam.reason.code == "gold"
    said = why_text(EN, spam.reason)
    p = spam.reason.params
    assert said == (
        f"{EN.percent(float(p['accuracy']))} right on {p['n']} check items, confidently below "
        f"{EN.percent(float(p['min']))} (halfway from chance to the crowd's "
        f"{EN.percent(float(p['crowd']))})"
    )
    assert 0.3 < float(p["min"]) < 0.45  # the bar of this task, not 70 %
    table = annotators_text(EN, list(rows.values()), "On")
    assert f"suspended — {said}" in table
