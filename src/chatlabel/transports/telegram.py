"""The Telegram bot: translates Telegram updates into service calls and results into messages.

    transport = TelegramTransport(service, reports, config.telegram, token, media_cache=path)
    await transport.start()     # polling (or webhook) and pushes run in the background
    ...
    await transport.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from telegram import BotCommandScopeChat, Message, Update
from telegram.error import TelegramError
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    ChatMemberHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)
from telegram.request import HTTPXRequest

from ..config import Telegram
from ..service.labeling import LabelingService
from ..service.reports import Reports
from ..service.types import Idle, Outcome, Push, Task, UserRef
from .common import (
    ANNOTATOR_HELP,
    COORDINATOR_HELP,
    choice_of,
    decode,
    feedback_text,
    outcome_line,
    push_loop,
    stats_text,
)
from .telegram_coord import Coordinator, ExportResults
from .telegram_send import Outbox, chat_of
from .telegram_views import (
    ANNOTATOR_COMMANDS,
    CAPTION_LIMIT,
    COORDINATOR_COMMANDS,
    TEXT_LIMIT,
    UNDONE_LINE,
    project_keyboard,
    task_keyboard,
    undo_keyboard,
    with_line,
    without_line,
)
from .telegram_webhook import WebhookServer

log = logging.getLogger("chatlabel.telegram")
Context = ContextTypes.DEFAULT_TYPE
Handler = Callable[[Update, Context], Coroutine[Any, Any, None]]
_UPDATES = [Update.MESSAGE, Update.CALLBACK_QUERY, Update.MY_CHAT_MEMBER]
_UNKNOWN_BUTTON = "That button isn't valid any more."


class _Redact(logging.Filter):
    """Blanks the bot token out of log records (URLs, exception texts)."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if self.secret in text or (record.exc_text and self.secret in record.exc_text):
            record.msg, record.args = text.replace(self.secret, "<token>"), ()
            if record.exc_text:
                record.exc_text = record.exc_text.replace(self.secret, "<token>")
            record.exc_info = None
        return True


class TelegramTransport:
    """A Telegram bot in front of the labeling service (manual lifecycle: start / stop)."""

    rate_limit_retries = 5  # RetryAfter answers AIORateLimiter waits out before giving up
    max_rate = 30.0  # messages per second for the whole bot (Telegram's broadcast limit)
    poll_timeout = 10  # seconds a getUpdates long poll may hang
    push_interval = 5.0  # how often the push loop looks for expired leases without a signal
    retry_delays: tuple[float, ...] = Outbox.retry_delays  # backoff after network errors

    def __init__(
        self,
        service: LabelingService,
        reports: Reports,
        settings: Telegram,
        token: str,
        *,
        media_cache: Path,
        export_results: ExportResults | None = None,
    ) -> None:
        self.service = service
        self.reports = reports
        self.settings = settings
        self._token = token
        self.media_cache = Path(media_cache)
        self.export_results = export_results
        self._app: Application[Any, Any, Any, Any, Any, Any] | None = None
        self._outbox: Outbox | None = None
        self._coordinator: Coordinator | None = None
        self._webhook: WebhookServer | None = None
        self._push_task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        self._commands_set: set[int] = set()

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def outbox(self) -> Outbox:
        """The sender (available after start())."""
        if self._outbox is None:
            raise RuntimeError("start() the Telegram transport first")
        return self._outbox

    @property
    def application(self) -> Application[Any, Any, Any, Any, Any, Any]:
        """The python-telegram-bot Application (available after start())."""
        if self._app is None:
            raise RuntimeError("start() the Telegram transport first")
        return self._app

    def _build(self) -> Application[Any, Any, Any, Any, Any, Any]:
        def request(pool: int) -> HTTPXRequest:
            # trust_env=False: httpx would send loopback traffic through HTTP(S)_PROXY.
            return HTTPXRequest(
                connection_pool_size=pool, pool_timeout=10.0, httpx_kwargs={"trust_env": False}
            )

        builder = (
            ApplicationBuilder()
            .token(self._token)
            .request(request(64))
            .get_updates_request(request(2))
            .rate_limiter(
                AIORateLimiter(overall_max_rate=self.max_rate, max_retries=self.rate_limit_retries)
            )
            # Updates from different people are handled side by side; one person's in order
            # (a per-user lock in every handler).
            .concurrent_updates(True)
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
            "start": self._wrap(self._on_start),
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
        # httpx logs every request URL, which contains the token, at INFO.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        redact = _Redact(self._token)
        for name in ("httpx", "telegram", "telegram.ext.Updater", "telegram.ext.Application",
                     "telegram.Bot", "telegram.ext.AIORateLimiter", "chatlabel.telegram",
                     "chatlabel.push"):
            logger = logging.getLogger(name)
            if not any(isinstance(f, _Redact) for f in logger.filters):
                logger.addFilter(redact)
        app = self._build()
        self._app = app
        try:
            await app.initialize()
            await app.start()
            self._outbox = Outbox(app.bot, self.service, self.media_cache, self.retry_delays)
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
                    timeout=self.poll_timeout, allowed_updates=_UPDATES
                )
            self._stop.clear()
            self._push_task = asyncio.create_task(
                push_loop(self.service, "telegram", self._push, self._stop, self.push_interval),
                name="telegram-push",
            )
        except BaseException:
            await self.stop()
            raise
        log.info("Telegram bot @%s started (%s)", app.bot.username, self.settings.mode)

    async def stop(self) -> None:
        """Stop pushing and receiving, then close every connection; safe to call twice."""
        self._stop.set()
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
                await app.updater.stop()
            if app.running:
                await app.stop()
        finally:
            await app.shutdown()
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

    def _wrap(self, fn: Callable[[Update, UserRef, Context], Awaitable[None]]) -> Handler:
        """A PTB callback that runs `fn` for the update's user, one update per user at a time."""

        async def callback(update: Update, context: Context) -> None:
            tg_user, chat = update.effective_user, update.effective_chat
            if tg_user is None or chat is None or tg_user.is_bot:
                return
            user = UserRef("telegram", str(tg_user.id), tg_user.full_name, str(chat.id))
            async with self._lock(user.key):
                await fn(update, user, context)

        return callback

    async def _push(self, push: Push) -> None:
        async with self._lock(push.user.key):
            await self.outbox.task(push.user, push.task)

    async def _show(self, user: UserRef, got: Task | Idle) -> None:
        if isinstance(got, Task):
            await self.outbox.task(user, got)
        else:
            await self.outbox.text(user, got.message)

    async def _next(self, user: UserRef) -> None:
        """Show the user's current or next item, or why there is none."""
        await self._show(user, await self.service.next_task(user))

    # -- commands -------------------------------------------------------------------------

    async def _on_start(self, update: Update, user: UserRef, context: Context) -> None:
        arg = " ".join(context.args or []) or None
        res = await self.service.join(user, arg)
        if res.role == "coordinator":
            await self._set_coordinator_commands(chat_of(user))
        if res.status == "refused":
            await self.outbox.text(user, res.message)
        elif res.status == "choose":
            names = list(self.service.projects)
            await self.outbox.text(user, res.message, project_keyboard(res.choices, names))
        else:
            await self._welcome(user, res.message, res.project.instructions if res.project else "")

    async def _welcome(self, user: UserRef, greeting: str, instructions: str) -> None:
        text = greeting + (f"\n\n{instructions}" if instructions else "")
        text += "\n\nAnswer with the buttons under each item; /help explains the rest."
        await self.outbox.text(user, text)
        await self._next(user)

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
            await self._next(user)

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
        """A plain message: the answer to an open free-text item, if there is one."""
        assert update.message is not None and update.message.text is not None
        out = await self.service.answer_text(user, update.message.text)
        if not out.ok:
            hint = "" if out.status != "stale" else " Answer with the buttons, or send /help."
            await self.outbox.text(user, out.message + hint)
            return
        chat = chat_of(user)
        shown = self.outbox.shown.get(chat)
        if shown is not None and shown.open and shown.kind == "text":
            shown.open = False
            await self._confirm(user, out, shown.message_id, shown.body, media=shown.media)
        else:
            await self._confirm(user, out, None, "", media=False)
        await self._after(user, out)

    async def _on_button(self, update: Update, user: UserRef, context: Context) -> None:
        query = update.callback_query
        assert query is not None
        press = decode(query.data or "")
        msg = query.message if isinstance(query.message, Message) else None
        if press is None:
            await self.outbox.toast(query, _UNKNOWN_BUTTON)
            return
        if press.action == "project":
            await self._choose_project(user, press.ref, msg)
            await self.outbox.toast(query)
            return
        if press.action == "undo":
            out = await self.service.undo(user, press.ref)
            await self.outbox.toast(query, None if out.ok else out.message)
            if out.ok and out.task is not None:
                await self._undone(user, out.task, msg)
            return
        if press.action in ("answer", "toggle"):
            choices = await self._choices(user, press.ref)
            choice = choice_of(choices or (), press.index)
            if choice is None:
                await self.outbox.toast(query, _UNKNOWN_BUTTON)
                return
            if press.action == "toggle":
                out = await self.service.toggle(user, press.ref, choice)
                await self.outbox.toast(query, None if out.ok else out.message)
                if out.ok and out.task is not None and msg is not None:
                    await self.outbox.keyboard(msg.chat_id, msg.message_id, task_keyboard(out.task))
                return
            out = await self.service.answer(user, press.ref, choice)
        elif press.action == "done":
            out = await self.service.answer(user, press.ref, None)
        else:  # skip
            out = await self.service.skip(user, press.ref)
        await self.outbox.toast(query, None if out.ok else out.message)
        if out.ok:
            self._close(user, press.ref)
            if msg is None:
                await self._confirm(user, out, None, "", media=False)
            else:
                body = msg.text or msg.caption or ""
                await self._confirm(user, out, msg.message_id, body, media=msg.text is None)
            await self._after(user, out)
        elif out.status == "stale":
            # A timed-out item: take its dead buttons away and show what is current instead.
            if msg is not None:
                media = msg.text is None
                body = with_line(msg.text or msg.caption or "", "⌛ Timed out",
                                 CAPTION_LIMIT if media else TEXT_LIMIT)
                await self.outbox.edit(msg.chat_id, msg.message_id, body, media=media)
            await self._next(user)

    async def _choices(self, user: UserRef, assignment_id: int) -> tuple[str, ...] | None:
        """The choices behind an assignment's buttons."""
        known = self.outbox.choices.get(assignment_id)
        if known is not None:
            return known
        # After a restart: with one set of choices in the config, that is the answer; the
        # service still checks the press against the assignment.
        distinct = {rules.choices for rules in self.service.rules.values()}
        if len(distinct) == 1:
            return next(iter(distinct))
        got = await self.service.next_task(user)
        if isinstance(got, Task) and got.assignment_id == assignment_id:
            return got.choices
        return None

    def _close(self, user: UserRef, assignment_id: int) -> None:
        shown = self.outbox.shown.get(chat_of(user))
        if shown is not None and shown.assignment_id == assignment_id:
            shown.open = False

    async def _confirm(
        self, user: UserRef, out: Outcome, message_id: int | None, body: str, *, media: bool
    ) -> None:
        """Show the recorded choice on the item (or in a new message), with Undo for a while."""
        line = outcome_line(out)
        undo = None
        if out.answer_id is not None and out.undo_until and out.undo_until > self.service.clock():
            undo = undo_keyboard(out.answer_id)
        if message_id is None:
            await self.outbox.text(user, line, undo)
            return
        limit = CAPTION_LIMIT if media else TEXT_LIMIT
        await self.outbox.edit(
            chat_of(user), message_id, with_line(body, line, limit), media=media, markup=undo
        )

    async def _after(self, user: UserRef, out: Outcome) -> None:
        """After a recorded answer: gold feedback, a suspension notice, then the next item."""
        feedback = feedback_text(out)
        if feedback:
            await self.outbox.text(user, feedback)
        if out.suspended:
            await self.outbox.text(
                user,
                f"⛔ You won't get more items in this project. {out.suspended} "
                "A coordinator can reinstate you.",
            )
            return
        await self._next(user)

    async def _undone(self, user: UserRef, task: Task, msg: Message | None) -> None:
        """Mark the confirmation as undone, withdraw a newer unanswered item, show the item."""
        chat = chat_of(user)
        if msg is not None:
            body = without_line(msg.text or msg.caption or "")
            limit = TEXT_LIMIT if msg.text is not None else CAPTION_LIMIT
            await self.outbox.edit(
                chat, msg.message_id, with_line(body, UNDONE_LINE, limit), media=msg.text is None
            )
        shown = self.outbox.shown.get(chat)
        if shown is not None and shown.open and shown.assignment_id != task.assignment_id:
            # The item sent after the undone answer stays theirs and comes back next;
            # deleting it keeps one live copy of each item in the chat.
            await self.outbox.delete(chat, shown.message_id)
        await self.outbox.task(user, task)

    async def _choose_project(self, user: UserRef, index: int, msg: Message | None) -> None:
        names = list(self.service.projects)
        if not 0 <= index < len(names):
            await self.outbox.text(user, _UNKNOWN_BUTTON)
            return
        res = await self.service.join(user, names[index])
        if msg is not None:
            title = self.service.projects[names[index]].title
            await self.outbox.edit(
                msg.chat_id, msg.message_id, f"{msg.text or ''}\n\n➡️ {title}", media=False
            )
        if res.status == "joined":
            await self._welcome(user, res.message, res.project.instructions if res.project else "")
        else:
            await self.outbox.text(user, res.message)

    # -- membership and errors ------------------------------------------------------------

    async def _on_member(self, update: Update, context: Context) -> None:
        change = update.my_chat_member
        if change is None or change.chat.type != "private":
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
        log.error("handling %s failed: %s: %s", where, type(err).__name__, err,
                  exc_info=err if not isinstance(err, TelegramError) else None)
