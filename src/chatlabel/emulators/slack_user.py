"""Simulated Slack users: they reach the bot exactly as Slack would.

That is signed HTTP requests to the bot's request URL, or envelopes over Socket Mode when the
emulator has it on; what the person does and sees is the same either way.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode

from chatlabel.emulators.slack_model import (
    JSON,
    ApiFailure,
    SlackEmulatorError,
    SlackMessage,
    find_element,
    find_options,
    interactive_elements,
)

if TYPE_CHECKING:
    from chatlabel.emulators.slack import SlackApiEmulator

T = TypeVar("T")
FORM = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class BotResponse:
    """What the bot answered to a simulated request.

    Over HTTP, its response. Over Socket Mode, its ack read as the same reply (status 200; a
    payload of only `{"text": ...}` reads as a text body, as Bolt wraps a text reply), or 503
    `dispatch_failed` (no connection open) / 504 `operation_timeout` (not acked in time).
    """

    status: int
    body: str
    content_type: str

    @property
    def is_json(self) -> bool:
        """True if the body is a JSON document."""
        return self.content_type == "application/json" and bool(self.body)

    def json(self) -> Any:
        """The body decoded as JSON."""
        return json.loads(self.body)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """Slack's `X-Slack-Signature`: v0= HMAC-SHA256 of `v0:{timestamp}:{body}`."""
    base = f"v0:{timestamp}:".encode() + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


class SlackSimUser:
    """A simulated person in the workspace who talks to the bot as Slack delivers requests."""

    def __init__(
        self,
        emulator: SlackApiEmulator,
        user_id: str,
        name: str,
        team_id: str,
        *,
        timestamp: int | None = None,
        secret: str | None = None,
    ) -> None:
        self.emulator = emulator
        self.id = user_id
        self.name = name
        self.team_id = team_id
        self._timestamp = timestamp
        self._secret = secret

    def __repr__(self) -> str:
        return f"SlackSimUser({self.id!r}, name={self.name!r})"

    def with_signature(
        self, *, timestamp: int | None = None, secret: str | None = None
    ) -> SlackSimUser:
        """The same user, signing requests with this timestamp and/or secret (to forge them).

        Only for HTTP: Socket Mode requests are not signed, and only Slack can send them.
        """
        return type(self)(
            self.emulator, self.id, self.name, self.team_id, timestamp=timestamp, secret=secret
        )

    # ---- what the user sees -------------------------------------------------------------------

    @property
    def dm_channel(self) -> str:
        """The id of the user's direct-message channel with the bot."""
        return "D" + self.id

    @property
    def messages(self) -> list[SlackMessage]:
        """The bot's messages in the user's DM, in their current state, oldest first."""
        return [
            m for m in self.emulator.history(self.dm_channel) if m.user == self.emulator.bot_user_id
        ]

    @property
    def last_message(self) -> SlackMessage | None:
        """The bot's latest message in the user's DM, if any."""
        messages = self.messages
        return messages[-1] if messages else None

    @property
    def ephemerals(self) -> list[SlackMessage]:
        """Ephemeral messages shown to this user (in any channel), oldest first."""
        return list(self.emulator.workspace.ephemerals.get(self.id, []))

    @property
    def home_view(self) -> JSON | None:
        """The App Home view last published for this user."""
        return self.emulator.workspace.home_views.get(self.id)

    @property
    def views(self) -> list[JSON]:
        """The modal views open for this user, bottom of the stack first."""
        return list(self.emulator.workspace.modals.get(self.id, []))

    def describe(self) -> str:
        """A readable summary of what the user sees, for failure messages."""
        lines = [f"{self.id} sees:"]
        for label, messages in (("dm", self.messages), ("ephemeral", self.ephemerals)):
            lines += [
                f"  {label} {m.ts} {m.text[:60]!r} buttons={m.button_texts}" for m in messages
            ]
        lines.append(
            f"  home view: {'yes' if self.home_view else 'no'}; open modals: {len(self.views)}"
        )
        return "\n".join(lines)

    async def wait_for(self, predicate: Callable[[], T], timeout: float = 5.0) -> T:  # noqa: ASYNC109
        """Wait until `predicate()` is truthy (re-checked on every change); return its value."""
        return await self.emulator.wait_for(predicate, timeout, describe=self.describe)

    # ---- what the user does ---------------------------------------------------------------------

    async def slash(
        self, command: str, text: str = "", *, channel: str | None = None
    ) -> BotResponse:
        """Type a slash command (in the DM with the bot unless `channel` is given)."""
        ws = self.emulator.workspace
        channel_id = channel or self.dm_channel
        responder = ws.response_url(self.id, channel_id)
        form = {
            "token": self.emulator.verification_token,
            # Under Enterprise Grid: the workspace it was typed in, not the person's own.
            "team_id": ws.team_id if self.emulator.enterprise_id else self.team_id,
            "team_domain": ws.team_domain,
            "channel_id": channel_id,
            "channel_name": ws.channel(channel_id).name,
            "user_id": self.id,
            "user_name": self.name,
            "command": command,
            "text": text,
            "api_app_id": ws.app_id,
            **self._enterprise_form(),
            "response_url": responder.url,
            "trigger_id": ws.issue_trigger(self.id),
        }
        reply = await self._send("slash_commands", form)
        shown = reply.json() if reply.is_json else {"text": reply.body.strip()}
        if reply.status == 200 and (shown.get("text") or shown.get("blocks")):
            # Slack shows a command's immediate reply to the user, like a response_url post.
            try:
                ws.apply_response(responder, shown)
            except ApiFailure as failure:
                raise SlackEmulatorError(
                    f"Slack would reject the reply to {command}: {failure.error}"
                ) from None
            await self.emulator.notify()
        return reply

    async def press(
        self,
        target: SlackMessage | Mapping[str, Any],
        action: str,
        *,
        selected: Sequence[str] | None = None,
    ) -> BotResponse:
        """Click a button (by action_id or text) or set checkboxes (`selected` values).

        `target` is a message or a view (App Home or modal); only elements in its current
        blocks can be pressed.
        """
        if isinstance(target, SlackMessage):
            message = self._current_message(target)
            blocks, where = message.blocks, self._message_fields(message)
        else:
            view = self._current_view(target)
            blocks = view["blocks"]
            where = {
                "container": {"type": "view", "view_id": view["id"]},
                "view": copy.deepcopy(view),
            }
        act = _action(*find_element(blocks, action), selected)
        return await self.press_raw(
            {
                "type": "block_actions",
                **self._sender(),
                "state": {"values": _checkbox_state(blocks, act)},
                "actions": [act],
                **where,
            }
        )

    async def press_raw(self, payload: Mapping[str, Any]) -> BotResponse:
        """Send any interaction payload (forged, stale, ...) as Slack sends interactions."""
        return await self._send("interactive", dict(payload))

    async def say(self, text: str, *, thread: SlackMessage | None = None) -> BotResponse:
        """Write a message in the DM with the bot (a `message` event, channel_type `im`); with
        `thread`, as a reply in that message's thread."""
        thread_ts = None if thread is None else (thread.thread_ts or thread.ts)
        msg = self.emulator.workspace.post_user_message(self.id, self.dm_channel, text, thread_ts)
        await self.emulator.notify()
        event: JSON = {
            "type": "message",
            "channel": self.dm_channel,
            "user": self.id,
            "text": text,
            "ts": msg.ts,
            "event_ts": msg.ts,
            "channel_type": "im",
            "team": self.team_id,
            "client_msg_id": secrets.token_hex(16),
        }
        if thread_ts is not None:
            event["thread_ts"] = thread_ts
        return await self.send_event(event)

    async def edit(self, message: SlackMessage, text: str) -> BotResponse:
        """Edit a message this user wrote in the DM (a `message_changed` event)."""
        if message.user != self.id:
            raise SlackEmulatorError(f"{self.id} can only edit their own messages")
        before = message.to_dict()
        message.text = text
        message.edited_ts = self.emulator.workspace.next_ts()
        await self.emulator.notify()
        return await self.send_event(
            {
                "type": "message",
                "subtype": "message_changed",
                "hidden": True,
                "channel": self.dm_channel,
                "channel_type": "im",
                "message": message.to_dict(),
                "previous_message": before,
                "event_ts": message.edited_ts,
                "ts": message.edited_ts,
            }
        )

    async def open_home(self) -> BotResponse:
        """Open the bot's App Home tab (an `app_home_opened` event)."""
        event: JSON = {
            "type": "app_home_opened",
            "user": self.id,
            "channel": self.dm_channel,
            "tab": "home",
            "event_ts": f"{time.time():.6f}",
        }
        if self.home_view is not None:
            event["view"] = copy.deepcopy(self.home_view)
        return await self.send_event(event)

    async def send_event(
        self, event: Mapping[str, Any], *, event_id: str | None = None
    ) -> BotResponse:
        """Deliver an event in the Events API `event_callback` envelope (`event_id`: the id of
        one delivered before, to deliver it again)."""
        ws = self.emulator.workspace
        grid = self.emulator.enterprise_id
        envelope = {
            "token": self.emulator.verification_token,
            "team_id": ws.team_id if grid else self.team_id,
            "api_app_id": ws.app_id,
            "event": dict(event),
            "type": "event_callback",
            "event_id": event_id or ws.new_id("Ev"),
            "event_time": int(time.time()),
            "is_ext_shared_channel": False,
            "authorizations": [
                {
                    "enterprise_id": grid,
                    # An org-wide install is authorized for the organisation, no workspace.
                    "team_id": None if grid else self.team_id,
                    "user_id": ws.bot_user_id,
                    "is_bot": True,
                    "is_enterprise_install": bool(grid),
                }
            ],
        }
        if grid:
            envelope["enterprise_id"] = grid
        return await self._send("events_api", envelope)

    async def submit_view(
        self, view: Mapping[str, Any], values: Mapping[str, Mapping[str, Any]]
    ) -> BotResponse:
        """Submit an open modal; `values` is {block_id: {action_id: value or state dict}}."""
        current = self._current_view(view)
        if current["type"] != "modal":
            raise SlackEmulatorError("only a modal can be submitted")
        inputs = {
            (bid, el.get("action_id")): el for bid, el in interactive_elements(current["blocks"])
        }
        state: JSON = {}
        for block_id, by_action in values.items():
            for action_id, value in by_action.items():
                element = inputs.get((block_id, action_id))
                if element is None:
                    raise SlackEmulatorError(
                        f"no element {block_id}/{action_id} in the view; has {sorted(inputs)}"
                    )
                entry = {"value": value} if isinstance(value, str) else dict(value)
                state.setdefault(block_id, {})[action_id] = {"type": element["type"], **entry}
        reply = await self.press_raw(
            {
                "type": "view_submission",
                **self._sender(),
                "response_urls": [],
                "view": {**copy.deepcopy(current), "state": {"values": state}},
            }
        )
        try:
            self.emulator.workspace.after_submission(
                self.id, current["id"], reply.status, reply.json() if reply.is_json else None
            )
        except ApiFailure as failure:
            raise SlackEmulatorError(
                f"Slack would reject the submission reply: {failure.error} {failure.detail or ''}"
            ) from None
        await self.emulator.notify()
        return reply

    # ---- plumbing -----------------------------------------------------------------------------

    def _sender(self) -> JSON:
        """The fields every interaction payload carries about who sent it and from where."""
        ws = self.emulator.workspace
        grid = self.emulator.enterprise_id
        user: JSON = {
            "id": self.id,
            "username": self.name,
            "name": self.name,
            "team_id": self.team_id,
        }
        if grid:
            user["enterprise_id"] = grid
        return {
            "user": user,
            # Under Enterprise Grid with an org-wide install, `team` is null in interactions
            # (the user's own workspace is still in user.team_id).
            "team": None if grid else {"id": self.team_id, "domain": ws.team_domain},
            "api_app_id": ws.app_id,
            "token": self.emulator.verification_token,
            "trigger_id": ws.issue_trigger(self.id),
            "enterprise": {"id": grid, "name": "Emulated Org"} if grid else None,
            "is_enterprise_install": bool(grid),
        }

    def _enterprise_form(self) -> JSON:
        """A slash command's enterprise fields."""
        grid = self.emulator.enterprise_id
        if not grid:
            return {"is_enterprise_install": "false"}
        return {
            "is_enterprise_install": "true",
            "enterprise_id": grid,
            "enterprise_name": "Emulated Org",
        }

    def _message_fields(self, message: SlackMessage) -> JSON:
        """container, channel, message and response_url of a click on `message`."""
        channel = self.emulator.workspace.channel(message.channel)
        fields: JSON = {
            "container": {
                "type": "message",
                "message_ts": message.ts,
                "channel_id": channel.id,
                "is_ephemeral": message.ephemeral,
            },
            "channel": {"id": channel.id, "name": channel.name},
            "response_url": self.emulator.workspace.response_url(
                self.id, channel.id, message.ts, message.ephemeral
            ).url,
        }
        if not message.ephemeral:  # Slack sends no message for ephemeral ones
            fields["message"] = message.to_dict()
        return fields

    def _current_message(self, message: SlackMessage) -> SlackMessage:
        if message.ephemeral:
            current = next((m for m in self.ephemerals if m.ts == message.ts), None)
        else:
            channel = self.emulator.workspace.channel(message.channel)
            if channel.im_user not in (None, self.id):
                raise SlackEmulatorError(f"{self.id} cannot see channel {channel.id}")
            current = channel.messages.get(message.ts)
        if current is None:
            raise SlackEmulatorError(f"message {message.ts} in {message.channel} is gone")
        return current

    def _current_view(self, view: Mapping[str, Any]) -> JSON:
        candidates = [*self.views, *([self.home_view] if self.home_view else [])]
        current = next((v for v in candidates if v["id"] == view.get("id")), None)
        if current is None:
            raise SlackEmulatorError(f"view {view.get('id')!r} is not open for {self.id}")
        return current

    async def _send(self, kind: str, payload: JSON) -> BotResponse:
        """Deliver a request of one Socket Mode envelope type, over the socket or HTTP."""
        if self.emulator.socket_mode:
            if self._timestamp is not None or self._secret is not None:
                raise SlackEmulatorError(
                    "Socket Mode requests are not signed: with_signature() "
                    "forges HTTP requests only"
                )
            return await self.emulator.sockets.deliver(kind, payload)
        if kind == "slash_commands":
            return await self._post(urlencode(payload).encode(), FORM)
        if kind == "interactive":
            return await self._post(urlencode({"payload": json.dumps(payload)}).encode(), FORM)
        return await self._post(json.dumps(payload).encode(), "application/json")

    async def _post(self, body: bytes, content_type: str) -> BotResponse:
        url, secret, session = self.emulator.bot_endpoint()
        timestamp = str(self._timestamp if self._timestamp is not None else int(time.time()))
        headers = {
            "Content-Type": content_type,
            "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
            "X-Slack-Request-Timestamp": timestamp,
            "X-Slack-Signature": sign(
                self._secret if self._secret is not None else secret, timestamp, body
            ),
        }
        async with session.post(url, data=body, headers=headers) as resp:
            return BotResponse(resp.status, await resp.text(), resp.content_type)


def _action(block_id: str, element: JSON, selected: Sequence[str] | None) -> JSON:
    """The `actions[0]` entry Slack sends for a click on this element."""
    kind = element.get("type")
    act: JSON = {
        "type": kind,
        "action_id": element["action_id"],
        "block_id": block_id,
        "action_ts": f"{time.time():.6f}",
    }
    if kind == "button":
        if selected is not None:
            raise SlackEmulatorError("selected= is only for checkboxes")
        act["text"] = copy.deepcopy(element["text"])
        act.update({k: element[k] for k in ("value", "style") if k in element})
    elif kind == "checkboxes":
        if selected is None:
            raise SlackEmulatorError("pass selected=[option values] to press checkboxes")
        act["selected_options"] = find_options(element, list(selected))
    else:
        raise SlackEmulatorError(f"press supports buttons and checkboxes, not {kind}")
    return act


def _checkbox_state(blocks: list[JSON], act: JSON) -> JSON:
    """`state.values` for the checkboxes in `blocks`: the pressed one as set, others initial."""
    values: JSON = {}
    for block_id, element in interactive_elements(blocks):
        if element.get("type") != "checkboxes":
            continue
        pressed = (block_id, element["action_id"]) == (act["block_id"], act["action_id"])
        chosen = act["selected_options"] if pressed else element.get("initial_options", [])
        values.setdefault(block_id, {})[element["action_id"]] = {
            "type": "checkboxes",
            "selected_options": copy.deepcopy(chosen),
        }
    return values
