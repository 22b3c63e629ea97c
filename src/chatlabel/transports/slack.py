"""The Slack adapter: Bolt requests in as conversation events, views out through SlackOutlet.

A Bolt AsyncApp on an embedded aiohttp server (or Socket Mode). Every listener acks first (Slack
wants an answer within 3 seconds), then hands the event to the conversation.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import AsyncConnectionErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from ..config import ConfigError, Slack
from ..conversation import Catalog, Conversation, Who
from ..conversation.bulk import STOP_GRACE as OUTBOX_GRACE
from ..mechanics import BoundedCache, Dropped, Limit, Pacer
from ..mechanics.redact import redacted_logger
from ..service.labeling import LabelingService
from ..service.reports import Reports
from ..service.types import UserRef
from .slack_blocks import (
    BUTTON_PATTERN,
    CHECKBOX_PATTERN,
    TEXT_BLOCK,
    TEXT_MODAL,
    WRITE_ID,
    home_view,
    select_data,
    text_modal,
    ticked,
)
from .slack_outlet import PEOPLE, REPLYING, CommandReply, SlackOutlet, is_loopback, slack_id
from .slack_pacing import slack_limits
from .slack_payloads import actor, assignment, enterprise, modal_text
from .slack_socket import PING_INTERVAL, REFUSED, open_socket

log = logging.getLogger("chatlabel.slack")

STOP_GRACE = 5.0  # seconds in-flight handlers get to finish on stop()
ExportResults = Callable[[str], Awaitable[tuple[str, bytes]]]

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
    """Translates Slack commands, button presses, modals, DMs and App Home to the conversation."""

    socket_ping_interval = PING_INTERVAL  # Socket Mode: a link silent for 4 pings is replaced
    outbox_interval = 5.0  # how often the outbox sender looks for due copies without a signal
    outbox_grace = OUTBOX_GRACE  # seconds bulk copies in flight get to settle at stop()

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
        export_results: ExportResults | None = None,
        catalog: Catalog | None = None,
        inbound: tuple[float, float] | None = None,
        limits: dict[str, Limit] | None = None,
    ) -> None:
        self.service = service
        self.settings = settings
        self._app_token = app_token
        self._bot_token = bot_token
        # Only connection errors are retried by the client. A 429 is the outlet's: its pacer
        # holds that one method (or channel) for the Retry-After, not every call in flight.
        handlers: list[AsyncRetryHandler] = [AsyncConnectionErrorRetryHandler()]
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
                authorize=self._authorizer(),
                before_authorize=self._pin_proxy,
                logger=logging.getLogger("chatlabel.slack.bolt"),
            )
        # `limits`: the pacer's (slack_pacing.slack_limits() by default; {} paces nothing).
        pacer = Pacer(slack_limits() if limits is None else limits)
        self.outlet = SlackOutlet(self.client, service, media_cache, settings.command, pacer)
        self.conversation = Conversation(
            service,
            reports,
            catalog or Catalog(),
            self.outlet,
            export_results=export_results,
            inbound=inbound,
        )
        self._locales: BoundedCache[str, str] = BoundedCache(PEOPLE)
        self._events: BoundedCache[str, bool] = BoundedCache(PEOPLE)  # event ids handled
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stop = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._socket: AsyncSocketModeHandler | None = None
        self._port: int | None = None
        self._register()

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Check the token, serve Slack's requests (HTTP or Socket Mode), start pushing items."""
        self._stop = asyncio.Event()
        try:
            # Fails fast on a wrong token; a 429 is waited out like any call's.
            me = await self.outlet.api("auth.test", self.client.auth_test)
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
        self.outlet.team = str(me.get("enterprise_id") or me.get("team_id") or "")
        if self._app_token:
            self._socket = await open_socket(
                self.app,
                self.client,
                self._app_token,
                self.settings.app_token_env,
                self.socket_ping_interval,
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
        self.conversation.start_pushing(self._stop)
        self.conversation.start_outbox(self._stop, self.outbox_interval)

    async def stop(self) -> None:
        """Stop serving, let in-flight work finish briefly, and close every connection."""
        self._stop.set()
        self.outlet.close()
        await self.conversation.stop_pushing()
        await self.conversation.stop_outbox(self.outbox_grace)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._socket is not None:
            await self._socket.close_async()
            self._socket = None
        await self.conversation.close()
        pending = {t for t in self._tasks if t is not asyncio.current_task()}
        if pending:
            _, late = await asyncio.wait(pending, timeout=STOP_GRACE)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        await self.outlet.aclose()  # last: listeners that just finished may have replied
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

    def _authorizer(self) -> Callable[..., Awaitable[AuthorizeResult]]:
        """Bolt's authorize step, answered from the auth.test done at start.

        Left to itself Bolt calls auth.test again on the first requests, and a 429 there made
        it drop a person's request ("please reinstall"); one workspace, one token, one answer.
        (A closure: Bolt passes arguments by the names it finds in the signature.)
        """

        async def authorize(enterprise_id: str | None, team_id: str | None) -> AuthorizeResult:
            if self._auth is None:  # a request before start() finished: ask Slack once
                me = await self.client.auth_test()
                self._auth = AuthorizeResult.from_auth_test_response(
                    bot_token=self._bot_token, auth_test_response=me
                )
            return self._auth

        return authorize

    async def _handle(self, request: web.Request) -> web.Response:
        # slack_sdk does int() on this header: a malformed one must be a plain 401, not a 500.
        stamp = request.headers.get("X-Slack-Request-Timestamp", "")
        signature = request.headers.get("X-Slack-Signature", "")
        if not (stamp.isascii() and stamp.isdigit()) or not signature.isascii():
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

    # -- who is who -----------------------------------------------------------------------------

    def _user(self, team: str, uid: str, name: str = "", enterprise: object = None) -> UserRef:
        """A Slack user: key `slack:T…/U…`, address their DM with the bot (when known).

        One rule for actions, commands and events alike: under Enterprise Grid the key holds
        the organisation (`slack:E…/U…`; user ids are unique in it), because each kind of
        payload names a different workspace (where it happened, or the person's own, or none);
        elsewhere the workspace.
        """
        ref = UserRef("slack", f"{enterprise or team}/{uid}", name)
        return UserRef("slack", ref.user_id, name, self.outlet.cached_dm(ref))

    async def _who(self, user: UserRef) -> Who:
        """The person with their Slack locale (users.info, asked once per person)."""
        locale = self._locales.get(user.key)
        if locale is None:
            locale = ""
            try:
                info = await self.outlet.api(
                    "users.info",
                    lambda: self.client.users_info(user=slack_id(user), include_locale=True),
                )
                locale = str((info.get("user") or {}).get("locale") or "")
            except SlackApiError as e:
                log.info("no locale for %s: %s", user.key, e.response.get("error"))
            except Dropped:
                return Who(user, None)  # stopping: not worth remembering
            self._locales[user.key] = locale
        return Who(user, locale or None)

    def _actor(self, body: dict[str, Any]) -> UserRef:
        """The person behind an interaction payload."""
        return self._user(*actor(body))

    def _pressed(self, body: dict[str, Any], user: UserRef) -> str | None:
        """The pressed message in the person's own DM, as a ref ("channel:ts")."""
        container = body.get("container") or {}
        channel = str(container.get("channel_id") or "")
        if container.get("type") != "message" or not channel:
            return None
        if channel != self.outlet.cached_dm(user):
            if channel.startswith("D") and self.outlet.cached_dm(user) is None:
                self.outlet.remember_dm(user, channel)  # after a restart: their DM is where it is
            else:
                return None
        ref = f"{channel}:{container.get('message_ts')}"
        # Edits of the pressed message can then go through the press's response_url.
        self.outlet.remember_response(ref, str(body.get("response_url") or ""))
        return ref

    # -- wiring ---------------------------------------------------------------------------------

    def _register(self) -> None:
        app = self.app
        app.command(self.settings.command)(self._on_command)
        app.action(BUTTON_PATTERN)(self._on_button)
        app.action(CHECKBOX_PATTERN)(self._on_tick)
        app.action(WRITE_ID)(self._on_write)
        app.action(re.compile(".*"))(self._on_unknown_action)
        app.view(TEXT_MODAL)(self._on_submit)
        app.view(re.compile(".*"))(self._on_other_view)
        app.event("app_home_opened")(self._on_home)
        app.event("message")(self._on_message)
        # Slack retries events that get no 2xx: acknowledge whatever else is subscribed.
        app.event(re.compile(".*"))(self._on_other_event)

    # -- listeners: each acks first, then works -------------------------------------------------

    async def _on_command(self, ack: Any, body: dict[str, Any]) -> None:
        name, _, rest = str(body.get("text") or "").strip().partition(" ")
        name, rest = name.lower() or "start", rest.strip()
        user = self._user(
            str(body.get("team_id", "")),
            str(body.get("user_id", "")),
            str(body.get("user_name", "")),
            body.get("enterprise_id"),
        )
        channel = str(body.get("channel_id", ""))
        if channel.startswith("D") and self.outlet.cached_dm(user) is None:
            self.outlet.remember_dm(user, channel)  # typed in their DM with the bot
            team, _, uid = user.user_id.partition("/")
            user = self._user(team, uid, user.name)
        who = await self._who(user)
        # Help, typos and refusals need no work: they are the ack's own reply.
        quick = await self.conversation.quick_reply(who, name, rest)
        if quick is not None:
            await ack(quick)
            return
        await ack()
        async with self._work("command"):
            texts = await self.conversation.texts(who)
            reply = CommandReply(
                str(body.get("response_url") or ""), str(body.get("channel_id", "")), texts
            )
            token = REPLYING.set(reply if reply.response_url else None)
            try:
                await self.conversation.command(who, name, rest)
            finally:
                REPLYING.reset(token)

    async def _on_button(self, ack: Any, body: dict[str, Any]) -> None:
        await ack()
        async with self._work("button"):
            user = self._actor(body)
            ref = self._pressed(body, user)
            action = (body.get("actions") or [{}])[0]
            data = str(action.get("value", ""))
            aid = assignment(data)
            sent = ticked(body, aid) if aid is not None else None
            await self.conversation.press(await self._who(user), data, ref, body, sent)

    async def _on_tick(self, ack: Any, body: dict[str, Any]) -> None:
        await ack()
        async with self._work("checkbox"):
            user = self._actor(body)
            action = (body.get("actions") or [{}])[0]
            m = CHECKBOX_PATTERN.match(str(action.get("action_id", "")))
            aid = int(m.group(1)) if m else -1
            shown = ticked(body, aid) or ()
            ref = self._pressed(body, user)
            await self.conversation.press(await self._who(user), select_data(aid), ref, body, shown)

    async def _on_write(self, ack: Any, body: dict[str, Any]) -> None:
        await ack()
        async with self._work("write button"):
            # Open the form at once: its trigger lasts 3 seconds.
            action = (body.get("actions") or [{}])[0]
            value = str(action.get("value", ""))
            if not re.fullmatch(r"\d{1,18}", value):
                return
            user = self._actor(body)
            self._pressed(body, user)  # the answer will edit this message
            container = body.get("container") or {}
            blocks = (body.get("message") or {}).get("blocks") or []
            shown = ""
            if blocks and isinstance(blocks[0], dict) and isinstance(blocks[0].get("text"), dict):
                shown = str(blocks[0]["text"].get("text", ""))
            who = await self._who(user)
            t = await self.conversation.texts(who)
            channel, ts = str(container.get("channel_id", "")), str(container.get("message_ts", ""))
            view = text_modal(t, int(value), channel, ts, shown)
            try:
                await self.outlet.api(
                    "views.open",
                    lambda: self.client.views_open(trigger_id=body["trigger_id"], view=view),
                )
            except (SlackApiError, Dropped) as e:  # e.g. the 3-second trigger ran out
                log.warning("could not open the answer form: %s", e)
                await self.outlet.toast(user, None, t("platform.form_failed"), False)

    async def _on_submit(self, ack: Any, body: dict[str, Any], view: dict[str, Any]) -> None:
        user = self._actor(body)
        who = await self._who(user)
        if not modal_text(view).strip():
            t = await self.conversation.texts(who)
            await ack(response_action="errors", errors={TEXT_BLOCK: t("platform.answer_empty")})
            return
        await ack()
        async with self._work("modal"):
            try:
                meta = json.loads(view.get("private_metadata") or "{}")
                aid = int(meta["a"])
            except (ValueError, KeyError, TypeError):
                return
            channel, ts = str(meta.get("c", "")), str(meta.get("t", ""))
            ref = f"{channel}:{ts}" if channel and channel == self.outlet.cached_dm(user) else None
            await self.conversation.text(who, modal_text(view), item=aid, ref=ref)

    async def _on_unknown_action(self, ack: Any, body: dict[str, Any]) -> None:
        await ack()
        async with self._work("unknown action"):
            user = self._actor(body)
            await self.conversation.press(await self._who(user), "", None, body)

    async def _on_other_view(self, ack: Any) -> None:
        await ack()

    # -- events (Bolt acks them itself) -------------------------------------------------------

    async def _on_home(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        if event.get("tab", "home") != "home":
            return
        async with self._work("App Home"):
            user = self._user(
                str(body.get("team_id", "")), str(event.get("user", "")), "", enterprise(body)
            )
            if event.get("channel"):
                self.outlet.remember_dm(user, str(event["channel"]))
            home = await self.conversation.home(await self._who(user))
            await self.outlet.api(
                "views.publish",
                lambda: self.client.views_publish(user_id=slack_id(user), view=home_view(home)),
            )

    async def _on_message(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        subtype = event.get("subtype")
        edited = subtype == "message_changed"
        said = event.get("message") if edited else event
        if (
            event.get("channel_type") != "im"
            or not isinstance(said, dict)
            or said.get("bot_id")
            or not said.get("user")
            or subtype not in (None, "file_share", "message_changed")
            or self._seen(body)
        ):
            return
        async with self._work("message"):
            user = self._user(str(body.get("team_id", "")), str(said["user"]), "", enterprise(body))
            channel = str(event.get("channel", ""))
            self.outlet.remember_dm(user, channel)
            who = await self._who(user)
            text = str(said.get("text") or "").strip()
            # The message's own id makes a redelivered event count once, across restarts too.
            source = f"{channel}:{said.get('ts')}"
            # A reply in an item's thread may be a comment on that item.
            thread = said.get("thread_ts")
            reply_to = f"{channel}:{thread}" if thread and thread != said.get("ts") else None
            if edited:
                await self.conversation.edited(who, text, source=source)
            elif subtype == "file_share" or not text:
                await self.conversation.unsupported(who)
            else:
                await self.conversation.text(who, text, source=source, reply_to=reply_to)

    def _seen(self, body: dict[str, Any]) -> bool:
        """True for an event delivered before (Slack retries one whose ack it missed).

        In this process only: across restarts, typed answers and their edits count once by
        their message, stored with the answer; a repeated reply is the most a redelivery does.
        """
        event_id = str(body.get("event_id") or "")
        if not event_id:
            return False
        if event_id in self._events:
            log.info("dropped a redelivered Slack event %s", event_id)
            return True
        self._events[event_id] = True
        return False

    async def _on_other_event(self, event: dict[str, Any]) -> None:
        log.debug("ignoring a Slack %s event", event.get("type"))
