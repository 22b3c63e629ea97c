"""What the emulated Bot API remembers: chats, messages, files, the update queue, the call log."""

from __future__ import annotations

import bisect
import copy
import io
import mimetypes
import secrets
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from PIL import Image

from chatlabel.emulators.telegram_flood import FloodLimits
from chatlabel.emulators.telegram_format import command_entities
from chatlabel.emulators.telegram_model import (
    JSON,
    ApiError,
    CallbackQueryRecord,
    CallRecord,
    Chat,
    ChatMessage,
    EmulatorUsageError,
    Faults,
    FilePart,
    Media,
    Signal,
    StoredFile,
    UploadRecord,
)

DEFAULT_TOKEN = "123456:TEST-TOKEN"
# Update types Telegram leaves out unless a bot asks for them by name.
_OPT_IN_UPDATES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
_FOLDERS = {"photo": "photos", "audio": "music", "voice": "voice", "video": "videos"}
_PHOTO_BOXES = (90, 320, 800, 1280)
_PHOTO_MAX_BYTES = 10 * 1024 * 1024


def _thumbnail(data: bytes, width: int, height: int) -> bytes:
    with Image.open(io.BytesIO(data)) as image:
        out = io.BytesIO()
        image.convert("RGB").resize((width, height)).save(out, "JPEG", quality=87)
        return out.getvalue()


def _decode_image(data: bytes) -> tuple[int, int, str]:
    """Decode the whole image as Telegram does (refusing what fails): width, height, extension."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            extension = "jpg" if image.format in (None, "JPEG") else image.format.lower()
            return image.width, image.height, extension
    except (OSError, ValueError, Image.DecompressionBombError):
        raise ApiError.bad_request("IMAGE_PROCESS_FAILED") from None


class EmulatorState:
    """The emulated Bot API's memory, shared by the method handlers and the simulated users."""

    def __init__(
        self, token: str, bot_username: str, bot_name: str, callback_query_ttl: float
    ) -> None:
        bot_id, _, secret = token.partition(":")
        if not bot_id.isdigit() or not secret:
            raise ValueError(f"a bot token looks like '123456:SECRET', not {token!r}")
        self.token = token
        self.bot_user: JSON = {
            "id": int(bot_id),
            "is_bot": True,
            "first_name": bot_name,
            "username": bot_username,
        }
        self.callback_query_ttl = callback_query_ttl
        self.chats: dict[int, Chat] = {}
        self.files: dict[str, StoredFile] = {}
        self.uploads: list[UploadRecord] = []
        self.calls: list[CallRecord] = []
        self.callback_queries: dict[str, CallbackQueryRecord] = {}
        self.commands: dict[tuple[str, str], list[JSON]] = {}
        self.menu_buttons: dict[int | None, JSON] = {}
        self.webhook: JSON | None = None
        self.faults: Faults | None = None
        self.flood: FloodLimits | None = None  # Telegram's flood control; None: no limits
        self.signal = Signal()
        self.closing = False
        self._media: dict[str, Media] = {}
        self._files_by_path: dict[str, StoredFile] = {}
        self._pending: list[JSON] = []
        self._forced: set[int] = set()
        self._history: dict[int, JSON] = {}
        self._next_update_id = 1
        self._allowed_updates: frozenset[str] = frozenset()
        self._serial = 0

    # -- queries for tests ------------------------------------------------------------------

    def calls_to(self, method: str) -> list[CallRecord]:
        """Every logged call to `method` (case-insensitive, as the API treats names)."""
        return [call for call in self.calls if call.method.lower() == method.lower()]

    @property
    def pending_updates(self) -> list[JSON]:
        """Updates not yet confirmed by the bot, oldest first."""
        return list(self._pending)

    # -- the update queue ----------------------------------------------------------------------

    def inject_update(self, update: JSON) -> int:
        """Queue a raw update (update_id assigned when missing); returns its update_id."""
        update = copy.deepcopy(update)
        update_id = int(update.setdefault("update_id", self._next_update_id))
        self._next_update_id = max(self._next_update_id, update_id + 1)
        self._history[update_id] = update
        self._pending.append(update)
        self.signal.notify()
        return update_id

    def redeliver(self, update_id: int) -> None:
        """Deliver an update once more, even if confirmed, as Telegram may after a restart."""
        if update_id not in self._history:
            raise EmulatorUsageError(f"no update {update_id} was ever queued")
        if all(u["update_id"] != update_id for u in self._pending):
            bisect.insort(self._pending, self._history[update_id], key=lambda u: u["update_id"])
        self._forced.add(update_id)
        self.signal.notify()

    def queue_update(self, kind: str, payload: JSON) -> int:
        """Queue an update of one kind ("message", "callback_query", ...)."""
        return self.inject_update({kind: payload})

    def confirm_updates(self, offset: int) -> None:
        """Apply getUpdates' offset: forget updates below it (negative: keep the last -offset)."""
        if offset < 0:
            self._pending = self._pending[offset:]
        elif offset > 0:
            keep = self._forced | {
                u["update_id"] for u in self._pending if u["update_id"] >= offset
            }
            self._pending = [u for u in self._pending if u["update_id"] in keep]

    def drop_pending_updates(self) -> None:
        """Forget every pending update (drop_pending_updates=True)."""
        self._pending.clear()
        self._forced.clear()

    def set_allowed_updates(self, kinds: list[str]) -> None:
        """Remember getUpdates' allowed_updates ([] means Telegram's default set)."""
        self._allowed_updates = frozenset(kinds)

    def _wanted(self, update: JSON) -> bool:
        kind = next((key for key in update if key != "update_id"), "")
        if self._allowed_updates:
            return kind in self._allowed_updates
        return kind not in _OPT_IN_UPDATES

    def has_updates(self) -> bool:
        """Whether getUpdates has something to return."""
        return any(self._wanted(u) for u in self._pending)

    def take_updates(self, limit: int) -> list[JSON]:
        """The next batch for getUpdates; unconfirmed updates stay queued until confirmed."""
        self._pending = [u for u in self._pending if self._wanted(u)]
        batch = self._pending[:limit]
        self._forced.difference_update(u["update_id"] for u in batch)
        return batch

    # -- chats and messages ----------------------------------------------------------------

    def ensure_chat(self, user: JSON) -> Chat:
        """The private chat with this user, created on first use."""
        return self.chats.setdefault(int(user["id"]), Chat(user=user))

    def target_chat(self, raw_chat_id: Any) -> Chat:
        """The chat a bot call addresses, refused the way the real API refuses it."""
        try:
            chat = self.chats.get(int(raw_chat_id))
        except (TypeError, ValueError):
            chat = None
        if chat is None:
            raise ApiError.bad_request("chat not found")
        if chat.blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        if not chat.started:
            raise ApiError(403, "Forbidden: bot can't initiate conversation with a user")
        return chat

    def add_message(self, chat: Chat, *, from_bot: bool, **fields: Any) -> ChatMessage:
        """Append a message to a chat with the chat's next message_id."""
        message = ChatMessage(
            chat=chat.to_json(),
            message_id=chat.next_message_id,
            sender=self.bot_user if from_bot else chat.user,
            date=int(time.time()),
            from_bot=from_bot,
            **fields,
        )
        chat.next_message_id += 1
        chat.messages[message.message_id] = message
        self.signal.notify()
        return message

    def user_message(
        self, chat: Chat, text: str, reply_to: ChatMessage | None = None
    ) -> ChatMessage:
        """A simulated user writes to the bot (maybe replying to a message): store the message
        and queue its update."""
        chat.started = True
        message = self.add_message(
            chat,
            from_bot=False,
            text=text,
            entities=command_entities(text) or None,
            reply_to=reply_to,
        )
        self.queue_update("message", message.to_json())
        return message

    def edit_user_message(self, chat: Chat, message_id: int, text: str) -> int:
        """A simulated user edits one of their messages: change it, queue edited_message (its
        update id)."""
        message = chat.messages.get(message_id)
        if message is None or message.from_bot or message.deleted:
            raise EmulatorUsageError(f"no message {message_id} of the user's to edit")
        message.text = text
        message.entities = command_entities(text) or None
        message.edit_count += 1
        message.edit_date = int(time.time())
        return self.queue_update("edited_message", message.to_json())

    def callback_query(self, chat: Chat, message_id: int, data: str) -> str:
        """A simulated user presses a callback button: queue the query; returns its id."""
        chat.started = True
        self._serial += 1
        query_id = f"{self.bot_user['id']}{self._serial:08d}"
        message = chat.messages.get(message_id)
        shown = (
            message.to_json()
            if message and not message.deleted
            else {"chat": chat.to_json(), "message_id": message_id, "date": 0}
        )
        self.callback_queries[query_id] = CallbackQueryRecord(
            query_id, chat.id, message_id, data, time.monotonic()
        )
        self.queue_update(
            "callback_query",
            {
                "id": query_id,
                "from": chat.user,
                "message": shown,
                "chat_instance": str(self.bot_user["id"] * 1_000_003 + chat.id),
                "data": data,
            },
        )
        return query_id

    def set_blocked(self, chat: Chat, blocked: bool) -> None:
        """A user blocks or unblocks the bot; the bot hears of it via my_chat_member."""
        if chat.blocked == blocked:
            return
        chat.blocked = blocked
        old, new = ("member", "kicked") if blocked else ("kicked", "member")
        self.queue_update(
            "my_chat_member",
            {
                "chat": chat.to_json(),
                "from": chat.user,
                "date": int(time.time()),
                "old_chat_member": {"user": self.bot_user, "status": old, "until_date": 0},
                "new_chat_member": {"user": self.bot_user, "status": new, "until_date": 0},
            },
        )

    # -- files -----------------------------------------------------------------------------

    def _new_file(
        self,
        kind: str,
        data: bytes | Callable[[], bytes],
        extension: str,
        size: tuple[int, int] | None = None,
    ) -> StoredFile:
        self._serial += 1
        stored = StoredFile(
            file_id=f"{kind[:3].upper()}{self._serial}-{secrets.token_urlsafe(12)}",
            file_unique_id=f"AQAD{secrets.token_urlsafe(8)}",
            file_path=f"{_FOLDERS.get(kind, 'documents')}/file_{self._serial}.{extension}",
            data=data,
            width=size[0] if size else None,
            height=size[1] if size else None,
        )
        self.files[stored.file_id] = stored
        self._files_by_path[stored.file_path] = stored
        return stored

    def _photo_sizes(self, data: bytes) -> list[StoredFile]:
        if len(data) > _PHOTO_MAX_BYTES:
            raise ApiError.bad_request("PHOTO_SAVE_FILE_INVALID")
        width, height, extension = _decode_image(data)
        if width + height > 10_000 or max(width, height) > 20 * min(width, height):
            raise ApiError.bad_request("PHOTO_INVALID_DIMENSIONS")
        sizes = []
        for box in _PHOTO_BOXES:
            if max(width, height) > box:
                ratio = box / max(width, height)
                w, h = max(1, round(width * ratio)), max(1, round(height * ratio))
                render = partial(_thumbnail, data, w, h)  # only when someone downloads it
                sizes.append(self._new_file("photo", render, "jpg", (w, h)))
        # The largest size is served exactly as uploaded (Telegram would re-encode it).
        sizes.append(self._new_file("photo", data, extension, (width, height)))
        return sizes

    def store_media(self, method: str, kind: str, part: FilePart, attributes: JSON) -> Media:
        """Keep an uploaded file (a photo gets Telegram's smaller sizes too) and log the upload."""
        if not part.data:
            raise ApiError.bad_request("file must be non-empty")
        if kind == "photo":
            files = self._photo_sizes(part.data)
        else:
            extension = (
                mimetypes.guess_extension(part.content_type)
                or mimetypes.guess_extension(mimetypes.guess_type(part.filename or "")[0] or "")
                or ".bin"
            )
            files = [self._new_file(kind, part.data, extension.lstrip("."))]
        media = Media(kind, files, attributes)
        for stored in files:
            self._media[stored.file_id] = media
        self.uploads.append(UploadRecord(method, media.file_id, len(part.data), part.filename))
        return media

    def find_media(self, file_id: str, kind: str) -> Media:
        """The media a file_id refers to, for sending it again without an upload."""
        media = self._media.get(file_id)
        if media is None:
            raise ApiError.bad_request("wrong file identifier/HTTP URL specified")
        if media.kind != kind:
            raise ApiError.bad_request("type of file mismatch")
        return media

    def file_by_path(self, file_path: str) -> StoredFile | None:
        """The file served at /file/bot<token>/<file_path>."""
        return self._files_by_path.get(file_path)
