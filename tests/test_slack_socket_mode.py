"""The Slack bot in Socket Mode: real Bolt and slack_sdk's aiohttp client, the loopback fake."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

import tests.test_slack_bot as http_tests
from chatlabel.config import Config, ConfigError, Slack
from chatlabel.emulators.slack import SlackApiEmulator, SlackFaults
from chatlabel.service.labeling import LabelingService
from chatlabel.service.reports import Reports
from chatlabel.storage.db import Database
from chatlabel.transports.slack import SlackTransport
from tests.slack_harness import SECRET, Bot, items, make_bot, open_items, project, shown

pytestmark = pytest.mark.timeout(30)

MESSAGES = http_tests.MESSAGES
NOTES = project("notes", title="Captions", kind="text", labels=[])


@pytest.fixture
async def stack() -> AsyncIterator[contextlib.AsyncExitStack]:
    async with contextlib.AsyncExitStack() as s:
        yield s


async def socket_bot(stack: Any, tmp: Path, *projects: Any, **kw: Any) -> Bot:
    """The harness's bot in Socket Mode, with Slack's event retries sooner."""
    bot = await make_bot(stack, tmp, *projects, socket_mode=True, **kw)
    bot.emu.sockets.retry_delays = (0.05, 0.05, 0.05)
    return bot


async def joined(bot: Bot, uid: str) -> Any:
    """A user who typed /label and now sees their first item."""
    user = bot.emu.user(uid, name=uid.lower())
    assert (await user.slash("/label")).status == 200
    await user.wait_for(lambda: open_items(user))
    return user


# The HTTP tests, run unchanged over Socket Mode: only the harness's bot construction differs.
PARITY = [
    "test_slash_command_joins_and_labels",
    "test_app_home_start_button_and_coordinator_home",
    "test_multi_choice_checkboxes_and_done",
    "test_text_answers_through_the_modal_and_a_dm_reply",
    "test_coordinator_commands_and_refusals",
    "test_stale_forged_and_repeated_presses_change_nothing",
    "test_env_proxy_does_not_capture_loopback_calls",
]


@pytest.mark.parametrize("name", PARITY)
async def test_http_scenarios_pass_over_socket_mode(
    name: str, stack: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bots: list[Bot] = []

    async def socket_make_bot(*args: Any, **kw: Any) -> Bot:
        bots.append(await make_bot(*args, socket_mode=True, **kw))
        return bots[-1]

    monkeypatch.setattr(http_tests, "make_bot", socket_make_bot)
    test: Callable[..., Awaitable[None]] = getattr(http_tests, name)
    given = {"stack": stack, "tmp_path": tmp_path, "monkeypatch": monkeypatch}
    await test(**{k: v for k, v in given.items() if k in inspect.signature(test).parameters})

    (bot,) = bots
    sockets = bot.emu.sockets
    assert bot.emu.request_url is None  # nothing could have gone over HTTP
    assert sockets.envelopes and all(e.acked for e in sockets.envelopes)
    assert sockets.opened == 1 and len(bot.emu.calls_to("apps.connections.open")) == 1


async def test_join_press_and_answers_recorded_once(stack: Any, tmp_path: Path) -> None:
    bot = await socket_bot(stack, tmp_path, items={"triage": MESSAGES})
    sockets = bot.emu.sockets
    assert [c.ok for c in bot.emu.calls_to("apps.connections.open")] == [True]
    url = urlparse(bot.emu.calls_to("apps.connections.open")[0].response["url"])
    assert (url.scheme, url.hostname, url.path) == ("ws", "127.0.0.1", "/link/")
    assert len(sockets.connections) == 1 and sockets.opened == 1

    ann = await joined(bot, "U1")
    assert "Welcome to Spam triage" in shown(ann.messages[0])
    await ann.press(open_items(ann)[0], "spam")
    await ann.wait_for(lambda: len(items(ann)) == 2)
    await ann.press(open_items(ann)[0], "Skip")
    await ann.wait_for(lambda: len(items(ann)) == 3)
    assert "✅ spam" in shown(items(ann)[0]) and "⏭ Skipped" in shown(items(ann)[1])

    # The slash command's immediate reply travels in the ack, as over HTTP.
    reply = await ann.slash("/label", "help")
    assert reply.status == 200 and "/label me" in reply.body
    assert any("/label me" in m.text for m in ann.ephemerals)

    kinds = [(e.type, e.accepts_response_payload, e.retry_attempt) for e in sockets.envelopes]
    assert kinds == [
        ("slash_commands", True, 0),
        ("interactive", False, 0),
        ("interactive", False, 0),
        ("slash_commands", True, 0),
    ]
    assert all(e.acked for e in sockets.envelopes)
    acked = [f["envelope_id"] for f in sockets.frames if isinstance(f, dict)]
    assert acked == [e.envelope_id for e in sockets.envelopes]  # each acked exactly once
    assert await bot.answers() == [("slack:T0001/U1", "m1", "spam"), ("slack:T0001/U1", "m2", None)]


async def test_refresh_and_dropped_link_lose_no_answer(stack: Any, tmp_path: Path) -> None:
    bot = await socket_bot(stack, tmp_path, items={"triage": MESSAGES})
    sockets = bot.emu.sockets
    ann = await joined(bot, "U1")
    first = sockets.connections[0]

    # Slack asks for a refresh. The press right after it rides the old link (no other is
    # open yet) while the bot reconnects, and is acked all the same.
    await sockets.disconnect("refresh_requested", close_after=0.3)
    reply = await ann.press(open_items(ann)[0], "spam")
    assert reply.status == 200 and sockets.envelopes[-1].connection == first.id
    await bot.emu.wait_for(lambda: sockets.opened == 2 and first.closed)
    assert [c.draining for c in sockets.connections] == [False]
    assert len(bot.emu.calls_to("apps.connections.open")) == 2  # reconnected with a new URL
    await ann.wait_for(lambda: len(items(ann)) == 2)

    await ann.press(open_items(ann)[0], "ham")
    await ann.wait_for(lambda: len(items(ann)) == 3)

    # The link drops without notice: slack_sdk reconnects by itself.
    await sockets.drop()
    await bot.emu.wait_for(lambda: sockets.opened == 3 and len(sockets.connections) == 1)
    await ann.press(open_items(ann)[0], "unsure")
    await ann.wait_for(lambda: "That's everything for now" in ann.messages[-1].text)

    assert all(e.acked for e in sockets.envelopes)
    assert await bot.answers() == [
        ("slack:T0001/U1", "m1", "spam"),
        ("slack:T0001/U1", "m2", "ham"),
        ("slack:T0001/U1", "m3", "unsure"),
    ]


async def test_redelivered_envelopes_count_once(stack: Any, tmp_path: Path) -> None:
    faults = SlackFaults()
    bot = await socket_bot(
        stack,
        tmp_path,
        NOTES,
        project(),
        faults=faults,
        items={
            "notes": [{"id": "n1", "text": "Describe 1"}, {"id": "n2", "text": "Describe 2"}],
            "triage": MESSAGES[:1],
        },
    )
    sockets = bot.emu.sockets
    sockets.ack_timeout = 0.5  # a lost ack costs this long
    ann = bot.emu.user("U1")
    await ann.slash("/label", "start notes")
    await ann.wait_for(lambda: open_items(ann))

    # Slack sends the same envelope again: the same DM answer must count once.
    assert (await ann.say("a red bus")).status == 200
    await ann.wait_for(lambda: len(items(ann)) == 2)
    said = sockets.envelopes[-1]
    again = await sockets.send(
        said.type,
        said.payload,
        envelope_id=said.envelope_id,
        retry_attempt=1,
        retry_reason="timeout",
    )
    assert again.acked

    # The bot's ack is lost: Slack retries the event (same ids, retry_attempt 1) after the
    # ack timeout, the bot acks the retry, and the answer still counts once.
    faults.lose_next_acks(1)
    assert (await ann.say("two dogs")).status == 200
    lost, retried = sockets.envelopes[-2:]
    assert (lost.acked, retried.acked) == (False, True)
    assert (retried.envelope_id, retried.retry_attempt, retried.retry_reason) == (
        lost.envelope_id,
        1,
        "timeout",
    )
    assert retried.payload["event_id"] == lost.payload["event_id"]
    await ann.wait_for(lambda: not open_items(ann))
    await asyncio.sleep(0.2)
    assert await bot.answers() == [
        ("slack:T0001/U1", "n1", "a red bus"),
        ("slack:T0001/U1", "n2", "two dogs"),
    ]

    # A press whose ack is lost fails for the person (Slack does not retry interactions),
    # though the answer was recorded; pressing again changes nothing.
    await ann.slash("/label", "start triage")
    item = (await ann.wait_for(lambda: open_items(ann)))[0]
    faults.lose_next_acks(1)
    failed = await ann.press(item, "spam")
    assert (failed.status, failed.body) == (504, "operation_timeout")
    await ann.wait_for(lambda: "✅ spam" in shown(item))
    pressed = sockets.envelopes[-1]
    resent = await sockets.send(pressed.type, pressed.payload, envelope_id=pressed.envelope_id)
    assert resent.acked
    await ann.wait_for(lambda: any("Already recorded" in m.text for m in ann.ephemerals))
    assert [a for a in await bot.answers() if a[1] == "m1"] == [("slack:T0001/U1", "m1", "spam")]


async def test_restart_reconnects_and_old_buttons_work(stack: Any, tmp_path: Path) -> None:
    bot = await socket_bot(stack, tmp_path, items={"triage": MESSAGES})
    ann = await joined(bot, "U1")
    first = open_items(ann)[0]
    await bot.transport.stop()
    await bot.emu.wait_for(lambda: not bot.emu.sockets.connections)
    down = await ann.press(first, "ham")  # nobody is connected: Slack cannot deliver it
    assert (down.status, down.body) == (503, "dispatch_failed")

    again = SlackTransport(
        bot.service,
        Reports(bot.service),
        bot.transport.settings,
        bot.emu.token,
        SECRET,
        app_token=bot.emu.app_token,
        media_cache=tmp_path / "cache",
    )
    await again.start()
    stack.push_async_callback(again.stop)
    assert bot.emu.sockets.opened == 2
    assert (await ann.press(first, "ham")).status == 200
    await ann.wait_for(lambda: "✅ ham" in shown(first) and len(items(ann)) == 2)
    assert await bot.answers() == [("slack:T0001/U1", "m1", "ham")]


async def test_wrong_app_token_fails_start_clearly(tmp_path: Path) -> None:
    async with SlackApiEmulator(socket_mode=True) as emu, Database(tmp_path / "db.sqlite") as db:
        config = Config(project=[project()], slack=Slack(port=0, base_url=emu.base_url))
        service = LabelingService(db, config)
        await service.start()
        assert config.slack is not None
        for token, what in (
            (emu.token, "it is a bot token"),
            ("xapp-1-A0001-revoked", "does not accept"),
        ):
            transport = SlackTransport(
                service,
                Reports(service),
                config.slack,
                emu.token,
                SECRET,
                app_token=token,
                media_cache=tmp_path / "cache",
            )
            with pytest.raises(ConfigError) as refused:
                await asyncio.wait_for(transport.start(), timeout=5)
            await transport.stop()
            message = str(refused.value)
            assert "CHATLABEL_SLACK_APP_TOKEN" in message and "invalid_auth" in message
            assert what in message and "xapp-" in message and token not in message
        assert [c.error for c in emu.calls_to("apps.connections.open")] == ["invalid_auth"] * 2
        assert emu.sockets.opened == 0


async def test_no_secret_reaches_the_logs(
    stack: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bot = await socket_bot(stack, tmp_path, items={"triage": MESSAGES})
    ann = await joined(bot, "U1")
    await bot.emu.sockets.disconnect(close_after=0.1)
    await bot.emu.wait_for(lambda: bot.emu.sockets.opened == 2)
    await ann.press(open_items(ann)[0], "spam")
    await ann.wait_for(lambda: len(items(ann)) == 2)

    tickets = [
        parse_qs(urlparse(c.response["url"]).query)["ticket"][0]
        for c in bot.emu.calls_to("apps.connections.open")
    ]
    response_urls = [e.payload["response_url"] for e in bot.emu.sockets.envelopes]
    assert len(tickets) == 2 and len(response_urls) == 2
    assert any("Received message" in r.getMessage() for r in caplog.records)  # DEBUG was on
    for secret in (
        bot.emu.app_token,
        bot.emu.token,
        SECRET,
        bot.emu.verification_token,
        *tickets,
        *response_urls,
    ):
        assert secret not in caplog.text


def test_log_redaction_keeps_the_rest_of_the_line() -> None:
    from chatlabel.mechanics.redact import REDACTOR as REDACT

    record = logging.LogRecord(
        "x",
        logging.DEBUG,
        __file__,
        1,
        "got %s",
        (
            '{"token": "vt", "response_url": "http://h/r/abc", "ok": true} '
            "url ws://h/link/?ticket=T1&app_id=A1 xoxb-1-2 xapp-1-A-3",
        ),
        None,
    )
    assert REDACT.filter(record)
    assert record.getMessage() == (
        'got {"token": "(redacted)", "response_url": "(redacted)", "ok": true} '
        "url ws://h/link/?ticket=(redacted)&app_id=A1 xoxb-(redacted) xapp-(redacted)"
    )


async def test_a_link_that_dies_quietly_is_replaced(stack: Any, tmp_path: Path) -> None:
    """No close, no `disconnect`: the link just stops carrying anything (a NAT forgot it). The
    bot notices its pings go unanswered and opens a new link; presses work again."""
    bot = await make_bot(stack, tmp_path, items={"triage": MESSAGES}, socket_mode=True)
    sockets = bot.emu.sockets
    ann = await joined(bot, "U1")
    bot.transport.socket_ping_interval = 0.2  # takes effect on the next link: restart it
    await bot.transport.stop()
    await bot.emu.wait_for(lambda: not sockets.connections)
    again = SlackTransport(
        bot.service,
        Reports(bot.service),
        bot.transport.settings,
        bot.emu.token,
        SECRET,
        app_token=bot.emu.app_token,
        media_cache=tmp_path / "cache",
    )
    again.socket_ping_interval = 0.2
    await again.start()
    stack.push_async_callback(again.stop)
    opened = sockets.opened
    sockets.stall()
    stalled = time.monotonic()
    await bot.emu.wait_for(lambda: sockets.opened > opened, timeout=10)
    noticed = time.monotonic() - stalled
    assert (await ann.press(open_items(ann)[0], "spam")).status == 200
    await ann.wait_for(lambda: len(items(ann)) == 2)
    print(f"\nSocket Mode: a quietly dead link replaced after {noticed:.2f} s (pings every 0.2 s)")
    assert noticed < 4 * 0.2 + 2.0, noticed  # four missed pings, and the time to reconnect
