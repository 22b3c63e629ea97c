"""Checks the Bot API applies to what a bot sends: formatted text, keyboards, commands, scopes."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from typing import Any

from chatlabel.emulators.telegram_model import JSON, ApiError

_HTML_TAGS = {
    "b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler", "a",
    "code", "pre", "blockquote", "tg-emoji", "tg-time",
}  # fmt: skip
_MARKDOWN_V2_RESERVED = set("_*[]()~`>#+-=|{}.!")
_BUTTON_ACTIONS = (
    "url", "callback_data", "web_app", "login_url", "switch_inline_query",
    "switch_inline_query_current_chat", "switch_inline_query_chosen_chat", "copy_text",
    "callback_game", "pay",
)  # fmt: skip
_COMMAND = re.compile(r"[a-z0-9_]{1,32}")
_COMMAND_IN_TEXT = re.compile(r"/[A-Za-z0-9_]{1,32}(@[A-Za-z0-9_]{3,32})?(?=\s|$)")
_SCOPES = {
    "default": (), "all_private_chats": (), "all_group_chats": (),
    "all_chat_administrators": (), "chat": ("chat_id",), "chat_administrators": ("chat_id",),
    "chat_member": ("chat_id", "user_id"),
}  # fmt: skip
_MAX_BUTTONS = 100


def _entities_error(detail: str) -> ApiError:
    return ApiError.bad_request(f"can't parse entities: {detail}")


class _HtmlText(HTMLParser):
    """Collects the plain text of Bot API HTML, refusing tags the API does not support."""

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        self._source = source
        self.parts: list[str] = []
        self.open: list[str] = []

    def _offset(self) -> int:
        line, column = self.getpos()
        lines = self._source.splitlines(keepends=True)
        return len("".join(lines[: line - 1]).encode()) + len(lines[line - 1][:column].encode())

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _HTML_TAGS:
            raise _entities_error(f'Unsupported start tag "{tag}" at byte offset {self._offset()}')
        self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open[-1] != tag:
            expected = f'expected "</{self.open[-1]}>", ' if self.open else ""
            raise _entities_error(
                f'Unmatched end tag at byte offset {self._offset()}, {expected}found "</{tag}>"'
            )
        self.open.pop()

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def _html_plain(source: str) -> str:
    parser = _HtmlText(source)
    parser.feed(source)
    parser.close()
    if parser.open:
        raise _entities_error(f'Can\'t find end tag corresponding to start tag "{parser.open[-1]}"')
    return "".join(parser.parts)


def _markdown_v2_plain(source: str) -> str:
    """Strip MarkdownV2 markers, refusing reserved characters that are not escaped."""
    out: list[str] = []
    i = 0
    while i < len(source):
        char = source[i]
        at_line_start = i == 0 or source[i - 1] == "\n"
        if char == "\\" and i + 1 < len(source):
            out.append(source[i + 1])
            i += 2
        elif char == "`":
            fence = "```" if source.startswith("```", i) else "`"
            end = source.find(fence, i + len(fence))
            if end < 0:
                offset = len(source[:i].encode())
                raise _entities_error(f"Can't find end of Code entity at byte offset {offset}")
            body = source[i + len(fence) : end]
            if fence == "```" and "\n" in body:
                body = body.split("\n", 1)[1]  # first line names the language
            out.append(re.sub(r"\\([`\\])", r"\1", body))
            i = end + len(fence)
        elif char == "]" and source.startswith("](", i):
            end = source.find(")", i)
            i = len(source) if end < 0 else end + 1
        elif char in "*_~[" or source.startswith("||", i) or (char == ">" and at_line_start):
            i += 2 if source.startswith("||", i) else 1
        elif char in _MARKDOWN_V2_RESERVED:
            raise _entities_error(
                f"Character '{char}' is reserved and must be escaped with the preceding '\\'"
            )
        else:
            out.append(char)
            i += 1
    return "".join(out)


def plain_text(source: str, parse_mode: str | None) -> str:
    """The text a message shows after entity parsing (legacy Markdown is kept as sent)."""
    mode = (parse_mode or "").lower()
    if mode == "html":
        return _html_plain(source)
    if mode == "markdownv2":
        return _markdown_v2_plain(source)
    if mode in ("", "markdown"):
        return source
    raise ApiError.bad_request(f"unsupported parse_mode {parse_mode!r}")


def formatting_key(source: str, parse_mode: str | None, entities: Any) -> Any:
    """What besides the plain text decides whether an edit changes the message."""
    if entities:
        return ("entities", json.dumps(entities, sort_keys=True))
    return (parse_mode.lower(), source) if parse_mode else None


def command_entities(text: str) -> list[JSON]:
    """The bot_command entity Telegram attaches to a message starting with /command."""
    match = _COMMAND_IN_TEXT.match(text)
    return [{"type": "bot_command", "offset": 0, "length": match.end()}] if match else []


def _check_button(button: Any) -> None:
    if not isinstance(button, dict) or not isinstance(button.get("text"), str):
        raise ApiError.bad_request(
            'can\'t parse inline keyboard button: Field "text" must be of type String'
        )
    if not button["text"].strip():
        raise ApiError.bad_request("BUTTON_TEXT_INVALID")
    actions = [key for key in _BUTTON_ACTIONS if key in button]
    if not actions:
        raise ApiError.bad_request(
            "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"
        )
    if len(actions) > 1:
        raise ApiError.bad_request(
            f"can't parse inline keyboard button: exactly one of {actions} must be used"
        )
    data = button.get("callback_data")
    if "callback_data" in button and (
        not isinstance(data, str) or not 1 <= len(data.encode()) <= 64
    ):
        raise ApiError.bad_request("BUTTON_DATA_INVALID")
    url = button.get("url")
    if "url" in button and not (
        isinstance(url, str) and re.match(r"(https?|tg)://\S+$", url, re.IGNORECASE)
    ):
        raise ApiError.bad_request(f"inline keyboard button URL '{url}' is invalid: Wrong HTTP URL")


def inline_keyboard(markup: Any) -> JSON | None:
    """Validate an InlineKeyboardMarkup; None when it has no buttons (no keyboard at all)."""
    if markup is None:
        return None
    if not isinstance(markup, dict) or "inline_keyboard" not in markup:
        raise ApiError.bad_request("inline keyboard expected")
    rows = markup["inline_keyboard"]
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise ApiError.bad_request(
            'field "inline_keyboard" of the InlineKeyboardMarkup should be an Array of Arrays'
        )
    buttons = [button for row in rows for button in row]
    if len(buttons) > _MAX_BUTTONS:
        raise ApiError.bad_request("reply markup is too long")
    for button in buttons:
        _check_button(button)
    return {"inline_keyboard": [row for row in rows if row]} if buttons else None


def reply_markup(markup: Any) -> JSON | None:
    """Validate any reply_markup a send method accepts; returns it, None when absent."""
    if markup is None:
        return None
    if isinstance(markup, dict):
        if "inline_keyboard" in markup:
            return inline_keyboard(markup)
        keyboard = markup.get("keyboard")
        if isinstance(keyboard, list) and all(isinstance(row, list) for row in keyboard):
            return markup
        if markup.get("remove_keyboard") is True or markup.get("force_reply") is True:
            return markup
    raise ApiError.bad_request("can't parse reply keyboard markup JSON object")


def bot_commands(commands: Any) -> list[JSON]:
    """Validate setMyCommands' command list."""
    if not isinstance(commands, list):
        raise ApiError.bad_request("can't parse commands JSON object")
    if len(commands) > 100:
        raise ApiError.bad_request("too many commands specified")
    for command in commands:
        for key in ("command", "description"):
            if not isinstance(command, dict) or not isinstance(command.get(key), str):
                raise ApiError.bad_request(f"can't parse BotCommand: Can't find field \"{key}\"")
        if not _COMMAND.fullmatch(command["command"]):
            raise ApiError.bad_request("BOT_COMMAND_INVALID")
        if not command["description"].strip():
            raise ApiError.bad_request("command description must be non-empty")
        if len(command["description"]) > 256:
            raise ApiError.bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
    return [{"command": c["command"], "description": c["description"]} for c in commands]


def command_scope(scope: Any) -> JSON:
    """Validate a BotCommandScope (absent means the default scope)."""
    if scope is None:
        return {"type": "default"}
    if not isinstance(scope, dict) or scope.get("type") not in _SCOPES:
        raise ApiError.bad_request("can't parse BotCommandScope JSON object")
    needed = _SCOPES[scope["type"]]
    if any(key not in scope for key in needed):
        raise ApiError.bad_request(f"can't parse BotCommandScope: {' and '.join(needed)} required")
    return {"type": scope["type"], **{key: scope[key] for key in needed}}


def menu_button(button: Any) -> JSON:
    """Validate a MenuButton (absent means the default button)."""
    if button is None:
        return {"type": "default"}
    kind = button.get("type") if isinstance(button, dict) else None
    if kind in ("default", "commands"):
        return {"type": kind}
    if (
        kind == "web_app"
        and isinstance(button.get("text"), str)
        and "url" in (button.get("web_app") or {})
    ):
        return dict(button)
    raise ApiError.bad_request("can't parse menu button JSON object")
