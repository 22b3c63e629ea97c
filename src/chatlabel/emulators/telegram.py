"""A loopback Telegram Bot API emulator: the real python-telegram-bot client talks to it over HTTP.

async with BotApiEmulator() as emu:
    ann = emu.user(1001, "Ann")
    app = emu.application_builder().build()   # or ApplicationBuilder().base_url(emu.base_url)
    await ann.send("/start")
    item = await ann.wait_for_message(1)
    await ann.press(item, "cat")
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from types import TracebackType
from typing import Any

from aiohttp import web
from telegram import Bot
from telegram.ext import ApplicationBuilder
from telegram.request import HTTPXRequest

from chatlabel.emulators.telegram_flood import FloodLimits
from chatlabel.emulators.telegram_methods import METHODS, Method
from chatlabel.emulators.telegram_model import (
    ApiError,
    CallbackQueryRecord,
    CallRecord,
    Chat,
    ChatMessage,
    EmulatorUsageError,
    Faults,
    FilePart,
    Params,
    UploadRecord,
)
from chatlabel.emulators.telegram_state import DEFAULT_TOKEN, EmulatorState
from chatlabel.emulators.telegram_users import SimUser

__all__ = [
    "DEFAULT_TOKEN",
    "METHODS",
    "ApiError",
    "BotApiEmulator",
    "CallRecord",
    "CallbackQueryRecord",
    "Chat",
    "ChatMessage",
    "EmulatorUsageError",
    "FilePart",
    "Faults",
    "FloodLimits",
    "Method",
    "SimUser",
    "UploadRecord",
]

_MAX_REQUEST_BYTES = 50 * 1024 * 1024 + 64 * 1024  # Bot API upload limit plus form overhead
_dumps = functools.partial(json.dumps, ensure_ascii=False)


async def _read_params(request: web.Request) -> Params:
    """Read parameters from the query string and a form, multipart or JSON body."""
    values: dict[str, Any] = dict(request.query)
    files: dict[str, FilePart] = {}
    if not request.body_exists:
        return Params(values, files)
    if request.content_type == "application/json":
        try:
            body = await request.json()
        except ValueError:
            raise ApiError.bad_request("can't parse JSON object") from None
        if not isinstance(body, dict):
            raise ApiError.bad_request("JSON object expected")
        values.update(body)
        return Params(values, files)
    try:
        form = await request.post()
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(413, "Request Entity Too Large") from None
    for name, value in form.items():
        if isinstance(value, web.FileField):
            data = value.file.read()
            files[name] = FilePart(name, value.filename, value.content_type, data)
        elif isinstance(value, str):
            values[name] = value
        else:  # a part without filename that is not text
            files[name] = FilePart(name, None, "application/octet-stream", bytes(value))
    return Params(values, files)


def _http_request(pool_size: int) -> HTTPXRequest:
    # trust_env=False: httpx would otherwise send loopback traffic through HTTP(S)_PROXY.
    return HTTPXRequest(connection_pool_size=pool_size, httpx_kwargs={"trust_env": False})


class BotApiEmulator(EmulatorState):
    """A Bot API server on 127.0.0.1 with simulated users, for tests, benchmarks and the demo."""

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        *,
        port: int = 0,
        bot_username: str = "chatlabel_emulator_bot",
        bot_name: str = "chatlabel",
        callback_query_ttl: float = 15.0,
    ) -> None:
        super().__init__(token, bot_username, bot_name, callback_query_ttl)
        self._port = port
        self._runner: web.AppRunner | None = None
        self._scripted: dict[str, list[tuple[ApiError, str | None]]] = {}
        self.users: dict[int, SimUser] = {}

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start serving; after a stop() it serves again on the same port with the same state."""
        if self._runner is not None:
            raise RuntimeError("the emulator is already running")
        app = web.Application(client_max_size=_MAX_REQUEST_BYTES)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_method)
        app.router.add_get("/file/bot{token}/{path:.+}", self._handle_file)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", self._port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = runner.addresses[0][1]
        self.closing = False

    async def stop(self) -> None:
        """Answer pending long polls and close every connection."""
        if self._runner is None:
            return
        self.closing = True
        self.signal.notify()
        runner, self._runner = self._runner, None
        await runner.cleanup()

    async def __aenter__(self) -> BotApiEmulator:
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
    def port(self) -> int:
        """The TCP port served on (assigned by the OS when constructed with port=0)."""
        if self._runner is None and not self._port:
            raise RuntimeError("start() the emulator first")
        return self._port

    @property
    def base_url(self) -> str:
        """The Bot API base URL; clients append the token and the method."""
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        """The file download base URL; clients append the token and the file_path."""
        return f"http://127.0.0.1:{self.port}/file/bot"

    # -- for tests, benchmarks and the demo ---------------------------------------------------

    def user(
        self,
        user_id: int,
        first_name: str | None = None,
        username: str | None = None,
        *,
        last_name: str | None = None,
        language_code: str = "en",
    ) -> SimUser:
        """The simulated user with this id, created on first call (later calls return it)."""
        if user_id in self.users:
            return self.users[user_id]
        if user_id <= 0:
            raise ValueError("a user id is a positive integer")
        profile = {"id": user_id, "is_bot": False, "first_name": first_name or f"User {user_id}"}
        for key, value in (("last_name", last_name), ("username", username)):
            if value:
                profile[key] = value
        profile["language_code"] = language_code
        user = SimUser(self, self.ensure_chat(profile))
        self.users[user_id] = user
        return user

    def fail_next(
        self,
        method: str,
        error: ApiError | None = None,
        times: int = 1,
        *,
        chat_id: int | None = None,
    ) -> None:
        """Answer the next `times` calls to `method` (to `chat_id`, if given) with `error`.

        The default error is a 429 asking to retry after 1 second.
        """
        failure = error or ApiError.too_many_requests(1)
        chat = None if chat_id is None else str(chat_id)
        self._scripted.setdefault(method.lower(), []).extend([(failure, chat)] * times)

    def make_bot(self) -> Bot:
        """A python-telegram-bot Bot pointed at this emulator; use it with `async with`."""
        return Bot(
            self.token,
            base_url=self.base_url,
            base_file_url=self.base_file_url,
            request=_http_request(256),
            get_updates_request=_http_request(1),
        )

    def application_builder(self) -> ApplicationBuilder:
        """An ApplicationBuilder with token, URLs and proxy-free requests set for this emulator."""
        return (
            ApplicationBuilder()
            .token(self.token)
            .base_url(self.base_url)
            .base_file_url(self.base_file_url)
            .request(_http_request(256))
            .get_updates_request(_http_request(1))
        )

    # -- HTTP ----------------------------------------------------------------------------------

    async def _fault(self, method: Method, chat_id: object) -> None:
        """Raise a scripted or random fault for this call, after any injected delay."""
        scripted = self._scripted.get(method.name.lower(), [])
        for n, (failure, chat) in enumerate(scripted):
            if chat is None or chat == str(chat_id):
                del scripted[n]
                raise ApiError(failure.status, failure.description, failure.parameters)
        if self.faults is not None and self.faults.applies_to(method.name):
            error, delay = self.faults.draw()
            if delay:
                await asyncio.sleep(delay)
            if error is not None:
                raise error

    async def _handle_method(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response(ApiError(401, "Unauthorized").to_json(), status=401)
        method = METHODS.get(request.match_info["method"].lower())
        record = CallRecord(
            method.name if method else request.match_info["method"], {}, time.monotonic()
        )
        self.calls.append(record)
        self.signal.notify()  # lets a test wait until the bot is, say, long polling
        try:
            params = await _read_params(request)
            record.params = {**params.values, **params.files}
            if method is None:
                raise ApiError(404, "Not Found")
            await self._fault(method, params.values.get("chat_id"))
            if self.flood is not None:
                self.flood.check(method.name, params.values.get("chat_id"))
            record.result = await method.call(self, params)
            body: dict[str, Any] = {"ok": True, "result": record.result}
        except ApiError as error:
            record.status, record.error = error.status, error.description
            body = error.to_json()
        self.signal.notify()
        return web.json_response(body, status=record.status, dumps=_dumps)

    async def _handle_file(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response(ApiError(401, "Unauthorized").to_json(), status=401)
        stored = self.file_by_path(request.match_info["path"])
        if stored is None:
            return web.json_response(ApiError(404, "Not Found").to_json(), status=404)
        return web.Response(body=stored.data, content_type="application/octet-stream")
