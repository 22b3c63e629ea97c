"""Sending to Telegram: retries, edits that may be no-ops, media uploaded once, blocked users."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from telegram import Bot, CallbackQuery, InlineKeyboardMarkup, InputFile, Message
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter
from telegram.ext import AIORateLimiter

from ..media import MediaError, file_sha256, prepare_image
from ..service.labeling import LabelingService
from ..service.types import Task, UserRef
from .common import cut, task_text
from .telegram_views import CAPTION_LIMIT, TEXT_LIMIT, task_keyboard

log = logging.getLogger("chatlabel.telegram")
T = TypeVar("T")
PLATFORM = "telegram"
_VOICE_SUFFIXES = (".ogg", ".oga", ".opus")


@dataclass
class Shown:
    """The latest item message in a chat, so a typed answer or an undo can find it."""

    assignment_id: int
    message_id: int
    body: str
    media: bool
    kind: str
    open: bool = True


class MessageRateLimiter(AIORateLimiter):
    """AIORateLimiter whose bot-wide limit counts new messages only.

    Telegram's ~30 per second is a limit on messages sent; the edit and the callback answer
    that follow each press are not broadcasts, and counting them would halve how many
    presses a second the bot can take. A 429 on any call is still waited out and retried.
    """

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, bool | dict[str, Any] | list[dict[str, Any]]]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: int | None,
    ) -> bool | dict[str, Any] | list[dict[str, Any]]:
        """Throttle sends bot-wide; let other calls through (RetryAfter still applies)."""
        if not endpoint.startswith("send"):
            # Without a chat_id, AIORateLimiter applies no per-bot limit to the call.
            data = {k: v for k, v in data.items() if k != "chat_id"}
        return await super().process_request(
            callback, args, kwargs, endpoint, data, rate_limit_args
        )


class _FileIdRefused(Exception):
    """Telegram does not know a stored file_id (another bot, or a wiped test server)."""


def chat_of(user: UserRef) -> int:
    """The chat to write to: the user's private chat unless another address was recorded."""
    return int(user.address or user.user_id)


def _seconds(retry_after: int | timedelta) -> float:
    return retry_after.total_seconds() if isinstance(retry_after, timedelta) else float(retry_after)


def _says(error: BadRequest, *fragments: str) -> bool:
    # PTB capitalises descriptions ("Message is not modified"): compare case-insensitively.
    text = error.message.lower()
    return any(f in text for f in fragments)


class Outbox:
    """Everything the bot sends, with retries; a user who blocked the bot is marked so."""

    # Waits between attempts after a network error or a 429 the rate limiter gave up on.
    retry_delays: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)

    def __init__(
        self,
        bot: Bot,
        service: LabelingService,
        media_cache: Path,
        retry_delays: Sequence[float] | None = None,
    ) -> None:
        self.bot = bot
        if retry_delays is not None:
            self.retry_delays = tuple(retry_delays)
        self.service = service
        self.media_cache = media_cache
        self.closing = False
        self.shown: dict[int, Shown] = {}  # chat id -> latest item message
        # Choices of assignments shown since start, so a press needs no database lookup.
        self.choices: OrderedDict[int, tuple[str, ...]] = OrderedDict()
        self._hashes: dict[Path, str] = {}
        self._upload_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    # -- calls ----------------------------------------------------------------------------

    async def call(self, make: Callable[[], Awaitable[T]]) -> T:
        """Run a Bot API call, retrying network errors and rate limits with backoff."""
        # While the bot shuts down nobody waits for backoff: one attempt each.
        delays = [] if self.closing else list(self.retry_delays)
        while True:
            try:
                return await make()
            except BadRequest:
                raise  # a subclass of NetworkError, but retrying cannot fix it
            except RetryAfter as exc:
                if not delays:
                    raise
                delays.pop(0)
                await asyncio.sleep(_seconds(exc.retry_after) + 0.1)
            except NetworkError as exc:
                if not delays:
                    raise
                delay = delays.pop(0)
                log.warning("Telegram call failed (%s); retrying in %.2fs", exc.message, delay)
                await asyncio.sleep(delay)

    async def to_user(self, user: UserRef, make: Callable[[], Awaitable[T]]) -> T | None:
        """A call addressed to one user; None (and the user marked) when they blocked the bot."""
        try:
            return await self.call(make)
        except Forbidden as exc:
            log.info("%s cannot be reached (%s); no more pushes to them", user.key, exc.message)
            await self.service.mark_blocked(user)
            return None

    async def text(
        self, user: UserRef, text: str, markup: InlineKeyboardMarkup | None = None
    ) -> Message | None:
        """Send a text message, cut to Telegram's limit."""
        chat = chat_of(user)
        body = cut(text, TEXT_LIMIT)
        return await self.to_user(
            user, lambda: self.bot.send_message(chat, body, reply_markup=markup)
        )

    async def _cosmetic(
        self, what: str, make: Callable[[], Awaitable[object]], *, when_closing: bool = False
    ) -> None:
        """A call whose failure must not stop the flow (the answer is already recorded)."""
        if self.closing and not when_closing:
            return  # shutting down: only what acknowledges a press still goes out
        try:
            await self.call(make)
        except BadRequest as exc:
            # A double press edits to the same content; old messages and queries expire.
            benign = ("not modified", "not found", "can't be edited", "can't be deleted",
                      "query is too old", "query id is invalid")  # fmt: skip
            if not _says(exc, *benign):
                raise
        except Forbidden:
            pass  # the user blocked the bot; my_chat_member or the next send marks them
        except (NetworkError, RetryAfter) as exc:
            log.warning("could not %s, giving up after retries: %s", what, exc.message)

    async def edit(
        self,
        chat_id: int,
        message_id: int,
        body: str,
        *,
        media: bool,
        markup: InlineKeyboardMarkup | None = None,
    ) -> None:
        """Replace a message's text (or caption) and keyboard; a no-op edit is fine."""
        bot = self.bot
        if media:
            caption = cut(body, CAPTION_LIMIT)
            await self._cosmetic(
                "edit a caption",
                lambda: bot.edit_message_caption(
                    chat_id, message_id, caption=caption, reply_markup=markup
                ),
            )
        else:
            text = cut(body, TEXT_LIMIT)
            await self._cosmetic(
                "edit a message",
                lambda: bot.edit_message_text(text, chat_id, message_id, reply_markup=markup),
            )

    async def keyboard(self, chat_id: int, message_id: int, markup: InlineKeyboardMarkup) -> None:
        """Replace only a message's keyboard (multi-choice toggles)."""
        await self._cosmetic(
            "update a keyboard",
            lambda: self.bot.edit_message_reply_markup(chat_id, message_id, reply_markup=markup),
        )

    async def delete(self, chat_id: int, message_id: int) -> None:
        """Delete a message if Telegram still allows it."""
        await self._cosmetic(
            "delete a message", lambda: self.bot.delete_message(chat_id, message_id)
        )

    async def toast(self, query: CallbackQuery, text: str | None = None) -> None:
        """Answer a callback query (the spinner stops); a query too old to answer is ignored."""
        await self._cosmetic(
            "answer a button press",
            lambda: query.answer(text[:200] if text else None),
            when_closing=True,
        )

    # -- items ----------------------------------------------------------------------------

    def remember_choices(self, task: Task) -> None:
        """Keep an assignment's choices so its buttons can be read back when pressed."""
        self.choices[task.assignment_id] = task.choices
        self.choices.move_to_end(task.assignment_id)
        while len(self.choices) > 20_000:
            self.choices.popitem(last=False)

    async def task(self, user: UserRef, task: Task) -> Message | None:
        """Send an item as one message: text, or media with the text as caption, and buttons."""
        self.remember_choices(task)
        chat = chat_of(user)
        markup = task_keyboard(task)
        body = task_text(task)
        sent: Message | None = None
        if task.media is not None:
            try:
                sent = await self._media(user, chat, task, cut(body, CAPTION_LIMIT), markup)
            except (MediaError, OSError, BadRequest) as exc:  # missing, corrupt or refused
                log.error(
                    "item %s: cannot send its %s (%s); sending the text only",
                    task.item_id,
                    task.media.kind,
                    exc,
                )
                body += f"\n\n⚠️ The {task.media.kind} of this item could not be loaded."
                sent = await self.text(user, body, markup)
        else:
            sent = await self.text(user, body, markup)
        if sent is not None:
            self.shown[chat] = Shown(
                task.assignment_id,
                sent.message_id,
                sent.text or sent.caption or "",
                media=sent.text is None,
                kind=task.project.kind,
            )
        return sent

    async def _media(
        self, user: UserRef, chat: int, task: Task, caption: str, markup: InlineKeyboardMarkup
    ) -> Message | None:
        assert task.media is not None
        src = Path(task.media.path)
        if task.media.kind == "image":
            boxes = task.boxes if task.project.kind == "verify" else None
            side = self.service.projects[task.project.name].max_image_side
            # Pillow work is CPU-bound: keep it off the event loop.
            path = await asyncio.to_thread(
                prepare_image, src, self.media_cache, max_side=side, boxes=boxes
            )
            method = "photo"
        else:
            path = src
            method = "video" if task.media.kind == "video" else "audio"
            if method == "audio" and src.suffix.lower() in _VOICE_SUFFIXES:
                method = "voice"
        digest = await self._digest(path)
        send = self._sender(method, chat, caption, markup)

        file_id = await self.service.media_file_id(digest, PLATFORM)
        if file_id is not None:
            with contextlib.suppress(_FileIdRefused):
                return await self._by_file_id(user, send, file_id)
        # One upload per file: whoever comes second waits and then reuses the first's file_id.
        lock = self._upload_locks.get(digest)
        if lock is None:
            lock = self._upload_locks[digest] = asyncio.Lock()
        async with lock:
            file_id = await self.service.media_file_id(digest, PLATFORM)
            if file_id is not None:
                with contextlib.suppress(_FileIdRefused):
                    return await self._by_file_id(user, send, file_id)

            async def upload() -> Message:
                # Streamed from disk by the HTTP layer, never read whole; reopened for each
                # attempt, since a retried attempt must start from the file's beginning.
                with path.open("rb") as f:
                    return await send(InputFile(f, filename=path.name, read_file_handle=False))

            message = await self.to_user(user, upload)
            if message is not None:
                new_id = _file_id(message)
                if new_id:
                    await self.service.save_media_file_id(digest, PLATFORM, new_id)
            return message

    async def _by_file_id(
        self, user: UserRef, send: Callable[[InputFile | str], Awaitable[Message]], file_id: str
    ) -> Message | None:
        """Send by a stored file_id; _FileIdRefused when Telegram no longer knows it."""
        try:
            return await self.to_user(user, lambda: send(file_id))
        except BadRequest as exc:
            if _says(exc, "wrong file identifier", "file_id", "file reference"):
                log.warning("a stored Telegram file_id was refused; uploading the file again")
                raise _FileIdRefused from exc
            raise

    def _sender(
        self, method: str, chat: int, caption: str, markup: InlineKeyboardMarkup
    ) -> Callable[[InputFile | str], Awaitable[Message]]:
        bot = self.bot

        def send(media: InputFile | str) -> Awaitable[Message]:
            if method == "photo":
                return bot.send_photo(chat, media, caption=caption, reply_markup=markup)
            if method == "video":
                return bot.send_video(chat, media, caption=caption, reply_markup=markup)
            if method == "voice":
                return bot.send_voice(chat, media, caption=caption, reply_markup=markup)
            return bot.send_audio(chat, media, caption=caption, reply_markup=markup)

        return send

    async def _digest(self, path: Path) -> str:
        """The sha256 of a file's bytes, computed once per path."""
        digest = self._hashes.get(path)
        if digest is None:
            digest = self._hashes[path] = await asyncio.to_thread(file_sha256, path)
        return digest


def _file_id(message: Message) -> str | None:
    """The file_id to send a message's media again (a photo's largest size)."""
    if message.photo:
        return message.photo[-1].file_id
    for media in (message.video, message.audio, message.voice, message.document):
        if media is not None:
            return media.file_id
    return None
