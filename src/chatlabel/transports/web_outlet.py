"""Views in the browser: each person's inbox of messages, delivered to their open pages.

The outlet keeps, per person, the messages on their screen (bounded) and the recent events
that changed it (bounded, numbered), so a page that lost its connection for a while gets
exactly what it missed, and a page opened anew gets the screen as it is. Media is served by
unguessable tokens bound to the person it was shown to: nothing the browser sends ever names a
file.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import mimetypes
import secrets
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..conversation import (
    Document,
    Mechanics,
    MediaFailed,
    Message,
    MessageRef,
    Priority,
)
from ..conversation.buttons import decode
from ..conversation.views import Media, Rows
from ..mechanics import BoundedCache, SingleFlight
from ..media import MediaError, image_size, prepare_image, sniff_container
from ..service.types import UserRef

log = logging.getLogger("chatlabel.web")

PLATFORM = "web"
JSON = dict[str, Any]

INBOXES = 5_000  # people whose screens are remembered (beyond: their next page starts anew)
SHOWN = 60  # messages kept on a person's screen (older ones scroll away for good)
LOG = 200  # recent events per person a reconnecting page can catch up on
QUEUE = 500  # events waiting for one slow page before it is dropped (it reconnects and resumes)
MEDIA_TOKENS = 100_000  # media links remembered (a few per item shown)
FILES = 256  # charts and exports kept for download, newest first
# Keys on a desktop: the numbered choices, s for Skip and u for Undo.
NUMBERED = ("answer", "toggle", "project", "language")
LETTERS = {"skip": "s", "undo": "u"}
_CONTAINER_TYPES = {"mp3": "audio/mpeg", "wav": "audio/wav", "flac": "audio/flac",
                    "avi": "video/x-msvideo"}  # fmt: skip
_DOCUMENT_TYPES = {".jsonl": "application/x-ndjson", ".csv": "text/csv",
                   ".json": "application/json"}  # fmt: skip


@dataclass(frozen=True)
class Served:
    """A file served to one person: from disk (media) or from memory (charts, exports)."""

    owner: str
    content_type: str
    path: Path | None = None
    data: bytes = b""
    filename: str = ""


@dataclass(frozen=True)
class PressHandle:
    """The web's handle on a press being handled (toasts go to the person's pages)."""

    ref: MessageRef | None


@dataclass(eq=False)
class Page:
    """One open page's queue of events; `dropped` when it fell too far behind."""

    queue: asyncio.Queue[tuple[int, JSON] | None] = field(
        default_factory=lambda: asyncio.Queue(QUEUE)
    )
    dropped: bool = False


class Inbox:
    """One person's chat: the messages on screen and the numbered events that changed it."""

    def __init__(self) -> None:
        self.seq = 0
        self.log: deque[tuple[int, JSON]] = deque(maxlen=LOG)
        self.shown: OrderedDict[MessageRef, JSON] = OrderedDict()
        self.pages: set[Page] = set()

    def emit(self, event: JSON) -> None:
        """Number an event, remember it, and hand it to every open page."""
        self.seq += 1
        self.log.append((self.seq, event))
        for page in list(self.pages):
            try:
                page.queue.put_nowait((self.seq, event))
            except asyncio.QueueFull:
                # A page that reads nothing must not hold memory: it resumes from the log.
                page.dropped = True
                self.pages.discard(page)
                _wake(page)

    def add(self, message: JSON) -> None:
        """A new message at the bottom of the screen."""
        self.shown[message["ref"]] = message
        while len(self.shown) > SHOWN:
            self.shown.popitem(last=False)
        self.emit({"op": "add", "msg": message})

    def replace(self, message: JSON) -> None:
        """A message changed in place (an edit); one that scrolled away stays away."""
        if message["ref"] in self.shown:
            self.shown[message["ref"]] = message
            self.emit({"op": "edit", "msg": message})

    def remove(self, ref: MessageRef) -> None:
        """A message taken off the screen."""
        if self.shown.pop(ref, None) is not None:
            self.emit({"op": "delete", "ref": ref})

    def since(self, last: int) -> list[tuple[int, JSON]] | None:
        """The events after `last`, or None when some of them are forgotten already."""
        if last > self.seq:
            return None
        first = self.log[0][0] if self.log else self.seq + 1
        if last < first - 1:
            return None
        return [(n, e) for n, e in self.log if n > last]

    def snapshot(self) -> list[JSON]:
        """The screen as it is now, as events that build it from nothing."""
        return [{"op": "add", "msg": m} for m in self.shown.values()]


def _wake(page: Page) -> None:
    """Make a page's reader notice it was dropped (its queue may be full)."""
    while True:
        try:
            page.queue.put_nowait(None)
            return
        except asyncio.QueueFull:
            page.queue.get_nowait()


def key_hints(rows: Rows) -> list[list[str]]:
    """The desktop key for each button: 1-9 for choices, s for Skip, u for Undo."""
    n, out = 0, []
    for row in rows:
        keys = []
        for b in row:
            press = decode(b.data)
            action = press.action if press is not None else ""
            key = LETTERS.get(action, "")
            if action in NUMBERED:
                n += 1
                key = str(n) if n <= 9 else ""
            keys.append(key)
        out.append(keys)
    return out


def wire_message(ref: MessageRef, view: Message, media: JSON | None, chart: JSON | None) -> JSON:
    """A view as the page's script renders it (every text is set as text, never as markup)."""
    hints = key_hints(view.buttons)
    rows = [
        [
            {"text": b.text, "data": b.data, "style": b.style, "selected": b.selected, "key": k}
            for b, k in zip(row, keys, strict=True)
        ]
        for row, keys in zip(view.buttons, hints, strict=True)
    ]
    return {
        "ref": ref,
        "text": view.text,
        "footer": view.footer,
        "status": view.status,
        "note": view.note,
        "writer": view.writer if view.item is not None else "",
        "item": view.item is not None,
        "transient": view.transient,
        "rows": rows,
        "media": media,
        "chart": chart,
    }


class WebOutlet:
    """Renders the conversation's views into each person's inbox and serves their files."""

    platform = PLATFORM

    def __init__(self, media_cache: Path) -> None:
        self.media_cache = media_cache
        self.mechanics = Mechanics(command=lambda name: f"/{name}", writer="box")
        # Event ids carry this, so a page from before a restart is told to start over.
        self.boot = secrets.token_hex(4)
        self._refs = itertools.count(1)
        self._inboxes: BoundedCache[str, Inbox] = BoundedCache(INBOXES)
        self._live: dict[str, Inbox] = {}  # inboxes with a page open: kept while it is
        self._served: BoundedCache[str, Served] = BoundedCache(MEDIA_TOKENS)
        self._files: BoundedCache[str, Served] = BoundedCache(FILES)
        self._prepared: BoundedCache[str, Path] = BoundedCache(10_000)
        self._prepare: SingleFlight[Path] = SingleFlight()

    # -- inboxes and pages ----------------------------------------------------------------

    def inbox(self, key: str) -> Inbox:
        """A person's inbox (made empty when they have none)."""
        inbox = self._live.get(key) or self._inboxes.get(key)
        if inbox is None:
            inbox = self._inboxes[key] = Inbox()
        return inbox

    def open_page(self, key: str) -> tuple[Inbox, Page]:
        """Start delivering a person's events to a new page."""
        inbox = self.inbox(key)
        page = Page()
        inbox.pages.add(page)
        self._live[key] = inbox
        return inbox, page

    def close_page(self, key: str, page: Page) -> None:
        """Stop delivering to a page (closed, or its connection dropped)."""
        inbox = self._live.get(key)
        if inbox is None:
            return
        inbox.pages.discard(page)
        if not inbox.pages:
            del self._live[key]
            self._inboxes[key] = inbox

    def pages(self, key: str) -> int:
        """How many pages the person has open."""
        inbox = self._live.get(key)
        return len(inbox.pages) if inbox is not None else 0

    def close(self) -> None:
        """End every open page's stream (stopping)."""
        for inbox in list(self._live.values()):
            for page in list(inbox.pages):
                _wake(page)

    def owns(self, key: str, ref: str) -> bool:
        """Whether `ref` is a message on this person's screen (refs from pages are checked)."""
        return ref in self.inbox(key).shown

    def _ref(self) -> MessageRef:
        # Unique among everyone on the platform: the conversation keys timers by ref alone.
        return f"{self.boot}.{next(self._refs)}"

    def own(self, to: UserRef, text: str) -> None:
        """What the person typed, shown on their side of the chat."""
        ref = self._ref()
        message: JSON = {"ref": ref, "text": text, "own": True, "rows": []}
        self.inbox(to.key).add(message)

    # -- the outlet -----------------------------------------------------------------------

    async def send(
        self, to: UserRef, view: Message | Document, priority: Priority = Priority.INTERACTIVE
    ) -> MessageRef | None:
        """Put a message on the person's screen (their open pages get it at once)."""
        ref = self._ref()
        if isinstance(view, Document):
            kind = _DOCUMENT_TYPES.get(Path(view.filename).suffix.lower())
            kind = kind or mimetypes.guess_type(view.filename)[0] or "application/octet-stream"
            url = self._keep(Served(to.key, kind, data=view.data, filename=view.filename))
            message = wire_message(ref, Message(view.caption), None, None)
            message["file"] = {"url": url, "name": view.filename}
            self.inbox(to.key).add(message)
            return ref
        media = await self._media(to, view.media) if view.media is not None else None
        chart = None
        if view.chart is not None:
            served = Served(to.key, "image/png", data=view.chart.png, filename=view.chart.filename)
            chart = {"url": self._keep(served)}
        self.inbox(to.key).add(wire_message(ref, view, media, chart))
        return ref

    async def edit(
        self, to: UserRef, ref: MessageRef, view: Message, priority: Priority = Priority.INTERACTIVE
    ) -> None:
        """Replace a message's text and buttons; its media stays as first shown."""
        inbox = self.inbox(to.key)
        before = inbox.shown.get(ref)
        if before is None:
            return  # scrolled away, or not this person's
        inbox.replace(wire_message(ref, view, before.get("media"), before.get("chart")))

    async def ready(self, to: UserRef, priority: Priority = Priority.BULK) -> None:
        """A page's inbox takes messages at any rate: always ready."""

    async def delete(self, to: UserRef, ref: MessageRef) -> None:
        """Take a message off the person's screen."""
        self.inbox(to.key).remove(ref)

    async def toast(self, to: UserRef, press: object, text: str | None, alert: bool) -> None:
        """A short notice on the person's pages (nothing when silent: the post's reply acks)."""
        if text:
            self.inbox(to.key).emit({"op": "toast", "text": text, "alert": alert})

    # -- files ----------------------------------------------------------------------------

    def served(self, key: str, token: str) -> Served | None:
        """The media or file behind a token, for its owner only."""
        found = self._served.get(token) or self._files.get(token)
        return found if found is not None and found.owner == key else None

    def _keep(self, served: Served) -> str:
        token = secrets.token_urlsafe(18)
        if served.path is not None:
            self._served[token] = served
            return f"/media/{token}"
        self._files[token] = served
        return f"/files/{token}"

    async def _media(self, to: UserRef, media: Media) -> JSON:
        """A link to an item's media for this person; MediaFailed when it cannot be shown."""
        src = Path(media.path)
        try:
            if media.kind == "image":
                path, kind = await self._image(media), "image/jpeg"
            else:
                path, kind = src, await asyncio.to_thread(_content_type, src, media.kind)
        except (MediaError, OSError) as exc:
            raise MediaFailed(f"{media.kind} {src}: {exc}") from exc
        url = self._keep(Served(to.key, kind, path=path))
        out: JSON = {"kind": media.kind, "url": url, "alt": media.alt}
        if media.kind == "image":
            out["width"], out["height"] = await asyncio.to_thread(image_size, path)
        return out

    async def _image(self, media: Media) -> Path:
        """The picture prepared once (rotated, shrunk, boxes drawn), shared by everyone."""
        boxes = list(media.boxes) or None
        key = json.dumps([media.path, media.max_side, boxes], sort_keys=True, default=str)
        done = self._prepared.get(key)
        if done is not None and done.is_file():
            return done

        async def prepare() -> Path:
            # Pillow work is CPU-bound: keep it off the event loop.
            return await asyncio.to_thread(
                prepare_image, Path(media.path), self.media_cache, max_side=media.max_side,
                boxes=boxes,
            )  # fmt: skip

        path = await self._prepare.run(key, prepare)
        self._prepared[key] = path
        return path


def _content_type(path: Path, kind: str) -> str:
    """The Content-Type of an audio or video file (by name, else by its first bytes)."""
    if not path.is_file():
        raise MediaError(f"{path}: no such file")
    guessed = mimetypes.guess_type(path.name)[0]
    if guessed and guessed.startswith(kind + "/"):
        return guessed
    container = sniff_container(path) or ""
    if container in _CONTAINER_TYPES:
        return _CONTAINER_TYPES[container]
    return f"{kind}/{container}" if container else "application/octet-stream"
