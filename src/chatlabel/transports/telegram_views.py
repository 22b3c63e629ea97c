"""What the Telegram bot shows: inline keyboards, command menus and message bodies (no I/O)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from telegram import BotCommand, InlineKeyboardButton, InlineKeyboardMarkup

from ..service.types import ProjectInfo, Task
from .common import cut, encode

TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024
# Telegram shows at most 8 buttons in a row; fewer fit a phone once labels get longer.
_MAX_PER_ROW = 8
_ROW_CHARS = 40

ANNOTATOR_COMMANDS = (
    BotCommand("start", "Begin or continue labeling"),
    BotCommand("stats", "Your answers and accuracy"),
    BotCommand("pause", "Stop sending me items"),
    BotCommand("resume", "Send me items again"),
    BotCommand("help", "How this works"),
)
COORDINATOR_COMMANDS = (
    *ANNOTATOR_COMMANDS,
    BotCommand("progress", "Counts, rate, ETA and a chart"),
    BotCommand("annotators", "Who is doing what"),
    BotCommand("disagreements", "Items the crowd can't settle"),
    BotCommand("agreement", "Fleiss' kappa and Krippendorff's alpha"),
    BotCommand("export", "The results file"),
    BotCommand("pause_project", "Stop handing out items"),
    BotCommand("resume_project", "Hand out items again"),
)

SKIP_TEXT = "⏭ Skip"
DONE_TEXT = "✔ Done"
UNDO_TEXT = "↩ Undo"
UNDONE_LINE = "↩ Undone"


def per_row(labels: Sequence[str]) -> int:
    """How many buttons with these labels fit side by side on a phone."""
    longest = max((len(label) for label in labels), default=1)
    # About 40 characters fit across a phone, each button taking ~3 more for its padding.
    wanted = max(1, min(_MAX_PER_ROW, _ROW_CHARS // (longest + 3)))
    # Balance the rows: 4 labels become 2 + 2 rather than 3 + 1.
    rows = math.ceil(len(labels) / wanted) if labels else 1
    return max(1, math.ceil(len(labels) / rows))


def _grid(buttons: list[InlineKeyboardButton], width: int) -> list[list[InlineKeyboardButton]]:
    return [buttons[i : i + width] for i in range(0, len(buttons), width)]


def _button_text(task: Task, choice: str) -> str:
    if task.project.kind == "verify":
        return {"yes": "✅ Yes", "no": "❌ No"}.get(choice, choice)
    if task.project.kind == "multi" and choice in task.selected:
        return f"✓ {choice}"
    return choice


def task_keyboard(task: Task) -> InlineKeyboardMarkup:
    """The buttons under an item: its choices (toggles for multi), Done, and Skip."""
    kind, asg = task.project.kind, task.assignment_id
    rows: list[list[InlineKeyboardButton]] = []
    if kind != "text":
        action = "toggle" if kind == "multi" else "answer"
        buttons = [
            InlineKeyboardButton(_button_text(task, c), callback_data=encode(action, asg, i))
            for i, c in enumerate(task.choices)
        ]
        width = min(len(buttons), _MAX_PER_ROW) if kind in ("rating", "verify") else 0
        rows = _grid(buttons, width or per_row(task.choices))
        if kind == "rating" and len(rows) > 1:  # a long scale: balanced rows, in order
            rows = _grid(buttons, math.ceil(len(buttons) / len(rows)))
    last = [InlineKeyboardButton(SKIP_TEXT, callback_data=encode("skip", asg))]
    if kind == "multi":
        last.insert(0, InlineKeyboardButton(DONE_TEXT, callback_data=encode("done", asg)))
    rows.append(last)
    return InlineKeyboardMarkup(rows)


def undo_keyboard(answer_id: int) -> InlineKeyboardMarkup:
    """The single Undo button left on an answered item."""
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(UNDO_TEXT, callback_data=encode("undo", answer_id))]]
    )


def project_keyboard(choices: Sequence[ProjectInfo], names: Sequence[str]) -> InlineKeyboardMarkup:
    """One button per project; the data is the project's index in the config."""
    buttons = [
        InlineKeyboardButton(
            cut(info.title, 60), callback_data=encode("project", names.index(info.name))
        )
        for info in choices
        if info.name in names
    ]
    return InlineKeyboardMarkup(_grid(buttons, 1))


def with_line(body: str, line: str, limit: int) -> str:
    """`body` and a status line under it, the body cut so that both fit in `limit`."""
    line = cut(line, limit // 2)  # a long typed answer must not push the message over
    room = max(1, limit - len(line) - 2)
    return f"{cut(body, room)}\n\n{line}"


def without_line(shown: str) -> str:
    """The body of a message that `with_line` produced (the last status line removed)."""
    head, sep, _ = shown.rpartition("\n\n")
    return head if sep else shown
