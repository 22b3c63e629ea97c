"""The Telegram bot: translates Telegram updates into service calls and results into messages.

Manual lifecycle, so Telegram shares one event loop with Slack and the rest of the process:
`await TelegramTransport(service, reports, settings, token, media_cache=...).start()`, later
`await transport.stop()`. Polling (or a webhook) and the push loop run in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from telegram import BotCommandScopeChat, Update
from telegram.error import Conflict, InvalidToken, TelegramError
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    ChatMemberHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)
from telegram.request import BaseRequest

from ..config import ConfigError, Telegram
from ..service.labeling import LabelingService
from ..service.reports import Reports
from ..service.types import Push, UserRef
from .common import (
    ANNOTATOR_HELP,
    COORDINATOR_HELP,
    push_loop,
    stats_text,
)
from .telegram_coord import Coordinator, ExportResults
from .telegram_flow import Conversation
from .telegram_http import AiohttpRequest
from .telegram_send import MessageRateLimiter, Outbox, chat_of
from .telegram_views import (
    ANNOTATOR_COMMANDS,
    COORDINATOR_COMMANDS,
)
from .telegram_webhook import WebhookServer

log = logging.getLogger("chatlabel.telegram")
Context = ContextTypes.DEFAULT_TYPE
Handler = Callable[[Update, Context], Coroutine[Any, Any, None]]
_UPDATES = [Update.MESSAGE, Update.CALLBACK_QUERY, Update.MY_CHAT_MEMBER]


class _Redact(logging.Filter):
    """Blanks bot tokens out of log records (PTB logs its base URL, which holds the token)."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        found = [s for s in self.secrets if s in text or s in (record.exc_text or "")]
        for secret in found:
            text = text.replace(secret, "<token>")
            if record.exc_text:
                record.exc_text = record.exc_text.replace(secret, "<token>")
        if found:
            record.msg, record.args = text, ()
        return True


class _QuietConflict(logging.Filter):
    """Drops records about a 409 Conflict (already reported, and the run is stopping)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], Conflict))


_REDACT = _Redact()
_LOGGED_BY = ("telegram", "httpx", "httpcore", "chatlabel")


def _hide_token(token: str) -> None:
    """Attach the redacting filter to every logger that could see a request URL."""
    _REDACT.secrets.add(token)
    # httpx logs every request URL, which contains the token, at INFO.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # A filter on a logger does not cover its children, so each existing logger gets it.
    names = [n for n in logging.root.manager.loggerDict if n.split(".")[0] in _LOGGED_BY]
    for name in {*names, *_LOGGED_BY, "chatlabel.telegram", "chatlabel.push"}:
        logger = logging.getLogger(name)
        if _REDACT not in logger.filters:
            logger.addFilter(_REDACT)


def _own_chat(update: Update) -> bool:
    """True for an update from a person in their own private chat with the bot.

    Replies go to the update's chat: a forged update with a coordinator's `from` and someone
    else's `chat` would send them the coordinator's export. In a private chat, chat id and
    user id are the same; anything else is dropped (and logged).
    """
    user, chat = update.effective_user, update.effective_chat
    if user is None or chat is None:
        return False
    if chat.type == "private" and chat.id == user.id:
        return True
    log.warning(
        "dropped update %s: from user %s in %s chat %s (the bot answers only in a person's "
        "own private chat)",
        update.update_id,
        user.id,
        chat.type,
        chat.id,
    )
    return False


class TelegramTransport:
    """A Telegram bot in front of the labeling service (manual lifecycle: start / stop)."""

    name = "telegram"
    # PTB's HTTP layer (aiohttp: a third of httpx's CPU per call); tests swap in short timeouts.
    request_class: Callable[..., BaseRequest] = AiohttpRequest
    rate_limit_retries = 5  # RetryAfter answers AIORateLimiter waits out before giving up
    max_rate = 30.0  # messages per second for the whole bot (Telegram's broadcast limit)
    poll_timeout = 10  # seconds a getUpdates long poll may hang
    push_interval = 5.0  # how often the push loop looks for expired leases without a signal
    retry_delays: tuple[float, ...] = Outbox.retry_delays  # backoff after network errors
    # Updates handled at once. The rate limiter caps throughput anyway; more in flight would
    # only queue inside it and make a shutdown wait for them.
    max_concurrent_updates = 32

    def __init__(
        self,
        service: LabelingService,
        reports: Reports,
        settings: Telegram,
        token: str,
        *,
        media_cache: Path,
        export_results: ExportResults | None = None,
        on_fatal: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.service = service
        # Told when the bot cannot go on (another process polls the token); the app stops.
        self.on_fatal = on_fatal
        self.reports = reports
        self.settings = settings
        self._token = token
        self.media_cache = Path(media_cache)
        self.export_results = export_results
        self._app: Application[Any, Any, Any, Any, Any, Any] | None = None
        self._requests: tuple[BaseRequest, ...] = ()
        self._outbox: Outbox | None = None
        self._coordinator: Coordinator | None = None
        self._conversation: Conversation | None = None
        self._webhook: WebhookServer | None = None
        self._push_task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._commands_set: set[int] = set()
        self._conflict = False  # a 409 Conflict was reported (once)
        self._queued: Counter[str] = Counter()  # /start commands waiting per user
        self._dropped = 0

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def outbox(self) -> Outbox:
        """The sender (available after start())."""
        if self._outbox is None:
            raise RuntimeError("start() the Telegram transport first")
        return self._outbox

    @property
    def conversation(self) -> Conversation:
        """The annotator conversation (available after start())."""
        if self._conversation is None:
            raise RuntimeError("start() the Telegram transport first")
        return self._conversation

    @property
    def application(self) -> Application[Any, Any, Any, Any, Any, Any]:
        """The python-telegram-bot Application (available after start())."""
        if self._app is None:
            raise RuntimeError("start() the Telegram transport first")
        return self._app

    def _build(self) -> Application[Any, Any, Any, Any, Any, Any]:
        def request(pool: int) -> BaseRequest:
            # The session ignores HTTP(S)_PROXY: a proxy would swallow loopback traffic.
            return self.request_class(connection_pool_size=pool, pool_timeout=10.0)

        self._requests = (request(64), request(2))
        builder = (
            ApplicationBuilder()
            .token(self._token)
            .request(self._requests[0])
            .get_updates_request(self._requests[1])
            .rate_limiter(
                MessageRateLimiter(
                    overall_max_rate=self.max_rate, max_retries=self.rate_limit_retries
                )
            )
            # Updates from different people are handled side by side; one person's in order
            # (a per-user lock in every handler).
            .concurrent_updates(self.max_concurrent_updates)
        )
        base = self.settings.base_url.rstrip("/")
        if base:
            file_url = self.settings.base_file_url.rstrip("/")
            if not file_url:
                file_url = base[: -len("/bot")] + "/file/bot" if base.endswith("/bot") else base
            builder = builder.base_url(base).base_file_url(file_url)
        app = builder.build()
        app.add_handler(ChatMemberHandler(self._on_member, ChatMemberHandler.MY_CHAT_MEMBER))
        app.add_handler(CallbackQueryHandler(self._wrap(self._on_button)))
        private = filters.ChatType.PRIVATE
        commands: dict[str, Handler] = {
            "start": self._wrap(self._on_start, coalesce=True),
            "help": self._wrap(self._on_help),
            "stats": self._wrap(self._on_stats),
            "pause": self._wrap(self._on_pause),
            "resume": self._wrap(self._on_resume),
        }
        for name in Coordinator.COMMANDS:
            commands[name] = self._wrap(self._on_coordinator)
        for name, callback in commands.items():
            app.add_handler(CommandHandler(name, callback, filters=private))
        app.add_handler(MessageHandler(private & filters.COMMAND, self._wrap(self._on_unknown)))
        app.add_handler(MessageHandler(private & filters.TEXT, self._wrap(self._on_text)))
        app.add_error_handler(self._on_error)
        return app

    async def start(self) -> None:
        """Connect, set the command menus, start receiving updates and pushing items."""
        if self._app is not None:
            raise RuntimeError("the Telegram transport is already running")
        _hide_token(self._token)
        self._stop.clear()
        self._conflict = False
        app = self._build()
        self._app = app
        try:
            try:
                await app.initialize()
            except InvalidToken:
                # PTB opened the connections but will not shut an uninitialized bot down.
                await asyncio.gather(*(r.shutdown() for r in self._requests))
                # PTB's own message quotes the token; this one names where it came from.
                raise ConfigError(
                    f"Telegram refused the bot token in {self.settings.token_env}: check it with "
                    "@BotFather"
                ) from None
            await app.start()
            self._outbox = Outbox(app.bot, self.service, self.media_cache, self.retry_delays)
            self._conversation = Conversation(self.service, self._outbox)
            self._coordinator = Coordinator(
                self.service, self.reports, self._outbox, self.export_results
            )
            await self._set_commands()
            if self.settings.mode == "webhook":
                self._webhook = WebhookServer(app, self.settings, _UPDATES)
                await self._webhook.start()
            else:
                assert app.updater is not None
                await app.updater.start_polling(
                    timeout=self.poll_timeout,
                    allowed_updates=_UPDATES,
                    error_callback=self._polling_error,
                )
            self._push_task = asyncio.create_task(
                push_loop(self.service, "telegram", self._push, self._stop, self.push_interval),
                name="telegram-push",
            )
        except BaseException:
            await self.stop()
            raise
        log.info("Telegram bot @%s started (%s)", app.bot.username, self.settings.mode)

    def _polling_error(self, exc: TelegramError) -> None:
        """A failed getUpdates: PTB retries it, except a 409 Conflict, which stops the run."""
        if not isinstance(exc, Conflict):
            log.warning("polling for updates failed (retrying): %s", exc.message)
            return
        if self._conflict or self._stop.is_set():
            return
        # Another process polls this token (maybe on another host): retrying would only
        # take turns with it, each of them missing updates the other one took.
        self._conflict = True
        fatal = ConfigError(
            f"Telegram says another process is receiving this bot's updates ({exc.message}). "
            f"Stop the other chatlabel run (or whatever else uses the token in "
            f"{self.settings.token_env}), then start again"
        )
        log.error("%s", fatal)
        if self.on_fatal is not None:
            self.on_fatal(fatal)

    async def stop(self) -> None:
        """Stop pushing and receiving, then close every connection; safe to call twice."""
        self._stop.set()
        if self._outbox is not None:
            self._outbox.closing = True
        task, self._push_task = self._push_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        app, self._app = self._app, None
        if app is None:
            return
        try:
            if self._webhook is not None:
                await self._webhook.stop()
                self._webhook = None
            if app.updater is not None and app.updater.running:
                # After a Conflict, PTB's last getUpdates on stop gets one too, and it logs
                # that with a traceback; the cause was reported once already.
                quiet = _QuietConflict() if self._conflict else None
                updater_log = logging.getLogger("telegram.ext.Updater")
                if quiet is not None:
                    updater_log.addFilter(quiet)
                try:
                    await app.updater.stop()
                finally:
                    if quiet is not None:
                        updater_log.removeFilter(quiet)
            if app.running:
                await app.stop()
        finally:
            await app.shutdown()
        if self._dropped:
            log.info(
                "%d updates arrived while stopping and were left unanswered; their "
                "senders see no reply and can press or write again",
                self._dropped,
            )
            self._dropped = 0
        log.info("Telegram bot stopped")

    async def __aenter__(self) -> TelegramTransport:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _set_commands(self) -> None:
        """Annotator commands for everyone, coordinator commands in coordinators' chats."""
        await self.outbox.call(lambda: self.application.bot.set_my_commands(ANNOTATOR_COMMANDS))
        for key in self.service.config.access.coordinators:
            platform, _, uid = key.partition(":")
            if platform == "telegram" and uid.lstrip("-").isdigit():
                await self._set_coordinator_commands(int(uid))

    async def _set_coordinator_commands(self, chat_id: int) -> None:
        if chat_id in self._commands_set:
            return
        scope = BotCommandScopeChat(chat_id)
        try:
            await self.outbox.call(
                lambda: self.application.bot.set_my_commands(COORDINATOR_COMMANDS, scope=scope)
            )
            self._commands_set.add(chat_id)
        except TelegramError as exc:
            # Telegram knows a chat only once the person has written to the bot; retried at
            # their /start.
            log.info("coordinator menu for chat %s not set yet: %s", chat_id, exc.message)

    # -- plumbing -------------------------------------------------------------------------

    def _lock(self, key: str) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    def _wrap(
        self, fn: Callable[[Update, UserRef, Context], Awaitable[None]], *, coalesce: bool = False
    ) -> Handler:
        """A PTB callback that runs `fn` for the update's user, one update per user at a time.

        With `coalesce`, a command is skipped when the same user sent it again meanwhile
        (someone tapping /start while the bot is busy gets one answer, not five).
        """

        async def callback(update: Update, context: Context) -> None:
            tg_user, chat = update.effective_user, update.effective_chat
            if tg_user is None or chat is None or tg_user.is_bot:
                return
            if not _own_chat(update):
                return
            user = UserRef("telegram", str(tg_user.id), tg_user.full_name, str(chat.id))
            if coalesce:
                self._queued[user.key] += 1
            async with self._lock(user.key):
                if coalesce:
                    self._queued[user.key] -= 1
                    later = self._queued[user.key] > 0
                    if not later:
                        del self._queued[user.key]
                    if later:
                        return
                if self._stop.is_set():
                    # Shutting down: leave it unanswered (like a crash would) rather than
                    # make the stop wait for every queued update under the rate limit.
                    self._dropped += 1
                    return
                await fn(update, user, context)

        return callback

    async def _push(self, push: Push) -> None:
        async with self._lock(push.user.key):
            await self.outbox.task(push.user, push.task)

    # -- commands -------------------------------------------------------------------------

    async def _on_start(self, update: Update, user: UserRef, context: Context) -> None:
        if self.service.is_coordinator(user):
            await self._set_coordinator_commands(chat_of(user))
        await self.conversation.join(user, " ".join(context.args or []) or None)

    async def _on_help(self, update: Update, user: UserRef, context: Context) -> None:
        text = ANNOTATOR_HELP
        if self.service.is_coordinator(user):
            text += COORDINATOR_HELP
        await self.outbox.text(user, text)

    async def _on_stats(self, update: Update, user: UserRef, context: Context) -> None:
        await self.outbox.text(user, stats_text(await self.reports.my_stats(user)))

    async def _on_pause(self, update: Update, user: UserRef, context: Context) -> None:
        await self.outbox.text(user, await self.service.set_paused(user, True))

    async def _on_resume(self, update: Update, user: UserRef, context: Context) -> None:
        text = await self.service.set_paused(user, False)
        await self.outbox.text(user, text)
        if not text.startswith("Send /start"):
            await self.conversation.next(user)

    async def _on_coordinator(self, update: Update, user: UserRef, context: Context) -> None:
        assert update.message is not None and update.message.text is not None
        command = update.message.text.split()[0].lstrip("/").split("@")[0].lower()
        arg = " ".join(context.args or []) or None
        assert self._coordinator is not None
        await self._coordinator.run(command, user, arg)

    async def _on_unknown(self, update: Update, user: UserRef, context: Context) -> None:
        await self.outbox.text(user, "I don't know that command. /help lists what I can do.")

    # -- answers --------------------------------------------------------------------------

    async def _on_text(self, update: Update, user: UserRef, context: Context) -> None:
        assert update.message is not None and update.message.text is not None
        await self.conversation.text(user, update.message.text, update.message.message_id)

    async def _on_button(self, update: Update, user: UserRef, context: Context) -> None:
        assert update.callback_query is not None
        await self.conversation.button(user, update.callback_query)

    # -- membership and errors ------------------------------------------------------------

    async def _on_member(self, update: Update, context: Context) -> None:
        change = update.my_chat_member
        if change is None or change.chat.type != "private" or not _own_chat(update):
            return
        if change.new_chat_member.status == "kicked":
            who = change.from_user
            user = UserRef("telegram", str(who.id), who.full_name, str(change.chat.id))
            await self.service.mark_blocked(user)
            log.info("%s blocked the bot; no more pushes to them", user.key)

    async def _on_error(self, update: object, context: Context) -> None:
        """Log a failed update with its cause (records pass the token filter)."""
        err = context.error
        where = "an update"
        if isinstance(update, Update) and update.effective_user is not None:
            where = f"an update from telegram:{update.effective_user.id}"
        log.error(
            "handling %s failed: %s: %s",
            where,
            type(err).__name__,
            err,
            exc_info=err if not isinstance(err, TelegramError) else None,
        )
