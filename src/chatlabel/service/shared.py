"""What every part of the service shares: config, rules, the database, the clock, wake-ups."""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import tzinfo

from ..config import Config, Project
from ..core import access
from ..core.gold import crowd_accuracy
from ..core.model import VERIFY_LABELS, Rules
from ..core.routing import Routing
from ..mechanics import BoundedCache
from ..storage import quality_queries, repo
from ..storage.store import Store
from .types import Media, ProjectInfo, ProjectTexts, Task, UserRef

Row = sqlite3.Row
POOLED_SECONDS = 30.0  # the crowd's pooled gold figures are scanned again at least this often


class Shared:
    """Configuration, rules, the database and the wake-up signal the service's parts share."""

    def __init__(
        self,
        db: Store,
        config: Config,
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.db = db
        self.config = config
        self.clock = clock
        self.rng = rng or random.Random()
        self.projects: dict[str, Project] = {p.name: p for p in config.project}
        self.rules: dict[str, Rules] = {p.name: p.rules() for p in config.project}
        self.routing: dict[str, Routing | None] = {p.name: p.routing() for p in config.project}
        # Each project's time zone: streak days, quiet hours and the digest's hour are local.
        self.zones: dict[str, tzinfo] = {p.name: p.zone() for p in config.project}
        self._infos = {p.name: _info(p, self.rules[p.name]) for p in config.project}
        # A check shows a confident item as a verify item: its suggestion, yes and no.
        self._check_infos = {n: replace(i, kind="verify") for n, i in self._infos.items()}
        self.pids: dict[str, int] = {}
        self.names: dict[int, str] = {}
        self._changed = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        # Per project: the active members' pooled gold answers [right, all], behind the average
        # annotator's accuracy (the prior of weighted votes and the relative gate's crowd). A
        # scan of every member, so kept up to date by each gold answer and rescanned only after
        # a suspension or a reinstatement (pop the project), and at
        # least every POOLED_SECONDS: other processes sharing a PostgreSQL database count
        # their own gold answers, and a transaction run again after a collision counts twice.
        self.pooled: dict[int, list[int]] = {}
        self._pooled_at: dict[int, float] = {}
        # The choices behind each assignment's buttons never change: a press needs no read.
        self._choices: BoundedCache[int, tuple[str, ...]] = BoundedCache(50_000)

    async def start(self) -> None:
        """Create the project rows the config declares."""
        self._loop = asyncio.get_running_loop()
        # Work announced by another process on the same database wakes this one's push loops.
        self.db.on_change(self._wake)
        now = self.clock()

        def tx(conn: sqlite3.Connection) -> dict[str, int]:
            return {name: repo.ensure_project(conn, name, now) for name in self.projects}

        self.pids = await self.db.write(tx)
        self.names = {pid: name for name, pid in self.pids.items()}

    # -- what adapters and the conversation may ask -----------------------------------------

    def now(self) -> float:
        """The service's clock (tests move it by hand)."""
        return self.clock()

    def project_names(self) -> list[str]:
        """The projects in the config, in its order."""
        return list(self.projects)

    def info(self, name: str) -> ProjectInfo:
        """A project as shown to people."""
        return self._infos[name]

    def role(self, user: UserRef) -> access.Role:
        """The user's role under the config."""
        a = self.config.access
        return access.role_of(user.key, a.coordinators, a.experts)

    def is_coordinator(self, user: UserRef) -> bool:
        """True for coordinators listed in the config."""
        return self.role(user) == "coordinator"

    def coordinators(self) -> list[UserRef]:
        """The coordinators the config lists (platform and user id; nothing else is known)."""
        return [UserRef.from_key(key) for key in self.config.access.coordinators]

    def notify(self) -> None:
        """Wake everyone waiting for work to appear, once the transaction calling this (if
        any) has committed; safe to call from the database thread.

        Other processes on the same database (PostgreSQL) hear of it too."""
        if self._loop is not None:
            self.db.after_commit(self._notify_now)

    def _notify_now(self) -> None:
        loop = self._loop
        if loop is None:
            return
        self.db.announce()
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if here is loop:
            self._wake()
        else:
            loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        # A fresh event per wake-up, so every push loop waiting on the old one is woken.
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for_change(self, timeout: float) -> bool:  # noqa: ASYNC109
        """Wait until something may have produced work (or the timeout); True if signalled."""
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def crowd(self, conn: sqlite3.Connection, pid: int) -> float:
        """The project's average annotator's gold accuracy (pooled, shrunk; cached)."""
        counts = self.pooled.get(pid)
        t = time.monotonic()
        if counts is None or t - self._pooled_at.get(pid, t) > POOLED_SECONDS:
            counts = self.pooled[pid] = list(quality_queries.pooled_gold(conn, pid))
            self._pooled_at[pid] = t
        return crowd_accuracy(counts[0], counts[1])

    def gold_scored(self, pid: int, correct: bool) -> None:
        """Count one more gold answer into the pooled figures (if they are loaded)."""
        counts = self.pooled.get(pid)
        if counts is not None:
            counts[0] += int(correct)
            counts[1] += 1

    def current(self, conn: sqlite3.Connection, user: UserRef) -> tuple[Row, str] | None:
        """The person's annotator row and the name of the project they work on now."""
        a = repo.get_annotator(conn, user.key)
        if a is None or a["project_id"] is None or a["project_id"] not in self.names:
            return None
        return a, self.names[a["project_id"]]

    def task(
        self, conn: sqlite3.Connection, assignment_id: int, answered: int, r: Row | None = None
    ) -> Task:
        """The Task an assignment shows (`r`: its row from repo.get_assignment, if at hand)."""
        r = r or repo.get_assignment(conn, assignment_id)
        assert r is not None
        name = self.names[r["project_id"]]
        media = Media(r["media_kind"], r["media_path"]) if r["media_kind"] else None
        check = bool(r["checking"])
        choices = VERIFY_LABELS if check else self.rules[name].choices
        self._choices[assignment_id] = choices
        return Task(
            assignment_id=assignment_id,
            project=self._check_infos[name] if check else self.info(name),
            item_id=r["ext_id"],
            text=r["text"],
            context=r["context"],
            media=media,
            suggestion=r["suggestion"],
            boxes=json.loads(r["boxes"]) if r["boxes"] else None,
            choices=choices,
            selected=tuple(json.loads(r["draft"])) if r["draft"] else (),
            expires_at=r["expires_at"],
            answered=answered,
            check=check,
        )

    async def current_project(self, user: UserRef) -> str | None:
        """The project the user works on now (None before they join one)."""

        def q(conn: sqlite3.Connection) -> str | None:
            cur = self.current(conn, user)
            return None if cur is None else cur[1]

        return await self.db.read(q)

    async def choices_for(self, assignment_id: int) -> tuple[str, ...] | None:
        """The choices behind an assignment's buttons (None for no such assignment).

        Ownership is checked where it matters, when the press is recorded."""
        known = self._choices.get(assignment_id)
        if known is not None:
            return known

        def q(conn: sqlite3.Connection) -> tuple[str, ...] | None:
            r = repo.get_assignment(conn, assignment_id)
            if r is None:
                return None
            if r["checking"]:
                return VERIFY_LABELS
            return self.rules[self.names[r["project_id"]]].choices

        return await self.db.read(q)


def _info(p: Project, rules: Rules) -> ProjectInfo:
    """A project as shown to people, from its config."""
    translations = {
        lang: ProjectTexts(t.title, t.instructions, dict(t.labels))
        for lang, t in p.translations.items()
    }
    return ProjectInfo(
        p.name,
        p.title,
        p.instructions,
        p.kind,
        rules.choices,
        language=p.language or None,
        translations=translations,
        max_image_side=p.max_image_side,
    )
