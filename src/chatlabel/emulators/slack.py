"""Loopback fake of the Slack Web API, for tests, benchmarks and the demo.

Point a real `AsyncWebClient(token=..., base_url=emu.base_url)` at it. Simulated users
(`emu.user(...)`) reach the bot as Slack would: by default with correctly signed requests to
its HTTP endpoint (`emu.configure_bot(url, secret)`); with `socket_mode=True` (the app
setting "Enable Socket Mode") `apps.connections.open` gives the app a loopback WebSocket URL
and the same requests travel over it as envelopes (`emu.sockets`, see `slack_socket`).
While Socket Mode is off, `apps.connections.open` answers `forbidden_team`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from types import TracebackType
from typing import TypeVar

import aiohttp
from aiohttp import web

from chatlabel.emulators.slack_limits import SlackLimits
from chatlabel.emulators.slack_model import (
    COMMON_ERRORS,
    JSON,
    METHOD_SPECS,
    MISSING_ARG_ERRORS,
    ApiFailure,
    ResponseUrlPost,
    SlackCall,
    SlackEmulatorError,
    SlackFaults,
    SlackFile,
    SlackMessage,
)
from chatlabel.emulators.slack_socket import Envelope, SlackSocketMode, SocketConnection
from chatlabel.emulators.slack_user import BotResponse, SlackSimUser
from chatlabel.emulators.slack_workspace import SlackWorkspace

__all__ = [
    "BotResponse",
    "Envelope",
    "ResponseUrlPost",
    "SlackApiEmulator",
    "SlackCall",
    "SlackEmulatorError",
    "SlackFaults",
    "SlackFile",
    "SlackLimits",
    "SlackMessage",
    "SlackSimUser",
    "SlackSocketMode",
    "SlackWorkspace",
    "SocketConnection",
]

T = TypeVar("T")
MAX_UPLOAD = 1 << 30
RESPONSE_URL_USES = 5  # posts Slack accepts per response_url
RESPONSE_URL_TTL = 1800.0  # seconds a response_url works (30 minutes)


class SlackApiEmulator:
    """An aiohttp server on 127.0.0.1 that answers Slack Web API methods like Slack does."""

    def __init__(
        self,
        token: str = "xoxb-test-token",
        team_id: str = "T0001",
        bot_user_id: str = "UBOT",
        *,
        team_domain: str = "chatlabel",
        app_id: str = "A0001",
        bot_id: str = "B0001",
        app_token: str = "xapp-test-token",
        host: str = "127.0.0.1",
        port: int = 0,
        request_url: str | None = None,
        signing_secret: str | None = None,
        faults: SlackFaults | None = None,
        socket_mode: bool = False,
        limits: SlackLimits | None = None,
        enterprise_id: str | None = None,
    ) -> None:
        self.token = token
        self.app_token = app_token
        self.verification_token = "emulator-verification-token"
        self.host = host
        self.request_url = request_url
        self.signing_secret = signing_secret
        self.faults = faults or SlackFaults()
        self.limits = limits  # Slack's rate limits (slack_limits.SlackLimits); None: off
        self.response_url_ttl = RESPONSE_URL_TTL
        self.workspace = SlackWorkspace(
            team_id=team_id,
            team_domain=team_domain,
            bot_user_id=bot_user_id,
            bot_id=bot_id,
            app_id=app_id,
        )
        # An app installed org-wide in an Enterprise Grid organisation: payloads carry the
        # organisation, the workspace a person acts in, and their own workspace, apart.
        self.enterprise_id = self.workspace.enterprise_id = enterprise_id
        self.sockets = SlackSocketMode(app_id, self.faults, self.notify, enabled=socket_mode)
        self.workspace.methods["apps.connections.open"] = self.sockets.connections_open
        self.calls: list[SlackCall] = []
        self.response_posts: list[ResponseUrlPost] = []
        self._users: dict[str, SlackSimUser] = {}
        self._requested_port = port
        self._port: int | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._changed = asyncio.Condition()

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Start serving on host:port (port 0 picks a free one)."""
        app = web.Application(client_max_size=MAX_UPLOAD)
        app.router.add_route("*", "/api/{method}", self._handle_api)
        app.router.add_post("/upload/v1/{file_id}", self._handle_upload)
        app.router.add_post("/response/{token}", self._handle_response_url)
        app.router.add_get("/files/{file_id}/{name}", self._handle_download)
        app.router.add_get("/link/", self.sockets.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self._requested_port).start()
        self._port = self._runner.addresses[0][1]
        self.workspace.url = self.sockets.url = self.url
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))

    async def stop(self) -> None:
        """Stop serving and close the simulated users' HTTP session and Socket Mode links."""
        await self.sockets.close()
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> SlackApiEmulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        """Root URL of the running fake, without a trailing slash."""
        if self._port is None:
            raise SlackEmulatorError("the emulator is not started")
        return f"http://{self.host}:{self._port}"

    @property
    def base_url(self) -> str:
        """The Web API base URL to give `AsyncWebClient(base_url=...)`."""
        return f"{self.url}/api/"

    @property
    def team_id(self) -> str:
        """The emulated workspace's team id."""
        return self.workspace.team_id

    @property
    def bot_user_id(self) -> str:
        """The bot's user id (what auth.test reports)."""
        return self.workspace.bot_user_id

    @property
    def implemented_methods(self) -> frozenset[str]:
        """Names of the Web API methods this fake answers."""
        return frozenset(self.workspace.methods)

    # ---- configuration and queries -----------------------------------------------------------

    @property
    def socket_mode(self) -> bool:
        """True when the app receives requests over Socket Mode instead of its request URL."""
        return self.sockets.enabled

    @socket_mode.setter
    def socket_mode(self, on: bool) -> None:
        self.sockets.enabled = on

    def configure_bot(self, request_url: str, signing_secret: str) -> None:
        """Set where simulated users send commands, interactions and events, and the secret."""
        self.request_url = request_url
        self.signing_secret = signing_secret

    def user(
        self,
        user_id: str,
        name: str | None = None,
        team: str | None = None,
        locale: str = "en-US",
    ) -> SlackSimUser:
        """Register (or get) a simulated user, with a DM channel `"D" + user_id` to the bot."""
        if user_id not in self._users:
            sim = SlackSimUser(self, user_id, name or user_id.lower(), team or self.team_id)
            self.workspace.add_user(user_id, sim.name, sim.team_id, locale)
            self._users[user_id] = sim
        return self._users[user_id]

    def add_channel(self, channel_id: str, name: str) -> None:
        """Create a public channel that the bot and every simulated user belong to."""
        self.workspace.add_channel(channel_id, name)

    @property
    def files(self) -> dict[str, SlackFile]:
        """Files uploaded so far, by id (`content` holds the bytes)."""
        return self.workspace.files

    def history(self, channel: str) -> list[SlackMessage]:
        """All messages currently in a channel (the bot's and users'), oldest first."""
        return list(self.workspace.channel(channel).messages.values())

    def message(self, channel: str, ts: str) -> SlackMessage | None:
        """The current state of one message, or None if it does not exist (any more)."""
        return self.workspace.channel(channel).messages.get(ts)

    def calls_to(self, method: str) -> list[SlackCall]:
        """Recorded calls of one Web API method, oldest first."""
        return [c for c in self.calls if c.method == method]

    async def wait_for(
        self,
        predicate: Callable[[], T],
        timeout: float = 5.0,  # noqa: ASYNC109
        describe: Callable[[], str] | None = None,
    ) -> T:
        """Wait until `predicate()` is truthy, re-checking whenever the fake's state changes."""
        async with self._changed:
            try:
                async with asyncio.timeout(timeout):
                    return await self._changed.wait_for(predicate)
            except TimeoutError:
                state = describe() if describe else f"{len(self.calls)} API calls so far"
                raise TimeoutError(f"condition not met within {timeout}s; {state}") from None

    async def notify(self) -> None:
        """Wake up waiters after a state change (the HTTP handlers call it themselves)."""
        async with self._changed:
            self._changed.notify_all()

    def bot_endpoint(self) -> tuple[str, str, aiohttp.ClientSession]:
        """The bot's request URL, signing secret and the session simulated users post with."""
        if self.request_url is None or self.signing_secret is None:
            raise SlackEmulatorError("no bot endpoint: call emu.configure_bot(url, secret)")
        if self._session is None:
            raise SlackEmulatorError("the emulator is not started")
        return self.request_url, self.signing_secret, self._session

    # ---- HTTP handlers -----------------------------------------------------------------------

    async def _handle_api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args: JSON = {}
        status, retry_after = 200, self.faults.retry_after
        try:
            args = await _read_args(request)
            token = args.pop("token", None) or _bearer(request)
            if method not in self.workspace.methods:
                raise ApiFailure("unknown_method")
            if self.faults.slow.get(method):
                await asyncio.sleep(self.faults.slow[method])
            if self.faults.should_ratelimit(method):
                status = 429
                raise ApiFailure("ratelimited")
            self._authenticate(method, token)
            if self.limits is not None:
                channel = args.get("channel") if method == "chat.postMessage" else None
                tier = METHOD_SPECS[method].tier
                wait = self.limits.check(method, tier, self.team_id, channel)
                if wait is not None:
                    status, retry_after = 429, wait
                    raise ApiFailure("ratelimited")
            self._check_required(method, args)
            body = {"ok": True, **self.workspace.methods[method](args)}
        except ApiFailure as failure:
            spec = METHOD_SPECS.get(method)
            if failure.error not in COMMON_ERRORS | (spec.errors if spec else frozenset()):
                raise RuntimeError(f"{method} returned undeclared error {failure.error}") from None
            body = failure.body()
        self.calls.append(SlackCall(method, args, status, body))
        await self.notify()
        headers = {"Retry-After": str(retry_after)} if status == 429 else None
        return web.json_response(body, status=status, headers=headers)

    async def _handle_upload(self, request: web.Request) -> web.Response:
        file = self.files.get(request.match_info["file_id"])
        if file is None or file.content is not None:
            return web.Response(status=404, text="upload URL not found or already used")
        file.content = await request.read()
        return web.Response(text=f"OK - {len(file.content)}", content_type="text/plain")

    async def _handle_download(self, request: web.Request) -> web.Response:
        file = self.files.get(request.match_info["file_id"])
        if _bearer(request) != self.token or file is None or file.content is None:
            return web.Response(status=404, text="file not found")
        return web.Response(body=file.content, content_type=file.mimetype)

    async def _handle_response_url(self, request: web.Request) -> web.Response:
        ctx = self.workspace.responder(request.match_info["token"])
        if ctx is None:
            return web.Response(status=404, text="expired_url")
        if self.faults.should_cut_response() and request.transport is not None:
            request.transport.close()  # the poster sees the connection drop, not an answer
            return web.Response(status=500)
        try:
            payload = await request.json()
        except ValueError:
            payload = {}
        ctx.uses += 1
        status, reply = 200, "ok"
        try:
            if ctx.uses > RESPONSE_URL_USES:
                status, reply = 404, "used_url"
            elif time.monotonic() - ctx.created > self.response_url_ttl:
                status, reply = 404, "expired_url"
            else:
                self.workspace.apply_response(ctx, payload)
        except ApiFailure as failure:
            status, reply = 400, failure.error
        self.response_posts.append(ResponseUrlPost(ctx.user_id, ctx.channel_id, payload, status))
        await self.notify()
        return web.Response(status=status, text=reply)

    def _authenticate(self, method: str, token: str | None) -> None:
        app_level = METHOD_SPECS[method].app_token
        if not token:
            raise ApiFailure("missing_args" if app_level else "not_authed")
        if token != (self.app_token if app_level else self.token):
            detail = "this method needs the app-level token (xapp-...)" if app_level else None
            raise ApiFailure("invalid_auth", detail)

    @staticmethod
    def _check_required(method: str, args: JSON) -> None:
        spec = METHOD_SPECS[method]
        for arg in spec.required:
            if arg != "token" and args.get(arg) in (None, ""):
                error = MISSING_ARG_ERRORS.get(arg, "invalid_arguments")
                raise ApiFailure(
                    error if error in spec.errors else "invalid_arguments",
                    f"missing required field: {arg}",
                )


async def _read_args(request: web.Request) -> JSON:
    """Merge query string and body (JSON or form) the way Slack reads a method call."""
    args: JSON = dict(request.query)
    if request.method != "POST" or not request.can_read_body:
        return args
    if request.content_type == "application/json":
        try:
            body = await request.json()
        except ValueError:
            raise ApiFailure("invalid_json") from None
        if not isinstance(body, dict):
            raise ApiFailure("json_not_object")
        args.update(body)
    else:
        form = await request.post()
        args.update({k: v for k, v in form.items() if isinstance(v, str)})
    return args


def _bearer(request: web.Request) -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None
