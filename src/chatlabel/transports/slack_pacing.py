"""How the Slack outlet paces itself: method tiers, per-channel posting, response URLs."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from slack_sdk.errors import SlackApiError

from ..mechanics import Limit

__all__ = [
    "PER_MINUTE",
    "POST",
    "POST_CHANNEL",
    "UPLOAD",
    "Responder",
    "per_minute",
    "retry_after",
    "slack_limits",
]

# Calls a minute each Web API method may make per workspace, by its tier (Slack's documented
# floors: Tier 2 20+, Tier 3 50+, Tier 4 100+), for the methods chatlabel calls.
PER_MINUTE = {
    "chat.update": 50,
    "chat.delete": 50,
    "conversations.open": 50,
    "conversations.history": 50,
    "chat.postEphemeral": 100,
    "users.info": 100,
    "views.open": 100,
    "views.publish": 100,
    "files.getUploadURLExternal": 100,
    "files.completeUploadExternal": 100,
}
POST = "chat.postMessage"  # special: about 1 a second per channel, several hundred a minute
POST_CHANNEL = "chat.postMessage/channel"
UPLOAD = ("files.getUploadURLExternal", "files.completeUploadExternal")  # files_upload_v2
# A response_url replaces the message whose button was pressed, 5 times within 30 minutes,
# and is not a Web API call: no tier limits it.
RESPONSE_USES, RESPONSE_SECONDS = 5, 1700.0


def per_minute(n: float) -> Limit:
    """A pacer limit that keeps within `n` calls a minute with a margin, smoothly.

    A tenth of a minute's budget per 10.2 s window rather than the whole minute at once: a
    burst of pushes must not use a minute's budget and leave everyone waiting a minute. Any 60
    s then hold at most 6 windows' worth: 90 % of `n`.
    """
    count = max(1, int(n * 0.9 / 6))
    return Limit(count, 10.2, reserve=count // 5)


def slack_limits(scale: float = 1.0) -> dict[str, Limit]:
    """The pacer's limits for Slack, inside Slack's (`scale` multiplies every budget).

    A fifth of each window is kept for replies to what people just did.
    """
    limits = {method: per_minute(n * scale) for method, n in PER_MINUTE.items()}
    limits[POST] = per_minute(300 * scale)
    limits[POST_CHANNEL] = Limit(max(1, round(3 * scale)), 3.3)
    return limits


@dataclass
class Responder:
    """A pressed message's response_url, while Slack still takes posts to it."""

    url: str
    since: float = field(default_factory=time.monotonic)
    uses: int = 0

    def usable(self) -> bool:
        """Whether Slack still takes a post to it (uses left, not expired)."""
        return self.uses < RESPONSE_USES and time.monotonic() - self.since < RESPONSE_SECONDS


def retry_after(e: SlackApiError) -> float:
    """Seconds Slack asked to wait (its Retry-After header; 1 when it gave none)."""
    headers = getattr(e.response, "headers", None) or {}
    for name, value in headers.items():
        if name.lower() == "retry-after":
            try:
                return max(0.0, float(value[0] if isinstance(value, list) else value))
            except (TypeError, ValueError):
                break
    return 1.0
