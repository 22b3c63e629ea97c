"""Views on Telegram: inline keyboards, captions, edits, toasts, media uploaded once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from telegram import Bot, CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, InputFile
from telegram import Message as TgMessage
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter
from telegram.ext import AIORateLimiter

from ..conversation import (
    Document,
    Mechanics,
    MediaFailed,
    Message,
    MessageRef,
    Priority,
    SendFailed,
    Unreachable,
)
from ..conversation.render import cut
from ..mechanics import BoundedCache, SingleFlight
from ..media import MediaError, file_sha256, prepare_image
from ..service.labeling import LabelingService
from ..service.types import UserRef

log = logging.getLogger("chatlabel.telegram")
T = TypeVar("T")
PLATFORM = "telegram"
TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024
_VOICE_SUFFIXES = (".ogg", ".oga", ".opus")
# Bot API error descriptions, matched case-insensitively (never shown to anyone):
# the person's chat is gone for good,
_GONE = ("chat not found", "user is deactivated", "bot was blocked", "peer_id_invalid")
# an edit, delete or callback answer that changes nothing or came too late,
_BENIGN = ("not modified", "not found", "can't be edited", "can't be deleted",
           "query is too old", "query id is invalid")  # fmt: skip
# the message was sent the other way (text, not caption, or the reverse),
_OTHER_EDIT = ("no caption in the message", "no text in the message")
# a stored file_id this bot cannot use.
_FILE_REFUSED = ("wrong file identifier", "file_id", "file reference")


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


def ref_of(chat_id: int, message_id: int) -> MessageRef:
    """A message's handle for the conversation."""
    return f"{chat_id}:{message_id}"


def _parse(ref: MessageRef) -> tuple[int, int]:
    chat, _, message = ref.partition(":")
    return int(chat), int(message)


def _seconds(retry_after: int | timedelta) -> float:
    return retry_after.total_seconds() if isinstance(retry_after, timedelta) else float(retry_after)


def _says(error: BadRequest, *fragments: str) -> bool:
    # PTB capitalises descriptions ("Message is not modified"): compare case-insensitively.
    text = error.message.lower()
    return any(f in text for f in fragments)


def keyboard(view: Message) -> InlineKeyboardMarkup | None:
    """A view's buttons as an inline keyboard (a toggled choice shows ✓)."""
    if not view.buttons:
        return None
    rows = [
        [
            InlineKeyboardButton(f"✓ {b.text}" if b.selected else b.text, callback_data=b.data)
            for b in row
        ]
        for row in view.buttons
    ]
    return InlineKeyboardMarkup(rows)


def body(view: Message, limit: int) -> str:
    """The text of a message: its text, then its status and note, all within `limit`."""
    tail = "\n\n".join(x for x in (view.status, view.note) if x)
    if not tail:
        return cut(view.text, limit) or "…"
    tail = cut(tail, limit // 2)  # a long typed answer must not push the message over
    room = max(1, limit - len(tail) - 2)
    return f"{cut(view.text, room)}\n\n{tail}" if view.text else tail


class TelegramOutlet:
    """Renders the conversation's views as Bot API calls, with retries and upload-once media."""

    platform = PLATFORM
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
        self.service = service
        self.media_cache = media_cache
        if retry_delays is not None:
            self.retry_delays = tuple(retry_delays)
        self.closing = False
        self.mechanics = Mechanics(command=lambda name: f"/{name}", writer="reply")
        self._hashes: BoundedCache[Path, str] = BoundedCache(10_000)
        self._uploads: SingleFlight[TgMessage | None] = SingleFlight()

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

    async def _to(self, user: UserRef, make: Callable[[], Awaitable[T]]) -> T:
        """A call addressed to one person, its failures translated for the conversation."""
        try:
            return await self.call(make)
        except Forbidden as exc:
            raise Unreachable(exc.message) from None
        except BadRequest as exc:
            if _says(exc, *_GONE):
                raise Unreachable(exc.message) from None
            raise
        except (RetryAfter, NetworkError) as exc:
            raise SendFailed(str(exc)) from exc

    async def _cosmetic(
        self,
        what: str,
        make: Callable[[], Awaitable[object]],
        *,
        when_closing: bool = False,
        strict: bool = False,
    ) -> None:
        """A call whose failure must not stop the flow (the answer is already recorded).

        `strict`: an unexpected BadRequest is raised instead of logged.
        """
        if self.closing and not when_closing:
            return  # shutting down: only what acknowledges a press still goes out
        try:
            await self.call(make)
        except BadRequest as exc:
            # A double press edits to the same content; old messages and queries expire.
            if _says(exc, *_BENIGN):
                return
            if strict:
                raise
            log.warning("could not %s: %s", what, exc.message)
        except Forbidden:
            pass  # the person blocked the bot; my_chat_member or the next send marks them
        except (NetworkError, RetryAfter) as exc:
            log.warning("could not %s, giving up after retries: %s", what, exc)

    # -- the outlet -------------------------------------------------------------------------

    async def send(
        self, to: UserRef, view: Message | Document, priority: Priority = Priority.INTERACTIVE
    ) -> MessageRef | None:
        """Send a view; the message's ref."""
        chat = chat_of(to)
        bot = self.bot
        if isinstance(view, Document):
            document = InputFile(view.data, filename=view.filename)
            about = cut(view.caption, CAPTION_LIMIT)
            sent = await self._to(to, lambda: bot.send_document(chat, document, caption=about))
            return ref_of(chat, sent.message_id)
        markup = keyboard(view)
        if view.chart is not None:
            text = body(view, TEXT_LIMIT)
            caption = text if len(text) <= CAPTION_LIMIT else None
            photo = InputFile(view.chart.png, filename=view.chart.filename)
            sent = await self._to(
                to, lambda: bot.send_photo(chat, photo, caption=caption, reply_markup=markup)
            )
            if caption is None:
                await self._to(to, lambda: bot.send_message(chat, text))
            return ref_of(chat, sent.message_id)
        if view.media is not None:
            try:
                got = await self._media(to, chat, view, markup)
            except (MediaError, OSError, BadRequest) as exc:  # missing, corrupt or refused
                raise MediaFailed(f"{view.media.kind} {view.media.path}: {exc}") from exc
            return None if got is None else ref_of(chat, got.message_id)
        text = body(view, TEXT_LIMIT)
        sent = await self._to(to, lambda: bot.send_message(chat, text, reply_markup=markup))
        return ref_of(chat, sent.message_id)

    async def edit(
        self, to: UserRef, ref: MessageRef, view: Message, priority: Priority = Priority.INTERACTIVE
    ) -> None:
        """Replace a message's text (a caption under media) and keyboard; a no-op edit is fine."""
        chat, message_id = _parse(ref)
        markup = keyboard(view)
        bot = self.bot
        caption = view.media is not None or view.chart is not None

        def edit(as_caption: bool) -> Awaitable[object]:
            if as_caption:
                text = body(view, CAPTION_LIMIT)
                return bot.edit_message_caption(chat, message_id, caption=text, reply_markup=markup)
            text = body(view, TEXT_LIMIT)
            return bot.edit_message_text(text, chat, message_id, reply_markup=markup)

        try:
            await self._cosmetic("edit a message", lambda: edit(caption), strict=True)
        except BadRequest as exc:
            # The message was sent the other way (an item whose media failed went out as
            # text): Telegram names the edit that fits.
            if not _says(exc, *_OTHER_EDIT):
                log.warning("could not edit a message: %s", exc.message)
                return
            await self._cosmetic("edit a message", lambda: edit(not caption))

    async def delete(self, to: UserRef, ref: MessageRef) -> None:
        """Delete a message if Telegram still allows it."""
        chat, message_id = _parse(ref)
        await self._cosmetic("delete a message", lambda: self.bot.delete_message(chat, message_id))

    async def toast(self, to: UserRef, press: object, text: str | None, alert: bool) -> None:
        """Answer a callback query (the spinner stops); a query too old to answer is ignored."""
        assert isinstance(press, CallbackQuery)
        shown = text[:200] if text else None
        await self._cosmetic(
            "answer a button press",
            lambda: press.answer(shown, show_alert=alert),
            when_closing=True,
        )

    # -- media ------------------------------------------------------------------------------

    async def _media(
        self, to: UserRef, chat: int, view: Message, markup: InlineKeyboardMarkup | None
    ) -> TgMessage | None:
        media = view.media
        assert media is not None
        src = Path(media.path)
        if media.kind == "image":
            boxes = list(media.boxes) or None
            # Pillow work is CPU-bound: keep it off the event loop.
            path = await asyncio.to_thread(
                prepare_image, src, self.media_cache, max_side=media.max_side, boxes=boxes
            )
            method = "photo"
        else:
            path = src
            method = "video" if media.kind == "video" else "audio"
            if method == "audio" and src.suffix.lower() in _VOICE_SUFFIXES:
                method = "voice"
        digest = await self._digest(path)
        send = self._sender(method, chat, body(view, CAPTION_LIMIT), markup)

        async def by_file_id() -> TgMessage | None:
            file_id = await self.service.media_file_id(digest, PLATFORM)
            if file_id is None:
                return None
            try:
                return await self._to(to, lambda: send(file_id))
            except BadRequest as exc:
                if _says(exc, *_FILE_REFUSED):
                    log.warning("a stored Telegram file_id was refused; uploading the file again")
                    return None
                raise

        sent = await by_file_id()
        if sent is not None:
            return sent

        async def upload() -> TgMessage | None:
            # Whoever comes second (same file, same moment) waits for this one's file_id.
            known = await by_file_id()
            if known is not None:
                return known

            async def stream() -> TgMessage:
                # Streamed from disk by the HTTP layer, never read whole; reopened for each
                # attempt, since a retried attempt must start from the file's beginning.
                with path.open("rb") as f:
                    return await send(InputFile(f, filename=path.name, read_file_handle=False))

            message = await self._to(to, stream)
            new_id = _file_id(message)
            if new_id:
                await self.service.save_media_file_id(digest, PLATFORM, new_id)
            return message

        first = await self._uploads.run(digest, upload)
        if first is not None and chat_of(to) == first.chat_id:
            return first
        # Someone else's upload went first: send ours by the file_id it left.
        again = await by_file_id()
        return again if again is not None else await upload()

    def _sender(
        self, method: str, chat: int, caption: str, markup: InlineKeyboardMarkup | None
    ) -> Callable[[InputFile | str], Awaitable[TgMessage]]:
        bot = self.bot

        def send(media: InputFile | str) -> Awaitable[TgMessage]:
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


def _file_id(message: TgMessage) -> str | None:
    """The file_id to send a message's media again (a photo's largest size)."""
    if message.photo:
        return message.photo[-1].file_id
    for media in (message.video, message.audio, message.voice, message.document):
        if media is not None:
            return media.file_id
    return None
