"""What every transport shares: compact button data, the texts people read, the push loop."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..service.labeling import LabelingService
from ..service.types import (
    AnnotatorRow,
    Disagreement,
    JoinResult,
    MyStats,
    Outcome,
    Progress,
    Push,
    Task,
)

log = logging.getLogger("chatlabel.push")

# -- button data ------------------------------------------------------------------------------
# Buttons carry only row ids and a choice index, e.g. "a:123:2" (answer assignment 123 with its
# third choice). Everything is checked against the database when pressed, so forged data can
# do nothing a real button could not; it stays far below Telegram's 64-byte limit.

ACTIONS = {
    "a": "answer",  # a:<assignment>:<choice index>
    "t": "toggle",  # t:<assignment>:<choice index>   (multi)
    "d": "done",  # d:<assignment>                     (multi)
    "s": "skip",  # s:<assignment>
    "u": "undo",  # u:<answer>
    "p": "project",  # p:<project index>              (choice of project at /start)
}


@dataclass(frozen=True)
class Button:
    """A decoded button press."""

    action: str
    ref: int
    index: int | None = None


def encode(action: str, ref: int, index: int | None = None) -> str:
    """Compact button data for an action on a database row."""
    code = next(k for k, v in ACTIONS.items() if v == action)
    return f"{code}:{ref}" if index is None else f"{code}:{ref}:{index}"


def decode(data: str) -> Button | None:
    """The press a button's data stands for; None for anything malformed or unknown."""
    if len(data) > 64:
        return None
    parts = data.split(":")
    if len(parts) not in (2, 3) or parts[0] not in ACTIONS:
        return None
    # Plain ASCII digits only: int() would also take " 5", "+5", "5_0" and other scripts' digits.
    if not all(p.isascii() and p.isdigit() for p in parts[1:]):
        return None
    nums = [int(p) for p in parts[1:]]
    if any(n < 0 or n > 2**62 for n in nums):
        return None
    action = ACTIONS[parts[0]]
    needs_index = action in ("answer", "toggle")
    if needs_index != (len(nums) == 2):
        return None
    return Button(action, nums[0], nums[1] if needs_index else None)


def choice_of(task_choices: tuple[str, ...], index: int | None) -> str | None:
    """The choice a button index points at, None when out of range."""
    if index is None or not 0 <= index < len(task_choices):
        return None
    return task_choices[index]


# -- texts ------------------------------------------------------------------------------------


def cut(text: str, limit: int) -> str:
    """Cut text to at most `limit` characters at a word boundary, with an ellipsis."""
    if len(text) <= limit:
        return text
    head = text[: limit - 1]
    space = head.rfind(" ")
    if space > limit * 0.7:
        head = head[:space]
    return head.rstrip() + "…"


def task_text(
    task: Task,
    *,
    note: str | None = None,
    text_hint: str = "✍️ Reply with your answer.",
    multi_hint: str = "Pick all that apply, then Done.",
) -> str:
    """The body of an item's message (without the buttons); platforms word the hints."""
    parts = []
    if task.text:
        parts.append(task.text)
    if note:
        parts.append(note)
    if task.context:
        parts.append(f"Context: {task.context}")
    if task.project.kind == "verify" and task.suggestion:
        parts.append(f"Suggested: {task.suggestion} — is this right?")
    if task.project.kind == "text":
        parts.append(text_hint)
    if task.project.kind == "multi":
        parts.append(multi_hint)
    return "\n\n".join(parts) or "(no text)"


def outcome_line(out: Outcome) -> str:
    """The line that replaces an answered item's buttons."""
    if out.choice == "skipped":
        return "⏭ Skipped"
    return f"✅ {out.choice}"


def feedback_text(out: Outcome) -> str | None:
    """Gold feedback after a missed check item, when there is some."""
    if out.feedback is None:
        return None
    text = f"ℹ️ The expected answer was: {out.feedback.expected}"
    if out.feedback.reason:
        text += f"\n{out.feedback.reason}"
    return text


def pct(x: float | None) -> str:
    """A share as a percentage, 'n/a' when unknown."""
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.0%}"


def duration(seconds: float | None) -> str:
    """A rough human duration."""
    if seconds is None:
        return "unknown"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def stats_text(s: MyStats | None) -> str:
    """An annotator's /stats reply."""
    if s is None:
        return "You haven't started yet: send /start."
    lines = [f"📊 {s.project}", f"Answers: {s.answers} (skipped {s.skips})"]
    if s.gold_answers:
        lines.append(
            f"Accuracy on check items: {pct(s.gold_accuracy)} of {s.gold_answers} "
            f"(likely {pct(s.accuracy_low)}–{pct(s.accuracy_high)})"
        )
    lines.append(f"Rank: {s.rank} of {s.of}")
    if s.status != "active":
        lines.append(f"Status: {s.status}" + (f" — {s.reason}" if s.reason else ""))
    return "\n".join(lines)


def progress_text(p: Progress) -> str:
    """A coordinator's /progress reply."""
    done = p.resolved + p.escalated
    share = done / p.items if p.items else 0.0
    lines = [
        f"📈 {p.title}" + (" (paused)" if p.paused else ""),
        f"Items: {p.items} · resolved {p.resolved} · escalated {p.escalated} · open {p.pending}"
        f" ({share:.0%} done)",
        f"Answers: {p.answers} · last hour {p.answers_last_hour} · ETA {duration(p.eta_seconds)}",
        f"Annotators: {p.annotators_active} active today of {p.annotators_total}"
        f" · suspended {p.suspended}",
        f"Gold items: {p.gold_items}",
    ]
    if p.labels:
        total = sum(p.labels.values())
        top = list(p.labels.items())[:10]
        lines.append("Labels: " + ", ".join(f"{k} {v} ({v / total:.0%})" for k, v in top))
    return "\n".join(lines)


def annotators_text(rows: list[AnnotatorRow], limit: int = 30) -> str:
    """A coordinator's /annotators reply."""
    if not rows:
        return "No annotators yet."
    lines = ["👥 Annotators (answers · gold accuracy · median time · status)"]
    for r in rows[:limit]:
        who = r.name or r.key
        acc = pct(r.gold_accuracy)
        if r.gold_answers:
            acc += f" of {r.gold_answers}"
        secs = "n/a" if r.median_seconds is None else f"{r.median_seconds:.1f}s"
        status = r.status + (f" ({r.role})" if r.role != "annotator" else "")
        lines.append(f"• {who}: {r.answers} · {acc} · {secs} · {status}")
    if len(rows) > limit:
        lines.append(f"… and {len(rows) - limit} more (chatlabel export --what annotators)")
    return "\n".join(lines)


def disagreements_text(rows: list[Disagreement]) -> str:
    """A coordinator's /disagreements reply."""
    if not rows:
        return "No disagreements so far. 🎉"
    lines = ["⚖️ Items the crowd disagrees on"]
    for d in rows:
        votes = ", ".join(f"{k}: {v:g}" for k, v in sorted(d.votes.items(), key=lambda kv: -kv[1]))
        lines.append(f"• {d.item_id} [{d.status}] {cut(d.text or '', 60)} — {votes}")
    return "\n".join(lines)


def agreement_text(title: str, figures: dict[str, float | int]) -> str:
    """A coordinator's /agreement reply."""

    def fmt(x: float | int | None) -> str:
        if x is None or (isinstance(x, float) and math.isnan(x)):
            return "n/a"
        return f"{x:.3f}"

    return (
        f"🤝 Agreement in {title}\n"
        f"Fleiss' kappa: {fmt(figures.get('fleiss_kappa'))}\n"
        f"Krippendorff's alpha: {fmt(figures.get('krippendorff_alpha'))}\n"
        f"Over {figures.get('items', 0)} items with 2+ answers"
        f" ({figures.get('answers', 0)} answers)"
    )


ANNOTATOR_HELP = (
    "I send you items one at a time; answer with the buttons.\n"
    "Skip anything you're unsure about. Undo is offered for a short while after each answer.\n\n"
    "/start — begin or continue\n/stats — your figures\n/pause — stop sending me items\n"
    "/resume — start again\n/help — this message"
)
COORDINATOR_HELP = (
    "\n\nCoordinator commands:\n/progress — counts, rate, ETA and a chart\n"
    "/annotators — who is doing what\n/disagreements — items the crowd can't settle\n"
    "/agreement — kappa and alpha\n/export — the results file\n"
    "/pause_project, /resume_project — stop or restart the whole project"
)
NOT_ALLOWED = "Sorry, that command is for project coordinators."
TOO_MANY_ATTEMPTS = (
    "Too many wrong invite codes. Please wait a few minutes, then open your invite link again."
)


def join_refusal_text(res: JoinResult) -> str:
    """What a refused /start tells the person."""
    if res.reason == "too_many_attempts":
        return TOO_MANY_ATTEMPTS
    return res.message


# -- pushes -----------------------------------------------------------------------------------


async def push_loop(
    service: LabelingService,
    platform: str,
    send: Callable[[Push], Awaitable[None]],
    stop: asyncio.Event,
    interval: float = 5.0,
) -> None:
    """Push items to waiting annotators whenever work may have appeared, until `stop` is set."""
    while not stop.is_set():
        # Wake on a change in this process, or every `interval` for leases that expired and
        # items imported by another process.
        await service.wait_for_change(interval)
        if stop.is_set():
            break
        try:
            for push in await service.pushes(platform):
                await send(push)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("pushing items on %s failed; retrying shortly", platform)
            await asyncio.sleep(min(interval, 1.0))
