"""One interface for every model: what it learns from and what it scores in, suggestions out.

Work and suggestions travel as columns (parallel lists), not an object per item: a round can
cover a hundred thousand items, and the event loop's process should not build and pickle that
many objects while people press buttons.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..config import Project


@dataclass(frozen=True)
class Work:
    """What one model round needs, as columns."""

    # Labeled items to learn from: gold, and items with a resolved verdict.
    example_ids: list[int] = field(default_factory=list)
    example_texts: list[str] = field(default_factory=list)
    example_labels: list[str] = field(default_factory=list)
    example_gold: list[bool] = field(default_factory=list)
    # Items to suggest for (nobody has taken them yet), and gold items to be scored on.
    item_ids: list[int] = field(default_factory=list)
    item_texts: list[str] = field(default_factory=list)
    gold_ids: list[int] = field(default_factory=list)
    gold_texts: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class WorkSource:
    """Where a round's Work comes from: a picklable function and its arguments.

    It runs wherever the model works: the built-in model's worker process reads the database
    itself, so nothing of the round's size passes through the bots' process.
    """

    read: Callable[..., Work]
    args: tuple[Any, ...] = field(repr=False)  # may hold the database's password

    def __call__(self) -> Work:
        """Read the work (blocking: call it in a worker process or a thread)."""
        return self.read(*self.args)


@dataclass(frozen=True)
class Prediction:
    """A model's label for one item and how sure it is (None: no score given)."""

    item_id: int
    label: str
    score: float | None


@dataclass(frozen=True)
class Predictions:
    """Predictions as columns."""

    ids: list[int] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    scores: list[float | None] = field(default_factory=list)

    @staticmethod
    def of(predictions: Iterable[Prediction]) -> Predictions:
        """Columns from a list of predictions."""
        out = Predictions()
        for p in predictions:
            out.ids.append(p.item_id)
            out.labels.append(p.label)
            out.scores.append(p.score)
        return out

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class Suggested:
    """What one round of a model produced, under one version."""

    version: str
    items: Predictions
    # Gold items, each predicted without its own answer (the model is scored on them).
    gold: Predictions
    examples: int = 0  # labeled examples it learned from (0: it does not learn here)


class Model(Protocol):
    """A source of suggestions; the service routes by them, whatever the model is."""

    kind: str
    learns: bool  # True: it trains on the crowd's labels, so it is asked again as they grow

    async def suggest(self, source: WorkSource) -> Suggested | None:
        """Suggestions for the round's items and gold items (None: it cannot suggest yet)."""

    async def close(self) -> None:
        """Let go of worker processes and connections."""


def make_model(project: Project, env: Mapping[str, str]) -> Model | None:
    """The model a project's [model] section names (None: suggestions only come with items)."""
    section = project.model
    if section is None or section.kind == "import":
        return None
    if section.kind == "builtin-text":
        from .text import BuiltinText

        return BuiltinText(tuple(project.labels), min_examples=section.min_examples)
    from .http import HttpModel

    auth = env.get(section.auth_env, "") if section.auth_env else ""
    return HttpModel(
        section.url,
        labels=tuple(project.labels),
        names=project.label_studio,
        timeout=section.timeout_seconds,
        batch=section.batch,
        auth=auth or None,
    )
