"""Block Kit rendering for the Slack bot: items, answered items, App Home, modal (no I/O)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

from ..service.types import JoinResult, Outcome, ProjectInfo, Task
from .common import cut, encode, feedback_text, outcome_line, task_text

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
# transport catches them all; block ids carry the project ("cl:<project>:<n>") because a
# button's choice index only means something within its project's labels.
BUTTON_ID = "cl.b.{n}"
BUTTON_PATTERN = re.compile(r"^cl\.b\.\d+$")
CHECKBOX_ID = "cl.m.{aid}.{chunk}"
CHECKBOX_PATTERN = re.compile(r"^cl\.m\.(\d{1,18})\.\d+$")
WRITE_ID = "cl.write"
HOME_START_ID = "cl.home.start"
HOME_EXPORT_ID = "cl.home.export.{n}"
HOME_EXPORT_PATTERN = re.compile(r"^cl\.home\.export\.\d+$")
TEXT_MODAL = "cl.text"
TEXT_BLOCK, TEXT_ACTION = "cl.answer", "text"
_BLOCK_PATTERN = re.compile(r"^cl:([a-z0-9][a-z0-9_-]{0,39}):[a-z0-9]{1,8}$")
_COMMANDS = re.compile(r"(?<![\w/])/(start|resume|pause|stats|help)\b")


def esc(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slackify(text: str, command: str) -> str:
    """Rewrite the service's Telegram-style commands ("/start") as the slash command's form."""
    return _COMMANDS.sub(lambda m: f"{command} {m.group(1)}", text)


def project_of_block(block_id: str | None) -> str | None:
    """The project name a block id of ours names, None for anything else."""
    m = _BLOCK_PATTERN.match(block_id or "")
    return m.group(1) if m else None


def _block_id(project: str, tag: str) -> str:
    return f"cl:{project}:{tag}"


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


def button(text: str, action_id: str, value: str, style: str | None = None) -> JSON:
    """A button element, its text cut to Slack's 75 characters."""
    b: JSON = {
        "type": "button",
        "text": plain(text, BUTTON_LIMIT),
        "action_id": action_id,
        "value": value,
    }
    if style:
        b["style"] = style
    return b


def _chunks(seq: Sequence[Any], size: int) -> Iterable[tuple[int, Sequence[Any]]]:
    for n, start in enumerate(range(0, len(seq), size)):
        yield n, seq[start : start + size]


# -- items ------------------------------------------------------------------------------------


def item_text(task: Task, *, attached: bool = False) -> str:
    """The body of an item's message, with Slack's way of answering free text."""
    note = None
    if attached and task.media is not None:
        note = f"(The {task.media.kind} file is attached just above.)"
    return task_text(
        task,
        note=note,
        text_hint="✍️ Press “Write answer”, or simply reply here with your answer.",
        multi_hint="Tick all that apply, then press Done.",
    )


def notification(task: Task) -> str:
    """The message's `text`: what notifications and screen readers show (escaped)."""
    return esc(cut(f"{task.project.title}: {task.text or 'a new item'}", NOTIFICATION_LIMIT))


def static_blocks(task: Task, image: JSON | None, *, attached: bool = False) -> list[JSON]:
    """The part of an item's message that stays once it is answered: text, image, context."""
    blocks = [section(item_text(task, attached=attached))]
    if image is not None:
        blocks.append(image)
    info = f"*{esc(task.project.title)}* · {task.answered} answered so far"
    instructions = esc(cut(task.project.instructions, 300)) if task.project.instructions else ""
    blocks.append(context(info, instructions))
    return blocks


def image_block(file_id: str, alt: str) -> JSON:
    """An image block showing a file the bot uploaded, by its Slack file id."""
    return {"type": "image", "slack_file": {"id": file_id}, "alt_text": cut(alt or "item", 200)}


def controls(task: Task) -> list[JSON]:
    """The interactive part of an item: buttons, checkboxes, Done, Write answer and Skip."""
    aid, project, kind = task.assignment_id, task.project.name, task.project.kind
    blocks: list[JSON] = []
    counter = iter(range(10_000))
    skip = button("Skip", BUTTON_ID.format(n=next(counter)), encode("skip", aid))
    if kind == "multi":
        chosen = set(task.selected)
        for n, labels in _chunks(list(enumerate(task.choices)), OPTIONS_PER_CHECKBOXES):
            options = [
                {"text": plain(label, BUTTON_LIMIT), "value": encode("toggle", aid, i)}
                for i, label in labels
            ]
            element: JSON = {
                "type": "checkboxes",
                "options": options,
                "action_id": CHECKBOX_ID.format(aid=aid, chunk=n),
            }
            initial = [o for o, (_, label) in zip(options, labels, strict=True) if label in chosen]
            if initial:
                element["initial_options"] = initial
            blocks.append(
                {"type": "actions", "block_id": _block_id(project, f"m{n}"), "elements": [element]}
            )
        done = button("Done", BUTTON_ID.format(n=next(counter)), encode("done", aid), "primary")
        blocks.append(
            {"type": "actions", "block_id": _block_id(project, "d"), "elements": [done, skip]}
        )
        return blocks
    if kind == "text":
        write = button("✍️ Write answer", WRITE_ID, str(aid), "primary")
        return [{"type": "actions", "block_id": _block_id(project, "w"), "elements": [write, skip]}]
    buttons = []
    for i, choice in enumerate(task.choices):
        style = None
        text = choice
        if kind == "verify":
            text, style = ("✅ Yes", "primary") if choice == "yes" else ("❌ No", "danger")
        buttons.append(
            button(text, BUTTON_ID.format(n=next(counter)), encode("answer", aid, i), style)
        )
    buttons.append(skip)
    for n, row in _chunks(buttons, ACTIONS_PER_BLOCK):
        blocks.append(
            {"type": "actions", "block_id": _block_id(project, str(n)), "elements": list(row)}
        )
    return blocks


def task_blocks(task: Task, image: JSON | None, *, attached: bool = False) -> list[JSON]:
    """One item as a whole message."""
    return (static_blocks(task, image, attached=attached) + controls(task))[:MESSAGE_BLOCKS]


def answered_blocks(
    static: list[JSON], out: Outcome, project: str, *, undo: bool = True
) -> list[JSON]:
    """An answered item: what it showed, the choice, gold feedback and (for a while) Undo."""
    blocks = list(static)
    blocks.append(section(f"*{esc(outcome_line(out))}*", markdown=True))
    feedback = feedback_text(out)
    if feedback:
        blocks.append(context(esc(feedback)))
    if undo and out.answer_id is not None and out.undo_until is not None:
        blocks.append(
            {
                "type": "actions",
                "block_id": _block_id(project, "u"),
                "elements": [
                    button("↩️ Undo", BUTTON_ID.format(n=0), encode("undo", out.answer_id))
                ],
            }
        )
    return blocks[:MESSAGE_BLOCKS]


def closed_blocks(static: list[JSON], note: str) -> list[JSON]:
    """An item whose buttons no longer work (timed out), with a short note."""
    return [*static, context(esc(note))][:MESSAGE_BLOCKS]


def sanitize(blocks: Any) -> list[JSON]:
    """The static blocks of a message as Slack echoes it, reduced to what we may send back."""
    out: list[JSON] = []
    if not isinstance(blocks, list):
        return out
    for b in blocks:
        if not isinstance(b, dict):
            continue
        kind = b.get("type")
        text = b.get("text") if isinstance(b.get("text"), dict) else None
        if kind == "section" and text and text.get("type") in ("plain_text", "mrkdwn"):
            out.append(
                {
                    "type": "section",
                    "text": {"type": text["type"], "text": str(text.get("text", " "))},
                }
            )
        elif kind == "image":
            slack_file = b.get("slack_file")
            if isinstance(slack_file, dict) and slack_file.get("id"):
                out.append(image_block(str(slack_file["id"]), str(b.get("alt_text", "item"))))
            elif b.get("image_url"):
                out.append(
                    {
                        "type": "image",
                        "image_url": str(b["image_url"]),
                        "alt_text": str(b.get("alt_text", "item")),
                    }
                )
        elif kind == "context":
            texts = [
                e
                for e in b.get("elements", [])
                if isinstance(e, dict) and e.get("type") in ("plain_text", "mrkdwn")
            ]
            if texts:
                out.append(
                    {
                        "type": "context",
                        "elements": [
                            {"type": e["type"], "text": str(e.get("text", " "))} for e in texts
                        ],
                    }
                )
            break  # the item's own context block ends its static part
    return out


# -- modal ------------------------------------------------------------------------------------


def text_modal(aid: int, project: str, channel: str, ts: str, shown: str) -> JSON:
    """The modal for a free-text answer; private_metadata says which item and message."""
    meta = json.dumps({"a": aid, "p": project, "c": channel, "t": ts})
    blocks: list[JSON] = []
    if shown.strip():
        blocks.append(section(shown))
    blocks.append(
        {
            "type": "input",
            "block_id": TEXT_BLOCK,
            "label": plain("Your answer", 2000),
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
        "title": plain("Your answer", 24),
        "submit": plain("Save", 24),
        "close": plain("Cancel", 24),
        "blocks": blocks,
    }


# -- joining, help, App Home ------------------------------------------------------------------


def welcome_text(res: JoinResult, command: str) -> str:
    """The message shown after joining: welcome, instructions, how it works (mrkdwn)."""
    assert res.project is not None
    lines = [f"*{esc(res.message)}*"]
    if res.project.instructions:
        lines.append(esc(res.project.instructions))
    lines.append(
        "I'll send you items one at a time here: answer with the buttons, or Skip "
        f"anything you're unsure about. `{command} help` lists what else I can do."
    )
    if res.role == "coordinator":
        lines.append(f"You're a coordinator: `{command} help` shows your commands too.")
    return "\n\n".join(lines)


def choose_blocks(choices: Sequence[ProjectInfo], names: Sequence[str], prompt: str) -> list[JSON]:
    """A project picker: one button per project (p:<index into names>)."""
    buttons = [
        button(c.title, BUTTON_ID.format(n=k), encode("project", names.index(c.name)))
        for k, c in enumerate(choices)
        if c.name in names
    ]
    blocks: list[JSON] = [section(prompt)]
    for n, row in _chunks(buttons, ACTIONS_PER_BLOCK):
        blocks.append({"type": "actions", "block_id": f"cl-choose:{n}", "elements": list(row)})
    return blocks[:MESSAGE_BLOCKS]


def help_text(command: str, coordinator: bool) -> str:
    """The help message, in the slash command's terms."""
    lines = [
        "I send you items one at a time in our DM; answer with the buttons.",
        "Skip anything you're unsure about. Undo is offered for a short while after each answer.",
        "",
        f"`{command}` or `{command} start [project or invite code]` — begin or continue",
        f"`{command} stats` — your figures",
        f"`{command} pause` / `{command} resume` — stop or restart sending you items",
        f"`{command} help` — this message",
    ]
    if coordinator:
        lines += [
            "",
            "*Coordinator commands* (add a project name when there are several):",
            f"`{command} progress` — counts, rate, ETA and a chart",
            f"`{command} annotators` — who is doing what",
            f"`{command} disagreements` — items the crowd can't settle",
            f"`{command} agreement` — kappa and alpha",
            f"`{command} export` — the results file",
            f"`{command} pause PROJECT` / `{command} resume PROJECT` — stop or restart a project",
        ]
    return "\n".join(lines)


def home_view(stats: str, projects: Sequence[tuple[str, str, str]], *, can_export: bool) -> JSON:
    """The App Home tab: own stats and Start; coordinators also see (name, progress, top)."""
    blocks: list[JSON] = [
        {"type": "header", "text": plain("Labeling", 150)},
        section(esc(stats), markdown=True),
        {
            "type": "actions",
            "block_id": "cl-home:start",
            "elements": [button("▶️ Start labeling", HOME_START_ID, "start", "primary")],
        },
    ]
    if projects:
        blocks += [{"type": "divider"}, {"type": "header", "text": plain("Projects", 150)}]
    for n, (name, progress, top) in enumerate(projects):
        if len(blocks) + 4 > VIEW_BLOCKS:
            break
        blocks.append(section(esc(progress), markdown=True))
        if top:
            blocks.append(context(esc(cut(top, 2000))))
        if can_export:
            blocks.append(
                {
                    "type": "actions",
                    "block_id": f"cl-home:x{n}",
                    "elements": [button(f"⬇️ Export {name}", HOME_EXPORT_ID.format(n=n), name)],
                }
            )
        blocks.append({"type": "divider"})
    return {"type": "home", "blocks": blocks}
