"""The Telegram adapter: Telegram updates in as conversation events, views out as Bot API calls.

Manual lifecycle, so Telegram shares one event loop with Slack and the rest of the process:
`await TelegramTransport(conversation_factory, settings, token, ...).start()`, later
`await transport.stop()`. Polling (or a webhook) and the push loop run in the background.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from telegram import BotCommand, BotCommandScopeChat, Update
from telegram.error import Conflict, InvalidToken, TelegramError
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    ChatMemberHandler,
    ContextTypes,
    MessageHandler,
    filters,
)
from telegram.request import BaseRequest

from ..config import ConfigError, Telegram
from ..conversation import Catalog, Conversation, Who
from ..conversation.bulk import STOP_GRACE as OUTBOX_GRACE
from ..conversation.commands import ANNOTATOR, COORDINATOR
from ..mechanics import Limit, Pacer
from ..mechanics.redact import hide
from ..service.labeling import LabelingService
from ..service.reports import Reports
from ..service.types import UserRef
from .lifecycle import started
from .telegram_http import AiohttpRequest
from .telegram_outlet import TelegramOutlet, chat_of, ref_of
from .telegram_webhook import WebhookServer

log = logging.getLogger("chatlabel.telegram")
Context = ContextTypes.DEFAULT_TYPE
Handler = Callable[[Update, Context], Coroutine[Any, Any, None]]
ExportResults = Callable[[str], Awaitable[tuple[str, bytes]]]
_UPDATES = [Update.MESSAGE, Update.EDITED_MESSAGE, Update.CALLBACK_QUERY, Update.MY_CHAT_MEMBER]


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


# For the operator (the run stops with it), not for people in chat.
_TOKEN_IN_USE = (
    "Telegram says another process is receiving this bot's updates ({error}). Stop the other "
    "chatlabel run (or whatever else uses the token in {env}), then start again"
)


class _QuietConflict(logging.Filter):
    """Drops records about a 409 Conflict (already reported, and the run is stopping)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], Conflict))


class TelegramTransport:
    """A Telegram bot in front of the conversation (manual lifecycle: start / stop)."""

    name = "telegram"
    # PTB's HTTP layer (aiohttp: a third of httpx's CPU per call); tests swap in short timeouts.
    request_class: Callable[..., BaseRequest] = AiohttpRequest
    # Telegram's limits as the bot paces its calls (each counted from Telegram's answer, so a
    # call held up on its way cannot make the next look early): new messages for the whole
    # bot (Telegram's ~30 a second; 0: unpaced), and sends and edits per chat, of which
    # pushes and bulk messages may use 2 of 3 (the last is kept for replies to presses).
    # Callback answers are never paced: they stop a button's spinner. Tests against an
    # emulator without limits turn them off (max_rate 0, chat_limit None).
    max_rate = 30.0
    chat_limit: Limit | None = Limit(3, 1.05, reserve=1)
    poll_timeout = 10  # seconds a getUpdates long poll may hang
    push_interval = 5.0  # how often the push loop looks for expired leases without a signal
    outbox_interval = 5.0  # how often the outbox sender looks for due copies without a signal
    outbox_grace = OUTBOX_GRACE  # seconds bulk copies in flight get to settle at stop()
    retry_delays: tuple[float, ...] = TelegramOutlet.retry_delays  # backoff after network errors
    # Updates handled at once. The rate limiter caps throughput anyway; more in flight would
    # only queue inside it and make a shutdown wait for them.
    max_concurrent_updates = 32
    # Typed messages a person may send (per second, burst); None: the conversation's default.
    inbound: tuple[float, float] | None = None

    def __init__(
        self,
        service: LabelingService,
        reports: Reports,
        settings: Telegram,
        token: str,
        *,
        media_cache: Path,
        export_results: ExportResults | None = None,
        catalog: Catalog | None = None,
        on_fatal: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.service = service
        # Told when the bot cannot go on (another process polls the token); the app stops.
        self.on_fatal = on_fatal
        self._conflict = False  # a 409 Conflict was reported (once)
        self.reports = reports
        self.settings = settings
        self._token = token
        self.media_cache = Path(media_cache)
        self.export_results = export_results
        self.catalog = catalog or Catalog()
        self._app: Application[Any, Any, Any, Any, Any, Any] | None = None
        self._requests: tuple[BaseRequest, ...] = ()
        self._outlet: TelegramOutlet | None = None
        self._conversation: Conversation | None = None
        self._webhook: WebhookServer | None = None
        self._stop = asyncio.Event()
        self._commands_set: set[int] = set()
        self._dropped = 0

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def outlet(self) -> TelegramOutlet:
        """What renders views as Bot API calls (available after start())."""
        return started(self._outlet, "Telegram")

    @property
    def conversation(self) -> Conversation:
        """The conversation with everyone on Telegram (available after start())."""
        return started(self._conversation, "Telegram")

    @property
    def application(self) -> Application[Any, Any, Any, Any, Any, Any]:
        """The python-telegram-bot Application (available after start())."""
        return started(self._app, "Telegram")

    def limits(self) -> dict[str, Limit]:
        """The pacer's limits: "all" for new messages bot-wide, "chat" per chat."""
        limits: dict[str, Limit] = {}
        if self.max_rate > 0:
            count = max(1, round(self.max_rate))
            # A sixth of the bot-wide budget stays free for replies to what people just did.
            limits["all"] = Limit(count, 1.05, reserve=count // 6)
        if self.chat_limit is not None:
            limits["chat"] = self.chat_limit
        return limits

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
            # No rate limiter of python-telegram-bot's: while it waits out a 429 it holds every
            # request of the bot. The outlet's pacer paces each call and holds only the chat
            # that got the 429.
            # Updates from different people are handled side by side; one person's in order
            # (the conversation holds a lock per person).
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
        # New messages only: an edited one (a command or text) is an edit, whatever it says.
        private = filters.ChatType.PRIVATE & filters.UpdateType.MESSAGE
        app.add_handler(MessageHandler(private & filters.COMMAND, self._wrap(self._on_command)))
        app.add_handler(
            MessageHandler(
                filters.ChatType.PRIVATE & filters.UpdateType.EDITED_MESSAGE & filters.TEXT,
                self._wrap(self._on_edited),
            )
        )
        app.add_handler(MessageHandler(private & filters.TEXT, self._wrap(self._on_text)))
        app.add_handler(MessageHandler(private, self._wrap(self._on_other)))
        app.add_error_handler(self._on_error)
        return app

    async def start(self) -> None:
        """Connect, set the command menus, start receiving updates and pushing items."""
        if self._app is not None:
            raise RuntimeError("the Telegram transport is already running")
        hide(self._token)
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
            self._outlet = TelegramOutlet(
                app.bot, self.service, self.media_cache, self.retry_delays, Pacer(self.limits())
            )
            self._conversation = Conversation(
                self.service,
                self.reports,
                self.catalog,
                self._outlet,
                export_results=self.export_results,
                inbound=self.inbound,
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
            self._conversation.start_pushing(self._stop, self.push_interval)
            self._conversation.start_outbox(self._stop, self.outbox_interval)
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
        fatal = ConfigError(_TOKEN_IN_USE.format(error=exc.message, env=self.settings.token_env))
        log.error("%s", fatal)
        if self.on_fatal is not None:
            self.on_fatal(fatal)

    async def stop(self) -> None:
        """Stop pushing and receiving, then close every connection; safe to call twice."""
        self._stop.set()
        if self._outlet is not None:
            self._outlet.close()
        if self._conversation is not None:
            await self._conversation.stop_pushing()
            await self._conversation.stop_outbox(self.outbox_grace)
            await self._conversation.close()
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

    # -- command menus ----------------------------------------------------------------------

    def _menu(self, names: tuple[str, ...], lang: str) -> list[BotCommand]:
        t = self.catalog.texts(lang)
        return [BotCommand(n, t(f"menu.{n}")[:256]) for n in names]

    async def _set_commands(self) -> None:
        """The command menu in every shipped language; coordinators' in their chats."""
        bot = self.application.bot
        for lang in self.catalog.languages:
            menu = self._menu(ANNOTATOR, lang)
            code = None if lang == self.catalog.languages[0] else lang  # the first is the default

            def set_menu(m: list[BotCommand] = menu, c: str | None = code) -> Awaitable[bool]:
                return bot.set_my_commands(m, language_code=c)

            await self.outlet.call(set_menu)
        for user in self.service.coordinators():
            if user.platform == "telegram" and user.user_id.lstrip("-").isdigit():
                await self._set_coordinator_commands(int(user.user_id))

    async def _set_coordinator_commands(self, chat_id: int) -> None:
        if chat_id in self._commands_set:
            return
        scope = BotCommandScopeChat(chat_id)
        menu = self._menu(ANNOTATOR + COORDINATOR, self.catalog.languages[0])
        try:
            await self.outlet.call(lambda: self.application.bot.set_my_commands(menu, scope=scope))
            self._commands_set.add(chat_id)
        except TelegramError as exc:
            # Telegram knows a chat only once the person has written to the bot; retried at
            # their /start.
            log.info("coordinator menu for chat %s not set yet: %s", chat_id, exc.message)

    # -- updates in -------------------------------------------------------------------------

    def _wrap(self, fn: Callable[[Update, Who], Awaitable[None]]) -> Handler:
        """A PTB callback that turns the update's sender into a Who and runs `fn`."""

        async def callback(update: Update, context: Context) -> None:
            tg_user, chat = update.effective_user, update.effective_chat
            if tg_user is None or chat is None or tg_user.is_bot:
                return
            if not _own_chat(update):
                return
            if self._stop.is_set():
                # Shutting down: leave it unanswered (like a crash would) rather than
                # make the stop wait for every queued update under the rate limit.
                self._dropped += 1
                return
            user = UserRef("telegram", str(tg_user.id), tg_user.full_name, str(chat.id))
            await fn(update, Who(user, tg_user.language_code))

        return callback

    async def _on_command(self, update: Update, who: Who) -> None:
        assert update.message is not None and update.message.text is not None
        head, _, args = update.message.text.partition(" ")
        name = head.lstrip("/").split("@")[0].lower()
        if name == "start" and self.service.is_coordinator(who.user):
            await self._set_coordinator_commands(chat_of(who.user))
        await self.conversation.command(who, name, args.strip())

    async def _on_text(self, update: Update, who: Who) -> None:
        message = update.message
        assert message is not None and message.text is not None
        source = f"{message.chat_id}:{message.message_id}"
        replied = message.reply_to_message
        # A reply to one of the bot's messages may be a comment on the item it shows.
        reply_to = (
            ref_of(replied.chat_id, replied.message_id)
            if replied is not None and replied.from_user is not None and replied.from_user.is_bot
            else None
        )
        await self.conversation.text(who, message.text, source=source, reply_to=reply_to)

    async def _on_edited(self, update: Update, who: Who) -> None:
        message = update.edited_message
        assert message is not None and message.text is not None
        source = f"{message.chat_id}:{message.message_id}"
        await self.conversation.edited(who, message.text, source=source)

    async def _on_other(self, update: Update, who: Who) -> None:
        if update.message is not None:  # a photo, a sticker, a voice note...
            await self.conversation.unsupported(who)

    async def _on_button(self, update: Update, who: Who) -> None:
        query = update.callback_query
        assert query is not None
        msg = query.message
        ref = ref_of(msg.chat.id, msg.message_id) if msg is not None else None
        await self.conversation.press(who, query.data or "", ref, query)

    async def _on_member(self, update: Update, context: Context) -> None:
        change = update.my_chat_member
        if change is None or change.chat.type != "private" or not _own_chat(update):
            return
        if change.new_chat_member.status == "kicked":
            who = change.from_user
            user = UserRef("telegram", str(who.id), who.full_name, str(change.chat.id))
            await self.conversation.blocked(Who(user))

    async def _on_error(self, update: object, context: Context) -> None:
        """Log a failed update with its cause (records pass the token filter)."""
        err = context.error
        who = "?"
        if isinstance(update, Update) and update.effective_user is not None:
            who = str(update.effective_user.id)
        log.error(
            "handling an update from telegram:%s failed: %s: %s",
            who,
            type(err).__name__,
            err,
            exc_info=err if not isinstance(err, TelegramError) else None,
        )
