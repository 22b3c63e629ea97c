"""Telegram, Slack and web annotators labeling one project at the same time, in one process."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, expect

from chatlabel.config import Access, Config, Quality, Slack, Telegram, Web
from chatlabel.emulators.slack import SlackApiEmulator, SlackSimUser
from chatlabel.emulators.telegram import BotApiEmulator, ChatMessage, SimUser
from chatlabel.importer import import_file
from chatlabel.service.labeling import LabelingService
from chatlabel.service.reports import Reports
from chatlabel.storage.db import Database
from chatlabel.transports.slack import SlackTransport
from chatlabel.transports.telegram import TelegramTransport
from chatlabel.transports.web import WebTransport
from tests.browser import chromium, phone
from tests.slack_harness import SECRET, open_items, project, shown
from tests.telegram_harness import is_item

pytestmark = pytest.mark.timeout(90)

TRUTH = {f"m{n}": ("spam" if n % 3 == 0 else "ham") for n in range(1, 9)}


def text_of(item_id: str) -> str:
    return f"Message number {item_id[1:]} for triage"


GOLD_TEXT, GOLD_LABEL = "A check item: clearly spam", "spam"


def truth_in(body: str) -> str:
    """The right label for the item whose text appears in `body` (the gold item's too)."""
    if GOLD_TEXT in body:
        return GOLD_LABEL
    return next(label for item, label in TRUTH.items() if text_of(item) in body)


async def telegram_worker(user: SimUser) -> int:
    """Answer every item the Telegram bot sends until it says there is nothing left."""
    last = 0
    for answered in range(len(TRUTH) + 2):

        def fresh(m: ChatMessage, after: int = last) -> bool:
            return m.message_id > after and (is_item(m) or "everything for now" in (m.text or ""))

        msg = await user.wait_for_message(fresh, timeout=10)
        if not is_item(msg):
            return answered
        await user.press(msg, truth_in(msg.text or msg.caption or ""))
        last = msg.message_id
    raise AssertionError("the Telegram bot kept sending items")


async def slack_worker(user: SlackSimUser) -> int:
    """Answer every item the Slack bot sends until it says there is nothing left."""
    for answered in range(len(TRUTH) + 2):
        await user.wait_for(
            lambda: (
                open_items(user)
                or (user.messages and "everything for now" in user.messages[-1].text)
            ),
            timeout=10,
        )
        waiting = open_items(user)
        if not waiting:
            return answered
        msg = waiting[0]
        await user.press(msg, truth_in(shown(msg)))
        await user.wait_for(lambda m=msg: m not in open_items(user), timeout=10)
    raise AssertionError("the Slack bot kept sending items")


async def test_telegram_and_slack_label_one_project_together(tmp_path: Path) -> None:
    async with BotApiEmulator() as tg_emu, SlackApiEmulator() as slack_emu:
        config = Config(
            project=[project(overlap=2, max_overlap=2, agreement=0.6)],
            access=Access(coordinators=["slack:UBOSS"]),
            telegram=Telegram(base_url=tg_emu.base_url),
            slack=Slack(port=0, base_url=slack_emu.base_url),
        )
        db = await Database(tmp_path / "chatlabel.db").open()
        try:
            service = LabelingService(db, config, rng=random.Random(5))
            await service.start()
            reports = Reports(service)
            rows = "".join(f'{{"id": "{item}", "text": "{text_of(item)}"}}\n' for item in TRUTH)
            (tmp_path / "items.jsonl").write_text(rows)
            await import_file(service, "triage", tmp_path / "items.jsonl")
            assert config.telegram is not None and config.slack is not None
            tg = TelegramTransport(
                service, reports, config.telegram, tg_emu.token, media_cache=tmp_path / "cache"
            )
            tg.max_rate, tg.chat_limit = 0.0, None  # the emulator has no flood limits
            slack = SlackTransport(
                service,
                reports,
                config.slack,
                slack_emu.token,
                SECRET,
                media_cache=tmp_path / "cache",
                limits={},  # the emulator has no rate limits
            )
            await tg.start()
            await slack.start()
            try:
                slack_emu.configure_bot(slack.url, SECRET)
                ted, sam = tg_emu.user(101, "Ted"), slack_emu.user("U1", "sam")
                await ted.send("/start")
                await sam.slash("/label")
                # Both label at once, each as fast as their bot lets them.
                counts = await asyncio.wait_for(
                    asyncio.gather(telegram_worker(ted), slack_worker(sam)), timeout=30
                )
                assert counts == [len(TRUTH), len(TRUTH)]

                # A latecomer finds nothing: no item is collected beyond its overlap.
                late = slack_emu.user("U2", "late")
                await late.slash("/label")
                await late.wait_for(
                    lambda: late.messages and "everything for now" in late.messages[-1].text
                )
            finally:
                await slack.stop()
                await tg.stop()

            def q(conn: Any) -> list[tuple[Any, ...]]:
                return [
                    tuple(r)
                    for r in conn.execute(
                        """SELECT i.ext_id, v.status, v.label, COUNT(x.id),
                              GROUP_CONCAT(DISTINCT a.platform)
                       FROM items i JOIN verdicts v ON v.item_id = i.id
                       JOIN answers x ON x.item_id = i.id
                       JOIN annotators a ON a.id = x.annotator_id
                       GROUP BY i.id ORDER BY i.seq"""
                    ).fetchall()
                ]

            verdicts = await db.read(q)
            assert [(v[0], v[1], v[2], v[3]) for v in verdicts] == [
                (item, "resolved", label, 2) for item, label in TRUTH.items()
            ]
            assert all(set(v[4].split(",")) == {"telegram", "slack"} for v in verdicts)
        finally:
            await db.close()


async def browser_worker(page: Page) -> int:
    """Answer every item the web chat shows in Chromium until it says there is nothing left."""
    for answered in range(len(TRUTH) + 2):
        waiting = page.locator("li.msg", has=page.get_by_role("button", name="Skip"))
        idle = page.locator("li.msg", has_text="everything for now")
        await expect(waiting.or_(idle).first).to_be_visible()
        if not await waiting.count():
            return answered
        item = waiting.first
        ref = await item.get_attribute("data-ref")
        text = await item.locator("p.text").inner_text()
        await item.get_by_role("button", name=truth_in(text), exact=True).click()
        await expect(page.locator(f'li[data-ref="{ref}"] .status')).to_be_visible()
    raise AssertionError("the web chat kept sending items")


async def test_a_browser_a_telegram_and_a_slack_user_label_one_project(tmp_path: Path) -> None:
    gold = Quality(qualification=1, gold_rate=0.0, min_gold_accuracy=0.5)
    async with BotApiEmulator() as tg_emu, SlackApiEmulator() as slack_emu:
        config = Config(
            project=[project(overlap=3, max_overlap=3, agreement=0.6, quality=gold)],
            access=Access(coordinators=["slack:UBOSS"]),
            telegram=Telegram(base_url=tg_emu.base_url),
            slack=Slack(port=0, base_url=slack_emu.base_url),
            web=Web(port=0),
        )
        db = await Database(tmp_path / "chatlabel.db").open()
        try:
            service = LabelingService(db, config, rng=random.Random(5))
            await service.start()
            reports = Reports(service)
            rows = f'{{"id": "g1", "text": "{GOLD_TEXT}", "gold": "{GOLD_LABEL}"}}\n'
            rows += "".join(f'{{"id": "{item}", "text": "{text_of(item)}"}}\n' for item in TRUTH)
            (tmp_path / "items.jsonl").write_text(rows)
            await import_file(service, "triage", tmp_path / "items.jsonl")
            assert config.telegram and config.slack and config.web
            cache = tmp_path / "cache"
            tg = TelegramTransport(
                service, reports, config.telegram, tg_emu.token, media_cache=cache
            )
            tg.max_rate = 1000.0  # the emulator has no flood limit
            slack = SlackTransport(
                service, reports, config.slack, slack_emu.token, SECRET, media_cache=cache
            )
            www = WebTransport(
                service, reports, config.web, secret="x" * 40,
                secret_path=config.web_secret_path(), media_cache=cache,
            )  # fmt: skip
            for transport in (tg, slack, www):
                await transport.start()
            try:
                slack_emu.configure_bot(slack.url, SECRET)
                ted, sam = tg_emu.user(101, "Ted"), slack_emu.user("U1", "sam")
                async with chromium() as browser:
                    page = await phone(browser)
                    await ted.send("/start")
                    await sam.slash("/label")
                    await page.goto(f"http://127.0.0.1:{www.port}/")
                    counts = await asyncio.wait_for(
                        asyncio.gather(
                            telegram_worker(ted), slack_worker(sam), browser_worker(page)
                        ),
                        timeout=40,
                    )
                assert counts == [len(TRUTH) + 1] * 3  # the gold item, then every item
            finally:
                for transport in (www, slack, tg):
                    await transport.stop()

            def q(conn: Any) -> list[tuple[Any, ...]]:
                return [
                    tuple(r)
                    for r in conn.execute(
                        """SELECT i.ext_id, v.status, v.label, COUNT(x.id),
                              GROUP_CONCAT(DISTINCT a.platform)
                       FROM items i JOIN verdicts v ON v.item_id = i.id
                       JOIN answers x ON x.item_id = i.id
                       JOIN annotators a ON a.id = x.annotator_id
                       GROUP BY i.id ORDER BY i.seq"""
                    ).fetchall()
                ]

            verdicts = await db.read(q)
            assert [(v[0], v[1], v[2], v[3]) for v in verdicts] == [
                (item, "resolved", label, 3) for item, label in TRUTH.items()
            ]
            assert all(set(v[4].split(",")) == {"telegram", "slack", "web"} for v in verdicts)
            scored = await db.read(
                lambda c: sorted(
                    tuple(r)
                    for r in c.execute(
                        """SELECT a.platform, m.gold_answers, m.gold_correct FROM members m
                           JOIN annotators a ON a.id = m.annotator_id"""
                    )
                )
            )
            assert scored == [("slack", 1, 1), ("telegram", 1, 1), ("web", 1, 1)]
        finally:
            await db.close()
