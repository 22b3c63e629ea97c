"""One interface for every model: labeled examples and items in, scored suggestions out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..config import Project


@dataclass(frozen=True)
class ItemText:
    """An item as a model sees it."""

    item_id: int
    text: str
    context: str | None = None


@dataclass(frozen=True)
class Example:
    """A labeled item to learn from: a gold item, or one with a resolved verdict."""

    item_id: int
    text: str
    label: str
    gold: bool


@dataclass(frozen=True)
class Prediction:
    """A model's label for one item and how sure it is (None: no score given)."""

    item_id: int
    label: str
    score: float | None


@dataclass(frozen=True)
class Suggested:
    """What one round of a model produced, under one version."""

    version: str
    items: list[Prediction]
    # Gold items, each predicted without its own answer (the model is scored on them).
    gold: list[Prediction]
    examples: int = 0  # labeled examples it learned from (0: it does not learn here)


class Model(Protocol):
    """A source of suggestions; the service routes by them, whatever the model is."""

    kind: str
    learns: bool  # True: it trains on the crowd's labels, so it is asked again as they grow

    async def suggest(
        self, examples: Sequence[Example], items: Sequence[ItemText], gold: Sequence[ItemText]
    ) -> Suggested | None:
        """Suggestions for `items` and `gold` (None: it cannot suggest yet)."""

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
