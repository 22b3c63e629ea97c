"""The Slack bot: a Bolt AsyncApp on an embedded aiohttp server (or Socket Mode)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from ..config import ConfigError, Slack
from ..service.labeling import LabelingService
from ..service.reports import Reports
from ..service.types import UserRef
from .common import push_loop
from .slack_blocks import (
    BUTTON_PATTERN,
    CHECKBOX_PATTERN,
    HOME_EXPORT_PATTERN,
    HOME_START_ID,
    TEXT_BLOCK,
    TEXT_MODAL,
    WRITE_ID,
)
from .slack_commands import ExportFn, SlackCommands, is_loopback
from .slack_items import FORGED, SlackItems
from .slack_press import SlackPresses, modal_text
from .slack_socket import REFUSED, open_socket, redacted_logger

log = logging.getLogger("chatlabel.slack")

SEEN_EVENTS = 2000  # event ids remembered to drop Slack's redeliveries
STOP_GRACE = 5.0  # seconds in-flight handlers get to finish on stop()

__all__ = ["SlackTransport"]


@contextlib.contextmanager
def _hidden_env(*names: str) -> Iterator[None]:
    # AsyncApp switches to OAuth when SLACK_CLIENT_ID/SECRET are set, whatever it is given.
    saved = {n: os.environ.pop(n) for n in names if n in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


class SlackTransport:
    """Translates Slack commands, button presses, modals and App Home to the service."""

    def __init__(
        self,
        service: LabelingService,
        reports: Reports,
        settings: Slack,
        bot_token: str,
        signing_secret: str,
        *,
        app_token: str | None = None,
        media_cache: Path,
        export_results: ExportFn | None = None,
    ) -> None:
        self.service = service
        self.settings = settings
        self._app_token = app_token
        handlers = [
            AsyncConnectionErrorRetryHandler(),
            AsyncRateLimitErrorRetryHandler(max_retry_count=3),
        ]
        kwargs: dict[str, Any] = {"base_url": settings.base_url} if settings.base_url else {}
        self.client = AsyncWebClient(
            token=bot_token,
            retry_handlers=handlers,
            logger=redacted_logger("chatlabel.slack.api"),
            **kwargs,
        )
        if is_loopback(self.client.base_url):
            self.client.proxy = None  # it read HTTP(S)_PROXY, which would swallow loopback calls
        self._auth: AuthorizeResult | None = None
        with _hidden_env("SLACK_CLIENT_ID", "SLACK_CLIENT_SECRET", "SLACK_BOT_TOKEN"):
            self.app = AsyncApp(
                client=self.client,
                signing_secret=signing_secret,
                authorize=self._authorizer(bot_token),
                before_authorize=self._pin_proxy,
                logger=logging.getLogger("chatlabel.slack.bolt"),
            )
        self.items = SlackItems(service, self.client, media_cache, settings.command)
        self.presses = SlackPresses(self.items, self._spawn)
        self.commands = SlackCommands(self.items, reports, export_results)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._stop = asyncio.Event()
        self._push_task: asyncio.Task[None] | None = None
        self._runner: web.AppRunner | None = None
        self._socket: AsyncSocketModeHandler | None = None
        self._port: int | None = None
        self._register()

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Check the token, serve Slack's requests (HTTP or Socket Mode), start pushing items."""
        self._stop = asyncio.Event()
        try:
            me = await self.client.auth_test()  # fails fast on a wrong token
        except SlackApiError as e:
            error = str(e.response.get("error"))
            if error not in REFUSED:
                raise
            raise ConfigError(
                f"Slack refused the bot token in {self.settings.bot_token_env} ({error}): use the "
                "app's Bot User OAuth Token (xoxb-…)"
            ) from None
        self._auth = AuthorizeResult.from_auth_test_response(
            bot_token=self._bot_token, auth_test_response=me
        )
        if self._app_token:
            self._socket = await open_socket(
                self.app, self.client, self._app_token, self.settings.app_token_env
            )
            log.info("Slack bot %s connected to %s in Socket Mode", me.get("user"), me.get("team"))
        else:
            server = web.Application()
            server.router.add_post("/slack/events", self._handle)
            self._runner = web.AppRunner(server, access_log=None, shutdown_timeout=STOP_GRACE)
            await self._runner.setup()
            await web.TCPSite(self._runner, self.settings.host, self.settings.port).start()
            self._port = int(self._runner.addresses[0][1])
            log.info(
                "Slack bot %s for %s listening on %s", me.get("user"), me.get("team"), self.url
            )
        self._push_task = asyncio.create_task(
            push_loop(self.service, "slack", self.items.push, self._stop)
        )

    async def stop(self) -> None:
        """Stop serving, let in-flight work finish briefly, and close every connection."""
        self._stop.set()
        if self._push_task is not None:
            self._push_task.cancel()
            await asyncio.gather(self._push_task, return_exceptions=True)
            self._push_task = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._socket is not None:
            await self._socket.close_async()
            self._socket = None
        self.presses.close()
        pending = {t for t in self._tasks if t is not asyncio.current_task()}
        if pending:
            _, late = await asyncio.wait(pending, timeout=STOP_GRACE)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        log.info("Slack bot stopped")

    @property
    def port(self) -> int:
        """The TCP port the HTTP endpoint is bound to (useful with port 0)."""
        if self._port is None:
            raise RuntimeError("the Slack transport is not serving HTTP")
        return self._port

    @property
    def url(self) -> str:
        """The request URL to give Slack (or the loopback fake)."""
        return f"http://{self.settings.host}:{self.port}/slack/events"

    def _authorizer(self, bot_token: str) -> Callable[..., Awaitable[AuthorizeResult]]:
        """Bolt's authorize step, answered from the auth.test done at start.

        Left to itself Bolt calls auth.test again on the first requests, and a 429 there made
        it drop a person's request ("please reinstall"); one workspace, one token, one answer.
        """
        self._bot_token = bot_token

        async def authorize(enterprise_id: str | None, team_id: str | None) -> AuthorizeResult:
            if self._auth is None:  # a request before start() finished: ask Slack once
                me = await self.client.auth_test()
                self._auth = AuthorizeResult.from_auth_test_response(
                    bot_token=bot_token, auth_test_response=me
                )
            return self._auth

        return authorize

    async def _handle(self, request: web.Request) -> web.Response:
        # slack_sdk does int() on this header: a malformed one must be a plain 401, not a 500.
        stamp = request.headers.get("X-Slack-Request-Timestamp", "")
        # And compare_digest raises TypeError on a non-ASCII signature: a real one is ASCII.
        signature = request.headers.get("X-Slack-Signature", "")
        if not (stamp.isascii() and stamp.isdigit() and signature.isascii()):
            return web.json_response({"error": "invalid request"}, status=401)
        response: web.Response = await to_aiohttp_response(
            await self.app.async_dispatch(await to_bolt_request(request))
        )
        return response

    async def _pin_proxy(self, context: Any, next: Callable[[], Awaitable[Any]]) -> Any:
        # Bolt builds a fresh client per request, which reads HTTP(S)_PROXY again; ours
        # decided already (no proxy for a loopback API), so its per-request copies follow.
        client = context.get("client")
        if client is not None:
            client.proxy = self.client.proxy
        return await next()

    def _spawn(self, work: Awaitable[None]) -> None:
        """Run background work that stop() waits for."""

        async def run() -> None:
            try:
                await work
            except Exception:
                log.exception("Slack background work failed")

        task = asyncio.ensure_future(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @contextlib.asynccontextmanager
    async def _work(self, what: str) -> AsyncIterator[None]:
        # Bolt runs listeners as tasks nobody holds: keep a reference (and let stop() wait),
        # and log failures here so Bolt never turns a late error into a 404.
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            yield
        except Exception:
            log.exception("handling a Slack %s failed", what)
        finally:
            if task is not None:
                self._tasks.discard(task)

    # -- wiring ---------------------------------------------------------------------------------

    def _register(self) -> None:
        app = self.app
        app.command(self.settings.command)(self._on_command)
        app.action(BUTTON_PATTERN)(self._on_button)
        app.action(CHECKBOX_PATTERN)(self._on_tick)
        app.action(WRITE_ID)(self._on_write)
        app.action(HOME_START_ID)(self._on_home_start)
        app.action(HOME_EXPORT_PATTERN)(self._on_home_export)
        app.action(re.compile(".*"))(self._on_unknown_action)
        app.view(TEXT_MODAL)(self._on_submit)
        app.view(re.compile(".*"))(self._on_other_view)
        app.event("app_home_opened")(self._on_home)
        app.event("message")(self._on_message)
        # Slack retries events that get no 2xx: acknowledge whatever else is subscribed.
        app.event(re.compile(".*"))(self._on_other_event)

    def _user(self, body: dict[str, Any]) -> UserRef:
        """The person behind an interaction payload."""
        who = body.get("user") or {}
        team = (body.get("team") or {}).get("id") or who.get("team_id") or ""
        return self.items.user(str(team), str(who.get("id", "")), str(who.get("username", "")))

    # -- listeners: each acks first, then works -------------------------------------------------

    async def _on_command(self, ack: Any, body: dict[str, Any]) -> None:
        sub, _, rest = str(body.get("text") or "").strip().partition(" ")
        sub, rest = sub.lower(), rest.strip()
        user = self.items.user(
            str(body.get("team_id", "")),
            str(body.get("user_id", "")),
            str(body.get("user_name", "")),
        )
        # Help, typos and refusals need no I/O: they are the ack's own reply.
        immediate = self.commands.immediate(user, sub, rest)
        if immediate:
            await ack(immediate)
            return
        await ack()
        async with self._work("command"):
            reply = self.commands.replier(user, str(body.get("response_url") or ""))
            await self.commands.run(user, sub, rest, str(body.get("channel_id", "")), reply)

    async def _on_button(self, ack: Any, body: dict[str, Any]) -> None:
        await ack()
        async with self._work("button"):
            user = self._user(body)

            async def start(u: UserRef, name: str) -> None:
                await self.commands.start_flow(u, name, lambda text: self.items.tell(u, text))

            await self.presses.press(user, body, start)

    async def _on_tick(self, ack: Any, body: dict[str, Any]) -> None:
        await ack()
        async with self._work("checkbox"):
            await self.presses.tick(self._user(body), body)

    async def _on_write(self, ack: Any, body: dict[str, Any]) -> None:
        await ack()
        async with self._work("write button"):
            await self.presses.open_writer(self._user(body), body)

    async def _on_submit(self, ack: Any, body: dict[str, Any], view: dict[str, Any]) -> None:
        if not modal_text(view).strip():
            await ack(response_action="errors", errors={TEXT_BLOCK: "Please write an answer."})
            return
        await ack()
        async with self._work("modal"):
            await self.presses.submitted(self._user(body), view)

    async def _on_unknown_action(self, ack: Any, body: dict[str, Any]) -> None:
        await ack()
        async with self._work("unknown action"):
            await self.items.tell(self._user(body), FORGED)

    async def _on_other_view(self, ack: Any) -> None:
        await ack()

    async def _on_home_start(self, ack: Any, body: dict[str, Any]) -> None:
        await ack()
        async with self._work("Start button"):
            user = self._user(body)
            await self.commands.start_flow(user, None, lambda text: self.items.tell(user, text))

    async def _on_home_export(self, ack: Any, body: dict[str, Any]) -> None:
        await ack()
        async with self._work("Export button"):
            name = str((body.get("actions") or [{}])[0].get("value", ""))
            await self.commands.home_export(self._user(body), name)

    # -- events (Bolt acks them itself) -------------------------------------------------------

    async def _on_home(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        if event.get("tab", "home") != "home":
            return
        async with self._work("App Home"):
            user = self.items.user(str(body.get("team_id", "")), str(event.get("user", "")))
            if event.get("channel"):
                self.items.remember_dm(user, str(event["channel"]))
            await self.commands.publish_home(user)

    def _first_time(self, body: dict[str, Any]) -> bool:
        # Slack redelivers an event it thinks failed; a DM answer must count once.
        event_id = str(body.get("event_id") or "")
        if not event_id:
            return True
        if event_id in self._seen:
            return False
        self._seen[event_id] = None
        while len(self._seen) > SEEN_EVENTS:
            self._seen.popitem(last=False)
        return True

    async def _on_message(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        if (
            event.get("channel_type") != "im"
            or event.get("subtype")
            or event.get("bot_id")
            or not event.get("user")
            or not self._first_time(body)
        ):
            return
        text = str(event.get("text") or "").strip()
        if not text:
            return
        async with self._work("message"):
            user = self.items.user(str(body.get("team_id", "")), str(event["user"]))
            self.items.remember_dm(user, str(event.get("channel", "")))
            await self.presses.said(user, text)

    async def _on_other_event(self, event: dict[str, Any]) -> None:
        log.debug("ignoring a Slack %s event", event.get("type"))
