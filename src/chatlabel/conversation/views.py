"""What a person is shown, neutrally: adapters render these as inline keyboards, Block Kit or HTML.

Texts here are final sentences in the person's language, plain (adapters escape them for their
markup). Buttons carry compact data (see buttons.py) that comes back in a Press event.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..mechanics.pacing import Priority

Style = Literal["primary", "danger"] | None

__all__ = ["Button", "Chart", "Document", "Home", "Media", "Message", "Priority", "Rows"]


@dataclass(frozen=True)
class Button:
    """One button; `selected` marks a toggled choice of a multi-choice item (None: not a toggle)."""

    text: str
    data: str
    style: Style = None
    selected: bool | None = None


Rows = tuple[tuple[Button, ...], ...]


@dataclass(frozen=True)
class Media:
    """A media file to show with a message: an item's picture, audio or video."""

    kind: Literal["image", "audio", "video"]
    path: str
    boxes: tuple[dict[str, object], ...] = ()  # drawn onto the picture (verify items)
    max_side: int = 1280
    alt: str = ""


@dataclass(frozen=True)
class Chart:
    """A picture made on the fly (a progress chart): PNG bytes."""

    png: bytes
    filename: str


@dataclass(frozen=True)
class Message:
    """A message: text, optional media, rows of buttons.

    `item` (an assignment id) marks a message that shows an item to answer; `writer`, the
    caption of a "write your answer" control, one whose answer is typed (free text): adapters
    show their way of writing one (a reply, a modal, a text box). `footer` is small print
    (project, count, instructions).
    """

    text: str
    buttons: Rows = ()
    media: Media | None = None
    chart: Chart | None = None
    footer: str = ""
    item: int | None = None
    writer: str = ""
    status: str = ""  # an answered item's status line ("✅ cat"), shown under its text
    note: str = ""  # a small line under the status (gold feedback, "timed out")
    # A reply that need not stay in the chat (a command's output, a refusal): Slack shows it
    # only to the person, where they typed the command.
    transient: bool = False
    # A bulk copy's idempotency handle: a platform that can keep it with the message (Slack's
    # message metadata) lets a restart find out whether the copy went out before a crash.
    handle: str = ""

    @property
    def all_buttons(self) -> list[Button]:
        """Every button, row by row."""
        return [b for row in self.buttons for b in row]


@dataclass(frozen=True)
class Document:
    """A file to hand over (an export)."""

    filename: str
    data: bytes
    caption: str = ""


@dataclass(frozen=True)
class Home:
    """A person's home page (Slack's App Home): their own section, then the projects' sections.

    Each section is a text and the buttons under it; `projects` heads the projects' part.
    """

    title: str
    sections: tuple[tuple[str, Rows], ...] = field(default_factory=tuple)
    projects: str = ""
