"""What the conversation needs from a platform adapter: an outlet that renders views."""

from __future__ import annotations

from typing import Protocol

from ..service.types import UserRef
from .events import MessageRef
from .render import Mechanics
from .views import Document, Message, Priority


class Unreachable(Exception):
    """The person cannot be written to any more (blocked the bot, left, deactivated)."""


class SendFailed(Exception):
    """A send failed for now (network, platform errors, limits) after the adapter's retries."""


class MediaFailed(Exception):
    """An item's media cannot be shown (missing, corrupt, or refused by the platform for good).

    The conversation never offers such an item without its media: it is skipped for that
    person (service.unshowable). Refusals for now (limits, network) are SendFailed instead.
    """


class Outlet(Protocol):
    """A platform's way of showing views to people; one per adapter."""

    platform: str
    mechanics: Mechanics

    async def send(
        self, to: UserRef, view: Message | Document, priority: Priority
    ) -> MessageRef | None:
        """Show a new message; its ref, or None when it cannot be edited later.

        Every platform call waits for its turn by `priority` within the platform's limits.
        Raises Unreachable when the person can no longer be written to, SendFailed when the
        platform refused for now (after waiting out its limits), MediaFailed when the view's
        media cannot be shown.
        """

    async def edit(self, to: UserRef, ref: MessageRef, view: Message, priority: Priority) -> None:
        """Replace an earlier message's text and buttons (its media stays); never raises.

        Only the latest edit of a message need go out: one still waiting when a newer one
        comes may be dropped. One that finally fails is logged, never dropped silently.
        """

    async def ready(self, to: UserRef, priority: Priority) -> None:
        """Wait until a new message to this person could go out at this priority (for queues
        of bulk messages that take one out of storage only when it can be sent)."""

    async def delete(self, to: UserRef, ref: MessageRef) -> None:
        """Remove an earlier message where the platform allows it; never raises."""

    async def toast(self, to: UserRef, press: object, text: str | None, alert: bool) -> None:
        """Answer the press being handled (`press`: the adapter's own handle); never raises."""
