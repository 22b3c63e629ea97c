"""Reports and comments on items, on Telegram and Slack: Report under each item, a quorum takes
the item out until a coordinator restores or removes it, replies are comments, skips take a
reason; exports and the HTML report show it all."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from chatlabel import exporter
from chatlabel.conversation import Catalog
from chatlabel.importer import import_file
from chatlabel.report import write_report
from chatlabel.service.types import Task, UserRef
from tests import telegram_harness as th
from tests.conftest import ServiceFactory, write_jsonl
from tests.volunteer_drivers import PLATFORMS, Person, World, when, world

pytestmark = pytest.mark.timeout(60)

EN = Catalog().texts("en")
ITEMS = [{"id": f"t{n}", "text": f"Animal number {n}"} for n in range(4)]
REASONS = ["🖼 Broken media", "🚫 Offensive", "❓ Unclear", "✍️ Something else", "◀ Back"]
THANKS = EN("reporting.thanks")
SAVED = EN("reporting.comment_saved")


async def export(w: World, what: str) -> list[dict[str, Any]]:
    buf = io.StringIO()
    await exporter.write(w.service, "animals", what, "jsonl", buf)  # type: ignore[arg-type]
    return [json.loads(line) for line in buf.getvalue().splitlines()]


def item_with(p: Person, text: str) -> Any:
    """The person's latest message that shows `text` (an item, answered or not)."""
    found = [m for m in p.messages() if p.text_of(m).startswith(text)]
    return found[-1] if found else None


async def first_item(p: Person) -> Any:
    await p.start()
    return (await p.wait(p.open_items))[0]


async def report(p: Person, item: Any, reason: str) -> None:
    """Report an item for a reason; it shows the report and the next item follows."""
    await p.press(item, "Report")
    await p.wait(lambda: p.captions(item) == REASONS)
    await p.press(item, reason)
    await p.wait(lambda: "⚑ Reported:" in p.text_of(item))


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_a_report_quorum_takes_the_item_out_and_a_coordinator_restores_it(
    platform: str, tmp_path: Path
) -> None:
    project = th.project(report_quorum=2)
    async with world(platform, tmp_path, [project], when("2024-05-06 10:00")) as w:
        await w.add_items("animals", ITEMS)
        ann, bob, cid, dan = (w.person(n) for n in (1, 2, 3, 4))
        boss = w.coordinator()
        await boss.command("help")  # the coordinator has a chat with the bot

        item = await first_item(ann)
        assert ann.text_of(item).startswith("Animal number 0")
        assert ann.captions(item)[-2:] == ["Skip", "Report"]
        await ann.press(item, "Report")
        await ann.wait(lambda: ann.captions(item) == REASONS)
        assert "What's wrong with this item?" in ann.text_of(item)
        await ann.press(item, "◀ Back")  # changed their mind: the item as it was
        await ann.wait(lambda: ann.captions(item)[-2:] == ["Skip", "Report"])
        await report(ann, item, "🖼 Broken media")
        assert "⚑ Reported: broken media" in ann.text_of(item)
        await ann.wait(lambda: any(THANKS in n for n in ann.notes()))
        await ann.wait(lambda: item_with(ann, "Animal number 1"))  # the next one follows
        assert (await w.rows("SELECT status FROM items WHERE ext_id = 't0'")) == [("pending",)]

        await report(bob, await first_item(bob), "🖼 Broken media")  # the quorum: out it goes
        assert await w.rows("SELECT status FROM items WHERE ext_id = 't0'") == [("held",)]
        await w.flush()
        pulled = (
            "⚑ t0 in Animals was reported by 2 people (broken media ×2) and is out of the queue"
        )
        await boss.wait(lambda: any(pulled in t for t in boss.texts()))

        # Nobody else gets it while it is held.
        await cid.start()
        await cid.wait(cid.open_items)
        seen = [cid.text_of(m) for m in cid.open_items()]
        assert seen and not any(t.startswith("Animal number 0") for t in seen)

        await boss.command("reports")
        held = await boss.wait(lambda: item_with(boss, "t0: Animal number 0"))
        assert "Reported by 2 people: broken media ×2" in boss.text_of(held)
        assert boss.captions(held) == ["↩️ Restore", "🗑 Remove"]
        await boss.press(held, "↩️ Restore")
        await boss.wait(lambda: boss.text_of(held).startswith("✅ t0 is back in the queue."))
        assert await w.rows("SELECT status FROM items WHERE ext_id = 't0'") == [("pending",)]
        assert (await first_item(dan)) is not None
        assert dan.text_of(dan.open_items()[0]).startswith("Animal number 0")

        reports = await export(w, "reports")
        assert [(r["item_id"], r["reason"], r["decision"]) for r in reports] == [
            ("t0", "broken", "restored"),
            ("t0", "broken", "restored"),
        ]
        # Reported again after the restore: the count starts over from the decision.
        await report(dan, dan.open_items()[0], "❓ Unclear")
        assert await w.rows("SELECT status FROM items WHERE ext_id = 't0'") == [("pending",)]


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_a_removed_item_is_out_for_good_and_exports_say_so(
    platform: str, tmp_path: Path
) -> None:
    project = th.project(report_quorum=1)
    async with world(platform, tmp_path, [project], when("2024-05-06 10:00")) as w:
        await w.add_items("animals", ITEMS)
        ann, boss = w.person(1), w.coordinator()
        await boss.command("help")
        await report(ann, await first_item(ann), "🚫 Offensive")
        await boss.command("reports")
        held = await boss.wait(lambda: item_with(boss, "t0: Animal number 0"))
        await boss.press(held, "🗑 Remove")
        await boss.wait(lambda: boss.text_of(held).startswith("🗑 t0 is removed"))
        assert boss.captions(held) == []  # decided: no buttons left to press twice
        results = {r["id"]: r for r in await export(w, "results")}
        assert results["t0"]["status"] == "removed" and results["t0"]["label"] is None
        assert results["t1"]["status"] == "pending"
        await boss.command("reports")
        await boss.wait(
            lambda: any("no reported items wait for a decision" in t for t in boss.texts())
        )


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_replies_are_comments_and_skips_take_a_reason(platform: str, tmp_path: Path) -> None:
    project = th.project(report_quorum=3)
    async with world(platform, tmp_path, [project], when("2024-05-06 10:00")) as w:
        await w.add_items("animals", ITEMS)
        ann = w.person(1)
        first = await first_item(ann)
        await ann.press(first, "cat")
        await ann.wait(lambda: item_with(ann, "Animal number 1"))
        # A reply to the answered item's message is a comment on that item.
        await ann.say("Looks more like a fox to me", reply_to=first)
        await ann.wait(lambda: any(SAVED in t for t in ann.texts()))

        second = item_with(ann, "Animal number 1")
        await ann.press(second, "Skip")
        why = ["🤷 Not sure", "❓ Unclear", "🖼 Broken media", "🚫 Offensive", "↩️ Undo"]
        await ann.wait(lambda: ann.captions(second) == why)
        await ann.press(second, "❓ Unclear")
        await ann.wait(lambda: "⚑ Reported: unclear" in ann.text_of(second))
        assert ann.captions(second) == ["↩️ Undo"]  # the reason is given; Undo stays a while

        third = await ann.wait(lambda: item_with(ann, "Animal number 2"))
        await report(ann, third, "✍️ Something else")
        tell = EN("reporting.tell")
        await ann.wait(lambda: any(tell in t for t in ann.texts()))
        saved = sum(SAVED in t for t in ann.texts())
        await ann.say("The sound is cut off halfway")
        await ann.wait(lambda: sum(SAVED in t for t in ann.texts()) == saved + 1)

        # A report taken back with Undo is gone with the skip.
        fourth = await ann.wait(lambda: item_with(ann, "Animal number 3"))
        await report(ann, fourth, "🖼 Broken media")
        await ann.wait(lambda: "↩️ Undo" in ann.captions(fourth))
        await ann.press(fourth, "↩️ Undo")
        await ann.wait(lambda: ann.captions(fourth)[-2:] == ["Skip", "Report"])

        answers = {r["item_id"]: r for r in await export(w, "answers")}
        assert answers["t0"]["label"] == "cat"
        assert answers["t0"]["comment"] == "Looks more like a fox to me"
        assert answers["t1"]["skipped"] is True and answers["t1"]["skip_reason"] == "unclear"
        assert answers["t2"]["skip_reason"] == "other"
        assert answers["t2"]["comment"] == "The sound is cut off halfway"
        assert "t3" not in answers
        reports = [(r["item_id"], r["reason"], r["comment"]) for r in await export(w, "reports")]
        assert reports == [("t1", "unclear", None), ("t2", "other", "The sound is cut off halfway")]


async def test_the_html_report_lists_reported_items(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    svc = await service_factory(
        [{"name": "p", "labels": ["cat", "dog"], "overlap": 2, "report_quorum": 2,
          "quality": {"qualification": 0, "gold_rate": 0.0}}]
    )  # fmt: skip
    rows = [{"id": f"i{n}", "text": f"item <{n}>"} for n in range(3)]
    await import_file(svc, "p", write_jsonl(tmp_path / "items.jsonl", rows))
    for n, reason in ((1, "broken"), (2, "broken"), (3, "unclear")):
        user = UserRef("t", str(n))
        await svc.join(user)
        # (Each report leases the reporter's next item: i1 is theirs now, so the third takes i2.)
        task = await svc.lease(user, "i0" if n < 3 else "i2")
        assert isinstance(task, Task)
        assert (await svc.report(user, task.assignment_id, reason)).ok
    page = (await write_report(svc, "p", tmp_path / "en")).html.read_text(encoding="utf-8")
    section = page[page.index(f"<h2>{EN('report.reported')}</h2>") :]
    assert "<td>i0 <span class=muted>item &lt;0&gt;</span></td><td>held (reported)</td>" in section
    assert "<td>2</td><td>broken media</td><td>waiting</td>" in section
    assert "<td>i2 <span class=muted>item &lt;2&gt;</span></td><td>pending</td>" in section
    assert "<td>1</td><td>unclear</td><td>waiting</td>" in section
    spanish = await write_report(svc, "p", tmp_path / "es", language="es")
    page = spanish.html.read_text(encoding="utf-8")
    es = Catalog().texts("es")
    assert f"<h2>{es('report.reported')}</h2>" in page and "archivo roto" in page


async def test_someone_elses_report_and_reason_buttons_change_nothing(tmp_path: Path) -> None:
    not_yours = EN("press.not_yours")
    async with th.running_bot(tmp_path, [th.project(report_quorum=1)]) as b:
        await b.add_items("animals", ITEMS)
        ann, bob = b.user(1, "Ann"), b.user(2, "Bob")
        item = await b.start(ann)
        await ann.press(item, "Skip")
        await ann.wait_for(lambda: "🤷 Not sure" in [x["text"] for x in item.buttons])
        why = next(str(x["callback_data"]) for x in item.buttons if x["text"] == "❓ Unclear")
        nxt = await th.next_item(ann, item.message_id)
        aid = next(str(x["callback_data"]) for x in nxt.buttons if x["text"] == "Report")[2:]
        bobs = await b.start(bob)
        dead = EN("press.dead")
        tries = {f"r:{aid}": not_yours, f"c:{aid}:0": not_yours, why: not_yours,
                 "c:999999:0": not_yours, f"c:{aid}:9": dead, "y:1:77": dead}  # fmt: skip
        for data, expected in tries.items():
            query = await bob.press_raw(bobs.message_id, data)
            assert await bob.wait_for_answer(query) == expected, data
        assert await b.query("SELECT COUNT(*) FROM item_reports") == [(0,)]
        assert await b.query("SELECT skip_reason FROM answers") == [(None,)]
        assert "Report" in [x["text"] for x in bobs.buttons]  # Bob's own item is as it was
