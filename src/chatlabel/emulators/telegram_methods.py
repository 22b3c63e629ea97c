"""The Bot API methods the emulator implements, with the spec's required fields for each."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from chatlabel.emulators.telegram_format import (
    bot_commands,
    command_scope,
    formatting_key,
    inline_keyboard,
    menu_button,
    plain_text,
    reply_markup,
)
from chatlabel.emulators.telegram_model import JSON, ApiError, Chat, ChatMessage, Media, Params
from chatlabel.emulators.telegram_state import EmulatorState

Handler = Callable[[EmulatorState, Params], Awaitable[Any]]

MEDIA_KINDS = ("photo", "audio", "voice", "video", "document")
_CHAT_ACTIONS = {
    "typing", "upload_photo", "record_video", "upload_video", "record_voice", "upload_voice",
    "upload_document", "choose_sticker", "find_location", "record_video_note",
    "upload_video_note",
}  # fmt: skip
_MAX_DOWNLOAD = 20 * 1024 * 1024
_MISSING = {
    "chat_id": "chat_id is empty",
    "text": "message text is empty",
    "message_id": "message identifier is not specified",
    **{kind: f"there is no {kind} in the request" for kind in MEDIA_KINDS},
}


def missing_field_error(name: str) -> ApiError:
    """The answer to a call that lacks a required field."""
    return ApiError.bad_request(_MISSING.get(name, f"{name} is empty"))


@dataclass(frozen=True)
class Method:
    """One implemented Bot API method: its name, required fields (as in the spec), handler."""

    name: str
    required: tuple[str, ...]
    handler: Handler

    async def call(self, state: EmulatorState, params: Params) -> Any:
        """Check the required fields, then run the method."""
        for name in self.required:
            if not params.has(name):
                raise missing_field_error(name)
        return await self.handler(state, params)


def _formatted(
    p: Params, name: str, entities_name: str, limit: int, too_long: str
) -> tuple[str, Any]:
    """A text or caption after entity parsing, and what identifies its formatting."""
    source = p.text(name) or ""
    entities = p.json(entities_name)
    parse_mode = p.text("parse_mode")
    text = source if entities else plain_text(source, parse_mode)
    if len(text) > limit:
        raise ApiError.bad_request(too_long)
    return text, (formatting_key(source, parse_mode, entities) if text else None)


def _attach_markup(chat: Chat, markup: JSON | None) -> JSON | None:
    """The inline keyboard a message carries; reply keyboards belong to the chat instead."""
    if markup is None or "inline_keyboard" in markup:
        return markup
    if "keyboard" in markup:
        chat.reply_keyboard = markup
    elif markup.get("remove_keyboard"):
        chat.reply_keyboard = None
    return None


def _editable(state: EmulatorState, p: Params) -> ChatMessage:
    """The bot message an edit call addresses."""
    if p.has("inline_message_id"):
        raise ApiError.bad_request("MESSAGE_ID_INVALID")  # the emulator has no inline messages
    for name in ("chat_id", "message_id"):
        if not p.has(name):
            raise missing_field_error(name)
    chat = state.target_chat(p.values["chat_id"])
    message = chat.messages.get(p.integer("message_id") or 0)
    if message is None or message.deleted:
        raise ApiError.bad_request("message to edit not found")
    if not message.from_bot:
        raise ApiError.bad_request("message can't be edited")
    return message


def _apply_edit(
    state: EmulatorState, message: ChatMessage, markup: JSON | None, **changes: Any
) -> JSON:
    """Apply an edit, refusing one that changes nothing, as Telegram does."""
    changes["reply_markup"] = markup
    before = {key: getattr(message, key) for key in changes}
    if json.dumps(before, sort_keys=True) == json.dumps(changes, sort_keys=True):
        raise ApiError.bad_request(
            "message is not modified: specified new message content and reply markup are "
            "exactly the same as a current content and reply markup of the message"
        )
    for key, value in changes.items():
        setattr(message, key, value)
    message.edit_count += 1
    message.edit_date = int(time.time())
    state.signal.notify()
    return message.to_json()


async def get_me(state: EmulatorState, p: Params) -> Any:
    """getMe."""
    return {
        **state.bot_user,
        "can_join_groups": True,
        "can_read_all_group_messages": False,
        "supports_inline_queries": False,
        "can_connect_to_business": False,
        "has_main_web_app": False,
    }


async def get_updates(state: EmulatorState, p: Params) -> Any:
    """getUpdates, long polling up to `timeout` seconds."""
    if state.webhook:
        raise ApiError(
            409,
            "Conflict: can't use getUpdates method while webhook is active; "
            "use deleteWebhook to delete the webhook first",
        )
    if p.has("allowed_updates"):
        kinds = p.json("allowed_updates")
        if not isinstance(kinds, list):
            raise ApiError.bad_request("can't parse allowed_updates JSON object")
        state.set_allowed_updates([str(kind) for kind in kinds])
    state.confirm_updates(p.integer("offset") or 0)
    timeout = max(0, p.integer("timeout") or 0)
    if timeout:
        await state.signal.wait_until(lambda: state.closing or state.has_updates(), timeout)
    limit = min(max(p.integer("limit") or 100, 1), 100)
    return state.take_updates(limit)


async def set_webhook(state: EmulatorState, p: Params) -> Any:
    """setWebhook: recorded only, nothing is ever posted to the URL."""
    url = p.text("url") or ""
    if not url.lower().startswith("https://"):
        raise ApiError.bad_request("bad webhook: An HTTPS URL must be provided for webhook")
    secret = p.text("secret_token")
    if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", secret):
        raise ApiError.bad_request("secret token contains unallowed characters")
    if p.flag("drop_pending_updates"):
        state.drop_pending_updates()
    state.webhook = {
        "url": url,
        "secret_token": secret,
        "allowed_updates": p.json("allowed_updates"),
    }
    return True


async def delete_webhook(state: EmulatorState, p: Params) -> Any:
    """deleteWebhook."""
    if p.flag("drop_pending_updates"):
        state.drop_pending_updates()
    state.webhook = None
    return True


async def get_webhook_info(state: EmulatorState, p: Params) -> Any:
    """getWebhookInfo."""
    info: JSON = {
        "url": state.webhook["url"] if state.webhook else "",
        "has_custom_certificate": False,
        "pending_update_count": len(state.pending_updates),
    }
    if state.webhook and state.webhook["allowed_updates"] is not None:
        info["allowed_updates"] = state.webhook["allowed_updates"]
    return info


def _commands_key(state: EmulatorState, p: Params) -> tuple[str, str]:
    scope = command_scope(p.json("scope"))
    if "chat_id" in scope and state.chats.get(_as_int(scope["chat_id"])) is None:
        raise ApiError.bad_request("chat not found")
    language = p.text("language_code") or ""
    if not re.fullmatch(r"([a-z]{2})?", language):
        raise ApiError.bad_request("invalid language code specified")
    return json.dumps(scope, sort_keys=True), language


def _as_int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ApiError.bad_request("chat not found") from None


async def set_my_commands(state: EmulatorState, p: Params) -> Any:
    """setMyCommands, stored per scope and language."""
    commands = bot_commands(p.json("commands"))
    state.commands[_commands_key(state, p)] = commands
    return True


async def get_my_commands(state: EmulatorState, p: Params) -> Any:
    """getMyCommands."""
    return state.commands.get(_commands_key(state, p), [])


async def delete_my_commands(state: EmulatorState, p: Params) -> Any:
    """deleteMyCommands."""
    state.commands.pop(_commands_key(state, p), None)
    return True


async def send_message(state: EmulatorState, p: Params) -> Any:
    """sendMessage."""
    chat = state.target_chat(p.values["chat_id"])
    text, formatting = _formatted(p, "text", "entities", 4096, "message is too long")
    if not text.strip():
        raise ApiError.bad_request("message text is empty")
    markup = _attach_markup(chat, reply_markup(p.json("reply_markup")))
    message = state.add_message(
        chat, from_bot=True, text=text, formatting=formatting, reply_markup=markup
    )
    return message.to_json()


def _media_attributes(kind: str, p: Params, filename: str | None, mime: str) -> JSON:
    """The attributes Telegram reports for an uploaded audio, voice, video or document."""
    attributes: JSON = {}
    if kind in ("audio", "voice", "video"):
        attributes["duration"] = p.integer("duration") or 0
    if kind == "video":
        attributes["width"] = p.integer("width") or 0
        attributes["height"] = p.integer("height") or 0
    if kind == "audio":
        attributes.update({k: p.text(k) for k in ("performer", "title") if p.has(k)})
    if kind != "voice" and filename:
        attributes["file_name"] = filename
    if kind != "photo":
        attributes["mime_type"] = mime
    return attributes


def _media_input(state: EmulatorState, p: Params, method: str, kind: str) -> Media:
    """The media a send call carries: an upload, an attach:// part, or a known file_id."""
    part = p.file(kind)
    reference = p.text(kind) or ""
    if part is None and reference.startswith("attach://"):
        part = p.file(reference.removeprefix("attach://"))
        if part is None:
            raise missing_field_error(kind)
    if part is not None:
        attributes = _media_attributes(kind, p, part.filename, part.content_type)
        return state.store_media(method, kind, part, attributes)
    if re.match(r"https?://", reference, re.IGNORECASE):
        raise ApiError.bad_request("failed to get HTTP URL content")  # the emulator is offline
    return state.find_media(reference, kind)


def _send_media(method: str, kind: str) -> Handler:
    async def handler(state: EmulatorState, p: Params) -> Any:
        chat = state.target_chat(p.values["chat_id"])
        caption, formatting = _formatted(
            p, "caption", "caption_entities", 1024, "message caption is too long"
        )
        markup = _attach_markup(chat, reply_markup(p.json("reply_markup")))
        media = _media_input(state, p, method, kind)  # last, so a refused call uploads nothing
        message = state.add_message(
            chat,
            from_bot=True,
            media=media,
            caption=caption or None,
            formatting=formatting,
            reply_markup=markup,
        )
        return message.to_json()

    handler.__doc__ = f"{method}: a new upload, an attach:// part, or a known file_id."
    return handler


async def edit_message_text(state: EmulatorState, p: Params) -> Any:
    """editMessageText; leaving out reply_markup removes the keyboard, as on Telegram."""
    message = _editable(state, p)
    if message.text is None:
        raise ApiError.bad_request("there is no text in the message to edit")
    text, formatting = _formatted(p, "text", "entities", 4096, "message is too long")
    if not text.strip():
        raise ApiError.bad_request("message text is empty")
    markup = inline_keyboard(p.json("reply_markup"))
    return _apply_edit(state, message, markup, text=text, formatting=formatting)


async def edit_message_caption(state: EmulatorState, p: Params) -> Any:
    """editMessageCaption; an absent caption removes it."""
    message = _editable(state, p)
    if message.media is None:
        raise ApiError.bad_request("there is no caption in the message to edit")
    caption, formatting = _formatted(
        p, "caption", "caption_entities", 1024, "message caption is too long"
    )
    markup = inline_keyboard(p.json("reply_markup"))
    return _apply_edit(state, message, markup, caption=caption or None, formatting=formatting)


async def edit_message_reply_markup(state: EmulatorState, p: Params) -> Any:
    """editMessageReplyMarkup; an absent reply_markup removes the keyboard."""
    message = _editable(state, p)
    return _apply_edit(state, message, inline_keyboard(p.json("reply_markup")))


async def delete_message(state: EmulatorState, p: Params) -> Any:
    """deleteMessage."""
    chat = state.target_chat(p.values["chat_id"])
    message = chat.messages.get(p.integer("message_id") or 0)
    if message is None or message.deleted:
        raise ApiError.bad_request("message to delete not found")
    message.deleted = True
    state.signal.notify()
    return True


async def answer_callback_query(state: EmulatorState, p: Params) -> Any:
    """answerCallbackQuery: each query once, within callback_query_ttl seconds."""
    query = state.callback_queries.get(p.text("callback_query_id") or "")
    if (
        query is None
        or query.answered
        or (time.monotonic() - query.created > state.callback_query_ttl)
    ):
        raise ApiError.bad_request(
            "query is too old and response timeout expired or query ID is invalid"
        )
    text = p.text("text")
    if text is not None and len(text) > 200:
        raise ApiError.bad_request("MESSAGE_TOO_LONG")
    query.answered, query.answer_text, query.show_alert = True, text, p.flag("show_alert")
    state.signal.notify()
    return True


async def get_file(state: EmulatorState, p: Params) -> Any:
    """getFile; download the result at base_file_url + token + "/" + file_path."""
    stored = state.files.get(p.text("file_id") or "")
    if stored is None:
        raise ApiError.bad_request("invalid file_id")
    if len(stored.data) > _MAX_DOWNLOAD:
        raise ApiError.bad_request("file is too big")
    return {
        "file_id": stored.file_id,
        "file_unique_id": stored.file_unique_id,
        "file_size": len(stored.data),
        "file_path": stored.file_path,
    }


async def send_chat_action(state: EmulatorState, p: Params) -> Any:
    """sendChatAction."""
    state.target_chat(p.values["chat_id"])
    if p.text("action") not in _CHAT_ACTIONS:
        raise ApiError.bad_request("wrong parameter action in request")
    return True


async def set_chat_menu_button(state: EmulatorState, p: Params) -> Any:
    """setChatMenuButton, for one chat or (without chat_id) the default."""
    chat_id = state.target_chat(p.values["chat_id"]).id if p.has("chat_id") else None
    state.menu_buttons[chat_id] = menu_button(p.json("menu_button"))
    return True


_TABLE = [
    Method("getMe", (), get_me),
    Method("getUpdates", (), get_updates),
    Method("setWebhook", ("url",), set_webhook),
    Method("deleteWebhook", (), delete_webhook),
    Method("getWebhookInfo", (), get_webhook_info),
    Method("setMyCommands", ("commands",), set_my_commands),
    Method("getMyCommands", (), get_my_commands),
    Method("deleteMyCommands", (), delete_my_commands),
    Method("sendMessage", ("chat_id", "text"), send_message),
    Method("sendPhoto", ("chat_id", "photo"), _send_media("sendPhoto", "photo")),
    Method("sendAudio", ("chat_id", "audio"), _send_media("sendAudio", "audio")),
    Method("sendVoice", ("chat_id", "voice"), _send_media("sendVoice", "voice")),
    Method("sendVideo", ("chat_id", "video"), _send_media("sendVideo", "video")),
    Method("sendDocument", ("chat_id", "document"), _send_media("sendDocument", "document")),
    Method("editMessageText", ("text",), edit_message_text),
    Method("editMessageCaption", (), edit_message_caption),
    Method("editMessageReplyMarkup", (), edit_message_reply_markup),
    Method("deleteMessage", ("chat_id", "message_id"), delete_message),
    Method("answerCallbackQuery", ("callback_query_id",), answer_callback_query),
    Method("getFile", ("file_id",), get_file),
    Method("sendChatAction", ("chat_id", "action"), send_chat_action),
    Method("setChatMenuButton", (), set_chat_menu_button),
]
METHODS: dict[str, Method] = {method.name.lower(): method for method in _TABLE}
"""Implemented methods by lower-cased name (the Bot API matches names case-insensitively)."""
