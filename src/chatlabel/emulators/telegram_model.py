"""Data the Telegram Bot API emulator keeps: errors, parameters, files, chats, messages, records."""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]


class ApiError(Exception):
    """A Bot API error answer: HTTP status, description and optional response parameters."""

    def __init__(self, status: int, description: str, parameters: JSON | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters

    @classmethod
    def bad_request(cls, detail: str) -> ApiError:
        """A 400 answer with the real API's "Bad Request: " prefix."""
        return cls(400, f"Bad Request: {detail}")

    @classmethod
    def too_many_requests(cls, retry_after: int) -> ApiError:
        """A 429 answer asking the client to wait `retry_after` seconds."""
        description = f"Too Many Requests: retry after {retry_after}"
        return cls(429, description, {"retry_after": retry_after})

    def to_json(self) -> JSON:
        """The answer body exactly as the real API shapes it."""
        body: JSON = {"ok": False, "error_code": self.status, "description": self.description}
        if self.parameters:
            body["parameters"] = self.parameters
        return body


class EmulatorUsageError(Exception):
    """A test asked a simulated user to do something a real user could not do."""


@dataclass(frozen=True)
class FilePart:
    """One uploaded multipart file part."""

    name: str
    filename: str | None
    content_type: str
    data: bytes = field(repr=False)


class Params:
    """Request parameters read the way the Bot API reads them: form strings or JSON values."""

    def __init__(self, values: JSON, files: dict[str, FilePart]) -> None:
        self.values = values
        self.files = files

    def has(self, name: str) -> bool:
        """Whether the parameter is present and not empty (a file part counts)."""
        value = self.values.get(name)
        return (value is not None and value != "") or name in self.files

    def text(self, name: str) -> str | None:
        """The parameter as a string, or None when absent."""
        value = self.values.get(name)
        if value is None:
            return None
        return value if isinstance(value, str) else json.dumps(value)

    def integer(self, name: str) -> int | None:
        """The parameter as an integer, or None when absent or empty."""
        value = self.values.get(name)
        if value is None or value == "":
            return None
        if isinstance(value, bool):
            raise ApiError.bad_request(f'field "{name}" must be a valid Number')
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ApiError.bad_request(f'field "{name}" must be a valid Number') from None

    def flag(self, name: str) -> bool:
        """The parameter as a boolean (absent means False)."""
        return self.values.get(name) in (True, 1, "true", "True", "1")

    def json(self, name: str) -> Any:
        """The parameter decoded from its JSON string (form) or as sent (JSON body)."""
        value = self.values.get(name)
        if not isinstance(value, str):
            return value
        try:
            return json.loads(value)
        except ValueError:
            raise ApiError.bad_request(f"can't parse {name} JSON object") from None

    def file(self, name: str) -> FilePart | None:
        """The multipart file part of that name, if one was uploaded."""
        return self.files.get(name)


class StoredFile:
    """A file the emulator holds: uploaded bytes or a thumbnail rendered from them on demand."""

    def __init__(
        self,
        file_id: str,
        file_unique_id: str,
        file_path: str,
        data: bytes | Callable[[], bytes],
        width: int | None = None,
        height: int | None = None,
    ) -> None:
        self.file_id = file_id
        self.file_unique_id = file_unique_id
        self.file_path = file_path
        self.width = width
        self.height = height
        self._data = data

    @property
    def data(self) -> bytes:
        """The file's bytes (rendering a derived size the first time it is asked for)."""
        if callable(self._data):
            self._data = self._data()
        return self._data

    def to_json(self) -> JSON:
        """The File / PhotoSize fields of this file."""
        body: JSON = {"file_id": self.file_id, "file_unique_id": self.file_unique_id}
        if isinstance(self._data, bytes):
            body["file_size"] = len(self._data)
        if self.width is not None and self.height is not None:
            body["width"], body["height"] = self.width, self.height
        return body


@dataclass
class Media:
    """The media of a message: one file, or a photo's sizes smallest first, plus attributes."""

    kind: str
    files: list[StoredFile]
    attributes: JSON = field(default_factory=dict)

    @property
    def file_id(self) -> str:
        """The file_id to send again (for a photo, its largest size)."""
        return self.files[-1].file_id

    def to_json(self) -> Any:
        """The value of the message's `photo` / `audio` / ... field."""
        if self.kind == "photo":
            return [size.to_json() for size in self.files]
        return {**self.files[0].to_json(), **self.attributes}


@dataclass
class ChatMessage:
    """A message in a chat as it is now (after edits), from the bot or from a simulated user."""

    chat: JSON
    message_id: int
    sender: JSON
    date: int
    from_bot: bool
    text: str | None = None
    caption: str | None = None
    formatting: Any = None
    entities: list[JSON] | None = None
    media: Media | None = None
    reply_markup: JSON | None = None
    edit_count: int = 0
    edit_date: int | None = None
    deleted: bool = False
    reply_to: ChatMessage | None = None  # the message this one replies to

    @property
    def chat_id(self) -> int:
        """The id of the chat the message is in."""
        return int(self.chat["id"])

    @property
    def kind(self) -> str:
        """ "text", or the media kind ("photo", "audio", "voice", "video", "document")."""
        return self.media.kind if self.media else "text"

    @property
    def content(self) -> str:
        """The text, or the caption of a media message ("" when there is none)."""
        return self.text if self.text is not None else self.caption or ""

    @property
    def buttons(self) -> list[JSON]:
        """The inline keyboard's buttons, row by row, flattened."""
        if not self.reply_markup:
            return []
        return [button for row in self.reply_markup["inline_keyboard"] for button in row]

    def button(self, text_or_data: str) -> JSON:
        """The one button whose text, or else callback_data, equals `text_or_data`."""
        for key in ("text", "callback_data"):
            found = [b for b in self.buttons if b.get(key) == text_or_data]
            if len(found) == 1:
                return found[0]
            if found:
                raise EmulatorUsageError(
                    f"{len(found)} buttons on message {self.message_id} have {key} "
                    f"{text_or_data!r}; press by callback_data instead"
                )
        shown = [(b["text"], b.get("callback_data")) for b in self.buttons]
        raise EmulatorUsageError(
            f"message {self.message_id} has no button {text_or_data!r}; "
            f"its keyboard now is {shown or 'empty'}"
        )

    def to_json(self) -> JSON:
        """The Message object the Bot API returns for this message."""
        body: JSON = {
            "message_id": self.message_id,
            "from": self.sender,
            "chat": self.chat,
            "date": self.date,
        }
        if self.edit_date is not None:
            body["edit_date"] = self.edit_date
        if self.text is not None:
            body["text"] = self.text
        if self.entities:
            body["entities"] = self.entities
        if self.media:
            body[self.media.kind] = self.media.to_json()
        if self.caption is not None:
            body["caption"] = self.caption
        if self.reply_markup:
            body["reply_markup"] = self.reply_markup
        if self.reply_to is not None:
            # Telegram nests the replied-to message one level deep, without its own reply.
            inner = self.reply_to.to_json()
            inner.pop("reply_to_message", None)
            body["reply_to_message"] = inner
        return body

    def describe(self) -> str:
        """A one-line summary for error messages."""
        buttons = [b["text"] for b in self.buttons]
        text = self.content if len(self.content) <= 60 else self.content[:57] + "..."
        shown = f"#{self.message_id} {self.kind} {text!r}"
        return f"{shown} buttons={buttons}" if buttons else shown


@dataclass
class Chat:
    """A private chat between the bot and one simulated user (chat id == user id)."""

    user: JSON
    messages: dict[int, ChatMessage] = field(default_factory=dict)
    started: bool = False
    blocked: bool = False
    reply_keyboard: JSON | None = None
    next_message_id: int = 1

    @property
    def id(self) -> int:
        """The chat id, equal to the user id."""
        return int(self.user["id"])

    def to_json(self) -> JSON:
        """The Chat object of this private chat."""
        body: JSON = {"id": self.id, "type": "private", "first_name": self.user["first_name"]}
        for key in ("last_name", "username"):
            if key in self.user:
                body[key] = self.user[key]
        return body

    @property
    def bot_messages(self) -> list[ChatMessage]:
        """Messages the bot sent here and did not delete, oldest first."""
        return [m for m in self.messages.values() if m.from_bot and not m.deleted]


@dataclass
class CallRecord:
    """One Bot API call as received, with how it was answered."""

    method: str
    params: JSON
    time: float
    status: int = 200
    error: str | None = None
    result: Any = None

    @property
    def ok(self) -> bool:
        """Whether the call succeeded."""
        return self.status == 200


@dataclass(frozen=True)
class UploadRecord:
    """One file uploaded by the bot (not a reuse of a file_id)."""

    method: str
    file_id: str
    size: int
    filename: str | None


@dataclass
class CallbackQueryRecord:
    """A callback query a simulated user caused, and the bot's answer to it."""

    id: str
    user_id: int
    message_id: int
    data: str
    created: float
    answered: bool = False
    answer_text: str | None = None
    show_alert: bool = False


@dataclass
class Faults:
    """Seeded random failures injected into bot calls: 429s, 5xx errors and delays."""

    rate_429: float = 0.0
    rate_5xx: float = 0.0
    delay_rate: float = 0.0
    delay_seconds: float = 1.0
    retry_after: int = 1
    seed: int | None = None
    methods: Collection[str] | None = None
    injected: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        rates = (self.rate_429, self.rate_5xx, self.delay_rate)
        if any(not 0.0 <= r <= 1.0 for r in rates) or self.rate_429 + self.rate_5xx > 1.0:
            raise ValueError(f"fault rates must be within 0..1 (429 + 5xx at most 1): {rates}")
        self._rng = random.Random(self.seed)
        self._methods = None if self.methods is None else {m.lower() for m in self.methods}

    def applies_to(self, method: str) -> bool:
        """Whether calls to `method` are subject to faults (getUpdates only when listed)."""
        if self._methods is None:
            return method.lower() != "getupdates"
        return method.lower() in self._methods

    def draw(self) -> tuple[ApiError | None, float]:
        """Decide one call's fate: an error to answer with, and a delay to apply first."""
        delay = self.delay_seconds if self._rng.random() < self.delay_rate else 0.0
        if delay:
            self.injected["delay"] += 1
        roll = self._rng.random()
        if roll < self.rate_429:
            self.injected["429"] += 1
            return ApiError.too_many_requests(self.retry_after), delay
        if roll < self.rate_429 + self.rate_5xx:
            self.injected["5xx"] += 1
            return ApiError(502, "Bad Gateway"), delay
        return None, delay


class Signal:
    """Wakes every waiter on each state change; waiters re-check their own condition."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        """Wake everyone waiting now."""
        self._event.set()
        self._event = asyncio.Event()

    async def wait_until(
        self,
        condition: Callable[[], bool],
        timeout: float,  # noqa: ASYNC109 - every wait in the emulator is bounded
    ) -> bool:
        """Wait until condition() holds; False if `timeout` seconds pass first."""
        try:
            async with asyncio.timeout(timeout):
                while not condition():
                    await self._event.wait()
        except TimeoutError:
            return condition()
        return True
