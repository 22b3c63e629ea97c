"""The loopback Slack fake, driven by the real slack_sdk client and a real Bolt app."""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from chatlabel.emulators.slack import (
    SlackApiEmulator,
    SlackEmulatorError,
    SlackFaults,
    SlackLimits,
)
from chatlabel.emulators.slack_model import METHOD_SPECS

pytestmark = pytest.mark.timeout(20)

SECRET = "test-signing-secret"
# The Slack method references (MIT, from slack-api-ref) ship with the tests: see specs/README.md.
SPECS = Path(__file__).resolve().parent / "specs"


def button(text: str, action_id: str, value: str) -> dict[str, Any]:
    return {
        "type": "button",
        "text": {"type": "plain_text", "text": text},
        "action_id": action_id,
        "value": value,
    }


def item_blocks(text: str) -> list[dict[str, Any]]:
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": text}},
        {
            "type": "actions",
            "elements": [button("Yes", "answer:yes", "yes"), button("No", "answer:no", "no")],
        },
    ]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # SLACK_* switch Bolt's modes; slack_sdk sends loopback traffic through an env proxy.
    for key in list(os.environ):
        if key.startswith("SLACK_") or key.lower() in ("http_proxy", "https_proxy"):
            monkeypatch.delenv(key)


@pytest.fixture
async def emu() -> AsyncIterator[SlackApiEmulator]:
    async with SlackApiEmulator() as emulator:
        yield emulator


@pytest.fixture
def client(emu: SlackApiEmulator) -> AsyncWebClient:
    return AsyncWebClient(token=emu.token, base_url=emu.base_url)


@pytest.fixture
async def app(emu: SlackApiEmulator) -> AsyncIterator[AsyncApp]:
    """A real Bolt app on an embedded aiohttp server, wired to the fake both ways."""
    bolt = AsyncApp(
        client=AsyncWebClient(token=emu.token, base_url=emu.base_url), signing_secret=SECRET
    )

    async def handle(request: web.Request) -> web.Response:
        return await to_aiohttp_response(await bolt.async_dispatch(await to_bolt_request(request)))

    server = web.Application()
    server.router.add_post("/slack/events", handle)
    runner = web.AppRunner(server, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        emu.configure_bot(f"http://127.0.0.1:{runner.addresses[0][1]}/slack/events", SECRET)
        yield bolt
    finally:
        await runner.cleanup()


async def test_post_update_delete_round_trip(emu: SlackApiEmulator, client: AsyncWebClient) -> None:
    ann = emu.user("U1", name="ann")
    opened = await client.conversations_open(users="U1")
    assert opened["channel"]["id"] == ann.dm_channel == "DU1"

    first = await client.chat_postMessage(channel="DU1", text="Item 1", blocks=item_blocks("*1*"))
    second = await client.chat_postMessage(channel="U1", text="Item 2")  # a user id means the DM
    assert second["channel"] == "DU1"
    assert float(second["ts"]) > float(first["ts"])
    assert [m.ts for m in ann.messages] == [first["ts"], second["ts"]]
    assert ann.messages[0].button_texts == ["Yes", "No"]
    assert all(b["block_id"] for b in ann.messages[0].blocks)  # Slack fills in block ids

    updated = await client.chat_update(channel="DU1", ts=first["ts"], text="Item 1: yes", blocks=[])
    assert updated["message"]["text"] == "Item 1: yes"
    assert ann.messages[0].blocks == [] and ann.messages[0].edited_ts
    assert emu.calls_to("chat.update")[0].args["ts"] == first["ts"]

    await client.chat_delete(channel="DU1", ts=second["ts"])
    assert [m.text for m in ann.messages] == ["Item 1: yes"]
    with pytest.raises(SlackApiError) as gone:
        await client.chat_update(channel="DU1", ts=second["ts"], text="again")
    assert gone.value.response["error"] == "message_not_found"


async def test_method_tiers_and_channel_posting_are_limited_like_slack(
    emu: SlackApiEmulator, client: AsyncWebClient
) -> None:
    emu.user("U1")
    emu.user("U2")
    now = [0.0]
    emu.limits = SlackLimits(clock=lambda: now[0])
    for _ in range(3):  # about one message a second per channel, in bursts of 3
        await client.chat_postMessage(channel="DU1", text="hi")
    with pytest.raises(SlackApiError) as posting:
        await client.chat_postMessage(channel="DU1", text="one too many")
    assert posting.value.response.status_code == 429
    assert posting.value.response["error"] == "ratelimited"
    assert posting.value.response.headers["Retry-After"] == "3"
    await client.chat_postMessage(channel="DU2", text="another channel is fine")
    sent = await client.chat_postMessage(channel="DU2", text="x")
    for _ in range(49):  # chat.update is Tier 3: 50 a minute per workspace
        await client.chat_update(channel="DU2", ts=sent["ts"], text="y")
    await client.chat_update(channel="DU2", ts=sent["ts"], text="z")
    with pytest.raises(SlackApiError) as updating:
        await client.chat_update(channel="DU2", ts=sent["ts"], text="one too many")
    assert updating.value.response.headers["Retry-After"] == "60"
    now[0] = 61.0  # a minute later the window has moved on
    await client.chat_update(channel="DU2", ts=sent["ts"], text="again")
    assert emu.limits.refused == {"chat.postMessage": 1, "chat.update": 1}


async def test_bad_blocks_are_rejected_like_slack(
    emu: SlackApiEmulator, client: AsyncWebClient
) -> None:
    ann = emu.user("U1")
    long_button = [{"type": "actions", "elements": [button("x" * 76, "a", "v")]}]
    with pytest.raises(SlackApiError) as too_long:
        await client.chat_postMessage(channel="DU1", text="t", blocks=long_button)
    assert too_long.value.response["error"] == "invalid_blocks"
    assert "75" in too_long.value.response["response_metadata"]["messages"][0]

    with pytest.raises(SlackApiError) as too_many:
        await client.chat_postMessage(channel="DU1", text="t", blocks=[{"type": "divider"}] * 51)
    assert too_many.value.response["error"] == "invalid_blocks"
    assert ann.messages == []

    home = {"type": "home", "blocks": [{"type": "divider"}] * 101}
    with pytest.raises(SlackApiError) as big_view:
        await client.views_publish(user_id="U1", view=home)
    assert big_view.value.response["error"] == "invalid_arguments"
    assert ann.home_view is None


async def test_auth_and_channel_errors(emu: SlackApiEmulator, client: AsyncWebClient) -> None:
    with pytest.raises(SlackApiError) as bad_token:
        await AsyncWebClient(token="xoxb-wrong", base_url=emu.base_url).auth_test()
    assert bad_token.value.response["error"] == "invalid_auth"
    with pytest.raises(SlackApiError) as no_token:
        await AsyncWebClient(base_url=emu.base_url).auth_test()
    assert no_token.value.response["error"] == "not_authed"
    with pytest.raises(SlackApiError) as socket_mode:
        await AsyncWebClient(base_url=emu.base_url).apps_connections_open(app_token=emu.app_token)
    assert socket_mode.value.response["error"] == "forbidden_team"
    with pytest.raises(SlackApiError) as no_channel:
        await client.chat_postMessage(channel="C404", text="hi")
    assert no_channel.value.response["error"] == "channel_not_found"
    with pytest.raises(SlackApiError) as no_user:
        await client.users_info(user="U404")
    assert no_user.value.response["error"] == "user_not_found"

    emu.user("U1", name="ann")
    assert (await client.users_info(user="U1"))["user"]["name"] == "ann"
    assert (await client.auth_test())["user_id"] == emu.bot_user_id
    assert [c.error for c in emu.calls] == [
        "invalid_auth",
        "not_authed",
        "forbidden_team",
        "channel_not_found",
        "user_not_found",
        None,
        None,
    ]


async def test_form_bodies_token_param_and_missing_args(emu: SlackApiEmulator) -> None:
    emu.user("U1", name="ann")
    api = emu.base_url
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{api}chat.postMessage",
            data={
                "token": emu.token,
                "channel": "DU1",
                "text": "form",
                "blocks": json.dumps(item_blocks("form")),
            },
        ) as posted:
            assert (await posted.json())["ok"] is True
        async with session.get(
            f"{api}users.info", params={"token": emu.token, "user": "U1"}
        ) as info:
            assert (await info.json())["user"]["name"] == "ann"
        async with session.post(
            f"{api}chat.postMessage",
            json={"text": "no channel"},
            headers={"Authorization": f"Bearer {emu.token}"},
        ) as missing:
            assert (await missing.json())["error"] == "channel_not_found"
        async with session.post(
            f"{api}views.publish",
            json={"view": {"type": "home"}},
            headers={"Authorization": f"Bearer {emu.token}"},
        ) as no_user:
            assert (await no_user.json())["error"] == "invalid_arguments"
    assert emu.history("DU1")[0].button_texts == ["Yes", "No"]


async def test_response_url_replace_post_delete_and_use_limit(
    emu: SlackApiEmulator, client: AsyncWebClient
) -> None:
    ann = emu.user("U1")
    posted = await client.chat_postMessage(channel="DU1", text="Item", blocks=item_blocks("I"))
    url = emu.workspace.response_url("U1", "DU1", posted["ts"]).url
    statuses = []
    async with aiohttp.ClientSession() as session:
        for payload in (
            {"replace_original": True, "text": "Answered"},
            {"response_type": "in_channel", "text": "Everyone sees this"},
            {"text": "Only you see this"},
            {"delete_original": True},
            {"text": "fifth"},
            {"text": "sixth"},
        ):
            async with session.post(url, json=payload) as reply:
                statuses.append(reply.status)
    assert statuses == [200, 200, 200, 200, 200, 404]
    assert [m.text for m in ann.messages] == ["Everyone sees this"]
    assert [m.text for m in ann.ephemerals] == ["Only you see this", "fifth"]


async def test_rate_limit_then_success_with_retry_handler(
    emu: SlackApiEmulator, client: AsyncWebClient
) -> None:
    emu.user("U1")
    emu.faults = SlackFaults(retry_after=1)
    emu.faults.ratelimit_next(1)
    with pytest.raises(SlackApiError) as limited:
        await client.chat_postMessage(channel="DU1", text="no retry handler")
    assert limited.value.response.status_code == 429
    assert limited.value.response.headers["Retry-After"] == "1"
    assert limited.value.response["error"] == "ratelimited"

    emu.faults.ratelimit_next(1)
    retrying = AsyncWebClient(
        token=emu.token,
        base_url=emu.base_url,
        retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=1)],
    )
    started = time.monotonic()
    sent = await retrying.chat_postMessage(channel="DU1", text="retried")
    assert sent["ok"] and time.monotonic() - started >= 1  # it honoured Retry-After
    assert [c.status for c in emu.calls_to("chat.postMessage")] == [429, 429, 200]
    assert [m.text for m in emu.history("DU1")] == ["retried"]


def test_random_rate_limits_are_reproducible() -> None:
    def pattern() -> list[bool]:
        faults = SlackFaults(rate_429=0.5, seed=7, methods=frozenset({"chat.postMessage"}))
        return [faults.should_ratelimit("chat.postMessage") for _ in range(40)]

    assert pattern() == pattern()
    assert 5 < sum(pattern()) < 35
    assert not SlackFaults(rate_429=1.0, methods=frozenset()).should_ratelimit("auth.test")


async def test_files_upload_v2_through_the_fake(
    emu: SlackApiEmulator, client: AsyncWebClient
) -> None:
    ann = emu.user("U1")
    data = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40
    result = await client.files_upload_v2(
        channel="DU1", file=data, filename="item.png", title="Item 7", initial_comment="Label this"
    )
    file_id = result["file"]["id"]
    assert result["file"]["title"] == "Item 7"
    stored = emu.files[file_id]
    assert stored.content == data and stored.mimetype == "image/png"
    assert [c.method for c in emu.calls] == [
        "files.getUploadURLExternal",
        "files.completeUploadExternal",
    ]
    shared = ann.last_message
    assert shared is not None and shared.text == "Label this"
    assert shared.files[0]["id"] == file_id and shared.files[0]["size"] == len(data)
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            shared.files[0]["url_private"], headers={"Authorization": f"Bearer {emu.token}"}
        ) as download,
    ):
        assert await download.read() == data


async def test_signed_slash_command_reaches_bolt(emu: SlackApiEmulator, app: AsyncApp) -> None:
    seen: list[dict[str, Any]] = []

    @app.command("/label")
    async def on_label(ack: Any, command: dict[str, Any], respond: Any) -> None:
        seen.append(command)
        await ack("Working on it")
        await respond(f"Done: {command['text']}")

    ann = emu.user("U1", name="ann")
    reply = await ann.slash("/label", "start")
    assert reply.status == 200
    await ann.wait_for(lambda: len(ann.ephemerals) == 2)
    # The ack's body and the respond() post race, as they do on Slack.
    assert sorted(m.text for m in ann.ephemerals) == ["Done: start", "Working on it"]
    command = seen[0]
    assert (command["user_id"], command["user_name"], command["channel_id"]) == ("U1", "ann", "DU1")
    assert command["team_id"] == emu.team_id and command["trigger_id"]
    assert emu.response_posts[0].payload["text"] == "Done: start"


async def test_bad_or_stale_signatures_get_401(emu: SlackApiEmulator, app: AsyncApp) -> None:
    seen: list[str] = []

    @app.command("/label")
    async def on_label(ack: Any, command: dict[str, Any]) -> None:
        seen.append(command["text"])
        await ack()

    ann = emu.user("U1")
    forged = await ann.with_signature(secret="not-the-secret").slash("/label", "forged")
    stale = await ann.with_signature(timestamp=int(time.time()) - 360).slash("/label", "stale")
    genuine = await ann.slash("/label", "genuine")
    assert (forged.status, stale.status, genuine.status) == (401, 401, 200)
    assert forged.json() == {"error": "invalid request"}
    assert seen == ["genuine"]


async def test_button_press_reaches_bolt_action(emu: SlackApiEmulator, app: AsyncApp) -> None:
    seen: list[dict[str, Any]] = []

    @app.action(re.compile(r"^answer:"))
    async def on_answer(
        ack: Any, body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient
    ) -> None:
        seen.append(body)
        await ack()
        await client.chat_update(
            channel=body["container"]["channel_id"],
            ts=body["container"]["message_ts"],
            text=f"You chose {action['value']}",
            blocks=[],
        )

    ann = emu.user("U1", name="ann")
    posted = await app.client.chat_postMessage(
        channel="U1", text="Spam?", blocks=item_blocks("Spam?")
    )
    reply = await ann.press(ann.messages[0], "No")
    assert reply.status == 200
    await ann.wait_for(lambda: ann.messages[0].text == "You chose no")
    assert ann.messages[0].blocks == []

    body = seen[0]
    assert body["type"] == "block_actions" and body["user"]["id"] == "U1"
    assert body["message"]["ts"] == posted["ts"] and body["container"]["is_ephemeral"] is False
    assert body["actions"][0]["action_id"] == "answer:no"
    assert body["actions"][0]["block_id"] == posted["message"]["blocks"][1]["block_id"]
    with pytest.raises(SlackEmulatorError, match="no element matching 'No'"):
        await ann.press(ann.messages[0], "No")  # the buttons are gone now


async def test_checkboxes_on_ephemeral_message(emu: SlackApiEmulator, app: AsyncApp) -> None:
    seen: list[dict[str, Any]] = []

    @app.action("tags")
    async def on_tags(ack: Any, body: dict[str, Any], respond: Any) -> None:
        seen.append(body)
        await ack()
        chosen = [o["value"] for o in body["actions"][0]["selected_options"]]
        await respond(replace_original=True, text=f"Saved {chosen}")

    ann = emu.user("U1")
    options = [{"text": {"type": "plain_text", "text": t}, "value": t} for t in "abc"]
    blocks = [
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": "Tags?"},
            "accessory": {"type": "checkboxes", "action_id": "tags", "options": options},
        }
    ]
    await app.client.chat_postEphemeral(channel="DU1", user="U1", text="Tags?", blocks=blocks)
    with pytest.raises(SlackEmulatorError, match="no option"):
        await ann.press(ann.ephemerals[0], "tags", selected=["z"])
    await ann.press(ann.ephemerals[0], "tags", selected=["a", "c"])
    await ann.wait_for(lambda: ann.ephemerals[0].text.startswith("Saved"))
    assert ann.ephemerals[0].text == "Saved ['a', 'c']"

    body = seen[0]
    assert "message" not in body and body["container"]["is_ephemeral"] is True
    assert body["actions"][0]["type"] == "checkboxes"
    block_id = body["actions"][0]["block_id"]
    assert [o["value"] for o in body["state"]["values"][block_id]["tags"]["selected_options"]] == [
        "a",
        "c",
    ]


async def test_home_tab_modal_and_free_text(emu: SlackApiEmulator, app: AsyncApp) -> None:
    notes: list[str] = []
    said: list[dict[str, Any]] = []
    modal = {
        "type": "modal",
        "callback_id": "note",
        "title": {"type": "plain_text", "text": "Note"},
        "submit": {"type": "plain_text", "text": "Save"},
        "blocks": [
            {
                "type": "input",
                "block_id": "note",
                "label": {"type": "plain_text", "text": "Note"},
                "element": {"type": "plain_text_input", "action_id": "text"},
            }
        ],
    }

    @app.event("app_home_opened")
    async def on_home(event: dict[str, Any], client: AsyncWebClient) -> None:
        await client.views_publish(
            user_id=event["user"],
            view={
                "type": "home",
                "blocks": [{"type": "actions", "elements": [button("Add note", "add_note", "n")]}],
            },
        )

    @app.action("add_note")
    async def on_add(ack: Any, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        await client.views_open(trigger_id=body["trigger_id"], view=modal)

    @app.view("note")
    async def on_note(ack: Any, view: dict[str, Any]) -> None:
        notes.append(view["state"]["values"]["note"]["text"]["value"])
        await ack()

    @app.event("message")
    async def on_message(event: dict[str, Any], say: Any) -> None:
        said.append(event)
        await say(f"Noted: {event['text']}")

    ann = emu.user("U1")
    assert (await ann.open_home()).status == 200
    home = await ann.wait_for(lambda: ann.home_view)
    assert home is not None and home["type"] == "home"
    await ann.press(home, "Add note")
    opened = await ann.wait_for(lambda: ann.views)
    assert (await ann.submit_view(opened[0], {"note": {"text": "blurry image"}})).status == 200
    assert notes == ["blurry image"] and ann.views == []
    with pytest.raises(SlackEmulatorError, match="not open"):
        await ann.submit_view(opened[0], {"note": {"text": "again"}})

    assert (await ann.say("a free-text answer")).status == 200
    await ann.wait_for(lambda: ann.last_message and ann.last_message.text.startswith("Noted"))
    assert said[0]["channel_type"] == "im" and said[0]["user"] == "U1"
    assert [m.text for m in emu.history("DU1")] == [
        "a free-text answer",
        "Noted: a free-text answer",
    ]


async def test_trigger_ids_are_single_use(emu: SlackApiEmulator, client: AsyncWebClient) -> None:
    emu.user("U1")
    trigger = emu.workspace.issue_trigger("U1")
    modal = {
        "type": "modal",
        "title": {"type": "plain_text", "text": "M"},
        "blocks": [{"type": "divider"}],
    }
    await client.views_open(trigger_id=trigger, view=modal)
    for bad, error in ((trigger, "exchanged_trigger_id"), ("1.2.nope", "invalid_trigger_id")):
        with pytest.raises(SlackApiError) as failed:
            await client.views_open(trigger_id=bad, view=modal)
        assert failed.value.response["error"] == error


async def test_wait_for_times_out_with_what_the_user_sees(
    emu: SlackApiEmulator, client: AsyncWebClient
) -> None:
    ann = emu.user("U1")
    await client.chat_postMessage(channel="DU1", text="Item 1", blocks=item_blocks("Item 1"))
    with pytest.raises(TimeoutError, match=r"(?s)U1 sees:.*'Item 1' buttons=\['Yes', 'No'\]"):
        await ann.wait_for(lambda: len(ann.messages) == 2, timeout=0.05)


def test_method_table_matches_slack_reference() -> None:
    folder = SPECS / "slack-methods"
    assert SlackApiEmulator().implemented_methods == set(METHOD_SPECS)
    for method, spec in METHOD_SPECS.items():
        path = folder / f"{method}.json"
        assert path.is_file(), f"{method} is not a Slack method in {folder}"
        reference = json.loads(path.read_text())
        assert set(spec.required) == set(reference["args"]["required"]), method
        assert spec.tier == reference["rate_limits"], method
        assert spec.errors <= set(reference["errors"]), (
            method,
            spec.errors - set(reference["errors"]),
        )


async def test_socket_mode_link_hello_and_tickets() -> None:
    async with SlackApiEmulator(socket_mode=True) as emu, aiohttp.ClientSession() as session:
        web_api = AsyncWebClient(base_url=emu.base_url)
        for token, error in ((emu.token, "invalid_auth"), ("", "missing_args")):
            with pytest.raises(SlackApiError) as refused:
                await web_api.apps_connections_open(app_token=token)
            assert refused.value.response["error"] == error
        url = (await web_api.apps_connections_open(app_token=emu.app_token))["url"]
        assert re.fullmatch(r"ws://127\.0\.0\.1:\d+/link/\?ticket=[\w-]+&app_id=A0001", url)

        async with session.ws_connect(url) as ws:
            hello = await ws.receive_json(timeout=2)
            assert hello["type"] == "hello" and hello["num_connections"] == 1
            assert hello["connection_info"] == {"app_id": "A0001"}
            await emu.wait_for(lambda: len(emu.sockets.connections) == 1)
            with pytest.raises(aiohttp.WSServerHandshakeError) as reused:
                await session.ws_connect(url)  # a ticket opens one connection only
            assert reused.value.status == 401
        await emu.wait_for(lambda: not emu.sockets.connections)
        assert emu.sockets.opened == 1

        emu.socket_mode = False  # the app's Socket Mode switch turned off
        with pytest.raises(SlackApiError) as off:
            await web_api.apps_connections_open(app_token=emu.app_token)
        assert off.value.response["error"] == "forbidden_team"


async def test_socket_mode_envelopes_acks_retries_and_disconnect() -> None:
    async with SlackApiEmulator(socket_mode=True) as emu, aiohttp.ClientSession() as session:
        emu.sockets.ack_timeout, emu.sockets.retry_delays = 0.2, (0.01, 0.01, 0.01)
        ann = emu.user("U1")
        with pytest.raises(SlackEmulatorError, match="not signed"):
            await ann.with_signature(secret="forged").slash("/label")
        assert (await ann.slash("/label")).body == "dispatch_failed"  # nobody connected

        url = (
            await AsyncWebClient(base_url=emu.base_url).apps_connections_open(
                app_token=emu.app_token
            )
        )["url"]
        async with session.ws_connect(url) as ws:
            assert (await ws.receive_json(timeout=2))["type"] == "hello"

            async def app(
                ack: Callable[[dict[str, Any]], dict[str, Any] | None], count: int
            ) -> list[dict[str, Any]]:
                got = []
                for _ in range(count):
                    got.append(await ws.receive_json(timeout=2))
                    reply = ack(got[-1])
                    if reply is not None:
                        await ws.send_json(reply)
                return got

            # A command acked with a payload: the person sees it, as an HTTP reply body.
            errors = {"response_action": "errors", "errors": {"b": "Please write"}}
            (command,), reply = await asyncio.gather(
                app(lambda f: {"envelope_id": f["envelope_id"], "payload": errors}, 1),
                ann.slash("/label", "stats"),
            )
            assert command["type"] == "slash_commands" and command["accepts_response_payload"]
            assert command["payload"]["command"] == "/label" and command["retry_attempt"] == 0
            assert (reply.status, reply.json()) == (200, errors)

            # An event not acked is sent again, same ids, retry_attempt + 1.
            first, second = await asyncio.gather(
                app(
                    lambda f: (
                        None if f["retry_attempt"] == 0 else {"envelope_id": f["envelope_id"]}
                    ),
                    2,
                ),
                ann.say("hello"),
            )
            assert second.status == 200 and second.body == ""
            assert [(f["type"], f["retry_attempt"], f["retry_reason"]) for f in first] == [
                ("events_api", 0, ""),
                ("events_api", 1, "timeout"),
            ]
            assert first[0]["envelope_id"] == first[1]["envelope_id"]
            assert first[0]["payload"]["event"]["text"] == "hello"

            # An interaction not acked is not retried: it fails for the person.
            msg = await AsyncWebClient(token=emu.token, base_url=emu.base_url).chat_postMessage(
                channel="U1", text="Spam?", blocks=item_blocks("Spam?")
            )
            (pressed,), failed = await asyncio.gather(
                app(lambda f: None, 1), ann.press(ann.messages[-1], "Yes")
            )
            assert (failed.status, failed.body) == (504, "operation_timeout")
            assert pressed["payload"]["message"]["ts"] == msg["ts"]
            assert not pressed["accepts_response_payload"]

            await emu.sockets.disconnect("refresh_requested", close_after=0.05)
            assert (await ws.receive_json(timeout=2))["reason"] == "refresh_requested"
            assert (await ws.receive(timeout=2)).type == aiohttp.WSMsgType.CLOSE
        await emu.wait_for(lambda: not emu.sockets.connections)
        assert [e.acked for e in emu.sockets.envelopes] == [False, True, False, True, False]
