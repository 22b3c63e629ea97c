"""Block Kit for the conversation's views: messages, the App Home, the answer modal (no I/O)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

from ..conversation import Button, Home, Message, Texts
from ..conversation.buttons import decode, encode
from ..conversation.render import cut

JSON = dict[str, Any]

# Slack's limits (checked offline by slack_sdk's models and by the loopback fake).
SECTION_LIMIT = 3000
BUTTON_LIMIT = 75
ACTIONS_PER_BLOCK = 25
OPTIONS_PER_CHECKBOXES = 10
MESSAGE_BLOCKS = 50
VIEW_BLOCKS = 100
NOTIFICATION_LIMIT = 150  # the `text` fallback shown in notifications

# Every interactive element the bot renders has an action_id starting with "cl.", so the
# transport catches them all.
BUTTON_ID = "cl.b.{n}"
BUTTON_PATTERN = re.compile(r"^cl\.b\.\d+$")
CHECKBOX_ID = "cl.m.{aid}.{chunk}"
CHECKBOX_PATTERN = re.compile(r"^cl\.m\.(\d{1,18})\.\d+$")
WRITE_ID = "cl.write"
TEXT_MODAL = "cl.text"
TEXT_BLOCK, TEXT_ACTION = "cl.answer", "text"


def esc(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def plain(text: str, limit: int = SECTION_LIMIT) -> JSON:
    """A plain_text object cut to `limit` characters."""
    return {"type": "plain_text", "text": cut(text, limit) or " ", "emoji": True}


def mrkdwn(text: str, limit: int = SECTION_LIMIT) -> JSON:
    """A mrkdwn text object cut to `limit` characters (callers escape user data)."""
    return {"type": "mrkdwn", "text": cut(text, limit) or " "}


def section(text: str, *, markdown: bool = False) -> JSON:
    """A section block with one text (plain text unless `markdown`)."""
    return {"type": "section", "text": mrkdwn(text) if markdown else plain(text)}


def context(*texts: str) -> JSON:
    """A context block of mrkdwn texts."""
    return {"type": "context", "elements": [mrkdwn(t) for t in texts if t][:10] or [mrkdwn(" ")]}


def button(b: Button, action_id: str) -> JSON:
    """A button element, its text cut to Slack's 75 characters."""
    out: JSON = {
        "type": "button",
        "text": plain(b.text, BUTTON_LIMIT),
        "action_id": action_id,
        "value": b.data,
    }
    if b.style:
        out["style"] = b.style
    return out


def _chunks(seq: Sequence[Any], size: int) -> Iterable[tuple[int, Sequence[Any]]]:
    for n, start in enumerate(range(0, len(seq), size)):
        yield n, seq[start : start + size]


def notification(view: Message) -> str:
    """A message's `text`: what notifications and screen readers show (escaped)."""
    return esc(cut(view.status or view.text or " ", NOTIFICATION_LIMIT))


def _controls(view: Message) -> list[JSON]:
    """The interactive part: checkboxes for toggles, buttons in actions blocks, Write answer."""
    blocks: list[JSON] = []
    toggles = [b for b in view.all_buttons if b.selected is not None]
    others = [b for b in view.all_buttons if b.selected is None]
    if toggles:
        press = decode(toggles[0].data)
        aid = press.ref if press is not None else 0
        for n, chunk in _chunks(toggles, OPTIONS_PER_CHECKBOXES):
            options = [{"text": plain(b.text, BUTTON_LIMIT), "value": b.data} for b in chunk]
            element: JSON = {
                "type": "checkboxes",
                "options": options,
                "action_id": CHECKBOX_ID.format(aid=aid, chunk=n),
            }
            initial = [o for o, b in zip(options, chunk, strict=True) if b.selected]
            if initial:
                element["initial_options"] = initial
            blocks.append({"type": "actions", "block_id": f"cl:m{n}", "elements": [element]})
    elements = []
    if view.writer and view.item is not None:
        elements.append(
            {
                "type": "button",
                "text": plain(view.writer, BUTTON_LIMIT),
                "action_id": WRITE_ID,
                "value": str(view.item),
                "style": "primary",
            }
        )
    elements += [button(b, BUTTON_ID.format(n=n)) for n, b in enumerate(others)]
    for n, row in _chunks(elements, ACTIONS_PER_BLOCK):
        blocks.append({"type": "actions", "block_id": f"cl:{n}", "elements": list(row)})
    return blocks


def message_blocks(view: Message, image: JSON | None = None) -> list[JSON]:
    """A view as a message: its text, picture, small print, buttons, status and note."""
    blocks = [section(esc(view.text), markdown=True)]
    if image is not None:
        blocks.append(image)
    if view.footer:
        head, _, rest = view.footer.partition("\n")
        blocks.append(context(f"*{esc(head)}*", esc(rest)))
    controls = _controls(view)
    if view.status:
        blocks.append(section(f"*{esc(view.status)}*", markdown=True))
    if view.note:
        blocks.append(context(esc(view.note)))
    # Whatever else is cut, the buttons stay: an item without them could not be answered.
    room = MESSAGE_BLOCKS - len(controls)
    return blocks[:room] + controls


def image_block(file_id: str, alt: str) -> JSON:
    """An image block showing a file the bot uploaded, by its Slack file id."""
    return {"type": "image", "slack_file": {"id": file_id}, "alt_text": cut(alt or "item", 200)}


def text_modal(t: Texts, aid: int, channel: str, ts: str, shown: str) -> JSON:
    """The modal for a free-text answer; private_metadata says which item and message."""
    meta = json.dumps({"a": aid, "c": channel, "t": ts})
    blocks: list[JSON] = []
    if shown.strip():
        blocks.append(section(shown))
    blocks.append(
        {
            "type": "input",
            "block_id": TEXT_BLOCK,
            "label": plain(t("platform.answer_label"), 2000),
            "element": {
                "type": "plain_text_input",
                "action_id": TEXT_ACTION,
                "multiline": True,
                "max_length": 2000,
            },
        }
    )
    return {
        "type": "modal",
        "callback_id": TEXT_MODAL,
        "private_metadata": meta,
        "title": plain(t("platform.answer_title"), 24),
        "submit": plain(t("platform.answer_save"), 24),
        "close": plain(t("platform.answer_cancel"), 24),
        "blocks": blocks,
    }


def home_view(home: Home) -> JSON:
    """A home page as the App Home tab."""
    blocks: list[JSON] = [{"type": "header", "text": plain(home.title, 150)}]
    for n, (text, rows) in enumerate(home.sections):
        if n == 1 and home.projects:
            blocks += [{"type": "divider"}, {"type": "header", "text": plain(home.projects, 150)}]
        if len(blocks) + 3 > VIEW_BLOCKS:
            break
        head, _, rest = text.partition("\n\n")
        blocks.append(section(esc(head), markdown=True))
        if rest:
            blocks.append(context(esc(cut(rest, 2000))))
        buttons = [b for row in rows for b in row]
        if buttons:
            elements = [button(b, BUTTON_ID.format(n=k)) for k, b in enumerate(buttons)]
            blocks.append({"type": "actions", "block_id": f"cl-home:{n}", "elements": elements})
        if n >= 1:
            blocks.append({"type": "divider"})
    return {"type": "home", "blocks": blocks}


def ticked(body: dict[str, Any], aid: int) -> tuple[str, ...] | None:
    """The toggle data of every option ticked for assignment `aid` (None: no checkboxes sent)."""
    values = ((body.get("state") or {}).get("values")) or {}
    found, chosen = False, []
    for by_action in values.values():
        if not isinstance(by_action, dict):
            continue
        for action_id, value in by_action.items():
            m = CHECKBOX_PATTERN.match(str(action_id))
            if not m or int(m.group(1)) != aid or not isinstance(value, dict):
                continue
            found = True
            for option in value.get("selected_options") or []:
                if isinstance(option, dict):
                    chosen.append(str(option.get("value", "")))
    return tuple(chosen) if found else None


def select_data(aid: int) -> str:
    """The press data a checkbox change stands for."""
    return encode("select", aid)
