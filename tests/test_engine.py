"""The labeling engine through the service, on a real SQLite file and a real PostgreSQL
database: every assignment rule."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from chatlabel.importer import import_file
from chatlabel.service.labeling import LabelingService
from chatlabel.service.types import Idle, Task, UserRef

from .conftest import Clock, write_jsonl

BACKENDS = ("sqlite", "postgresql")


def U(n: int | str) -> UserRef:
    return UserRef("telegram", str(n), f"user{n}", str(n))


async def load(
    svc: LabelingService, tmp_path: Path, rows: list[dict[str, Any]], project: str = "p"
) -> None:
    await import_file(svc, project, write_jsonl(tmp_path / f"items-{len(rows)}.jsonl", rows))


async def sql(svc: LabelingService, query: str, *args: Any) -> list[tuple[Any, ...]]:
    return await svc.db.read(lambda c: [tuple(r) for r in c.execute(query, args).fetchall()])


def items(n: int, **extra: Any) -> list[dict[str, Any]]:
    return [{"id": f"i{i}", "text": f"item {i}", **extra} for i in range(n)]


async def take(svc: LabelingService, user: UserRef) -> Task:
    got = await svc.next_task(user)
    assert isinstance(got, Task), got
    return got


async def test_overlap_and_nobody_sees_an_item_twice(service_factory: Any, tmp_path: Path) -> None:
    svc = await service_factory()
    await load(svc, tmp_path, items(4))
    users = [U(i) for i in range(5)]
    for u in users:
        assert (await svc.join(u)).status == "joined"
    seen: dict[str, set[str]] = {u.key: set() for u in users}
    for _ in range(10):
        for u in users:
            got = await svc.next_task(u)
            if isinstance(got, Task):
                assert got.item_id not in seen[u.key], "an item came back to the same person"
                seen[u.key].add(got.item_id)
                assert (await svc.answer(u, got.assignment_id, "a")).ok
    rows = await sql(svc, "SELECT ext_id, n_answers, status FROM items")
    assert all(n == 3 and status == "resolved" for _, n, status in rows), rows
    counts = await sql(svc, "SELECT item_id, COUNT(*) FROM answers GROUP BY item_id")
    assert sorted(c for _, c in counts) == [3, 3, 3, 3]


async def test_fullest_items_first(service_factory: Any, tmp_path: Path) -> None:
    svc = await service_factory()
    await load(svc, tmp_path, items(5))
    a, b = U(1), U(2)
    for u in (a, b):
        await svc.join(u)
    first = await take(svc, a)
    await svc.answer(a, first.assignment_id, "a")
    # b gets the item that already has an answer, not a fresh one: results complete early.
    assert (await take(svc, b)).item_id == first.item_id


async def test_leases_expire_and_item_returns(
    service_factory: Any, tmp_path: Path, clock: Clock
) -> None:
    svc = await service_factory(
        [
            {
                "name": "p",
                "labels": ["a", "b"],
                "overlap": 1,
                "max_overlap": 1,
                "lease_seconds": 60,
                "quality": {"qualification": 0},
            }
        ]
    )
    await load(svc, tmp_path, items(1))
    a, b = U(1), U(2)
    await svc.join(a)
    await svc.join(b)
    t = await take(svc, a)
    assert isinstance(await svc.next_task(b), Idle), "a leased item must not be handed out twice"
    assert (await take(svc, a)).assignment_id == t.assignment_id, "the same item is shown again"
    clock.advance(61)
    tb = await take(svc, b)
    assert tb.item_id == t.item_id
    late = await svc.answer(a, t.assignment_id, "a")
    assert late.status == "stale"
    assert (await svc.answer(b, tb.assignment_id, "b")).ok
    assert await sql(svc, "SELECT label FROM verdicts") == [("b",)]


async def test_answers_are_idempotent_and_owned(service_factory: Any, tmp_path: Path) -> None:
    svc = await service_factory()
    await load(svc, tmp_path, items(2))
    a, b = U(1), U(2)
    await svc.join(a)
    await svc.join(b)
    t = await take(svc, a)
    assert (await svc.answer(b, t.assignment_id, "a")).status == "forbidden"
    assert (await svc.answer(a, t.assignment_id, "zzz")).status == "invalid"
    assert (await svc.answer(a, 999_999, "a")).status == "forbidden"
    results = await asyncio.gather(*[svc.answer(a, t.assignment_id, "a") for _ in range(10)])
    assert [r.status for r in results].count("recorded") == 1
    assert {r.status for r in results} == {"recorded", "duplicate"}
    assert await sql(svc, "SELECT COUNT(*) FROM answers") == [(1,)]
    assert (await svc.skip(a, t.assignment_id)).status == "duplicate"


async def test_skip_counts_as_seen(service_factory: Any, tmp_path: Path) -> None:
    svc = await service_factory()
    await load(svc, tmp_path, items(2))
    a = U(1)
    await svc.join(a)
    t1 = await take(svc, a)
    assert (await svc.skip(a, t1.assignment_id)).ok
    t2 = await take(svc, a)
    assert t2.item_id != t1.item_id
    await svc.answer(a, t2.assignment_id, "a")
    assert isinstance(await svc.next_task(a), Idle)
    assert await sql(svc, "SELECT n_answers FROM items WHERE ext_id = ?", t1.item_id) == [(0,)]


async def test_majority_tie_more_answers_then_escalation_and_expert(
    service_factory: Any, tmp_path: Path
) -> None:
    svc = await service_factory(
        [
            {
                "name": "p",
                "labels": ["a", "b", "c"],
                "overlap": 2,
                "max_overlap": 4,
                "agreement": 0.6,
                "quality": {"qualification": 0},
            }
        ],
        access={"experts": ["telegram:99"]},
    )
    await load(svc, tmp_path, items(1))
    votes = ["a", "b", "c", "a"]  # tie after 2, 1/3 after 3, 2/4 = 0.5 after 4
    crowd = U(50)  # one more who could answer, so the crowd is never exhausted early
    for u in [*map(U, range(len(votes))), crowd]:
        await svc.join(u)
    for n, label in enumerate(votes):
        u = U(n)
        t = await take(svc, u)
        await svc.answer(u, t.assignment_id, label)
        status, needed = (await sql(svc, "SELECT status, needed FROM items"))[0]
        if n < 3:
            assert status == "pending" and needed == n + 2, (n, status, needed)
    assert (await sql(svc, "SELECT status FROM items")) == [("escalated",)]
    assert isinstance(await svc.next_task(crowd), Idle), "escalated items go to experts only"
    expert = U(99)
    await svc.join(expert)
    t = await take(svc, expert)
    await svc.answer(expert, t.assignment_id, "c")
    assert await sql(svc, "SELECT status, label, method FROM verdicts") == [
        ("resolved", "c", "expert")
    ]


async def test_undecided_item_escalates_once_nobody_is_left_to_answer(
    service_factory: Any, tmp_path: Path
) -> None:
    # Three staffers split three ways on overlap 3: nobody else can add a fourth answer.
    svc = await service_factory(
        [{"name": "p", "labels": ["a", "b", "c"], "overlap": 3, "max_overlap": 5}],
        access={"coordinators": ["telegram:9"]},
    )
    await load(svc, tmp_path, items(3))
    staff = [U(1), U(2), U(3)]
    for u in staff:
        await svc.join(u)

    async def answer_all(item: str, labels: list[str], users: list[UserRef]) -> None:
        for u, label in zip(users, labels, strict=True):
            t = await svc.lease(u, item)
            assert isinstance(t, Task), t
            assert (await svc.answer(u, t.assignment_id, label)).ok

    async def status(item: str) -> str:
        return (await sql(svc, "SELECT status FROM items WHERE ext_id = ?", item))[0][0]

    await answer_all("i0", ["a", "b"], staff[:2])
    assert await status("i0") == "pending"  # one short of its planned answers: keeps waiting
    await answer_all("i0", ["c"], staff[2:])
    assert await status("i0") == "escalated"
    # A fourth member who skips was the last who could answer i1: it escalates on the skip.
    fourth = U(4)
    await svc.join(fourth)
    await answer_all("i1", ["a", "b", "c"], staff)
    assert await status("i1") == "pending"  # fourth could still answer
    t = await svc.lease(fourth, "i1")
    assert isinstance(t, Task)
    assert (await svc.skip(fourth, t.assignment_id)).ok
    assert await status("i1") == "escalated"
    # Suspending the only one left escalates what only they could have answered.
    await answer_all("i2", ["a", "b", "c"], staff)
    assert await status("i2") == "pending"
    assert await svc.suspend("p", fourth.key, "test")
    assert await status("i2") == "escalated"
    # With no experts configured, a coordinator settles them.
    coord = U(9)
    await svc.join(coord)
    for _ in range(3):
        t = await take(svc, coord)
        assert (await svc.answer(coord, t.assignment_id, "a")).ok
    assert await sql(svc, "SELECT DISTINCT status, label, method FROM verdicts") == [
        ("resolved", "a", "expert")
    ]


async def test_agreement_resolves_at_overlap(service_factory: Any, tmp_path: Path) -> None:
    svc = await service_factory()
    await load(svc, tmp_path, items(1))
    for n, label in enumerate(["a", "a", "b"]):
        await svc.join(U(n))
        t = await take(svc, U(n))
        await svc.answer(U(n), t.assignment_id, label)
    row = (await sql(svc, "SELECT status, label, confidence, votes FROM verdicts"))[0]
    assert row[:2] == ("resolved", "a")
    assert abs(row[2] - 2 / 3) < 1e-9
    assert json.loads(row[3]) == {"a": 2, "b": 1}


async def test_qualification_gold_first_and_never_counted(
    service_factory: Any, tmp_path: Path
) -> None:
    svc = await service_factory(
        [
            {
                "name": "p",
                "labels": ["a", "b"],
                "overlap": 1,
                "max_overlap": 1,
                "quality": {"qualification": 2, "gold_rate": 0.0},
            }
        ]
    )
    await load(
        svc,
        tmp_path,
        items(3) + [{"id": f"g{i}", "text": f"gold {i}", "gold": "a"} for i in range(3)],
    )
    u = U(1)
    await svc.join(u)
    got = []
    for _ in range(6):
        t = await svc.next_task(u)
        if isinstance(t, Idle):
            break
        got.append(t.item_id)
        await svc.answer(u, t.assignment_id, "a")
    assert got[:2] == ["g0", "g1"] or all(g.startswith("g") for g in got[:2])
    assert all(not g.startswith("g") for g in got[2:]), (
        "after qualification gold_rate=0 means no gold"
    )
    assert await sql(
        svc,
        "SELECT COUNT(*) FROM verdicts v JOIN items i ON i.id = v.item_id WHERE i.gold IS NOT NULL",
    ) == [(0,)]
    assert await sql(svc, "SELECT gold_answers, gold_correct, qual_answers FROM members") == [
        (2, 2, 2)
    ]


async def test_gold_rate_mixes_gold_in(service_factory: Any, tmp_path: Path) -> None:
    svc = await service_factory(
        [
            {
                "name": "p",
                "labels": ["a", "b"],
                "overlap": 1,
                "max_overlap": 1,
                "quality": {"qualification": 0, "gold_rate": 0.5},
            }
        ]
    )
    await load(
        svc,
        tmp_path,
        items(40) + [{"id": f"g{i}", "text": f"gold {i}", "gold": "a"} for i in range(40)],
    )
    u = U(1)
    await svc.join(u)
    gold = 0
    for _ in range(40):
        t = await take(svc, u)
        gold += t.item_id.startswith("g")
        await svc.answer(u, t.assignment_id, "a")
    assert 8 <= gold <= 32, gold


async def test_failed_qualification_is_not_admitted(service_factory: Any, tmp_path: Path) -> None:
    svc = await service_factory(
        [
            {
                "name": "p",
                "labels": ["a", "b"],
                "overlap": 1,
                "max_overlap": 1,
                # The absolute gate: a fixed bar, qualification judged on its share.
                "quality": {"qualification": 3, "min_gold_accuracy": 0.7, "gate": "absolute"},
            }
        ]
    )
    await load(
        svc,
        tmp_path,
        items(3)
        + [
            {"id": f"g{i}", "text": f"gold {i}", "gold": "a", "gold_reason": "It is a."}
            for i in range(3)
        ],
    )
    u = U(1)
    await svc.join(u)
    outs = []
    for _ in range(3):
        t = await take(svc, u)
        outs.append(await svc.answer(u, t.assignment_id, "b"))
    assert outs[0].feedback is not None and outs[0].feedback.expected == "a"
    assert outs[0].feedback.reason == "It is a."
    assert outs[-1].suspended is not None
    idle = await svc.next_task(u)
    assert isinstance(idle, Idle) and idle.reason == "suspended"


async def test_suspension_needs_confidence_not_a_fluke(
    service_factory: Any, tmp_path: Path
) -> None:
    svc = await service_factory(
        [
            {
                "name": "p",
                "labels": ["a", "b"],
                "overlap": 1,
                "max_overlap": 1,
                "quality": {
                    "qualification": 0,
                    "gold_rate": 1.0,
                    "min_gold_accuracy": 0.7,
                    "gate": "absolute",  # the relative gate has tests of its own (test_gate.py)
                },
            }
        ]
    )
    await load(
        svc,
        tmp_path,
        items(30) + [{"id": f"g{i}", "text": f"gold {i}", "gold": "a"} for i in range(30)],
    )
    u = U(1)
    await svc.join(u)
    for _ in range(2):
        t = await take(svc, u)
        out = await svc.answer(u, t.assignment_id, "b")
        assert out.suspended is None, "two wrong answers are not enough evidence"
    suspended_after = None
    for n in range(2, 20):
        t = await take(svc, u)
        out = await svc.answer(u, t.assignment_id, "b")
        if out.suspended:
            suspended_after = n + 1
            break
    assert suspended_after is not None and 3 <= suspended_after <= 8


async def test_suspension_uncounts_open_answers_and_reopens(
    service_factory: Any, tmp_path: Path
) -> None:
    svc = await service_factory()
    await load(svc, tmp_path, items(1))
    bad, good = U(1), U(2)
    for u in (bad, good):
        await svc.join(u)
    t = await take(svc, bad)
    await svc.answer(bad, t.assignment_id, "c")
    assert await sql(svc, "SELECT n_answers FROM items") == [(1,)]
    await svc.suspend("p", bad.key, "testing")
    assert await sql(svc, "SELECT n_answers, status FROM items") == [(0, "pending")]
    assert isinstance(await svc.next_task(bad), Idle)
    await svc.reinstate("p", bad.key)
    assert (await take(svc, good)).item_id == "i0"


async def test_kinds_multi_rating_verify_text(service_factory: Any, tmp_path: Path) -> None:
    svc = await service_factory(
        [
            {
                "name": "m",
                "kind": "multi",
                "labels": ["x", "y", "z"],
                "overlap": 3,
                "quality": {"qualification": 0},
            },
            {
                "name": "r",
                "kind": "rating",
                "labels": ["1", "2", "3", "4", "5"],
                "overlap": 3,
                "quality": {"qualification": 0},
            },
            {"name": "v", "kind": "verify", "overlap": 3, "quality": {"qualification": 0}},
            {"name": "t", "kind": "text", "overlap": 3, "quality": {"qualification": 0}},
        ]
    )
    for name in ("m", "r", "v", "t"):
        await import_file(
            svc,
            name,
            write_jsonl(
                tmp_path / f"{name}.jsonl", [{"id": "one", "text": "x", "suggestion": "cat"}]
            ),
        )
    answers = {
        "m": [["x", "y"], ["x"], ["x", "z"]],
        "r": ["4", "5", "4"],
        "v": ["yes", "yes", "no"],
        "t": ["Paris", " paris. ", "London"],
    }
    for name, given in answers.items():
        for n, value in enumerate(given):
            u = U(f"{name}{n}")
            assert (await svc.join(u, name)).status == "joined"
            t = await take(svc, u)
            if name == "m":
                for label in value:
                    assert (await svc.toggle(u, t.assignment_id, label)).ok
                out = await svc.answer(u, t.assignment_id)
            else:
                out = await svc.answer(u, t.assignment_id, value)
            assert out.ok, out
    got = dict(
        await sql(
            svc,
            "SELECT p.name, v.label FROM verdicts v JOIN items i ON i.id = v.item_id JOIN projects p ON p.id = i.project_id",
        )
    )
    assert json.loads(got["m"]) == ["x"]
    assert got["r"] == "4"
    assert got["v"] == "yes"
    assert got["t"] == "paris"


async def test_undo_within_window_only(service_factory: Any, tmp_path: Path, clock: Clock) -> None:
    svc = await service_factory(
        [
            {
                "name": "p",
                "labels": ["a", "b"],
                "overlap": 1,
                "max_overlap": 1,
                "undo_seconds": 30,
                "quality": {"qualification": 0},
            }
        ]
    )
    await load(svc, tmp_path, items(2))
    u, other = U(1), U(2)
    await svc.join(u)
    t = await take(svc, u)
    out = await svc.answer(u, t.assignment_id, "a")
    assert await sql(svc, "SELECT status FROM items WHERE ext_id = ?", t.item_id) == [("resolved",)]
    assert (await svc.undo(other, out.answer_id or 0)).status == "forbidden"
    back = await svc.undo(u, out.answer_id or 0)
    # Undo works even on the answer that settled the item: the item reopens.
    assert back.ok and back.task is not None
    assert await sql(svc, "SELECT status FROM items WHERE ext_id = ?", t.item_id) == [("pending",)]
    await svc.answer(u, back.task.assignment_id, "b")
    t2 = await take(svc, u)
    out2 = await svc.skip(u, t2.assignment_id)
    assert out2.ok
    clock.advance(31)
    assert (await svc.undo(u, out2.answer_id or 0)).status == "stale"


async def test_undo_reopens_the_item(service_factory: Any, tmp_path: Path, clock: Clock) -> None:
    svc = await service_factory()
    await load(svc, tmp_path, items(1))
    u = U(1)
    await svc.join(u)
    t = await take(svc, u)
    out = await svc.answer(u, t.assignment_id, "a")
    clock.advance(5)
    back = await svc.undo(u, out.answer_id or 0)
    assert back.ok and back.task is not None and back.task.item_id == t.item_id
    assert await sql(svc, "SELECT COUNT(*) FROM answers") == [(0,)]
    assert await sql(svc, "SELECT n_answers, n_leases FROM items") == [(0, 1)]
    again = await take(svc, u)
    assert again.assignment_id == t.assignment_id
    assert (await svc.answer(u, again.assignment_id, "b")).ok
    assert await sql(svc, "SELECT value FROM answers") == [("b",)]


async def test_pause_resume_and_project_pause(service_factory: Any, tmp_path: Path) -> None:
    svc = await service_factory()
    await load(svc, tmp_path, items(2))
    u = U(1)
    await svc.join(u)
    await svc.set_paused(u, True)
    assert (await svc.next_task(u)).reason == "paused"  # type: ignore[union-attr]
    await svc.set_paused(u, False)
    await svc.set_project_paused("p", True)
    assert (await svc.next_task(u)).reason == "project_paused"  # type: ignore[union-attr]
    await svc.set_project_paused("p", False)
    assert isinstance(await svc.next_task(u), Task)


async def test_waiting_annotators_get_pushed(
    service_factory: Any, tmp_path: Path, clock: Clock
) -> None:
    svc = await service_factory(
        [
            {
                "name": "p",
                "labels": ["a", "b"],
                "overlap": 1,
                "max_overlap": 1,
                "lease_seconds": 60,
                "quality": {"qualification": 0},
            }
        ]
    )
    await load(svc, tmp_path, items(1))
    a, b = U(1), U(2)
    await svc.join(a)
    await svc.join(b)
    await take(svc, a)
    assert isinstance(await svc.next_task(b), Idle)
    assert await svc.pushes("telegram") == []
    clock.advance(61)
    pushes = await svc.pushes("telegram")
    assert [p.user.key for p in pushes] == [b.key]
    assert await svc.pushes("telegram") == [], "a push happens once"
    assert await svc.pushes("slack") == []


async def test_new_items_wake_waiting_annotators(service_factory: Any, tmp_path: Path) -> None:
    svc = await service_factory()
    u = U(1)
    await svc.join(u)
    assert isinstance(await svc.next_task(u), Idle)
    waiter = asyncio.create_task(svc.wait_for_change(5))
    await asyncio.sleep(0)
    await load(svc, tmp_path, items(1))
    assert await asyncio.wait_for(waiter, 5) is True
    assert [p.task.item_id for p in await svc.pushes("telegram")] == ["i0"]


async def test_blocked_users_release_items_and_get_no_pushes(
    service_factory: Any, tmp_path: Path
) -> None:
    svc = await service_factory()
    await load(svc, tmp_path, items(1))
    u = U(1)
    await svc.join(u)
    await take(svc, u)
    await svc.mark_blocked(u)
    assert await sql(svc, "SELECT n_leases FROM items") == [(0,)]
    assert await svc.pushes("telegram") == []


async def test_access_modes(service_factory: Any, tmp_path: Path) -> None:
    svc = await service_factory(
        access={"mode": "invite", "invite_codes": ["s3cret-code"], "coordinators": ["telegram:7"]}
    )
    assert (await svc.join(U(1))).status == "refused"
    assert (await svc.join(U(1), "wrong")).status == "refused"
    assert (await svc.join(U(1), "s3cret-code")).status == "joined"
    assert (await svc.join(U(1))).status == "joined", "members come back without the code"
    assert (await svc.join(U(7))).status == "joined", "coordinators need no code"
    assert isinstance(await svc.next_task(U(2)), Idle)


async def test_allowlist_mode(service_factory: Any, tmp_path: Path) -> None:
    svc = await service_factory(access={"mode": "allowlist", "allowlist": ["telegram:5"]})
    assert (await svc.join(U(4))).status == "refused"
    assert (await svc.join(U(5))).status == "joined"


async def test_several_projects_offer_a_choice(service_factory: Any) -> None:
    svc = await service_factory(
        [
            {"name": "one", "labels": ["a", "b"]},
            {"name": "two", "labels": ["a", "b"]},
        ]
    )
    r = await svc.join(U(1))
    assert r.status == "choose" and [p.name for p in r.choices] == ["one", "two"]
    assert (await svc.join(U(1), "two")).project.name == "two"  # type: ignore[union-attr]


async def test_many_annotators_concurrently(service_factory: Any, tmp_path: Path) -> None:
    svc = await service_factory(
        [
            {
                "name": "p",
                "labels": ["a", "b"],
                "overlap": 3,
                "max_overlap": 5,
                "agreement": 0.9,
                "quality": {"qualification": 0},
            }
        ]
    )
    await load(svc, tmp_path, items(60))
    users = [U(i) for i in range(25)]
    for u in users:
        await svc.join(u)

    async def work(u: UserRef, k: int) -> None:
        for step in range(40):
            got = await svc.next_task(u)
            if isinstance(got, Idle):
                return
            # Press twice, as a flaky phone would.
            label = "a" if (k + step) % 3 else "b"
            await asyncio.gather(
                svc.answer(u, got.assignment_id, label), svc.answer(u, got.assignment_id, label)
            )

    await asyncio.gather(*(work(u, k) for k, u in enumerate(users)))
    dupes = await sql(
        svc,
        "SELECT item_id, annotator_id, COUNT(*) c FROM answers GROUP BY 1, 2 HAVING COUNT(*) > 1",
    )
    assert dupes == []
    over = await sql(
        svc,
        "SELECT COUNT(*) FROM items i WHERE (SELECT COUNT(*) FROM answers x WHERE x.item_id = i.id) > 5",
    )
    assert over == [(0,)]
    mismatch = await sql(
        svc,
        "SELECT COUNT(*) FROM items i WHERE n_answers != (SELECT COUNT(*) FROM answers x WHERE x.item_id = i.id AND x.value IS NOT NULL)",
    )
    assert mismatch == [(0,)]
    assert await sql(svc, "SELECT COUNT(*) FROM items WHERE status = 'pending'") == [(0,)]


async def test_invite_code_then_choice_of_projects(service_factory: Any) -> None:
    svc = await service_factory(
        [{"name": "one", "labels": ["a", "b"]}, {"name": "two", "labels": ["a", "b"]}],
        access={"mode": "invite", "invite_codes": ["c0de-c0de"]},
    )
    assert (await svc.join(U(1), "two")).status == "refused"
    assert (await svc.join(U(1), "c0de-c0de")).status == "choose"
    assert (await svc.join(U(1), "two")).status == "joined"
    assert await svc.current_project(U(1)) == "two"
    assert await svc.current_project(U(2)) is None


async def test_a_refused_stranger_leaves_nothing_behind(service_factory: Any) -> None:
    svc = await service_factory(
        [{"name": "one", "labels": ["a", "b"]}, {"name": "two", "labels": ["a", "b"]}],
        access={"mode": "invite", "invite_codes": ["c0de-c0de"], "allowlist": []},
    )
    for guess in (None, "one", "wrong-code", "c0de-c0dX"):
        assert (await svc.join(U(5), guess)).status in ("refused", "choose")
    assert await sql(svc, "SELECT COUNT(*) FROM annotators") == [(0,)]
    assert (await svc.join(U(5), "c0de-c0de")).status == "choose"  # the code is remembered
    assert await sql(svc, "SELECT key, invited FROM annotators") == [("telegram:5", 1)]
    assert (await svc.join(U(5), "one")).status == "joined"


async def test_schema_is_migrated_and_versioned(service_factory: Any, backend: str) -> None:
    from chatlabel.storage.schema import MIGRATIONS

    svc = await service_factory()
    if backend == "postgresql":
        import psycopg
        import pytest

        version = await svc.db.read(
            lambda c: c.execute("SELECT version FROM chatlabel_schema").fetchone()[0]
        )
        assert version == len(MIGRATIONS)
        # Foreign keys hold (always on there): a membership of nobody in no project is refused.
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            await svc.db.write(
                lambda c: c.execute(
                    "INSERT INTO members (project_id, annotator_id, joined_at) VALUES (999, 999, 0)"
                )
            )
        return
    version = await svc.db.read(lambda c: c.execute("PRAGMA user_version").fetchone()[0])
    assert version == len(MIGRATIONS)
    modes = await svc.db.read(
        lambda c: (
            c.execute("PRAGMA journal_mode").fetchone()[0],
            c.execute("PRAGMA foreign_keys").fetchone()[0],
        )
    )
    assert modes == ("wal", 1)
