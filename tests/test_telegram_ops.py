"""The Telegram bot under operations: coordinators, bad presses, faults, blocking, restarts."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import aiohttp
import pytest
from PIL import Image

from chatlabel.charts import progress_png
from chatlabel.config import ConfigError, Telegram
from chatlabel.conversation import Catalog
from chatlabel.emulators.telegram import ApiError, Faults
from chatlabel.transports.telegram import TelegramTransport
from tests.telegram_harness import (
    COORDINATOR_ID,
    export_stub,
    is_item,
    new_message,
    next_item,
    project,
    running_bot,
)

NOT_ALLOWED = Catalog().texts("en")("command.not_allowed")

pytestmark = pytest.mark.timeout(40)

ITEMS = [{"id": f"t{n}", "text": f"Animal sound number {n}."} for n in range(1, 5)]
COORDINATOR_COMMANDS = [
    "/progress", "/annotators", "/disagreements", "/agreement", "/export",
    "/pause_project", "/resume_project",
]  # fmt: skip


async def test_coordinator_commands_answer_coordinators_and_refuse_others(
    tmp_path: Path,
) -> None:
    async with running_bot(tmp_path) as b:
        await b.add_items("animals", ITEMS)
        ann, boss = b.user(1, "Ann"), b.user(COORDINATOR_ID, "Boss")
        item = await b.start(ann)
        await ann.press(item, "cat")
        await next_item(ann, item.message_id)

        last = 0
        replies = {}
        for command in COORDINATOR_COMMANDS[:5]:
            await boss.send(command)
            reply = await new_message(boss, last)
            replies[command], last = reply, reply.message_id
        progress = replies["/progress"]
        assert progress.kind == "photo" and progress.content.startswith("📈 Animals")
        [chart] = [u for u in b.emu.uploads if u.method == "sendPhoto"]
        assert chart.filename == "animals-progress.png"
        assert b.emu.files[chart.file_id].data.startswith(b"\x89PNG")
        assert "Ann: 1" in replies["/annotators"].content
        assert "disagree" in replies["/disagreements"].content
        assert "Fleiss' kappa" in replies["/agreement"].content
        export = replies["/export"]
        assert export.kind == "document" and export.media is not None
        assert export.media.files[0].data == (await export_stub("animals"))[1]

        await boss.send("/pause_project")
        paused = await new_message(boss, last)
        assert paused.content.startswith("⏸ Animals is paused")
        bob = b.user(2)
        told = await b.start(bob)
        assert "Labeling is paused" in told.content
        await boss.send("/resume_project animals")
        resumed = await new_message(boss, paused.message_id)
        assert resumed.content == "▶️ Animals is running again."
        pushed = await next_item(bob, told.message_id)  # told "paused": now pushed an item
        assert pushed.content.startswith("Animal sound number")
        await boss.send("/progress nosuch")
        refused = await new_message(boss, resumed.message_id)
        assert refused.content == "There's no project called nosuch. Projects: animals."

        before = len(ann.messages)
        for command in COORDINATOR_COMMANDS:
            await ann.send(command)
        await ann.wait_for(lambda: len(ann.messages) == before + len(COORDINATOR_COMMANDS))
        assert [m.content for m in ann.messages[before:]] == [NOT_ALLOWED] * 7
        assert (await b.reports.progress("animals")).paused is False


async def test_progress_chart_is_drawn_in_the_coordinators_language(tmp_path: Path) -> None:
    translated = project(translations={"es": {"title": "Animales"}})
    async with running_bot(tmp_path, [translated]) as b:
        await b.add_items("animals", ITEMS)
        ann = b.user(1, "Ann")
        item = await b.start(ann)
        await ann.press(item, "cat")
        await next_item(ann, item.message_id)
        jefa = b.emu.user(COORDINATOR_ID, "Jefa", language_code="es")
        await jefa.send("/progress")
        reply = await new_message(jefa, 0, lambda m: m.kind == "photo")
        assert reply.content.startswith("📈 Animales")
        [upload] = [u for u in b.emu.uploads if u.method == "sendPhoto"]
        sent = b.emu.files[upload.file_id].data
        p = await b.reports.progress("animals")
        es, en = Catalog().texts("es"), Catalog().texts("en")
        # The very chart drawn for a Spanish reader, with the Spanish title: not the English one.
        assert sent == progress_png(p, es, "Animales")
        assert sent != progress_png(p, en, "Animales")


async def test_stale_forged_and_double_presses_change_nothing(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as b:
        await b.add_items("animals", ITEMS)
        ann, bob = b.user(1), b.user(2)
        item = await b.start(ann)
        bob_item = await b.start(bob)
        first = await ann.press(item, "cat")
        second = await ann.press(item, "dog")  # pressed before the first was handled
        assert await ann.wait_for_answer(first) is None
        assert await ann.wait_for_answer(second) == "Already recorded, thanks!"
        nxt = await next_item(ann, item.message_id)
        await asyncio.sleep(0.3)
        shown = [m.message_id for m in ann.messages if m.content.startswith("Animal sound")]
        assert shown == [item.message_id, nxt.message_id]  # one next item, not two
        assert await b.answers() == [("t1", "cat")]

        asg_bob = int(str(bob_item.buttons[0]["callback_data"]).split(":")[1])
        asg_ann = int(str(nxt.buttons[0]["callback_data"]).split(":")[1])
        forged = {
            f"a:{asg_bob}:0": "That button isn't yours.",  # someone else's item
            "a:999999:1": "That button doesn't work any more.",  # no such assignment
            f"a:{asg_ann}:9": "That button doesn't work any more.",  # no such choice
            "u:999999": "Nothing to undo.",
            "zz:1": "That button doesn't work any more.",
            "a:" + "9" * 70: "That button doesn't work any more.",
        }
        for data, toast in forged.items():
            query = await ann.press_raw(nxt.message_id, data)
            assert await ann.wait_for_answer(query) == toast, data
        assert await b.answers() == [("t1", "cat")]
        assert [m.message_id for m in ann.messages if is_item(m)] == [nxt.message_id]
        states = await b.query("SELECT state FROM assignments ORDER BY id")
        assert states == [("answered",), ("pending",), ("pending",)]


async def test_429_storms_and_5xx_errors_lose_no_answer(tmp_path: Path) -> None:
    async with running_bot(tmp_path, [project(overlap=3, max_overlap=3)]) as b:
        await b.add_items("animals", ITEMS)
        users = [b.user(n) for n in (1, 2, 3)]
        b.emu.fail_next("sendMessage", ApiError.too_many_requests(1))  # one real 1 s wait
        b.emu.faults = Faults(rate_429=0.25, rate_5xx=0.15, retry_after=0, seed=11)
        current = {u.id: await b.start(u) for u in users}
        for _ in ITEMS:
            for u in users:
                await u.press(current[u.id], "bird")
            for u in users:
                done = current[u.id]
                await u.wait_for(lambda d=done: d.content.endswith("✅ bird"), timeout=15)  # type: ignore[misc]
                if len(await b.answers(u)) < len(ITEMS):
                    current[u.id] = await next_item(u, done.message_id, timeout=15)
        answers = await b.answers()
        assert len(answers) == 12 and {v for _, v in answers} == {"bird"}
        assert b.emu.faults.injected["429"] > 3 and b.emu.faults.injected["5xx"] > 3
        statuses = await b.query("SELECT DISTINCT status FROM items")
        assert statuses == [("resolved",)]


async def test_a_press_survives_toasts_and_edits_that_keep_failing(tmp_path: Path) -> None:
    async with running_bot(tmp_path, retry_delays=(0.01,) * 5) as b:
        await b.add_items("animals", ITEMS)
        ann = b.user(1)
        item = await b.start(ann)
        for method in ("answerCallbackQuery", "editMessageText"):
            b.emu.fail_next(method, ApiError(502, "Bad Gateway"), times=6)  # every retry fails
        query = await ann.press(item, "cat")
        nxt = await next_item(ann, item.message_id)  # the next item comes all the same
        assert nxt.content == "Animal sound number 2."
        assert await b.answers() == [("t1", "cat")]
        assert not b.emu.callback_queries[query].answered
        assert item.buttons[0]["text"] == "cat"  # the edit never got through
        query = await ann.press(item, "dog")  # pressing the stale keyboard again is harmless
        assert await ann.wait_for_answer(query) == "Already recorded, thanks!"
        assert await b.answers() == [("t1", "cat")]


async def test_a_user_who_blocks_the_bot_gets_no_more_pushes(tmp_path: Path) -> None:
    async with running_bot(tmp_path, [project(overlap=1, max_overlap=1)]) as b:
        ann, bob, cy = b.user(1), b.user(2), b.user(3)
        for u in (ann, bob, cy):
            assert "everything for now" in (await b.start(u)).content
        ann.block()  # Telegram tells the bot with a my_chat_member update

        async def blocked() -> list[str]:
            rows = await b.query("SELECT key FROM annotators WHERE blocked = 1 ORDER BY key")
            return [r[0] for r in rows]

        for _ in range(50):
            if await blocked() == ["telegram:1"]:
                break
            await asyncio.sleep(0.05)
        assert await blocked() == ["telegram:1"]
        b.emu.chats[bob.id].blocked = True  # no update this time: the bot finds out by a 403
        sends_before = len(b.emu.calls_to("sendMessage"))
        await b.add_items("animals", ITEMS[:1])
        pushed = await next_item(cy, cy.messages[-1].message_id)
        assert pushed.content == "Animal sound number 1."
        assert await blocked() == ["telegram:1", "telegram:2"]
        await asyncio.sleep(0.5)
        to_ann = [
            c
            for c in b.emu.calls_to("sendMessage")[sends_before:]
            if str(c.params.get("chat_id")) == str(ann.id)
        ]
        assert to_ann == []


async def test_one_image_for_50_annotators_is_uploaded_once(tmp_path: Path) -> None:
    src = tmp_path / "cat.png"
    Image.new("RGB", (1600, 1200), (200, 120, 40)).save(src)
    crowd = project(overlap=50, max_overlap=50)
    async with running_bot(tmp_path, [crowd]) as b:
        await b.add_items("animals", [
            {"id": "img", "text": "Which animal?", "media_kind": "image", "media_path": str(src)}
        ])  # fmt: skip
        users = [b.user(1000 + n) for n in range(50)]
        await asyncio.gather(*(u.send("/start") for u in users))
        photos = await asyncio.gather(*(u.wait_for_message(is_item, timeout=20) for u in users))
        assert {p.kind for p in photos} == {"photo"}
        assert len(b.emu.uploads) == 1
        assert len(b.emu.calls_to("sendPhoto")) == 50
        file_ids = {p.media.file_id for p in photos if p.media is not None}
        assert file_ids == {b.emu.uploads[0].file_id}


async def test_a_restart_carries_on_with_the_same_items(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as b:
        await b.add_items("animals", ITEMS)
        ann = b.user(1)
        item = await b.start(ann)
        await b.transport.stop()
        await b.transport.stop()  # twice is fine
        assert b.emu.pending_updates == []
        again = TelegramTransport(
            b.service,
            b.reports,
            Telegram(base_url=b.emu.base_url),
            b.emu.token,
            media_cache=tmp_path / "cache",
        )
        again.push_interval = 0.2
        await again.start()
        try:
            await ann.press(item, "dog")  # a button from before the restart still works
            nxt = await next_item(ann, item.message_id)
            assert nxt.content == "Animal sound number 2."
            assert await b.answers() == [("t1", "dog")]
        finally:
            await again.stop()


async def test_stopping_under_a_backlog_is_prompt_and_leaves_nothing_half_done(
    tmp_path: Path,
) -> None:
    crowd = [project(overlap=50, max_overlap=50)]
    async with running_bot(tmp_path, crowd, max_rate=30.0) as b:  # Telegram's real pace
        await b.add_items("animals", ITEMS)
        users = [b.user(2000 + n) for n in range(120)]
        await asyncio.gather(*(u.send("/start") for u in users))
        await b.emu.signal.wait_until(lambda: len(b.emu.calls_to("sendMessage")) > 20, 5)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await b.transport.stop()
        assert loop.time() - started < 5
        # Whoever was shown an item still holds its lease, to answer after a restart.
        leased = await b.query(
            "SELECT a.key FROM assignments s JOIN annotators a ON a.id = s.annotator_id"
        )
        shown = {f"telegram:{u.id}" for u in users if any(is_item(m) for m in u.messages)}
        assert shown <= {k for (k,) in leased}
        assert len(leased) < len(users)  # the backlog was not worked through at shutdown


async def test_the_token_never_reaches_the_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with running_bot(tmp_path) as b:
        await b.add_items("animals", ITEMS)
        b.emu.fail_next("sendMessage", ApiError(502, "Bad Gateway"), times=2)
        ann = b.user(1)
        item = await b.start(ann)
        await ann.press(item, "cat")
        await next_item(ann, item.message_id)
        logging.getLogger("chatlabel.telegram").warning(
            "url %s/getMe", b.emu.base_url + b.emu.token
        )
        token = b.emu.token
    texts = [r.getMessage() + (r.exc_text or "") for r in caplog.records]
    assert any("retrying" in t for t in texts)
    assert any("<token>/getMe" in t for t in texts)
    assert not [t for t in texts if token in t]
    assert not [t for t in texts if token.split(":")[1] in t]


async def test_a_refused_token_stops_start_with_a_message_naming_its_variable(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with running_bot(tmp_path) as b:
        wrong = b.emu.token.split(":")[0] + ":not-the-secret-part"
        bot = TelegramTransport(
            b.service,
            b.reports,
            Telegram(base_url=b.emu.base_url),
            wrong,
            media_cache=tmp_path / "cache",
        )
        with pytest.raises(ConfigError) as refused:
            await asyncio.wait_for(bot.start(), timeout=10)
        await bot.stop()
        # PTB does not shut down a bot whose token was refused: its connections are ours to close.
        assert bot._requests and all(r._session is None for r in bot._requests)  # type: ignore[attr-defined]
    assert str(refused.value) == (
        "Telegram refused the bot token in CHATLABEL_TELEGRAM_TOKEN: check it with @BotFather"
    )
    assert not [r for r in caplog.records if "not-the-secret-part" in r.getMessage()]


async def test_webhook_mode_accepts_only_the_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unused_tcp_port: int
) -> None:
    monkeypatch.setenv("TG_HOOK_SECRET", "s3cret_token-1")
    async with running_bot(tmp_path) as b:
        await b.add_items("animals", ITEMS)
        await b.transport.stop()  # the same service, now behind a webhook
        url = "https://bot.example.org/telegram/hook"  # public, behind a TLS proxy
        local = f"http://127.0.0.1:{unused_tcp_port}/telegram/hook"
        settings = Telegram(
            base_url=b.emu.base_url, mode="webhook", webhook_url=url,
            webhook_port=unused_tcp_port, secret_token_env="TG_HOOK_SECRET",
        )  # fmt: skip
        hooked = TelegramTransport(
            b.service, b.reports, settings, b.emu.token, media_cache=tmp_path / "cache"
        )
        await hooked.start()
        try:
            assert b.emu.webhook is not None and b.emu.webhook["url"] == url
            ann = b.user(1)
            await ann.send("/start")
            [update] = b.emu.pending_updates  # nobody polls: we deliver it as Telegram would
            async with aiohttp.ClientSession() as http:
                for secret, status in (("wrong", 403), ("s3cret_token-1", 200)):
                    headers = {"X-Telegram-Bot-Api-Secret-Token": secret}
                    async with http.post(local, json=update, headers=headers) as response:
                        assert response.status == status
            item = await next_item(ann)
            assert item.content == "Animal sound number 1."
        finally:
            await hooked.stop()
