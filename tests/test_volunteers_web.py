"""The volunteer features in the browser chat: a reminder on an open page, Continue, Report and
a quorum, /me and an announcement, the same conversation as on Telegram and Slack."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from chatlabel.conversation import Catalog
from tests import web_harness as wh
from tests.volunteer_drivers import when

pytestmark = pytest.mark.timeout(60)

EN = Catalog().texts("en")
ITEMS = [{"id": f"t{n}", "text": f"Animal number {n}"} for n in range(4)]


def said(v: wh.Visitor, text: str) -> list[dict[str, Any]]:
    return [m for m in v.messages() if text in m["text"]]


async def test_reminders_reports_me_and_announcements_in_the_browser(tmp_path: Path) -> None:
    project = wh.project(
        report_quorum=1,
        timezone="Europe/Berlin",
        reminders={"after": "2h", "quiet_hours": "22:00-08:00"},
    )
    async with wh.running_web(tmp_path, [project]) as w:
        w.clock.now = when("2024-05-06 10:00")
        await w.add_items("animals", ITEMS)
        ann = await w.visitor()
        await ann.start()
        item = (await ann.wait_for(ann.open_items))[0]
        assert wh.captions(item)[-2:] == ["Skip", "Report"]
        assert await ann.press(item, "Report") == 200
        await ann.wait_for(lambda: "🖼 Broken media" in wh.captions(ann.screen[item["ref"]]))
        assert await ann.press(ann.screen[item["ref"]], "🖼 Broken media") == 200
        await ann.wait_for(lambda: "⚑ Reported: broken media" in ann.screen[item["ref"]]["status"])
        assert await w.query("SELECT status FROM items WHERE ext_id = 't0'") == [("held",)]

        # Idle for two hours while the next item waits: a reminder on the open page.
        w.clock.now = when("2024-05-06 12:30")
        await w.service.tick()
        await w.transport.conversation.sender.run_once()
        nudge = (await ann.wait_for(lambda: said(ann, "are waiting for answers")))[0]
        assert wh.captions(nudge) == [EN("reminder.continue")]
        before = len(ann.open_items())
        assert await ann.press(nudge, EN("reminder.continue")) == 200
        await ann.wait_for(lambda: len(ann.open_items()) > before)

        assert await ann.type("/me") == 200
        figures = await ann.wait_for(lambda: said(ann, "📊 Animals"))
        assert "Answers: 0 (skipped 1)" in figures[-1]["text"]

        boss = await w.visitor(person=wh.COORDINATOR)
        assert await boss.type("/announce Thank you all!") == 200
        preview = (await boss.wait_for(lambda: said(boss, "Preview:")))[0]
        assert await boss.press(preview, "📣 Send to 1") == 200
        await w.transport.conversation.sender.run_once()
        await ann.wait_for(lambda: said(ann, "📣 Animals\n\nThank you all!"))
