"""Socket Mode for the Slack bot: Slack's requests arrive over a WebSocket instead of HTTP."""

from __future__ import annotations

import asyncio
import logging

from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from ..config import ConfigError
from ..mechanics.redact import redacted_logger
from .slack_outlet import is_loopback

log = logging.getLogger("chatlabel.slack.socket")

CONNECT_TIMEOUT = 30.0  # seconds start() waits for the first WebSocket before giving up
# Seconds between pings on the link; one silent for a few pings is replaced (2-4 intervals).
PING_INTERVAL = 5.0
# What Slack answers apps.connections.open when the token is not a usable app-level token.
REFUSED = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "missing_args",
        "not_allowed_token_type",
        "token_revoked",
        "account_inactive",
    }
)

# What a refused token is, for the operator's error message.
_TOKEN_KINDS = {
    "xoxb": "a bot token",
    "xoxp": "a user token",
    "xapp": "an app-level token Slack does not accept (revoked, or another app's)",
}


async def open_socket(
    app: AsyncApp,
    client: AsyncWebClient,
    app_token: str,
    token_env: str,
    ping_interval: float = PING_INTERVAL,
) -> AsyncSocketModeHandler:
    """Connect `app` to Slack in Socket Mode; a refused app-level token is a ConfigError.

    The link is pinged every `ping_interval` seconds; one that stops answering is replaced
    (slack_sdk's watchdog: a link quiet for 4 pings is stale).
    """
    # The handler retries a refused connection forever: ask once first, so a wrong app-level
    # token fails start() instead of hanging it.
    try:
        opened = await client.apps_connections_open(app_token=app_token)
    except SlackApiError as e:
        error = str(e.response.get("error"))
        if error not in REFUSED:
            raise
        what = _TOKEN_KINDS.get(app_token.partition("-")[0], "not a Slack token")
        raise ConfigError(
            f"Slack refused the Socket Mode token in {token_env} ({error}): it is {what}. Socket "
            f"Mode needs an app-level token (xapp-…) with the connections:write scope; unset "
            f"{token_env} to receive Slack's requests over HTTP instead"
        ) from None
    handler = AsyncSocketModeHandler(
        app,
        app_token,
        logger=redacted_logger(log.name),
        web_client=client,
        ping_interval=ping_interval,
    )
    if is_loopback(opened["url"]):
        handler.client.proxy = None  # it read HTTP(S)_PROXY, which would swallow loopback links
    handler.client.wss_uri = opened["url"]  # use this ticket rather than ask for another
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            await handler.connect_async()
    except TimeoutError:
        await handler.close_async()
        raise ConnectionError(
            f"no Socket Mode connection to Slack within {CONNECT_TIMEOUT:.0f} s"
        ) from None
    return handler
