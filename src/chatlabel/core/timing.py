"""When to nudge people: durations, local days, quiet hours, reminders and the daily digest.

Plain functions over numbers and dataclasses; the caller passes the time zone (a tzinfo) and the
clock reading, so every rule is tested without waiting or an event loop.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime, time, timedelta, tzinfo

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def parse_duration(text: str) -> float:
    """Seconds in a duration written like "30s", "15m", "2h", "1d" or "1h30m"."""
    s = text.strip().lower().replace(" ", "")
    parts = _DURATION.findall(s)
    if not s or "".join(n + u for n, u in parts) != s:
        raise ValueError(f'{text!r} is not a duration: write it like "30s", "15m", "2h" or "1d"')
    return sum(float(n) * _UNITS[u] for n, u in parts)


def parse_clock(text: str) -> time:
    """A time of day written "HH:MM" (24-hour)."""
    m = _CLOCK.match(text.strip())
    if m is None:
        raise ValueError(f'{text!r} is not a time of day: write it like "08:00" or "22:30"')
    return time(int(m.group(1)), int(m.group(2)))


@dataclass(frozen=True)
class QuietHours:
    """A daily span of local time with no reminders; it may run past midnight (22:00-08:00)."""

    start: time
    end: time

    def covers(self, moment: time) -> bool:
        """Whether a local time of day falls inside the span (start included, end not)."""
        if self.start <= self.end:
            return self.start <= moment < self.end
        return moment >= self.start or moment < self.end


def parse_quiet_hours(text: str) -> QuietHours | None:
    """ "22:00-08:00" as QuietHours; "" means none."""
    if not text.strip():
        return None
    start, sep, end = text.partition("-")
    if not sep:
        raise ValueError(f'{text!r} is not a span of hours: write it like "22:00-08:00"')
    q = QuietHours(parse_clock(start), parse_clock(end))
    if q.start == q.end:
        raise ValueError(f"{text!r} starts and ends at the same time")
    return q


def local(ts: float, tz: tzinfo) -> datetime:
    """A clock reading as a local date and time."""
    return datetime.fromtimestamp(ts, tz)


def day_number(ts: float, tz: tzinfo) -> int:
    """The local calendar day of a clock reading, as a day count (consecutive days differ by 1)."""
    return local(ts, tz).date().toordinal()


def day_start(ts: float, tz: tzinfo) -> float:
    """The clock reading at the local midnight that began the day of `ts`."""
    d = local(ts, tz)
    return datetime(d.year, d.month, d.day, tzinfo=tz).timestamp()


def in_quiet_hours(q: QuietHours | None, ts: float, tz: tzinfo) -> bool:
    """Whether `ts` falls in the quiet hours (never, without any)."""
    return q is not None and q.covers(local(ts, tz).time())


def next_quiet_start(q: QuietHours | None, ts: float, tz: tzinfo) -> float | None:
    """When the next quiet span begins after `ts` (None without quiet hours)."""
    if q is None:
        return None
    d = local(ts, tz)
    for days in range(3):
        day = d.date() + timedelta(days=days)
        start = datetime.combine(day, q.start, tzinfo=tz).timestamp()
        if start > ts:
            return start
    return None  # unreachable: a daily start always comes within two days


@dataclass(frozen=True)
class ReminderRule:
    """A project's reminder settings, in seconds and local time."""

    after: float  # idle this long (no answer, skip or join) before the first nudge
    every: float  # at least this long between two nudges to one person
    max_per_day: int  # nudges per person per local day
    quiet: QuietHours | None
    tz: tzinfo
    max_ignored: int = 3  # nudges in a row without a reaction, then silence (0 = no limit)


@dataclass(frozen=True)
class ReminderState:
    """What is stored about one member for reminders."""

    last_active: float  # their latest answer, skip or join
    reminded_at: float | None = None  # their latest nudge
    day: int | None = None  # the local day `sent_today` counts
    sent_today: int = 0
    ignored: int = 0  # nudges since they were last active


def ignored_now(state: ReminderState) -> int:
    """Nudges since the person was last active (activity after a nudge starts the count over)."""
    if state.reminded_at is None or state.reminded_at < state.last_active:
        return 0
    return state.ignored


def reminder_due(rule: ReminderRule, state: ReminderState, now: float) -> bool:
    """Whether a member who has work waiting should get a nudge now."""
    if now - state.last_active < rule.after:
        return False
    if state.reminded_at is not None and now - state.reminded_at < rule.every:
        return False
    today = day_number(now, rule.tz)
    sent = state.sent_today if state.day == today else 0
    if sent >= rule.max_per_day:
        return False
    if rule.max_ignored and ignored_now(state) >= rule.max_ignored:
        return False
    return not in_quiet_hours(rule.quiet, now, rule.tz)


def reminded(rule: ReminderRule, state: ReminderState, now: float) -> ReminderState:
    """The member's state after a nudge at `now`."""
    today = day_number(now, rule.tz)
    sent = state.sent_today if state.day == today else 0
    return replace(
        state, reminded_at=now, day=today, sent_today=sent + 1, ignored=ignored_now(state) + 1
    )


def digest_due(at: time, tz: tzinfo, now: float, last_day: int | None) -> int | None:
    """Today's local day number when its digest is due (the hour has come, not yet sent)."""
    d = local(now, tz)
    today = d.date().toordinal()
    if last_day is not None and last_day >= today:
        return None
    return today if d.time() >= at else None


def eta_seconds(answers_needed: int, answers_last_hour: int, pending: int) -> float | None:
    """Seconds until the pending items have their answers at the last hour's pace (None: idle)."""
    if not pending or not answers_last_hour:
        return None
    return answers_needed / (answers_last_hour / 3600.0)
