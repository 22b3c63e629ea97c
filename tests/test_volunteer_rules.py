"""The pure rules behind reminders, digests, streaks, milestones and the leaderboard."""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

import pytest

from chatlabel.core.engagement import (
    Contribution,
    Milestone,
    Streak,
    advance,
    current_run,
    milestone,
    place_of,
    pulled,
    ranking,
    visible,
)
from chatlabel.core.timing import (
    QuietHours,
    ReminderRule,
    ReminderState,
    day_number,
    day_start,
    digest_due,
    eta_seconds,
    in_quiet_hours,
    next_quiet_start,
    parse_clock,
    parse_duration,
    parse_quiet_hours,
    reminded,
    reminder_due,
)

BERLIN = ZoneInfo("Europe/Berlin")
UTC = ZoneInfo("UTC")
HOUR = 3600.0


def at(text: str, tz: ZoneInfo = BERLIN) -> float:
    """A clock reading for a local time written '2024-05-06 10:00'."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=tz).timestamp()


# -- durations, hours of the day ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("15m", 900), ("2h", 7200), ("1d", 86400), ("1h30m", 5400), (" 2H ", 7200),
     ("0.5h", 1800)],
)  # fmt: skip
def test_durations_read_as_people_write_them(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "2", "2 hours", "h", "1w", "-1h", "2h and 3m", "1.h"])
def test_a_bad_duration_says_how_to_write_one(text: str) -> None:
    with pytest.raises(ValueError, match=r'write it like "30s", "15m", "2h" or "1d"'):
        parse_duration(text)


def test_times_of_day_and_quiet_spans() -> None:
    assert parse_clock("08:00") == time(8, 0) and parse_clock("23:59") == time(23, 59)
    for bad in ("24:00", "8", "08:60", "eight"):
        with pytest.raises(ValueError, match="not a time of day"):
            parse_clock(bad)
    assert parse_quiet_hours("") is None
    q = parse_quiet_hours("22:00-08:00")
    assert q == QuietHours(time(22), time(8))
    # Past midnight: 22:00 and 03:00 are quiet, 08:00 and 12:00 are not.
    assert q.covers(time(22)) and q.covers(time(3)) and not q.covers(time(8))
    assert not q.covers(time(12))
    day = parse_quiet_hours("12:00-13:30")
    assert day is not None and day.covers(time(13, 29)) and not day.covers(time(11, 59))
    with pytest.raises(ValueError, match="same time"):
        parse_quiet_hours("08:00-08:00")
    with pytest.raises(ValueError, match="span of hours"):
        parse_quiet_hours("22:00")


def test_quiet_hours_are_local_time() -> None:
    q = parse_quiet_hours("22:00-08:00")
    # 21:30 UTC in May is 23:30 in Berlin: quiet there, not in UTC.
    moment = at("2024-05-06 21:30", UTC)
    assert in_quiet_hours(q, moment, BERLIN) and not in_quiet_hours(q, moment, UTC)
    assert not in_quiet_hours(None, moment, BERLIN)
    assert next_quiet_start(q, at("2024-05-06 10:00"), BERLIN) == at("2024-05-06 22:00")
    assert next_quiet_start(q, at("2024-05-06 23:00"), BERLIN) == at("2024-05-07 22:00")
    assert next_quiet_start(None, 0.0, BERLIN) is None


def test_local_days_follow_the_time_zone_and_daylight_saving() -> None:
    # 23:30 UTC is already the next day in Berlin.
    assert day_number(at("2024-05-06 23:30", UTC), BERLIN) == day_number(
        at("2024-05-07 01:30"), BERLIN
    )
    # The night the clocks go forward (31 March 2024) the day is 23 hours long.
    assert at("2024-04-01 00:00") - day_start(at("2024-03-31 12:00"), BERLIN) == 23 * HOUR
    assert day_start(at("2024-03-31 12:00"), BERLIN) == at("2024-03-31 00:00")


# -- reminders -----------------------------------------------------------------------------------


def rule(**kw: object) -> ReminderRule:
    base: dict[str, object] = {
        "after": 2 * HOUR,
        "every": 24 * HOUR,
        "max_per_day": 1,
        "quiet": parse_quiet_hours("22:00-08:00"),
        "tz": BERLIN,
        "max_ignored": 3,
    }
    base.update(kw)
    return ReminderRule(**base)  # type: ignore[arg-type]


def test_a_reminder_comes_after_the_idle_time_and_never_in_quiet_hours() -> None:
    r = rule()
    s = ReminderState(last_active=at("2024-05-06 10:00"))
    assert not reminder_due(r, s, at("2024-05-06 11:59"))
    assert reminder_due(r, s, at("2024-05-06 12:00"))
    late = ReminderState(last_active=at("2024-05-06 20:30"))
    assert not reminder_due(r, late, at("2024-05-06 22:30"))  # idle enough, but quiet
    assert not reminder_due(r, late, at("2024-05-07 07:59"))
    assert reminder_due(r, late, at("2024-05-07 08:00"))


def test_reminders_keep_their_spacing_and_daily_cap() -> None:
    r = rule(every=HOUR, max_per_day=2)
    s = ReminderState(last_active=at("2024-05-06 08:00"))
    t1 = at("2024-05-06 10:00")
    assert reminder_due(r, s, t1)
    s = reminded(r, s, t1)
    assert (s.sent_today, s.ignored, s.day) == (1, 1, day_number(t1, BERLIN))
    assert not reminder_due(r, s, t1 + 59 * 60)  # `every` not yet over
    t2 = t1 + HOUR
    assert reminder_due(r, s, t2)
    s = reminded(r, s, t2)
    assert not reminder_due(r, s, t2 + 5 * HOUR)  # two today: the cap
    # A new local day starts the count over (but three ignored ones in a row end them).
    t3 = at("2024-05-07 09:00")
    assert reminder_due(r, s, t3)
    s = reminded(r, s, t3)
    assert s.sent_today == 1 and s.ignored == 3
    assert not reminder_due(r, s, at("2024-05-08 09:00"))


def test_coming_back_starts_the_ignored_count_over() -> None:
    r = rule(every=HOUR, max_per_day=5, max_ignored=2)
    s = reminded(r, ReminderState(last_active=0.0), at("2024-05-06 09:00"))
    s = reminded(r, s, at("2024-05-06 10:00"))
    assert not reminder_due(r, s, at("2024-05-06 18:00"))  # two ignored
    back = ReminderState(at("2024-05-06 18:00"), s.reminded_at, s.day, s.sent_today, s.ignored)
    assert reminder_due(r, back, at("2024-05-06 20:00"))
    assert reminded(r, back, at("2024-05-06 20:00")).ignored == 1
    assert reminder_due(rule(max_ignored=0, every=HOUR, max_per_day=9), s, at("2024-05-06 18:00"))


# -- the digest ----------------------------------------------------------------------------------


def test_the_digest_is_due_once_a_day_from_its_hour() -> None:
    six = time(18, 0)
    assert digest_due(six, BERLIN, at("2024-05-06 17:59"), None) is None
    today = digest_due(six, BERLIN, at("2024-05-06 18:00"), None)
    assert today == day_number(at("2024-05-06 12:00"), BERLIN)
    assert digest_due(six, BERLIN, at("2024-05-06 23:00"), today) is None  # sent already
    assert digest_due(six, BERLIN, at("2024-05-07 09:00"), today) is None  # not yet today
    assert digest_due(six, BERLIN, at("2024-05-07 18:30"), today) == today + 1


def test_eta_is_the_remaining_answers_at_the_last_hours_pace() -> None:
    assert eta_seconds(120, 60, 10) == 2 * HOUR
    assert eta_seconds(120, 0, 10) is None  # nobody answered lately
    assert eta_seconds(0, 60, 0) is None  # nothing left


# -- streaks and milestones ----------------------------------------------------------------------


def test_a_streak_counts_days_in_a_row() -> None:
    s = Streak()
    s = advance(s, 100)
    assert (s.current, s.best, s.days) == (1, 1, 1)
    assert advance(s, 100) == s  # another answer the same day changes nothing
    for day in (101, 102):
        s = advance(s, day)
    assert (s.current, s.best, s.days) == (3, 3, 3)
    s = advance(s, 105)  # a gap: a new run, the best stays
    assert (s.current, s.best, s.days) == (1, 3, 4)
    assert current_run(s, 105) == 1 and current_run(s, 106) == 1  # still alive tomorrow
    assert current_run(s, 107) == 0  # broken the day after
    assert current_run(Streak(), 5) == 0


def test_milestones_are_celebrated_once() -> None:
    reached, mask = milestone(0, 9, 1)
    assert reached is None and mask == 0
    reached, mask = milestone(mask, 10, 1)
    assert reached == Milestone("answers", 10)
    again, same = milestone(mask, 10, 1)  # an undo and a new answer: no second party
    assert again is None and same == mask
    reached, mask = milestone(mask, 11, 7)
    assert reached == Milestone("streak", 7)
    assert milestone(mask, 12, 8) == (None, mask)
    # Imported history reaching several at once: each is marked, the biggest is said.
    reached, everything = milestone(0, 600, 9)
    assert reached == Milestone("answers", 500)
    assert milestone(everything, 999, 30)[0] is None
    assert milestone(everything, 1000, 30)[0] == Milestone("answers", 1000)


# -- the leaderboard -------------------------------------------------------------------------


def c(key: str, agreed: int, gold: int, answers: int, shown: bool = True) -> Contribution:
    return Contribution(key, key.upper(), shown, agreed, gold, answers)


def test_the_board_ranks_by_agreed_answers_not_volume() -> None:
    careful = c("careful", agreed=40, gold=9, answers=60)
    fast = c("fast", agreed=20, gold=2, answers=400)  # careless volume
    twin = c("twin", agreed=45, gold=4, answers=50)  # the same score, fewer answers
    board = ranking([fast, careful, twin])
    assert [(p.place, p.who.key) for p in board] == [(1, "twin"), (1, "careful"), (3, "fast")]
    assert place_of(board, "fast") == board[2] and place_of(board, "nobody") is None


def test_names_show_only_for_people_who_opted_in() -> None:
    assert visible(c("ann", 1, 1, 2, shown=True)).name == "ANN"
    assert visible(c("bob", 1, 1, 2, shown=False)).name == ""


def test_an_item_leaves_the_queue_at_the_report_quorum() -> None:
    assert not pulled(1, 2) and pulled(2, 2) and pulled(3, 2) and pulled(1, 1)
