"""What happens on a platform, neutrally: adapters turn updates into these."""

from __future__ import annotations

from dataclasses import dataclass

from ..service.types import UserRef

# An adapter's handle on a message it sent ("chat:message" on Telegram, "channel:ts" on Slack).
MessageRef = str


@dataclass(frozen=True)
class Who:
    """The person behind an event, with their platform's language hint ("es", "pt-BR")."""

    user: UserRef
    locale: str | None = None
