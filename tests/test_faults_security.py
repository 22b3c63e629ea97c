"""Security probes from the hardening review (issue 10), run against the real bots.

CSV injection in exports, gold gaming with Undo, forged webhook updates, non-ASCII auth headers
and invite-code guessing: each probe is the attack as it was tried, and what must happen instead.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest

from chatlabel import exporter
from tests.telegram_harness import new_message, next_item, project, running_bot

pytestmark = pytest.mark.timeout(30)

# -- CSV injection --------------------------------------------------------------------------------

FORMULAS = [
    '=HYPERLINK("http://x/?"&A1,"x")',
    "=cmd|' /C calc'!A0",
    "+1+1",
    "-2+3",
    "@SUM(A1:A9)",
    "=1\x1b[31mred",
    "esc \x1b[2J in the middle",
    "csi \x9b and del \x7f and bell \x07",
    "plain answer, with a comma",
    "multi\nline = fine",
]
IDS = ["=1+1", "@id", "\t=2", "\r=3", "id\x1bwith-esc", "-7", "+x", "ok-id"]
NAMES = ["=cmd|' /C calc'!A0", "@Mallory", "\x1b]0;owned\x07Eve"]
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def assert_spreadsheet_safe(text: str) -> list[list[str]]:
    """Every cell of a CSV export is inert in a spreadsheet; returns the parsed rows."""
    assert not _CONTROL.search(text), "a control character reached the CSV file"
    rows = list(csv.reader(io.StringIO(text, newline="")))
    for row in rows:
        for cell in row:
            if cell and cell[0] in "=+-@\t\r":
                assert _NUMBER.fullmatch(cell), f"live formula in CSV: {cell!r}"
    return rows


async def test_csv_exports_defuse_formulas_and_control_characters_jsonl_stays_exact(
    tmp_path: Path,
) -> None:
    notes = project("notes", kind="text", labels=[], overlap=1, max_overlap=1)
    async with running_bot(tmp_path, [notes]) as b:
        n_items = len(FORMULAS) + len(IDS)
        ids = IDS + [f"t{n}" for n in range(n_items - len(IDS))]
        await b.add_items("notes", [{"id": i, "text": f"Item {n}"} for n, i in enumerate(ids)])
        answers = FORMULAS + [f"answer {n}" for n in range(n_items - len(FORMULAS))]
        people = [b.user(100 + n, name) for n, name in enumerate(NAMES)]
        sent: dict[str, str] = {}  # item text -> answer
        for n, text in enumerate(answers):
            user = people[n % len(people)]
            if n < len(people):
                item = await b.start(user)
            else:
                item = await next_item(user, user.messages[-1].message_id - 2)
            last = user.messages[-1].message_id
            sent[item.content.split("\n\n")[0]] = text
            await user.send(text)
            await new_message(
                user, last, lambda m: "Item" in m.content or "everything" in m.content
            )
        assert len(await b.answers()) == n_items

        async def export(what: Any, fmt: Any) -> str:
            out = io.StringIO()
            await exporter.write(b.service, "notes", what, fmt, out)
            return out.getvalue()

        # JSONL stays exact: the values as they were written.
        jsonl = [json.loads(line) for line in (await export("answers", "jsonl")).splitlines()]
        assert sorted(r["label"] for r in jsonl) == sorted(answers)
        assert sorted(r["item_id"] for r in jsonl) == sorted(ids)
        people_jsonl = [json.loads(x) for x in (await export("annotators", "jsonl")).splitlines()]
        assert sorted(r["name"] for r in people_jsonl) == sorted(NAMES)
        # CSV is inert, and says the same thing once the ' and the \xNN are read back.
        tried = 0
        for what in ("results", "answers", "annotators"):
            rows = assert_spreadsheet_safe(await export(what, "csv"))
            tried += sum(len(r) for r in rows)
        answers_csv = assert_spreadsheet_safe(await export("answers", "csv"))[1:]
        by_id = {r[0]: r[2] for r in answers_csv}
        # A CR is a line break in CSV (Python's writer would not quote a field for it).
        assert by_id["'=1+1"] and by_id["'@id"] and by_id["'\t=2"] and by_id["'\n=3"]
        assert "id\\x1bwith-esc" in by_id and "-7" in by_id and "'+x" in by_id
        values = sorted(r[2] for r in answers_csv)
        assert '\'=HYPERLINK("http://x/?"&A1,"x")' in values
        assert "'=1\\x1b[31mred" in values and "-2+3" not in values and "'-2+3" in values
        assert "esc \\x1b[2J in the middle" in values
        assert "csi \\x9b and del \\x7f and bell \\x07" in values
        assert "plain answer, with a comma" in values and "multi\nline = fine" in values
        names = {r[1] for r in assert_spreadsheet_safe(await export("annotators", "csv"))[1:]}
        assert names == {"'=cmd|' /C calc'!A0", "'@Mallory", "\\x1b]0;owned\\x07Eve"}
        assert tried > 100


# -- gold gaming with Undo ------------------------------------------------------------------------


async def test_undo_after_gold_feedback_never_changes_the_score(tmp_path: Path) -> None:
    """The probe: answer each qualification gold item wrong, read the right answer in the
    feedback, Undo, answer it right. It made a 100 % gold score out of four misses."""
    strict = project(
        undo_seconds=60,
        lease_seconds=600,
        quality={"qualification": 4, "min_gold_accuracy": 0.7, "gold_feedback": True},
    )
    gold = [{"id": f"g{n}", "text": f"Gold item {n}.", "gold": "cat"} for n in range(4)]
    plain = [{"id": f"t{n}", "text": f"Plain item {n}."} for n in range(4)]
    async with running_bot(tmp_path, [strict]) as b:
        await b.add_items("animals", gold + plain)
        ann = b.user(1, "Gamer")
        item = await b.start(ann)
        shown_gold: list[str] = []
        for n in range(4):
            text = item.content
            assert text.startswith("Gold item"), text
            shown_gold.append(text)
            await ann.press(item, "dog")  # wrong
            feedback = await new_message(ann, item.message_id, lambda m: "expected" in m.content)
            assert "The expected answer was: cat" in feedback.content
            if n == 3:
                break  # 0 of 4 right: not admitted, so no Undo (before: 3 of 4, and Undo)
            await next_item(ann, feedback.message_id)
            await ann.press(item, "↩ Undo")  # Undo is still offered, as for any item
            again = await next_item(ann, ann.messages[-1].message_id - 1)
            while again.content != text:  # the item after it is withdrawn, this one resent
                again = await next_item(ann, again.message_id)
            await ann.press(again, "cat")  # right, now that they know
            item = await next_item(ann, again.message_id)
        notice = await new_message(ann, item.message_id, lambda m: "⛔" in m.content)
        assert "check items were below the 70%" in notice.content
        assert sorted(shown_gold) == sorted(f"Gold item {n}." for n in range(4))
        # The first answers are the score: 0 of 4, not 4 of 4.
        assert await b.query(
            "SELECT gold_answers, gold_correct, qual_answers, qual_correct, status FROM members"
        ) == [(4, 0, 4, 0, "suspended")]
        # Undo changed the recorded label (shown in exports), never the scoring.
        rows = await b.query("SELECT value, correct FROM answers ORDER BY id")
        assert rows == [("cat", 0)] * 3 + [("dog", 0)]
        # Each gold item was leased to them once, and never comes back, even after its lease.
        assert await b.query(
            "SELECT i.ext_id, COUNT(*) FROM assignments s JOIN items i ON i.id = s.item_id "
            "WHERE i.gold IS NOT NULL GROUP BY i.id ORDER BY i.ext_id"
        ) == [(f"g{n}", 1) for n in range(4)]


async def test_a_gold_item_undone_and_left_is_never_offered_again(tmp_path: Path) -> None:
    lenient = project(
        undo_seconds=60,
        lease_seconds=60,
        quality={"qualification": 1, "min_gold_accuracy": 0.0, "gold_feedback": True},
    )
    rows = [{"id": "g0", "text": "Gold item.", "gold": "cat"}]
    rows += [{"id": f"t{n}", "text": f"Plain item {n}."} for n in range(3)]
    async with running_bot(tmp_path, [lenient]) as b:
        await b.add_items("animals", rows)
        ann = b.user(1)
        item = await b.start(ann)
        assert item.content == "Gold item."
        await ann.press(item, "dog")
        feedback = await new_message(ann, item.message_id, lambda m: "expected" in m.content)
        plain = await next_item(ann, feedback.message_id)
        await ann.press(item, "↩ Undo")
        again = await next_item(ann, plain.message_id)
        assert again.content == "Gold item." and plain.deleted
        # They walk away; the lease runs out and the pool moves on.
        b.clock.advance(61)
        await ann.send("/start")
        seen = []
        last = again.message_id
        for _ in range(3):
            nxt = await next_item(ann, last)
            seen.append(nxt.content)
            await ann.press(nxt, "bird")
            last = nxt.message_id
        done = await new_message(ann, last, lambda m: "everything for now" in m.content)
        assert done and seen == [f"Plain item {n}." for n in range(3)]
        assert await b.query("SELECT gold_answers, gold_correct FROM members") == [(1, 0)]
        assert await b.query(
            "SELECT COUNT(*) FROM assignments s JOIN items i ON i.id = s.item_id WHERE i.gold IS NOT NULL"
        ) == [(1,)]
