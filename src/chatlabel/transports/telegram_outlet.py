"""Views on Telegram: inline keyboards, captions, edits, toasts, media uploaded once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

from telegram import Bot, CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, InputFile
from telegram import Message as TgMessage
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter

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
from ..mechanics import BoundedCache, Dropped, LatestEdit, Pacer, Scope, SingleFlight
from ..media import MAX_UPLOAD_BYTES, MediaError, file_sha256, fit_photo, prepare_image
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


ALL: Scope = ("all", "")  # Telegram's bot-wide limit on new messages
# An upload Telegram refuses for its size: no retry can fix it.
_TOO_BIG = ("request entity too large", "(413)", "file is too big")


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


def _sending(chat: int) -> tuple[Scope, ...]:
    """The scopes a new message to `chat` counts against."""
    return (ALL, ("chat", str(chat)))


def _too_big(error: NetworkError) -> bool:
    return any(f in error.message.lower() for f in _TOO_BIG)


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
    """Renders the conversation's views as Bot API calls, paced, with retries and upload-once media.

    Every call but a callback answer waits for its turn in the pacer: new messages count
    against the bot-wide scope and their chat's, edits and deletions against their chat's. A
    429 holds only the chat that got it (and the bot-wide scope when several chats get one
    at once: that is the bot-wide limit).
    """

    platform = PLATFORM
    # Waits between attempts after a network error; also how many 429s a call waits out.
    retry_delays: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)

    def __init__(
        self,
        bot: Bot,
        service: LabelingService,
        media_cache: Path,
        retry_delays: Sequence[float] | None = None,
        pacer: Pacer | None = None,
    ) -> None:
        self.bot = bot
        self.service = service
        self.media_cache = media_cache
        if retry_delays is not None:
            self.retry_delays = tuple(retry_delays)
        self.pacer = pacer or Pacer()
        self.closing = False
        self.mechanics = Mechanics(command=lambda name: f"/{name}", writer="reply")
        self._hashes: BoundedCache[Path, str] = BoundedCache(10_000)
        self._uploads: SingleFlight[TgMessage | None] = SingleFlight()
        self._edits: LatestEdit[MessageRef] = LatestEdit(20_000)

    def close(self) -> None:
        """Stopping: calls waiting for their turn give up, later ones go out unpaced once."""
        self.closing = True
        self.pacer.close()

    # -- calls ----------------------------------------------------------------------------

    async def call(
        self,
        make: Callable[[], Awaitable[T]],
        scopes: Sequence[Scope] = (),
        priority: int = Priority.INTERACTIVE,
        wanted: Callable[[], bool] | None = None,
    ) -> T:
        """Run a Bot API call in its turn, retrying network errors and 429s.

        Raises Dropped when the call is no longer wanted (or the bot is stopping).
        """
        # While the bot shuts down nobody waits for backoff: one attempt each.
        delays = [] if self.closing else list(self.retry_delays)
        while True:
            turn = None
            if scopes and not self.closing:
                turn = await self.pacer.turn(scopes, priority, wanted)
                if not turn:
                    raise Dropped
            try:
                return await make()
            except BadRequest:
                raise  # a subclass of NetworkError, but retrying cannot fix it
            except RetryAfter as exc:
                self._limited(scopes, _seconds(exc.retry_after))
                if not delays:
                    raise
                delays.pop(0)
                if not scopes:  # unpaced: wait here; paced: the held scope makes the turn wait
                    await asyncio.sleep(_seconds(exc.retry_after) + 0.1)
            except NetworkError as exc:
                if not delays or _too_big(exc):
                    raise
                delay = delays.pop(0)
                log.warning("Telegram call failed (%s); retrying in %.2fs", exc.message, delay)
                await asyncio.sleep(delay)
            finally:
                if turn is not None:
                    turn.done()  # counted from Telegram's answer: see Pacer

    def _limited(self, scopes: Sequence[Scope], seconds: float) -> None:
        """A 429: hold the chat that got it (several chats at once: the bot-wide scope too)."""
        self.pacer.refused(scopes, seconds)
        log.info("Telegram asked to wait %.0f s (%s)", seconds, scopes[-1][1] if scopes else "-")

    async def ready(self, to: UserRef, priority: Priority = Priority.BULK) -> None:
        """Wait until a new message to this person could go out at this priority."""
        await self.pacer.ready(_sending(chat_of(to)), priority)

    async def _to(
        self,
        user: UserRef,
        make: Callable[[], Awaitable[T]],
        priority: int = Priority.INTERACTIVE,
    ) -> T:
        """A new message to one person, paced, its failures translated for the conversation."""
        try:
            return await self.call(make, _sending(chat_of(user)), priority)
        except Forbidden as exc:
            raise Unreachable(exc.message) from None
        except BadRequest as exc:
            if _says(exc, *_GONE):
                raise Unreachable(exc.message) from None
            raise
        except Dropped:
            raise SendFailed("the bot is stopping") from None
        except NetworkError as exc:
            if _too_big(exc):  # 413: bots upload at most 50 MB; retrying cannot help
                raise MediaFailed(exc.message) from exc
            raise SendFailed(str(exc)) from exc
        except RetryAfter as exc:
            raise SendFailed(str(exc)) from exc

    async def _cosmetic(
        self,
        what: str,
        make: Callable[[], Awaitable[object]],
        *,
        scopes: Sequence[Scope] = (),
        priority: int = Priority.INTERACTIVE,
        wanted: Callable[[], bool] | None = None,
        when_closing: bool = False,
        strict: bool = False,
    ) -> None:
        """A call whose failure must not stop the flow (the answer is already recorded).

        `strict`: an unexpected BadRequest is raised instead of logged.
        """
        if self.closing and not when_closing:
            return  # shutting down: only what acknowledges a press still goes out
        try:
            await self.call(make, scopes, priority, wanted)
        except Dropped:
            pass  # a newer edit of the same message went (or goes) out instead
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
            # Never silently: the message keeps what it showed (a stale button press is
            # answered by the conversation), and whoever runs the bot can see why.
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
            sent = await self._to(
                to, lambda: bot.send_document(chat, document, caption=about), priority
            )
            return ref_of(chat, sent.message_id)
        markup = keyboard(view)
        if view.chart is not None:
            text = body(view, TEXT_LIMIT)
            caption = text if len(text) <= CAPTION_LIMIT else None
            photo = InputFile(view.chart.png, filename=view.chart.filename)
            sent = await self._to(
                to,
                lambda: bot.send_photo(chat, photo, caption=caption, reply_markup=markup),
                priority,
            )
            if caption is None:
                await self._to(to, lambda: bot.send_message(chat, text), priority)
            return ref_of(chat, sent.message_id)
        if view.media is not None:
            try:
                got = await self._media(to, chat, view, markup, priority)
            except (MediaError, OSError, BadRequest) as exc:  # missing, corrupt or refused
                raise MediaFailed(f"{view.media.kind} {view.media.path}: {exc}") from exc
            return None if got is None else ref_of(chat, got.message_id)
        text = body(view, TEXT_LIMIT)
        sent = await self._to(
            to, lambda: bot.send_message(chat, text, reply_markup=markup), priority
        )
        return ref_of(chat, sent.message_id)

    async def edit(
        self, to: UserRef, ref: MessageRef, view: Message, priority: Priority = Priority.INTERACTIVE
    ) -> None:
        """Replace a message's text (a caption under media) and keyboard; a no-op edit is fine.

        Only the latest edit of a message goes out: one still waiting for its turn when a newer
        one comes is dropped.
        """
        chat, message_id = _parse(ref)
        markup = keyboard(view)
        bot = self.bot
        caption = view.media is not None or view.chart is not None
        wanted = self._edits.claim(ref, self.pacer)
        scopes = (("chat", str(chat)),)

        def edit(as_caption: bool) -> Awaitable[object]:
            if as_caption:
                text = body(view, CAPTION_LIMIT)
                return bot.edit_message_caption(chat, message_id, caption=text, reply_markup=markup)
            text = body(view, TEXT_LIMIT)
            return bot.edit_message_text(text, chat, message_id, reply_markup=markup)

        try:
            await self._cosmetic(
                "edit a message",
                lambda: edit(caption),
                scopes=scopes,
                priority=priority,
                wanted=wanted,
                strict=True,
            )
        except BadRequest as exc:
            # The message was sent the other way (a chart's text went out on its own, or a
            # message from before a change of kind): Telegram names the edit that fits.
            if not _says(exc, *_OTHER_EDIT):
                log.warning("could not edit a message: %s", exc.message)
                return
            await self._cosmetic(
                "edit a message",
                lambda: edit(not caption),
                scopes=scopes,
                priority=priority,
                wanted=wanted,
            )

    async def delete(self, to: UserRef, ref: MessageRef) -> None:
        """Delete a message if Telegram still allows it."""
        chat, message_id = _parse(ref)
        self._edits.forget(ref)
        await self._cosmetic(
            "delete a message",
            lambda: self.bot.delete_message(chat, message_id),
            scopes=(("chat", str(chat)),),
        )

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
        self,
        to: UserRef,
        chat: int,
        view: Message,
        markup: InlineKeyboardMarkup | None,
        priority: Priority,
    ) -> TgMessage | None:
        media = view.media
        assert media is not None
        src = Path(media.path)
        if media.kind == "image":
            boxes = list(media.boxes) or None
            # Pillow work is CPU-bound: keep it off the event loop.
            prepared = await asyncio.to_thread(
                prepare_image, src, self.media_cache, max_side=media.max_side, boxes=boxes
            )
            # Telegram refuses photos too long or too narrow (a line crop, a panorama).
            path = await asyncio.to_thread(fit_photo, prepared, self.media_cache)
            method = "photo"
        else:
            path = src
            method = "video" if media.kind == "video" else "audio"
            if method == "audio" and src.suffix.lower() in _VOICE_SUFFIXES:
                method = "voice"
            size = (await asyncio.to_thread(src.stat)).st_size
            if size > MAX_UPLOAD_BYTES:  # Telegram answers 413 however often it is tried
                raise MediaError(f"{src}: {size / 2**20:.1f} MiB is over Telegram's 50 MB")
        digest = await self._digest(path)
        send = self._sender(method, chat, body(view, CAPTION_LIMIT), markup)

        async def by_file_id() -> TgMessage | None:
            file_id = await self.service.media_file_id(digest, PLATFORM)
            if file_id is None:
                return None
            try:
                return await self._to(to, lambda: send(file_id), priority)
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

            message = await self._to(to, stream, priority)
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
