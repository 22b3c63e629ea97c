"""Webhook mode: a small aiohttp server that feeds Telegram's POSTs to the Application."""

from __future__ import annotations

import hmac
import logging
import re
import secrets
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from telegram import Update
from telegram.ext import Application

from ..config import Telegram, secret

log = logging.getLogger("chatlabel.telegram")
_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")
_HEADER = "X-Telegram-Bot-Api-Secret-Token"


class WebhookServer:
    """Receives updates on `settings.webhook_url`'s path and registers the webhook."""

    def __init__(
        self,
        app: Application[Any, Any, Any, Any, Any, Any],
        settings: Telegram,
        allowed_updates: list[str],
    ) -> None:
        self.app = app
        self.settings = settings
        self.allowed_updates = allowed_updates
        self.secret = secret(settings.secret_token_env)
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Listen, then tell Telegram where to post, with a secret token (generated if unset)."""
        url = self.settings.webhook_url
        if not url:
            raise ValueError("telegram.webhook_url is required when telegram.mode = 'webhook'")
        if self.secret is None:
            # Never without a secret: anyone who learned the URL could post updates in
            # anyone's name. One for this run, registered with Telegram just below.
            self.secret = secrets.token_urlsafe(32)
            log.warning(
                "no webhook secret in $%s: generated one for this run and registered it with "
                "Telegram (set the variable to keep one across restarts)",
                self.settings.secret_token_env,
            )
        elif not _SECRET.fullmatch(self.secret):
            raise ValueError(
                f"${self.settings.secret_token_env} must be 1-256 characters "
                "of A-Z, a-z, 0-9, _ and -"
            )
        server = web.Application(client_max_size=1024 * 1024)
        server.router.add_post(urlsplit(url).path or "/", self._handle)
        runner = web.AppRunner(server, access_log=None)
        await runner.setup()
        self._runner = runner
        await web.TCPSite(runner, self.settings.webhook_listen, self.settings.webhook_port).start()
        await self.app.bot.set_webhook(
            url, secret_token=self.secret, allowed_updates=self.allowed_updates
        )

    def _authentic(self, given: str) -> bool:
        """The secret header matches, compared as bytes in constant time."""
        # compare_digest refuses non-ASCII str with a TypeError (a 500 and a traceback);
        # aiohttp decodes header bytes with surrogateescape, so this gets the bytes back.
        try:
            raw = given.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            return False
        return self.secret is not None and hmac.compare_digest(raw, self.secret.encode())

    async def stop(self) -> None:
        """Stop listening (the webhook stays registered, so updates queue up until restart)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        if not self._authentic(request.headers.get(_HEADER, "")):
            return web.Response(status=403)
        if request.content_type != "application/json":
            return web.Response(status=415)
        try:
            update = Update.de_json(await request.json(), self.app.bot)
        except ValueError:
            return web.Response(status=400)
        if update is not None:
            await self.app.update_queue.put(update)
        return web.Response()
