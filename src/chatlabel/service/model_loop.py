"""Keeps each project's model at work: a learning model retrains after every `retrain_every`
resolved items, any model suggests for new items, and its record is checked after each burst."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from ..models.base import Model
from .labeling import LabelingService
from .rounds import exclusive_round
from .types import RoutingStopped

log = logging.getLogger("chatlabel.model")


@dataclass(frozen=True)
class Round:
    """What one model round of one project did."""

    project: str
    ran: bool  # the model was asked (False: nothing new for it, or it cannot suggest yet)
    version: str | None = None
    suggested: int = 0  # items whose suggestion was written (untouched ones)
    gold: int = 0  # gold items it was scored on this round
    examples: int = 0
    stopped: RoutingStopped | None = None  # routing switched itself off after this round


class ModelLoop:
    """Runs the projects' models beside the bots; training happens in the model's worker."""

    def __init__(self, service: LabelingService, models: Mapping[str, Model]) -> None:
        self.service = service
        self.models = dict(models)

    def due(self, project: str, resolved: int, trained_on: int, trainings: int) -> bool:
        """Whether a learning model should train now: never trained, or enough new verdicts."""
        section = self.service.projects[project].model
        assert section is not None
        return trainings == 0 or resolved - trained_on >= section.retrain_every

    async def step(self, project: str, *, force: bool = False) -> Round:
        """One round for one project: train and suggest when due, then check its record."""
        model = self.models.get(project)
        result = Round(project, ran=False)
        if model is not None:
            result = await self._suggest(project, model, force)
        stopped = await self.service.check_model(project)
        return Round(**{**result.__dict__, "stopped": stopped})

    async def _suggest(self, project: str, model: Model, force: bool) -> Round:
        svc = self.service
        # Cheap reads decide; the work itself is read where the model works (its worker).
        trainings, trained_on = await svc.model_trainings(project)
        resolved = await svc.resolved_items(project) if model.learns else 0
        if model.learns:
            due = self.due(project, resolved, trained_on, trainings)
        else:
            due = await svc.unsuggested_items(project) > 0
        if not force and not due:
            return Round(project, ran=False)
        got = await model.suggest(svc.model_source(project, learns=model.learns))
        if got is None:
            return Round(project, ran=False)
        # A learning model's versions are numbered by its trainings; another model names its own.
        version = f"{got.version}-{trainings + 1}" if model.learns else got.version
        written = await svc.write_suggestions(
            project, got, version, resolved=resolved if model.learns else None
        )
        log.info(
            "%s: model %s suggested for %d items (%d examples, scored on %d gold items)",
            project,
            version,
            written,
            got.examples,
            len(got.gold),
        )
        return Round(project, True, version, written, len(got.gold), got.examples)

    async def check(self) -> list[Round]:
        """A round for every project with a model."""
        return [await self.step(name) for name in self.service.model_projects()]

    async def run(self, stop: asyncio.Event, interval: float = 30.0, settle: float = 2.0) -> None:
        """Rounds after answers arrive (and every `interval`) until `stop` is set."""
        while not stop.is_set():
            # A process that takes over from a dead holder trains afresh from the database.
            await exclusive_round(
                self.service.exclusive,
                "model",
                self.check,
                lambda: log.exception("a model round failed; routing keeps the suggestions it has"),
            )
            await self.service.wait_for_change(interval)
            # Let a burst of answers land first: one round per burst, not per answer.
            await asyncio.sleep(settle)

    async def close(self) -> None:
        """Stop the models' workers and connections."""
        for model in self.models.values():
            try:
                await model.close()
            except Exception:
                log.exception("closing a model failed")
