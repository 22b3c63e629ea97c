"""The labeling service: one object for the conversation and the CLI, composed of its parts.

The parts (leases, answers, settling, suggestions, people, media ids, health) share one
`Shared` state; this class only wires them and is the single public face: callers never reach
into a part.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from ..config import Config, Project
from ..core.model import Rules
from ..models.base import Suggested, WorkSource
from ..storage.exports import ExportFormat, ExportWhat
from ..storage.store import Store
from .announcements import Announcements
from .answers import Answers
from .engagement import Engagement
from .feedback import Feedback
from .health import Health
from .items import ImportSummary, Items, Produce
from .leases import Leases
from .media_ids import MediaIds
from .nudges import Nudges
from .outbox import Outbox
from .people import People
from .settling import Settling
from .shared import Shared
from .suggestions import Suggestions
from .types import (
    Idle,
    JoinResult,
    ModelState,
    Outcome,
    ProjectInfo,
    Push,
    RoutingStopped,
    Task,
    UserRef,
)
from .volunteer_types import (
    Announcement,
    Board,
    Decision,
    HeldItem,
    MeFigures,
    OutboxItem,
    Saved,
    Tick,
)


class LabelingService:
    """The one place labeling happens; the conversation calls it, it calls storage and the core."""

    def __init__(
        self,
        db: Store,
        config: Config,
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.shared = Shared(db, config, clock=clock, rng=rng)
        self.settling = Settling(self.shared)
        self.leases = Leases(self.shared)
        self.engagement = Engagement(self.shared)
        # Bulk sends: every reminder, announcement and digest is an outbox row before it goes;
        # so is the coordinators' alert when routing by a model switches itself off.
        self.outbox = Outbox(self.shared)
        self.suggestions = Suggestions(self.shared, self.outbox, self.settling)
        self.answers = Answers(
            self.shared, self.settling, self.leases, self.engagement, self.suggestions
        )
        self.people = People(self.shared, self.settling)
        self.media = MediaIds(self.shared)
        self.items = Items(self.shared, self.suggestions)
        self.announcements = Announcements(self.shared, self.outbox)
        self.nudges = Nudges(self.shared, self.leases, self.outbox)
        self.feedback = Feedback(self.shared, self.answers, self.leases, self.outbox)
        # The database's incidents and free space: subscribe, status, the free-space watch.
        self.health = Health(db, config.storage)

    async def start(self) -> None:
        """Create the project rows the config declares (and their models' rows)."""
        await self.shared.start()
        await self.suggestions.start()

    # -- what the configuration says (read-only) ------------------------------------------------

    @property
    def db(self) -> Store:
        """The database (for the importer, exporter and reports of this package)."""
        return self.shared.db

    @property
    def config(self) -> Config:
        """The validated configuration."""
        return self.shared.config

    @property
    def clock(self) -> Callable[[], float]:
        """The clock (tests move it by hand)."""
        return self.shared.clock

    @property
    def rng(self) -> random.Random:
        """The random source of gold draws (seeded in tests)."""
        return self.shared.rng

    @property
    def projects(self) -> dict[str, Project]:
        """The projects' configuration, by name."""
        return self.shared.projects

    @property
    def rules(self) -> dict[str, Rules]:
        """Each project's rules as the core sees them."""
        return self.shared.rules

    @property
    def pids(self) -> dict[str, int]:
        """Each project's row id."""
        return self.shared.pids

    def exclusive(self, name: str) -> contextlib.AbstractAsyncContextManager[bool]:
        """Hold background work `name` for a block, across every process on the database.

        Yields False when another process holds it (that process does the work). On
        PostgreSQL an advisory lock: if its holder dies, the lock goes with its session.
        """
        return self.shared.db.exclusive(name)

    def now(self) -> float:
        """The service's clock reading."""
        return self.shared.now()

    def project_names(self) -> list[str]:
        """The projects in the config, in its order."""
        return self.shared.project_names()

    def info(self, name: str) -> ProjectInfo:
        """A project as shown to people."""
        return self.shared.info(name)

    def role(self, user: UserRef) -> str:
        """The person's role under the config."""
        return self.shared.role(user)

    def is_coordinator(self, user: UserRef) -> bool:
        """True for coordinators listed in the config."""
        return self.shared.is_coordinator(user)

    def coordinators(self) -> list[UserRef]:
        """The coordinators the config lists."""
        return self.shared.coordinators()

    def notify(self) -> None:
        """Wake everyone waiting for work (new items, freed leases)."""
        self.shared.notify()

    async def wait_for_change(self, timeout: float) -> bool:  # noqa: ASYNC109
        """Wait until something may have produced work (or the timeout); True if signalled."""
        return await self.shared.wait_for_change(timeout)

    async def current_project(self, user: UserRef) -> str | None:
        """The project the person works on now (None before they join one)."""
        return await self.shared.current_project(user)

    async def choices_for(self, assignment_id: int) -> tuple[str, ...] | None:
        """The choices behind an assignment's buttons (None for no such assignment)."""
        return await self.shared.choices_for(assignment_id)

    # -- work -----------------------------------------------------------------------------------

    async def join(self, user: UserRef, arg: str | None = None) -> JoinResult:
        """Start (or resume) labeling; `arg` is a project name or an invite code."""
        return await self.leases.join(user, arg)

    async def next_task(self, user: UserRef) -> Task | Idle:
        """The person's current item, or a new lease, or why there is none."""
        return await self.leases.next_task(user)

    async def lease(self, user: UserRef, item_id: str) -> Task | Idle:
        """Lease one named item (by its import id) to a person, if it is open to them."""
        return await self.leases.lease(user, item_id)

    async def open_task(self, user: UserRef, assignment_id: int) -> Task | None:
        """The person's own assignment as a Task while it is open (None otherwise)."""
        return await self.leases.open_task(user, assignment_id)

    async def release(self, user: UserRef, assignment_id: int) -> None:
        """Give back an item that could not be shown; its person keeps waiting for work."""
        await self.leases.release(user, assignment_id)

    async def pushes(self, platform: str, limit: int = 50) -> list[Push]:
        """Items for people on `platform` who were waiting for work and now have some."""
        return await self.leases.pushes(platform, limit)

    # -- answers --------------------------------------------------------------------------------

    async def answer(
        self,
        user: UserRef,
        assignment_id: int,
        value: str | list[str] | None = None,
        *,
        then_next: bool = False,
        ref: str | None = None,
    ) -> Outcome:
        """Record an answer (multi: None means the selection so far); then_next leases the next.

        `ref`: the item's message on the platform (a reply to it later is a comment)."""
        return await self.answers.answer(user, assignment_id, value, then_next=then_next, ref=ref)

    async def skip(
        self, user: UserRef, assignment_id: int, *, then_next: bool = False, ref: str | None = None
    ) -> Outcome:
        """Skip an item: it goes to someone else and never comes back to this person."""
        return await self.answers.skip(user, assignment_id, then_next=then_next, ref=ref)

    async def answer_text(self, user: UserRef, text: str, source: str | None = None) -> Outcome:
        """A typed message: the answer to the person's open free-text item, if any."""
        return await self.answers.answer_text(user, text, source)

    async def toggle(self, user: UserRef, assignment_id: int, label: str) -> Outcome:
        """Add or remove one label of a multi-choice selection."""
        return await self.answers.toggle(user, assignment_id, label)

    async def set_selection(self, user: UserRef, assignment_id: int, labels: list[str]) -> Outcome:
        """Make a multi-choice selection exactly `labels`."""
        return await self.answers.set_selection(user, assignment_id, labels)

    async def undo(self, user: UserRef, answer_id: int) -> Outcome:
        """Take back an answer within the undo window; returns the item again."""
        return await self.answers.undo(user, answer_id)

    async def edit_text(self, user: UserRef, source: str, text: str) -> Outcome:
        """A typed answer edited on the platform: the new text while Undo is still offered."""
        return await self.answers.edit_text(user, source, text)

    async def unshowable(self, user: UserRef, assignment_id: int) -> Task | Idle:
        """An item whose media cannot be shown to this person: skipped for them; the next."""
        return await self.answers.unshowable(user, assignment_id)

    # -- people ---------------------------------------------------------------------------------

    async def set_paused(self, user: UserRef, paused: bool) -> bool:
        """Pause or resume pushes for oneself; False when they have not joined a project."""
        return await self.people.set_paused(user, paused)

    async def set_project_paused(self, name: str, paused: bool) -> None:
        """Pause or resume a whole project (coordinators)."""
        await self.people.set_project_paused(name, paused)

    async def mark_blocked(self, user: UserRef) -> None:
        """The person blocked the bot: stop pushing and give their items back."""
        await self.people.mark_blocked(user)

    async def suspend(self, project: str, key: str, note: str | None = None) -> bool:
        """Suspend an annotator by hand (coordinators), with their note on why."""
        return await self.people.suspend(project, key, note)

    async def reinstate(self, project: str, key: str) -> bool:
        """Let a suspended annotator label again (coordinators)."""
        return await self.people.reinstate(project, key)

    async def language(self, user: UserRef) -> str | None:
        """The language the person chose (None: not chosen)."""
        return await self.people.language(user)

    async def set_language(self, user: UserRef, language: str | None) -> bool:
        """Remember the person's language; False when they are not known yet."""
        return await self.people.set_language(user, language)

    # -- volunteers: their figures and choices ---------------------------------------------------

    async def me(self, user: UserRef) -> MeFigures | None:
        """The person's own figures in their current project (None before they join one)."""
        return await self.engagement.me(user)

    async def board(self, user: UserRef) -> Board | None:
        """The leaderboard of the person's project (None before they join one)."""
        return await self.engagement.board(user)

    async def set_muted(self, user: UserRef, muted: bool) -> bool:
        """No reminders or announcements for this person (or again); False if not known yet."""
        return await self.engagement.set_muted(user, muted)

    async def set_on_board(self, user: UserRef, shown: bool) -> bool:
        """Show the person's name on leaderboards (or not); False if not known yet."""
        return await self.engagement.set_on_board(user, shown)

    # -- reports and comments on items ----------------------------------------------------------

    async def report(
        self, user: UserRef, assignment_id: int, reason: str, *, ref: str | None = None
    ) -> Outcome:
        """Report an open item (it is skipped with the reason); the next item is leased."""
        return await self.feedback.report(user, assignment_id, reason, ref=ref)

    async def reportable(self, user: UserRef, assignment_id: int) -> Outcome:
        """The item behind a Report button while its person may report it (`task`), or why not."""
        return await self.feedback.reportable(user, assignment_id)

    async def skip_reason(self, user: UserRef, answer_id: int, reason: str) -> Outcome:
        """Say why an item was skipped; a problem with the item reports it."""
        return await self.feedback.skip_reason(user, answer_id, reason)

    async def comment(
        self,
        user: UserRef,
        text: str,
        *,
        assignment_id: int | None = None,
        ref: str | None = None,
        source: str | None = None,
    ) -> Saved:
        """Save a comment on the person's item (by assignment, or by the message it showed in)."""
        return await self.feedback.comment(
            user, text, assignment_id=assignment_id, ref=ref, source=source
        )

    async def held_items(self, project: str, limit: int = 10) -> tuple[list[HeldItem], int]:
        """Items reports took out of the queue, waiting for a coordinator, and their number."""
        return await self.feedback.held(project, limit)

    async def decide(self, item_id: int, restore: bool) -> Decision:
        """Restore a held item to the queue, or remove it for good (coordinators)."""
        return await self.feedback.decide(item_id, restore)

    # -- announcements --------------------------------------------------------------------------

    async def draft_announcement(self, project: str, author: UserRef, text: str) -> Announcement:
        """Keep an announcement to preview; nothing is sent yet."""
        return await self.announcements.draft(project, author, text)

    async def send_announcement(self, announcement_id: int) -> Announcement | None:
        """Queue a draft for every active member of its project (once)."""
        return await self.announcements.send(announcement_id)

    async def cancel_announcements(self, announcement_id: int | None = None) -> list[Announcement]:
        """Stop copies not yet sent (of one announcement, or of all still sending)."""
        return await self.announcements.cancel(announcement_id)

    async def announcement(self, announcement_id: int) -> Announcement | None:
        """One announcement with its progress."""
        return await self.announcements.get(announcement_id)

    async def recent_announcements(self, limit: int = 3) -> list[Announcement]:
        """The latest announcements sent or sending, newest first."""
        return await self.announcements.recent(limit)

    # -- the outbox: reminders, announcements and digests on their way -------------------------

    async def tick(self) -> Tick:
        """Queue the reminders and digests due at the clock's time (the scheduler's round)."""
        return await self.nudges.tick()

    async def run_schedule(self, stop: asyncio.Event, interval: float = 60.0) -> None:
        """Tick every `interval` until `stop` is set (for `chatlabel run`)."""
        await self.nudges.run(stop, interval)

    def schedules(self) -> bool:
        """Whether any project has reminders or a digest to schedule."""
        return self.nudges.active()

    async def outbox_due(
        self, platform: str, limit: int = 50, skip: tuple[int, ...] = ()
    ) -> list[OutboxItem]:
        """Bulk copies for `platform` due now (`skip`: those being sent)."""
        return await self.outbox.due(platform, limit, skip)

    async def outbox_next_due(self, platform: str) -> float | None:
        """When the next copy for `platform` comes due (None: nothing pending)."""
        return await self.outbox.next_due_at(platform)

    async def outbox_claim(self, item: OutboxItem) -> OutboxItem | None:
        """Take a copy for sending; None when it went already or is no longer wanted."""
        return await self.outbox.claim(item)

    async def outbox_sent(self, item: OutboxItem, ref: str | None) -> None:
        """The platform accepted a copy."""
        await self.outbox.sent(item, ref)

    async def outbox_failed(self, item: OutboxItem, error: str, *, retry: bool) -> None:
        """A copy did not go: later (`retry`), or never."""
        await self.outbox.failed(item, error, retry=retry)

    async def outbox_put_back(self, item: OutboxItem) -> None:
        """A claimed copy not sent because the bot is stopping: pending again, untried."""
        await self.outbox.put_back(item)

    async def outbox_unsettled(self, platform: str) -> list[OutboxItem]:
        """Copies a crash left in flight on `platform`."""
        return await self.outbox.unsettled(platform)

    async def outbox_settle(self, item: OutboxItem, delivered: bool | None) -> bool:
        """Settle a copy a crash left in flight; True when it is to be sent (again)."""
        return await self.outbox.settle(item, delivered)

    def outbox_listen(self) -> asyncio.Event:
        """An event set whenever copies are added (a sender's own: it clears it)."""
        return self.outbox.listen()

    # -- media ----------------------------------------------------------------------------------

    async def media_file_id(self, sha256: str, platform: str) -> str | None:
        """A platform's file id for a prepared media file, if uploaded before."""
        return await self.media.media_file_id(sha256, platform)

    async def save_media_file_id(self, sha256: str, platform: str, file_id: str) -> None:
        """Remember a platform's file id so the file is uploaded once."""
        await self.media.save_media_file_id(sha256, platform, file_id)

    # -- items in bulk --------------------------------------------------------------------------

    async def add_items(
        self, project: str, produce: Produce, progress: Callable[[int], None] | None = None
    ) -> ImportSummary:
        """Add the items `produce` yields in one transaction (all or none); wakes the waiting."""
        return await self.items.add(project, produce, progress)

    def export_batches(
        self, project: str, what: ExportWhat, fmt: ExportFormat
    ) -> AsyncIterator[list[Any]]:
        """An export's rows in batches, from a read-only connection (writes go on meanwhile)."""
        return self.items.export_batches(project, what, fmt)

    def task_batches(self, project: str) -> AsyncIterator[list[Any]]:
        """Every item with its suggestion and verdict, in batches (for Label Studio's JSON)."""
        return self.items.task_batches(project)

    # -- suggestions and routing ----------------------------------------------------------------

    def model_projects(self) -> list[str]:
        """Projects with a [model] section."""
        return self.suggestions.models()

    async def model_state(self, project: str) -> ModelState | None:
        """A project's model: version, routing, record (None without a [model] section)."""
        return await self.suggestions.state(project)

    def model_source(self, project: str, *, learns: bool) -> WorkSource:
        """Where a model round reads its work (a picklable reader, run where the model works)."""
        return self.suggestions.source(project, learns=learns)

    async def unsuggested_items(self, project: str) -> int:
        """Items (gold included) no model has suggested for yet."""
        return await self.suggestions.unsuggested(project)

    async def model_trainings(self, project: str) -> tuple[int, int]:
        """(trainings so far, resolved items at the last one) of a project's model."""
        return await self.suggestions.trainings(project)

    async def resolved_items(self, project: str) -> int:
        """Ordinary items resolved so far (a learning model retrains as they grow)."""
        return await self.suggestions.resolved(project)

    async def write_suggestions(
        self, project: str, suggested: Suggested, version: str, *, resolved: int | None = None
    ) -> int:
        """Store a model round's suggestions; untouched items are routed by their scores."""
        return await self.suggestions.write(project, suggested, version, resolved=resolved)

    async def check_model(self, project: str) -> RoutingStopped | None:
        """Switch routing off if the model's record fell confidently below the bar."""
        return await self.suggestions.check(project)

    async def set_routing(self, project: str, on: bool, by: UserRef | None = None) -> bool:
        """Switch routing on or off by hand (False: the project has no model)."""
        return await self.suggestions.set_routing(project, on, by.key if by else "hand")

    # -- for benchmarks: a use case's transaction body on a connection --------------------------

    def answer_in(
        self, conn: sqlite3.Connection, user: UserRef, assignment_id: int, value: str, now: float
    ) -> Outcome:
        """Record an answer inside a transaction the caller opened (bench/engine.py's floor)."""
        return self.answers.answer_in(conn, user, assignment_id, value, now, False)

    def next_in(self, conn: sqlite3.Connection, user: UserRef, now: float) -> Task | Idle:
        """Lease the next item inside a transaction the caller opened (bench/engine.py)."""
        return self.leases.next_in(conn, user, self.role(user), now, self.rng.random())
