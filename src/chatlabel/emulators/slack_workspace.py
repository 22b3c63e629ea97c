"""The emulated Slack workspace: its state and what each Web API method does to it (no I/O)."""

from __future__ import annotations

import copy
import itertools
import json
import mimetypes
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chatlabel.emulators.slack_model import (
    JSON,
    ApiFailure,
    SlackEmulatorError,
    SlackFile,
    SlackMessage,
    assign_ids,
    parse_blocks,
    parse_view,
    text_and_blocks,
)

TRIGGER_TTL = 3.0  # seconds a trigger_id stays valid, as on Slack
MODAL = frozenset({"modal"})


@dataclass
class SlackChannel:
    """A public channel, or a DM between the bot and `im_user`."""

    id: str
    name: str
    im_user: str | None = None
    messages: dict[str, SlackMessage] = field(default_factory=dict)


@dataclass
class ResponseContext:
    """Where an interaction's `response_url` leads: the user, channel and original message."""

    url: str
    user_id: str
    channel_id: str
    message_ts: str | None
    ephemeral: bool
    uses: int = 0
    created: float = field(default_factory=time.monotonic)


class SlackWorkspace:
    """Channels, messages, views, files and users of one emulated workspace."""

    def __init__(
        self, *, team_id: str, team_domain: str, bot_user_id: str, bot_id: str, app_id: str
    ) -> None:
        self.team_id = team_id
        self.team_domain = team_domain
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.app_id = app_id
        self.url = ""  # the server's root URL, for upload, download and response URLs
        self.enterprise_id: str | None = None  # an org-wide install in Enterprise Grid
        self.users: dict[str, JSON] = {}
        self.locales: dict[str, str] = {}  # user id -> locale (users.info with include_locale)
        self.channels: dict[str, SlackChannel] = {}
        self.files: dict[str, SlackFile] = {}
        self.ephemerals: dict[str, list[SlackMessage]] = {}
        self.home_views: dict[str, JSON] = {}
        self.modals: dict[str, list[JSON]] = {}
        self._triggers: dict[str, tuple[str, float]] = {}
        self._responders: dict[str, ResponseContext] = {}
        self._ids = itertools.count(1)
        self._last_ts_micros = 0
        # apps.connections.open is added by SlackApiEmulator: the Socket Mode server owns it.
        self.methods: dict[str, Callable[[JSON], JSON]] = {
            "auth.test": self._auth_test,
            "chat.delete": self._chat_delete,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "conversations.history": self._conversations_history,
            "conversations.open": self._conversations_open,
            "files.completeUploadExternal": self._files_complete_upload,
            "files.getUploadURLExternal": self._files_get_upload_url,
            "users.info": self._users_info,
            "views.open": self._views_open,
            "views.publish": self._views_publish,
            "views.update": self._views_update,
        }

    # ---- state ------------------------------------------------------------------------------

    def add_user(self, user_id: str, name: str, team_id: str, locale: str = "en-US") -> None:
        """Add a person, with a DM channel `"D" + user_id` to the bot."""
        self.locales[user_id] = locale
        self.users[user_id] = {
            "id": user_id,
            "team_id": team_id,
            "name": name,
            "real_name": name,
            "deleted": False,
            "is_bot": False,
            "tz": "UTC",
            "tz_offset": 0,
            "profile": {"display_name": name, "real_name": name},
        }
        self.channels.setdefault(
            "D" + user_id, SlackChannel("D" + user_id, "directmessage", user_id)
        )

    def add_channel(self, channel_id: str, name: str) -> None:
        """Add a public channel that the bot and every person belong to."""
        self.channels.setdefault(channel_id, SlackChannel(channel_id, name))

    def channel(self, channel_id: str) -> SlackChannel:
        """A channel by id; error if there is none."""
        if channel_id not in self.channels:
            raise SlackEmulatorError(f"no channel {channel_id!r}")
        return self.channels[channel_id]

    def next_ts(self) -> str:
        """A message timestamp: unique, increasing, close to the wall clock."""
        micros = max(self._last_ts_micros + 1, time.time_ns() // 1000)
        self._last_ts_micros = micros
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    def new_id(self, prefix: str) -> str:
        """A fresh Slack-looking id such as `F0000002A`."""
        return f"{prefix}{next(self._ids):08X}"

    def issue_trigger(self, user_id: str) -> str:
        """A trigger_id for one interaction of `user_id`, usable once within 3 seconds."""
        trigger = f"{next(self._ids)}.{int(time.time())}.{secrets.token_hex(8)}"
        self._triggers[trigger] = (user_id, time.monotonic())
        return trigger

    def response_url(
        self, user_id: str, channel_id: str, message_ts: str | None = None, ephemeral: bool = False
    ) -> ResponseContext:
        """A new loopback response_url (`.url`) for one interaction."""
        token = secrets.token_urlsafe(12)
        ctx = ResponseContext(
            f"{self.url}/response/{token}", user_id, channel_id, message_ts, ephemeral
        )
        self._responders[token] = ctx
        return ctx

    def responder(self, token: str) -> ResponseContext | None:
        """The context behind a response_url's last path segment, if it was issued."""
        return self._responders.get(token)

    def post_user_message(
        self, user_id: str, channel_id: str, text: str, thread_ts: str | None = None
    ) -> SlackMessage:
        """Store a message a person wrote (a reply in a thread when `thread_ts` is given)."""
        msg = SlackMessage(
            channel_id,
            self.next_ts(),
            user_id,
            self.users[user_id]["team_id"],
            text,
            thread_ts=thread_ts,
        )
        self.channel(channel_id).messages[msg.ts] = msg
        return msg

    def apply_response(self, ctx: ResponseContext, payload: JSON) -> None:
        """Do what Slack does with a response_url post (or a slash command's reply body)."""
        text, blocks = text_and_blocks(payload)
        original = self._original(ctx)
        if payload.get("delete_original"):
            if original is not None and original.ephemeral:
                self.ephemerals[ctx.user_id].remove(original)
            elif original is not None:
                del self.channels[ctx.channel_id].messages[original.ts]
            return
        if payload.get("replace_original") and original is not None:
            original.text, original.blocks = text or "", blocks or []
            assign_ids(original.blocks, original.ts)
            original.edited_ts = self.next_ts()
            return
        if not text and not blocks:
            raise ApiFailure("no_text")
        if payload.get("response_type") == "in_channel":
            self._store_message(self.channels[ctx.channel_id], text, blocks, None)
        else:
            self._store_ephemeral(ctx.channel_id, ctx.user_id, text, blocks)

    def after_submission(self, user_id: str, view_id: str, status: int, reply: JSON | None) -> None:
        """Apply a view_submission reply: close, update, push, clear, or keep (errors)."""
        stack = self.modals.setdefault(user_id, [])
        index = next((i for i, v in enumerate(stack) if v["id"] == view_id), None)
        action = (reply or {}).get("response_action")
        if index is None or status != 200 or action == "errors":
            return
        if action == "update":
            stack[index] = self._make_view((reply or {})["view"], MODAL, stack[index])
        elif action == "push":
            stack.append(self._make_view((reply or {})["view"], MODAL, None))
        elif action == "clear":
            stack.clear()
        else:
            del stack[index]

    # ---- helpers ------------------------------------------------------------------------------

    def _resolve_channel(self, value: Any) -> SlackChannel:
        """A channel id, a user id (their DM with the bot) or a #name, as chat.postMessage takes."""
        value = str(value)
        if value in self.channels:
            return self.channels[value]
        if value in self.users:
            return self.channels["D" + value]
        named = [c for c in self.channels.values() if "#" + c.name == value]
        if named:
            return named[0]
        raise ApiFailure("channel_not_found")

    def _original(self, ctx: ResponseContext) -> SlackMessage | None:
        if ctx.message_ts is None:
            return None
        if ctx.ephemeral:
            return next(
                (m for m in self.ephemerals.get(ctx.user_id, []) if m.ts == ctx.message_ts), None
            )
        return self.channels[ctx.channel_id].messages.get(ctx.message_ts)

    def _store_message(
        self,
        channel: SlackChannel,
        text: str | None,
        blocks: list[JSON] | None,
        thread_ts: str | None,
        files: list[JSON] | None = None,
    ) -> SlackMessage:
        msg = SlackMessage(
            channel.id,
            self.next_ts(),
            self.bot_user_id,
            self.team_id,
            text or "",
            blocks or [],
            files or [],
            thread_ts,
            self.bot_id,
            self.app_id,
        )
        assign_ids(msg.blocks, msg.ts)
        channel.messages[msg.ts] = msg
        return msg

    def _store_ephemeral(
        self, channel_id: str, user_id: str, text: str | None, blocks: list[JSON] | None
    ) -> SlackMessage:
        msg = SlackMessage(
            channel_id,
            self.next_ts(),
            self.bot_user_id,
            self.team_id,
            text or "",
            blocks or [],
            bot_id=self.bot_id,
            app_id=self.app_id,
            ephemeral=True,
        )
        assign_ids(msg.blocks, msg.ts)
        self.ephemerals.setdefault(user_id, []).append(msg)
        return msg

    def _make_view(self, raw: Any, types: frozenset[str], previous: JSON | None) -> JSON:
        view = parse_view(raw, allowed_types=types)
        view_id = previous["id"] if previous else self.new_id("V")
        assign_ids(view["blocks"], view_id)
        view.update(
            id=view_id,
            team_id=self.team_id,
            app_id=self.app_id,
            bot_id=self.bot_id,
            state={"values": {}},
            hash=f"{int(time.time())}.{secrets.token_hex(4)}",
            root_view_id=previous["root_view_id"] if previous else view_id,
            previous_view_id=None,
            private_metadata=view.get("private_metadata", ""),
            callback_id=view.get("callback_id", ""),
            external_id=view.get("external_id", ""),
            clear_on_close=bool(view.get("clear_on_close")),
            notify_on_close=bool(view.get("notify_on_close")),
        )
        return view

    @staticmethod
    def _check_hash(args: JSON, current: JSON | None) -> None:
        if args.get("hash") and current is not None and args["hash"] != current["hash"]:
            raise ApiFailure("hash_conflict")

    # ---- Web API methods (args are checked against METHOD_SPECS before these run) -----------

    def _auth_test(self, args: JSON) -> JSON:
        return {
            "url": f"https://{self.team_domain}.slack.com/",
            "team": self.team_domain,
            "user": "chatlabel",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": self.enterprise_id is not None,
            **({"enterprise_id": self.enterprise_id} if self.enterprise_id else {}),
        }

    def _conversations_open(self, args: JSON) -> JSON:
        if args.get("channel"):
            if args["channel"] not in self.channels:
                raise ApiFailure("channel_not_found")
            return {"channel": {"id": args["channel"]}}
        users = [u.strip() for u in str(args.get("users") or "").split(",") if u.strip()]
        if not users:
            raise ApiFailure("users_list_not_supplied")
        if len(users) > 1:
            raise ApiFailure("invalid_arguments", "multi-person DMs are not emulated")
        if users[0] not in self.users:
            raise ApiFailure("user_not_found")
        return {"channel": {"id": "D" + users[0]}}

    def _chat_post_message(self, args: JSON) -> JSON:
        channel = self._resolve_channel(args["channel"])
        text, blocks = text_and_blocks(args)
        if not text and not blocks:
            raise ApiFailure("no_text")
        msg = self._store_message(channel, text, blocks, args.get("thread_ts"))
        msg.metadata = _metadata(args.get("metadata"))
        return {"channel": channel.id, "ts": msg.ts, "message": msg.to_dict()}

    def _conversations_history(self, args: JSON) -> JSON:
        channel = self._resolve_channel(args["channel"])
        try:
            oldest = float(args.get("oldest") or 0)
        except ValueError:
            raise ApiFailure("invalid_ts_oldest") from None
        limit = min(int(args.get("limit") or 100), 999)
        with_metadata = str(args.get("include_all_metadata", "")).lower() in ("1", "true")
        found = [m for m in channel.messages.values() if float(m.ts) > oldest and not m.ephemeral]
        found.sort(key=lambda m: float(m.ts), reverse=True)  # newest first, as Slack returns
        out = []
        for m in found[:limit]:
            d = m.to_dict()
            if with_metadata and m.metadata is not None:
                d["metadata"] = copy.deepcopy(m.metadata)
            out.append(d)
        return {
            "messages": out,
            "has_more": len(found) > limit,
            "pin_count": 0,
            "response_metadata": {"next_cursor": ""},
        }

    def _chat_update(self, args: JSON) -> JSON:
        channel = self._resolve_channel(args["channel"])
        msg = channel.messages.get(str(args["ts"]))
        if msg is None:
            raise ApiFailure("message_not_found")
        if msg.user != self.bot_user_id:
            raise ApiFailure("cant_update_message")
        text, blocks = text_and_blocks(args)
        if text is None and blocks is None:
            raise ApiFailure("no_text")
        if text is not None:
            msg.text = text
        if blocks is not None:  # Slack keeps the old blocks when `blocks` is omitted
            msg.blocks = blocks
            assign_ids(msg.blocks, msg.ts)
        msg.edited_ts = self.next_ts()
        return {"channel": channel.id, "ts": msg.ts, "text": msg.text, "message": msg.to_dict()}

    def _chat_delete(self, args: JSON) -> JSON:
        channel = self._resolve_channel(args["channel"])
        msg = channel.messages.get(str(args["ts"]))
        if msg is None:
            raise ApiFailure("message_not_found")
        if msg.user != self.bot_user_id:
            raise ApiFailure("cant_delete_message")
        del channel.messages[msg.ts]
        return {"channel": channel.id, "ts": msg.ts}

    def _chat_post_ephemeral(self, args: JSON) -> JSON:
        channel = self._resolve_channel(args["channel"])
        user = str(args["user"])
        if user not in self.users or channel.im_user not in (None, user):
            raise ApiFailure("user_not_in_channel")
        text, blocks = text_and_blocks(args)
        if not text and not blocks:
            raise ApiFailure("no_text")
        return {"message_ts": self._store_ephemeral(channel.id, user, text, blocks).ts}

    def _views_publish(self, args: JSON) -> JSON:
        user = str(args["user_id"])
        if user not in self.users:
            raise ApiFailure("invalid_arguments", "invalid `user_id`")
        current = self.home_views.get(user)
        self._check_hash(args, current)
        self.home_views[user] = self._make_view(args["view"], frozenset({"home"}), current)
        return {"view": self.home_views[user]}

    def _views_open(self, args: JSON) -> JSON:
        trigger = args.get("trigger_id") or args.get("interactivity_pointer")
        if trigger not in self._triggers:
            raise ApiFailure("invalid_trigger_id")
        user, issued = self._triggers[trigger]
        if issued < 0:
            raise ApiFailure("exchanged_trigger_id")
        if time.monotonic() - issued > TRIGGER_TTL:
            raise ApiFailure("expired_trigger_id")
        view = self._make_view(args["view"], MODAL, None)
        self._triggers[trigger] = (user, -1.0)
        self.modals.setdefault(user, []).append(view)
        return {"view": view}

    def _views_update(self, args: JSON) -> JSON:
        if args.get("view_id"):
            key, wanted = "id", args["view_id"]
        elif args.get("external_id"):
            key, wanted = "external_id", args["external_id"]
        else:
            raise ApiFailure("invalid_arguments", "view_id or external_id is required")
        for views in [*self.modals.values(), self.home_views.values()]:
            for current in views:
                if current.get(key) == wanted:
                    self._check_hash(args, current)
                    updated = self._make_view(args["view"], frozenset({current["type"]}), current)
                    current.clear()  # in place, so views held by callers stay current
                    current.update(updated)
                    return {"view": current}
        raise ApiFailure("not_found")

    def _users_info(self, args: JSON) -> JSON:
        user_id = str(args["user"])
        if user_id == self.bot_user_id:
            return {
                "user": {
                    "id": user_id,
                    "team_id": self.team_id,
                    "name": "chatlabel",
                    "is_bot": True,
                    "deleted": False,
                }
            }
        if user_id not in self.users:
            raise ApiFailure("user_not_found")
        user = dict(self.users[user_id])
        if str(args.get("include_locale", "")).lower() in ("true", "1"):
            user["locale"] = self.locales[user_id]  # only when asked, as on Slack
        return {"user": user}

    def _files_get_upload_url(self, args: JSON) -> JSON:
        try:
            length = int(args["length"])
        except ValueError:
            raise ApiFailure("invalid_arguments", "length must be an integer") from None
        if length <= 0:
            raise ApiFailure("missing_argument", "length must be positive")
        name = str(args["filename"])
        file_id = self.new_id("F")
        self.files[file_id] = SlackFile(
            file_id,
            name,
            name,
            length,
            self.bot_user_id,
            int(time.time()),
            f"{self.url}/files/{file_id}/{name}",
            mimetype=mimetypes.guess_type(name)[0] or "application/octet-stream",
        )
        return {"file_id": file_id, "upload_url": f"{self.url}/upload/v1/{file_id}"}

    def _files_complete_upload(self, args: JSON) -> JSON:
        try:
            entries = args["files"]
            entries = json.loads(entries) if isinstance(entries, str) else entries
            wanted = [(str(e["id"]), e.get("title")) for e in entries]
        except (ValueError, TypeError, KeyError):
            raise ApiFailure(
                "invalid_arguments", "files must be a JSON array of {id, title}"
            ) from None
        files = [
            self.files[i]
            for i, _ in wanted
            if i in self.files and self.files[i].content is not None
        ]
        if not wanted or len(files) != len(wanted):
            raise ApiFailure("file_not_found")
        names = [args.get("channel_id"), *str(args.get("channels") or "").split(",")]
        channels = [self._resolve_channel(n) for n in names if n]
        blocks = (
            None
            if args.get("blocks") is None
            else parse_blocks(args["blocks"], format_error="invalid_blocks")
        )
        for file, (_, title) in zip(files, wanted, strict=True):
            file.title = title or file.title
            file.channels += [c.id for c in channels]
        for channel in channels:
            self._store_message(
                channel,
                args.get("initial_comment"),
                blocks,
                args.get("thread_ts"),
                [f.to_dict() for f in files],
            )
        return {"files": [{"id": f.id, "title": f.title} for f in files]}


def _metadata(raw: Any) -> JSON | None:
    """chat.postMessage's `metadata`: a JSON object (or its text) with event_type and payload."""
    if raw in (None, ""):
        return None
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise ApiFailure("invalid_arguments", "metadata is not JSON") from None
    if not isinstance(raw, dict) or "event_type" not in raw:
        raise ApiFailure("invalid_arguments", "metadata needs an event_type")
    return {"event_type": str(raw["event_type"]), "event_payload": raw.get("event_payload") or {}}
