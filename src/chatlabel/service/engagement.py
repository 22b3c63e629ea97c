"""Volunteers' own side: activity, streaks and milestones, /me, the leaderboard, mute choices."""

from __future__ import annotations

import sqlite3
import time

from ..core.engagement import (
    Contribution,
    Milestone,
    Place,
    Streak,
    advance,
    current_run,
    milestone,
    place_of,
    ranking,
    visible,
)
from ..core.gold import accuracy
from ..core.suspension import Reason
from ..core.timing import day_number
from ..mechanics import BoundedCache
from ..storage import repo
from ..storage import volunteer_queries as vq
from .shared import Row, Shared
from .types import UserRef
from .volunteer_types import Board, BoardLine, MeFigures

BOARD_LINES = 10  # places /top lists
BOARD_FRESH = 60.0  # seconds a computed board is reused (it reads every answer of a project)


class Engagement:
    """Streaks and milestones inside each answer's transaction; /me, /top, /mute on demand."""

    def __init__(self, shared: Shared) -> None:
        self.s = shared
        # project -> (real time computed, the ranked contributions)
        self._boards: BoundedCache[str, tuple[float, list[Place]]] = BoundedCache(64)

    # -- inside an answer's transaction ------------------------------------------------------

    def on_answer(
        self, pid: int, m: Row, now: float, skipped: bool
    ) -> tuple[Milestone | None, dict[str, object]]:
        """What an answer (or a skip) changes of its author's activity and streak, and the
        milestone it reached; the caller writes the columns with the answer's other counters
        (one UPDATE of the member row a press, not two: on PostgreSQL each is a round trip)."""
        cols: dict[str, object] = {"last_active": now}
        reached = None
        if not skipped:
            today = day_number(now, self.s.zones[self.s.names[pid]])
            before = Streak(m["streak_day"], m["streak"], m["best_streak"], m["days_active"])
            after = advance(before, today)
            if after != before:
                cols.update(
                    streak_day=after.day,
                    streak=after.current,
                    best_streak=after.best,
                    days_active=after.days,
                )
            # `m` was read before this answer was counted.
            reached, mask = milestone(m["celebrated"], m["answers"] + 1, after.current)
            if mask != m["celebrated"]:
                cols["celebrated"] = mask
        return reached, cols

    # -- choices ----------------------------------------------------------------------------

    async def set_muted(self, user: UserRef, muted: bool) -> bool:
        """No reminders or announcements (or again); False when the person is not known yet."""
        return await self.s.db.write(vq.set_flag, user.key, "muted", muted, short=True)

    async def set_on_board(self, user: UserRef, shown: bool) -> bool:
        """Appear by name on leaderboards (or not); False when the person is not known yet."""
        ok = await self.s.db.write(vq.set_flag, user.key, "on_board", shown, short=True)
        self._boards.clear()  # names change at once, not a minute later
        return ok

    # -- reading ----------------------------------------------------------------------------

    async def me(self, user: UserRef) -> MeFigures | None:
        """The person's figures in their current project (None before they join one)."""
        now = self.s.clock()

        def q(conn: sqlite3.Connection) -> tuple[Row, Row, str, int, int, int] | None:
            cur = self.s.current(conn, user)
            if cur is None:
                return None
            a, name = cur
            m = repo.get_member(conn, self.s.pids[name], a["id"])
            if m is None:
                return None
            settled, agreed = vq.agreement(conn, self.s.pids[name], a["id"])
            total = vq.project_answers(conn, self.s.pids[name])
            return a, m, name, settled, agreed, total

        got = await self.s.db.read(q)
        if got is None:
            return None
        a, m, name, settled, agreed, total = got
        today = day_number(now, self.s.zones[name])
        streak = Streak(m["streak_day"], m["streak"], m["best_streak"], m["days_active"])
        acc = accuracy(m["gold_correct"], m["gold_answers"])
        low, high = acc.shown_interval
        place = of = None
        if self.s.projects[name].leaderboard:
            board = await self._board(name)
            mine = place_of(board, user.key)
            place, of = (mine.place if mine else None), len(board)
        return MeFigures(
            project=name,
            answers=m["answers"],
            skips=m["skips"],
            gold_answers=m["gold_answers"],
            gold_accuracy=acc.raw,
            accuracy_low=low,
            accuracy_high=high,
            settled=settled,
            agreed=agreed,
            days_active=m["days_active"],
            streak=current_run(streak, today),
            best_streak=m["best_streak"],
            share=m["answers"] / total if total else None,
            place=place,
            of=of,
            on_board=bool(a["on_board"]),
            muted=bool(a["muted"]),
            status=m["status"],
            reason=Reason.decode(m["reason"]),
        )

    async def board(self, user: UserRef) -> Board | None:
        """The leaderboard of the person's project (None before they join one)."""
        name = await self.s.current_project(user)
        if name is None:
            return None
        if not self.s.projects[name].leaderboard:
            return Board(name, enabled=False)
        ranked = await self._board(name)
        a = await self.s.db.read(repo.get_annotator, user.key)
        lines = tuple(
            BoardLine(p.place, visible(p.who).name, p.who.score, p.who.key == user.key)
            for p in ranked[:BOARD_LINES]
        )
        mine = place_of(ranked, user.key)
        you = None if mine is None else BoardLine(mine.place, mine.who.name, mine.who.score, True)
        return Board(name, True, lines, you, len(ranked), bool(a and a["on_board"]))

    async def _board(self, name: str) -> list[Place]:
        """The project's ranked contributions, computed at most once a minute."""
        cached = self._boards.get(name)
        # Real time: this is about how much work the machine does, not the labeling clock.
        if cached is not None and time.monotonic() - cached[0] < BOARD_FRESH:
            return cached[1]
        rows = await self.s.db.read(vq.contributions, self.s.pids[name])
        ranked = ranking(
            Contribution(
                r["key"], r["name"], bool(r["on_board"]), r["agreed"], r["gold_correct"],
                r["answers"],
            )
            for r in rows
        )  # fmt: skip
        self._boards[name] = (time.monotonic(), ranked)
        return ranked
