"""Words and layouts: service results turned into views in one person's language (no I/O)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from ..core.gold import accuracy
from ..core.suspension import Reason
from ..service.types import (
    AnnotatorRow,
    Disagreement,
    Idle,
    Outcome,
    Progress,
    ProjectInfo,
    Task,
)
from ..service.volunteer_types import REPORT_REASONS, SKIP_REASONS
from .buttons import encode
from .catalog import Texts
from .views import Button, Media, Message, Rows

# Telegram shows at most 8 buttons in a row, and about 40 characters fit across a phone.
MAX_PER_ROW = 8
ROW_CHARS = 40
# Choices shown at once; longer lists get pages (◀ ▶). 24 fit every platform's button caps
# (Telegram 100 per keyboard, Slack 25 per actions block) and a phone's height in rows.
PAGE = 24


@dataclass(frozen=True)
class Mechanics:
    """How a platform does the things people are told about."""

    command: Callable[[str], str]  # how a command is typed there: "/stats", "/label stats"
    writer: Literal["reply", "modal", "box"] = "reply"  # how a free-text answer is written
    toggles: Literal["buttons", "checkboxes"] = "buttons"  # how multi-choice labels are ticked
    # Media kinds shown as a file posted just before the item (Slack cannot play them inline).
    attached: tuple[str, ...] = ()


def cut(text: str, limit: int) -> str:
    """Cut text to at most `limit` characters at a word boundary, with an ellipsis."""
    if len(text) <= limit:
        return text
    head = text[: limit - 1]
    space = head.rfind(" ")
    if space > limit * 0.7:
        head = head[:space]
    return head.rstrip() + "…"


# -- values and captions ---------------------------------------------------------------------


def value_text(t: Texts, info: ProjectInfo, value: str | None) -> str:
    """A stored value as the person reads it: captions in their language, lists joined."""
    if value is None:
        return t("item.skipped_value")
    if info.kind == "multi":
        chosen = json.loads(value)
        if not chosen:
            return t("item.none_chosen")
        return t.join(info.caption(c, t.lang) for c in chosen)
    if info.kind == "verify":
        return t("item.yes") if value == "yes" else t("item.no")
    if info.kind in ("single",):
        return info.caption(value, t.lang)
    return value


def status_line(t: Texts, info: ProjectInfo, out: Outcome) -> str:
    """The line that replaces an answered item's buttons."""
    if out.skipped and out.reason is not None:
        key = "item.reported" if out.reported else "item.skipped_because"
        return t(key, reason=t(f"problem.{out.reason}"))
    if out.skipped:
        return t("item.skipped")
    return t("item.answered", choice=value_text(t, info, out.value))


def feedback_note(t: Texts, info: ProjectInfo, out: Outcome) -> str:
    """Gold feedback after a missed check item ('' when there is none)."""
    if out.feedback is None:
        return ""
    text = t("item.expected", answer=value_text(t, info, out.feedback.expected))
    if out.feedback.reason:
        text += f"\n{out.feedback.reason}"
    return text


# -- layout ----------------------------------------------------------------------------------


def pack(buttons: Sequence[Button], *, fixed: int = 0) -> Rows:
    """Buttons in rows that fit a phone: as many per row as their captions allow, balanced.

    `fixed`: exactly this many per row (a rating scale or yes/no keeps its order in one line).
    """
    if not buttons:
        return ()
    if fixed:
        width = min(fixed, MAX_PER_ROW)
    else:
        longest = max(len(b.text) for b in buttons)
        # Each button takes ~3 characters more than its caption for padding.
        width = max(1, min(MAX_PER_ROW, ROW_CHARS // (longest + 3)))
    rows = math.ceil(len(buttons) / width)
    width = math.ceil(len(buttons) / rows)  # 4 labels become 2 + 2 rather than 3 + 1
    return tuple(tuple(buttons[i : i + width]) for i in range(0, len(buttons), width))


def pages(n: int) -> int:
    """How many pages `n` choices take."""
    return max(1, math.ceil(n / PAGE))


# -- items -----------------------------------------------------------------------------------


def _body(t: Texts, task: Task, how: Mechanics) -> str:
    info, kind = task.project, task.project.kind
    parts = []
    if task.text:
        parts.append(task.text)
    if task.context:
        parts.append(t("item.context", context=task.context))
    if kind == "verify" and task.suggestion:
        parts.append(t("item.suggested", suggestion=info.caption(task.suggestion, t.lang)))
    if task.media is not None and task.media.kind in how.attached:
        parts.append(t("item.media_attached", kind=t(f"item.{task.media.kind}")))
    if kind == "text":
        parts.append(t(f"item.write_{how.writer}"))
    if kind == "multi":
        parts.append(t(f"item.multi_{how.toggles}"))
    return "\n\n".join(parts) or t("item.no_text")


def _media(task: Task) -> Media | None:
    if task.media is None:
        return None
    boxes = tuple(task.boxes or ()) if task.project.kind == "verify" else ()
    kind = task.media.kind if task.media.kind in ("image", "audio", "video") else "image"
    return Media(
        kind,  # type: ignore[arg-type]
        task.media.path,
        boxes=boxes,
        max_side=task.project.max_image_side,
        alt=cut(task.text or task.item_id, 200),
    )


def _footer(t: Texts, task: Task) -> str:
    info = task.project
    line = t("item.footer", title=info.title_in(t.lang), n=task.answered)
    instructions = info.instructions_in(t.lang)
    return f"{line}\n{cut(instructions, 300)}" if instructions else line


def _choice_buttons(t: Texts, task: Task, page: int) -> list[Button]:
    info, kind, aid = task.project, task.project.kind, task.assignment_id
    first = page * PAGE
    out = []
    for i, choice in enumerate(task.choices[first : first + PAGE], start=first):
        if kind == "verify":
            yes = choice == "yes"
            text = t("item.yes_button") if yes else t("item.no_button")
            out.append(Button(text, encode("answer", aid, i), "primary" if yes else "danger"))
        elif kind == "multi":
            selected = choice in task.selected
            caption = info.caption(choice, t.lang)
            out.append(Button(caption, encode("toggle", aid, i), selected=selected))
        else:
            out.append(Button(info.caption(choice, t.lang), encode("answer", aid, i)))
    return out


def item_view(t: Texts, task: Task, how: Mechanics, page: int = 0) -> Message:
    """An item to answer: its text or media, the choices, Done (multi) and Skip."""
    kind, aid = task.project.kind, task.assignment_id
    n_pages = pages(len(task.choices)) if kind != "text" else 1
    page = min(max(page, 0), n_pages - 1)
    rows: Rows = ()
    if kind != "text":
        choices = _choice_buttons(t, task, page)
        fixed = len(choices) if kind in ("rating", "verify") and len(choices) <= MAX_PER_ROW else 0
        rows = pack(choices, fixed=fixed)
        if kind == "rating" and len(rows) > 1:  # a long scale: balanced rows, in order
            rows = pack(choices, fixed=math.ceil(len(choices) / len(rows)))
    if n_pages > 1:
        nav = []
        if page > 0:
            nav.append(Button(t("item.previous"), encode("page", aid, page - 1)))
        nav.append(Button(t("item.page", page=page + 1, pages=n_pages), encode("page", aid, page)))
        if page < n_pages - 1:
            nav.append(Button(t("item.next"), encode("page", aid, page + 1)))
        rows = (*rows, tuple(nav))
    last = [
        Button(t("item.skip"), encode("skip", aid)),
        Button(t("item.report"), encode("report", aid)),
    ]
    if kind == "multi":
        last.insert(0, Button(t("item.done"), encode("done", aid), "primary"))
    rows = (*rows, tuple(last))
    return Message(
        _body(t, task, how),
        rows,
        media=_media(task),
        footer=_footer(t, task),
        item=aid,
        writer=t("item.write_button") if kind == "text" else "",
    )


def reasons_view(t: Texts, task: Task) -> Message:
    """An item turned into its Report question: the reasons, and Back to the item."""
    aid = task.assignment_id
    reasons = [
        Button(t(f"problem_button.{r}"), encode("reason", aid, i))
        for i, r in enumerate(REPORT_REASONS)
    ]
    back = Button(t("problem_button.back"), encode("page", aid, 0))
    return Message(
        f"{_body_done(t, task)}\n\n{t('item.report_why')}",
        (*pack(reasons, fixed=2), (back,)),
        media=_media(task),
        footer=_footer(t, task),
        item=aid,
    )


def answered_view(t: Texts, task: Task, out: Outcome, *, undo: bool) -> Message:
    """An answered item: what it showed, the choice, gold feedback and (for a while) Undo.

    A skip without a reason offers the reasons for as long as Undo is offered.
    """
    buttons: Rows = ()
    if undo and out.answer_id is not None and out.undo_until is not None:
        buttons = ((Button(t("item.undo"), encode("undo", out.answer_id)),),)
        if out.skipped and out.reason is None:
            why = [
                Button(t(f"problem_button.{r}"), encode("why", out.answer_id, i))
                for i, r in enumerate(SKIP_REASONS)
            ]
            buttons = (*pack(why, fixed=2), *buttons)
    return Message(
        _body_done(t, task),
        buttons,
        media=_media(task),
        footer=_footer(t, task),
        status=status_line(t, task.project, out),
        note=feedback_note(t, task.project, out),
    )


def closed_view(t: Texts, task: Task, status_key: str) -> Message:
    """An item whose buttons do nothing any more (timed out), with its status."""
    return Message(
        _body_done(t, task), (), media=_media(task), footer=_footer(t, task), status=t(status_key)
    )


def _body_done(t: Texts, task: Task) -> str:
    # What stays of an item once it is answered: its content, not how to answer it.
    parts = [task.text] if task.text else []
    if task.context:
        parts.append(t("item.context", context=task.context))
    if task.project.kind == "verify" and task.suggestion:
        parts.append(t("item.suggested", suggestion=task.project.caption(task.suggestion, t.lang)))
    return "\n\n".join(parts) or t("item.no_text")


# -- people ----------------------------------------------------------------------------------


def reason_text(t: Texts, reason: Reason | None) -> str:
    """Why someone was suspended, worded."""
    if reason is None:
        return ""
    p = reason.params
    if reason.code == "qualification":
        return t("reason.qualification", n=int(p.get("n", 0)), min=t.percent(float(p["min"])))
    if reason.code == "gold":
        return t("reason.gold", min=t.percent(float(p["min"])))
    if reason.code == "same_run":
        return t("reason.same_run", n=int(p.get("n", 0)))
    if reason.code == "too_fast":
        return t("reason.too_fast", seconds=t.number(float(p.get("seconds", 0)), 0))
    if reason.code == "by_coordinator":
        note = str(p.get("note", ""))
        return t("reason.by_coordinator") + (f" {note}" if note else "")
    return str(p.get("text", reason.code))


def why_text(t: Texts, reason: Reason | None) -> str:
    """Why someone was suspended (or routing by the model stopped), for coordinators: the
    figures behind it, in the third person."""
    if reason is None:
        return ""
    p = reason.params
    code = reason.code
    if code in ("qualification", "gold") and "accuracy" in p:
        figures = {
            "accuracy": t.percent(float(p["accuracy"])),
            "n": int(p.get("n", 0)),
            "min": t.percent(float(p["min"])),
        }
        if code == "gold" and "crowd" in p:
            return t("why.gold_crowd", crowd=t.percent(float(p["crowd"])), **figures)
        return t(f"why.{code}", **figures)
    if code in ("qualification", "gold"):  # stored by an older chatlabel: the bar only
        return t("why.gold_bar", min=t.percent(float(p["min"])))
    if code == "model_accuracy":
        return t(
            "why.model_accuracy",
            accuracy=t.percent(float(p["accuracy"])),
            n=int(p.get("n", 0)),
            min=t.percent(float(p["min"])),
        )
    if code == "same_run":
        return t("why.same_run", n=int(p.get("n", 0)))
    if code == "too_fast":
        return t("why.too_fast", seconds=t.number(float(p.get("seconds", 0)), 0))
    if code == "by_coordinator":
        note = str(p.get("note", ""))
        return t("why.by_coordinator") + (f": {note}" if note else "")
    return str(p.get("text", code))


def idle_text(t: Texts, idle: Idle, how: Mechanics) -> str:
    """Why there is no item for someone right now."""
    if idle.reason == "suspended":
        why = reason_text(t, idle.why)
        return t("idle.suspended_because", reason=why) if why else t("idle.suspended")
    if idle.reason == "paused":
        return t("idle.paused", resume=how.command("resume"))
    if idle.reason in ("not_joined", "blocked"):
        return t("idle.not_joined", start=how.command("start"))
    return t(f"idle.{idle.reason}")


# -- coordinators ----------------------------------------------------------------------------


def progress_text(t: Texts, p: Progress, title: str) -> str:
    """A project's progress (/progress)."""
    done = p.resolved + p.escalated
    share = done / p.items if p.items else 0.0
    lines = [
        t("progress.title", title=title) + (t("progress.paused") if p.paused else ""),
        t(
            "progress.items",
            n=p.items,
            resolved=p.resolved,
            escalated=p.escalated,
            open=p.pending,
            done=t.percent(share),
        ),
        t(
            "progress.answers",
            n=p.answers,
            last_hour=p.answers_last_hour,
            eta=t.duration(p.eta_seconds),
        ),
        t(
            "progress.annotators",
            active=p.annotators_active,
            n=p.annotators_total,
            suspended=p.suspended,
        ),
        t("progress.gold", n=p.gold_items),
    ]
    if p.labels:
        total = sum(p.labels.values())
        top = list(p.labels.items())[:10]
        shares = t.join(
            t("progress.label_share", label=k, n=v, share=t.percent(v / total)) for k, v in top
        )
        lines.append(t("progress.labels", labels=shares))
    return "\n".join(lines)


def accuracy_interval_text(t: Texts, r: AnnotatorRow) -> str:
    """A gold record with the interval it likely lies in: "90% of 20 (likely 70%–97%)"."""
    return _interval(t, r.gold_accuracy, r.gold_answers, r.accuracy_low, r.accuracy_high)


def record_text(t: Texts, right: int, scored: int) -> str:
    """`right` of `scored` as a record with its interval (as accuracy_interval_text)."""
    acc = accuracy(right, scored)
    return _interval(t, acc.raw, scored, *acc.shown_interval)


def model_record_text(t: Texts, right: int, scored: int) -> str:
    """A model's record on gold items and audits as a sentence, or that it has none yet."""
    if not scored:
        return t("model.unscored")
    return t("model.record", record=record_text(t, right, scored))


def _interval(t: Texts, raw: float | None, n: int, low: float | None, high: float | None) -> str:
    return t(
        "annotators.accuracy_interval",
        accuracy=t.percent(raw),
        n=n,
        low=t.percent(low),
        high=t.percent(high),
    )


def annotators_text(t: Texts, rows: Sequence[AnnotatorRow], title: str, limit: int = 30) -> str:
    """Who is doing what in a project (/annotators)."""
    if not rows:
        return f"{title}\n{t('annotators.none')}"
    lines = [title, t("annotators.header")]
    for r in rows[:limit]:
        acc = t.percent(r.gold_accuracy)
        if r.gold_answers and r.role == "model":
            # The model's record decides routing: its uncertainty is shown with it.
            acc = accuracy_interval_text(t, r)
        elif r.gold_answers:
            acc = t("annotators.accuracy_of", accuracy=acc, n=r.gold_answers)
        secs = (
            t("common.not_available")
            if r.median_seconds is None
            else t("annotators.seconds", seconds=t.number(r.median_seconds, 1))
        )
        status = t(f"status.{r.status}")
        if r.role != "annotator":
            status += f" ({t(f'role.{r.role}')})"
        if r.reason is not None:
            status += f" — {why_text(t, r.reason)}"
        lines.append(
            t(
                "annotators.row",
                who=r.name or r.key,
                answers=r.answers,
                accuracy=acc,
                seconds=secs,
                status=status,
            )
        )
    if len(rows) > limit:
        lines.append(t("annotators.more", n=len(rows) - limit))
    return "\n".join(lines)


def disagreements_text(t: Texts, rows: Sequence[Disagreement], title: str) -> str:
    """Items the crowd does not agree on (/disagreements)."""
    if not rows:
        return f"{title}\n{t('disagreements.none')}"
    lines = [title, t("disagreements.header")]
    for d in rows:
        votes = t.join(
            f"{k}: {t.number(v, 0) if float(v).is_integer() else t.number(v, 2)}"
            for k, v in sorted(d.votes.items(), key=lambda kv: -kv[1])
        )
        lines.append(
            t(
                "disagreements.row",
                item=d.item_id,
                status=t(f"verdict.{d.status}"),
                text=cut(d.text or "", 60),
                votes=votes,
            )
        )
    return "\n".join(lines)


def agreement_text(t: Texts, title: str, figures: dict[str, float | int]) -> str:
    """Agreement figures (/agreement)."""
    return t(
        "agreement.text",
        title=title,
        kappa=t.decimal(figures.get("fleiss_kappa")),
        alpha=t.decimal(figures.get("krippendorff_alpha")),
        items=int(figures.get("items", 0)),
        answers=int(figures.get("answers", 0)),
    )
