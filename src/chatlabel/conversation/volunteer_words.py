"""Words and layouts for volunteers and their coordinators: /me, /top, milestones, reminders,
announcements, digests and reported items (no I/O, like render.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..core.engagement import Milestone
from ..service.types import ProjectInfo
from ..service.volunteer_types import Announcement, Board, HeldItem, MeFigures, OutboxItem
from .buttons import encode
from .catalog import Texts
from .render import Mechanics, cut, model_record_text, pack, reason_text
from .views import Button, Message, Rows


def milestone_text(t: Texts, m: Milestone) -> str:
    """A word of thanks at a milestone."""
    return t(f"milestone.{m.kind}", n=m.n)


def me_text(t: Texts, f: MeFigures | None, how: Mechanics, info: ProjectInfo | None) -> str:
    """Someone's own figures (/me)."""
    if f is None or info is None:
        return t("stats.not_started", start=how.command("start"))
    lines = [
        t("stats.title", project=info.title_in(t.lang)),
        t("stats.answers", n=f.answers, skips=f.skips),
    ]
    if f.gold_answers:
        lines.append(
            t(
                "stats.accuracy",
                accuracy=t.percent(f.gold_accuracy),
                n=f.gold_answers,
                low=t.percent(f.accuracy_low),
                high=t.percent(f.accuracy_high),
            )
        )
    if f.settled:
        lines.append(t("me.agreement", share=t.percent(f.agreed / f.settled), n=f.settled))
    if f.days_active:
        lines.append(t("me.days", n=f.days_active))
        lines.append(t("me.streak", n=f.streak, best=f.best_streak))
    if f.share is not None:
        lines.append(t("me.share", share=t.percent(f.share)))
    if f.place is not None and f.of is not None:
        lines.append(t("stats.rank", rank=f.place, of=f.of))
    if f.status != "active":
        why, status = reason_text(t, f.reason), t(f"status.{f.status}")
        lines.append(
            t("stats.status_because", status=status, reason=why)
            if why
            else t("stats.status", status=status)
        )
    if f.muted:
        lines.append(t("me.muted", unmute=how.command("unmute")))
    return "\n".join(lines)


def board_text(t: Texts, b: Board, how: Mechanics, title: str) -> str:
    """The leaderboard (/top), names only of those who opted in."""
    if not b.enabled:
        return t("top.off", title=title)
    if not b.lines:
        return t("top.empty", title=title)
    lines = [t("top.title", title=title)]
    for line in b.lines:
        who = line.name if line.name else t("top.someone")
        if line.you:
            who = t("top.you", name=who)
        lines.append(t("top.row", place=line.place, who=who, n=line.score))
    if b.you is not None and all(not x.you for x in b.lines):
        lines.append(t("top.your_place", place=b.you.place, of=b.total, n=b.you.score))
    lines.append("")
    lines.append(t("top.how"))
    if not b.on_board:
        lines.append(t("top.hidden", command=how.command("leaderboard on")))
    return "\n".join(lines)


# -- bulk messages ----------------------------------------------------------------------------


def reminder_view(t: Texts, item: OutboxItem, info: ProjectInfo, how: Mechanics) -> Message:
    """A nudge: how much waits, a Continue button, and how to stop them."""
    n = int(item.payload.get("waiting", 1))
    button = Button(t("reminder.continue"), encode("continue", 0), "primary")
    # How to stop them is part of the text: not every platform shows a footer.
    text = t("reminder.text", n=n, title=info.title_in(t.lang))
    return Message(f"{text}\n\n{t('reminder.footer', mute=how.command('mute'))}", ((button,),))


def announcement_text(t: Texts, item: OutboxItem, info: ProjectInfo) -> str:
    """An announcement as its readers get it."""
    return t("announce.message", title=info.title_in(t.lang), text=item.text)


def announced_text(t: Texts, item: OutboxItem, info: ProjectInfo) -> str:
    """The author hears that every copy of their announcement went (or could not)."""
    p = item.payload
    return t(
        "announce.done",
        title=info.title_in(t.lang),
        n=int(p.get("sent", 0)),
        failed=int(p.get("failed", 0)),
        skipped=int(p.get("skipped", 0)),
    )


def preview_view(t: Texts, a: Announcement, info: ProjectInfo) -> Message:
    """A draft announcement with Send and Cancel."""
    title = info.title_in(t.lang)
    head = t("announce.preview", title=title, n=a.audience)
    rows: Rows = (
        (
            Button(t("announce.send", n=a.audience), encode("send", a.id), "primary"),
            Button(t("announce.cancel_button"), encode("cancel", a.id), "danger"),
        ),
    )
    if not a.audience:
        rows = ((Button(t("announce.cancel_button"), encode("cancel", a.id)),),)
    return Message(f"{head}\n\n{t('announce.message', title=title, text=a.text)}", rows)


def progress_view(t: Texts, a: Announcement, info: ProjectInfo) -> Message:
    """An announcement's preview once sent: how far it got, and Cancel while it goes."""
    title = info.title_in(t.lang)
    rows: Rows = ()
    if a.state == "sending":
        rows = ((Button(t("announce.stop_button"), encode("cancel", a.id), "danger"),),)
    return Message(
        t("announce.message", title=title, text=a.text), rows, status=announcement_status(t, a)
    )


def announcement_status(t: Texts, a: Announcement) -> str:
    """One line on where an announcement stands."""
    if a.state == "draft":
        return t("announce.state_draft")
    if a.state == "cancelled" and not a.sent and not a.pending:
        return t("announce.state_dropped")
    key = {"sending": "announce.state_sending", "done": "announce.state_done"}.get(
        a.state, "announce.state_cancelled"
    )
    return t(key, n=a.audience, sent=a.sent, failed=a.failed, stopped=a.cancelled)


def digest_text(t: Texts, item: OutboxItem, info: ProjectInfo, how: Mechanics) -> str:
    """A coordinator's daily digest: the three numbers that matter, and reports to decide."""
    p = item.payload
    eta = p.get("eta")
    suspended: Sequence[str] = p.get("suspended") or ()
    lines = [
        t("digest.title", title=info.title_in(t.lang)),
        t("digest.settled", n=int(p.get("settled_today", 0))),
        t("digest.eta", eta=t.duration(None if eta is None else float(eta))),
        t("digest.suspended", n=len(suspended), names=t.join(suspended))
        if suspended
        else t("digest.none_suspended"),
    ]
    model = p.get("model")
    if model is not None:
        lines += _model_digest(t, model, info, how)
    held = int(p.get("held", 0))
    if held:
        lines.append(t("digest.held", n=held, command=how.command("reports")))
    return "\n".join(lines)


def _model_digest(t: Texts, m: dict[str, Any], info: ProjectInfo, how: Mechanics) -> list[str]:
    """What the model did today, its record, and whether routing is off (how to switch it on)."""
    record = model_record_text(t, int(m["right"]), int(m["scored"]))
    lines = [f"{t('digest.model', n=int(m['checked']))} {record}"]
    if not m["routing"]:
        title = info.title_in(t.lang)
        lines.append(t("model.now_off", title=title, command=how.command("routing")))
    return lines


# -- reports on items -------------------------------------------------------------------------


def reasons_text(t: Texts, reasons: Sequence[Sequence[Any]]) -> str:
    """Report reasons with their counts ("broken media ×2, unclear")."""
    out = []
    for reason, n in reasons:
        word = t(f"problem.{reason}")
        out.append(t("reports.reason_count", reason=word, n=int(n)) if int(n) > 1 else word)
    return t.join(out)


def pulled_text(t: Texts, item: OutboxItem, info: ProjectInfo, how: Mechanics) -> str:
    """Coordinators hear that reports took an item out of the queue."""
    p = item.payload
    return t(
        "reports.pulled",
        item=str(p.get("item", "")),
        title=info.title_in(t.lang),
        n=int(p.get("reports", 0)),
        reasons=reasons_text(t, p.get("reasons") or ()),
        command=how.command("reports"),
    )


def held_view(t: Texts, h: HeldItem) -> Message:
    """One held item for a coordinator: what it is, why people reported it, Restore / Remove."""
    lines = [
        t("reports.item", item=h.item_id, text=cut(h.text or t("item.no_text"), 200)),
        t("reports.why", n=h.reports, reasons=reasons_text(t, h.reasons)),
    ]
    lines += [t("reports.comment", text=cut(c, 300)) for c in h.comments]
    buttons = [
        Button(t("reports.restore"), encode("restore", h.id), "primary"),
        Button(t("reports.remove"), encode("remove", h.id), "danger"),
    ]
    return Message("\n".join(lines), pack(buttons, fixed=2))
