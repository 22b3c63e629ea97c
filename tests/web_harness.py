"""A running web chat, and people who use it over real HTTP the way the page's script does.

`Visitor` keeps a cookie jar, asks for a session, follows the server-sent events and applies
them to its own copy of the screen (add, edit, delete), posts presses and typed text with the
CSRF token: everything the browser does except drawing. The browser tests drive the real page.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

from chatlabel.config import Config, Web, parse_config
from chatlabel.service import LabelingService, Reports
from chatlabel.storage.db import Database
from chatlabel.transports.web import WebTransport
from tests.telegram_harness import FakeClock, export_stub, insert_items, project

__all__ = ["Visitor", "WebBench", "project", "running_web"]

COORDINATOR = "coordinatoraaaaa"  # a person id (16 base32 letters) listed as a coordinator
SECRET = "s3cret-for-tests-" + "x" * 32


def make_config(tmp: Path, projects: list[dict[str, Any]], **access: Any) -> Config:
    """A config with these projects, a web coordinator and a [web] section on a free port."""
    data = {
        "storage": {"database": str(tmp / "chatlabel.db"), "media_cache": str(tmp / "cache")},
        "project": projects,
        "access": {"coordinators": [f"web:{COORDINATOR}"], **access},
        "web": {"port": 0},
    }
    return parse_config(data, tmp / "chatlabel.toml")


class Visitor:
    """One browser: a cookie jar, the CSRF token, the screen its events built."""

    def __init__(self, base: str, language: str = "en", origin: str | None = None) -> None:
        self.base = base.rstrip("/")
        parts = urlsplit(self.base)
        self.origin = origin if origin is not None else f"{parts.scheme}://{parts.netloc}"
        headers = {"Accept-Language": language}
        if self.origin:
            headers["Origin"] = self.origin
        self.http = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True), headers=headers, trust_env=False
        )
        self.token = ""
        self.session: dict[str, Any] = {}
        self.screen: dict[str, dict[str, Any]] = {}  # ref -> message, in screen order
        self.toasts: list[str] = []
        self.events: list[dict[str, Any]] = []
        self.last_id: str | None = None
        self.readies = 0
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._n = 0

    # -- connection -------------------------------------------------------------------------

    async def open(self, path: str = "/") -> dict[str, Any]:
        """Load the page and ask for a session (as the script does first)."""
        async with self.http.get(self.base + path) as r:
            assert r.status == 200, r.status
            await r.read()
        async with self.http.post(self.base + "/api/session", json={}) as r:
            assert r.status == 200, (r.status, await r.text())
            self.session = await r.json()
        self.token = self.session["token"]
        return self.session

    def set_cookie(self, name: str, value: str) -> None:
        """Replace the browser's cookies with this one (for this server)."""
        self.http.cookie_jar.clear()
        self.http.cookie_jar.update_cookies({name: value}, response_url=URL(self.base))

    @property
    def person(self) -> str:
        """The person's id (the user id after `web:`)."""
        cookie = next(c for c in self.http.cookie_jar if "chatlabel" in c.key)
        return cookie.value.split(".")[0]

    async def connect(self, last_id: str | None = None) -> None:
        """Follow the event stream (resuming after `last_id` like EventSource does)."""
        await self.disconnect()
        headers = {"Last-Event-ID": last_id} if last_id else {}
        response = await self.http.get(self.base + "/api/events", headers=headers)
        assert response.status == 200, response.status
        self._reader = asyncio.create_task(self._read(response))
        before = self.readies
        await self.wait_for(lambda: self.readies > before)

    async def disconnect(self) -> None:
        """Drop the event stream (a flaky mobile connection)."""
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def _read(self, response: aiohttp.ClientResponse) -> None:
        try:
            event_id, data = None, []
            async for raw in response.content:
                line = raw.decode().rstrip("\n")
                if line.startswith("id: "):
                    event_id = line[4:]
                elif line.startswith("data: "):
                    data.append(line[6:])
                elif not line:
                    if data:
                        self._apply(json.loads("\n".join(data)), event_id)
                    event_id, data = None, []
        finally:
            response.close()

    def _apply(self, event: dict[str, Any], event_id: str | None) -> None:
        if event_id is not None:
            self.last_id = event_id
        self.events.append(event)
        op = event["op"]
        if op == "reset":
            self.screen.clear()
        elif op == "add" or (op == "edit" and event["msg"]["ref"] in self.screen):
            self.screen[event["msg"]["ref"]] = event["msg"]
        elif op == "delete":
            self.screen.pop(event["ref"], None)
        elif op == "toast":
            self.toasts.append(event["text"])
        elif op == "ready":
            self.readies += 1
        self._changed.set()

    async def close(self) -> None:
        """Close the stream and the HTTP session."""
        await self.disconnect()
        await self.http.close()

    # -- acting ------------------------------------------------------------------------------

    async def post(self, path: str, body: Any, **headers: str) -> tuple[int, Any]:
        """A post as the page makes it (CSRF token unless told otherwise); status and JSON."""
        sent = {"X-CSRF-Token": self.token, **headers}
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        sent.setdefault("Content-Type", "application/json")
        async with self.http.post(self.base + path, data=data, headers=sent) as r:
            try:
                return r.status, await r.json()
            except (aiohttp.ContentTypeError, ValueError):
                return r.status, await r.text()

    async def start(self, code: str | None = None) -> None:
        """What the page does once its stream is ready: /start (with the link's code)."""
        status, _ = await self.post("/api/start", {"code": code})
        assert status == 200, status

    async def press(self, message: dict[str, Any], caption: str) -> int:
        """Press the button with this caption on a message; the post's status."""
        data = next(b["data"] for row in message["rows"] for b in row if b["text"] == caption)
        status, _ = await self.post("/api/press", {"ref": message["ref"], "data": data})
        return status

    async def type(self, text: str) -> int:
        """Type a message (or a command) and send it."""
        self._n += 1
        client_id = f"{random.getrandbits(64):016x}{self._n:04d}"
        status, _ = await self.post("/api/text", {"text": text, "id": client_id})
        return status

    # -- reading -----------------------------------------------------------------------------

    def messages(self) -> list[dict[str, Any]]:
        """The bot's messages on screen, oldest first (not the person's own)."""
        return [m for m in self.screen.values() if not m.get("own")]

    def items(self) -> list[dict[str, Any]]:
        """Item messages on screen (they came with Skip), oldest first."""
        return [m for m in self.messages() if m.get("item") or m.get("status")]

    def open_items(self) -> list[dict[str, Any]]:
        """Items with a Skip button still on them."""
        return [m for m in self.messages() if any(b["data"].startswith("s:") for b in buttons(m))]

    def last_text(self) -> str:
        """The text of the newest bot message."""
        messages = self.messages()
        return messages[-1]["text"] if messages else ""

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 5.0) -> Any:  # noqa: ASYNC109
        """Wait until `predicate()` is truthy (checked after every event); its value."""
        async with asyncio.timeout(timeout):
            while True:
                value = predicate()
                if value:
                    return value
                self._changed.clear()
                await self._changed.wait()


def buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
    """Every button of a message, row by row."""
    return [b for row in message.get("rows", []) for b in row]


def captions_of_all(messages: list[dict[str, Any]]) -> list[str]:
    """Every button caption on these messages."""
    return [b["text"] for m in messages for b in buttons(m)]


def captions(message: dict[str, Any]) -> list[str]:
    """The captions of a message's buttons (a ticked toggle shows ✓, as on Telegram)."""
    return [("✓ " if b.get("selected") else "") + b["text"] for b in buttons(message)]


@dataclass
class WebBench:
    """The database, the service and the running web chat."""

    db: Database
    service: LabelingService
    reports: Reports
    transport: WebTransport
    clock: FakeClock
    tmp: Path
    visitors: list[Visitor] = field(default_factory=list)

    @property
    def base(self) -> str:
        """The page's address."""
        return f"http://127.0.0.1:{self.transport.port}"

    async def visitor(
        self, language: str = "en", *, person: str | None = None, connect: bool = True
    ) -> Visitor:
        """A new browser with a session (as `person` when given) and its event stream."""
        v = Visitor(self.base, language)
        self.visitors.append(v)
        if person is not None:
            cookie = self.transport.sessions.cookie(person, self.clock())
            v.set_cookie(self.transport.cookie_name, cookie)
        await v.open()
        if connect:
            await v.connect()
        return v

    async def add_items(self, name: str, rows: list[dict[str, Any]]) -> None:
        """Insert items straight into the database and wake the push loop."""
        await insert_items(self.db, self.service, self.clock(), name, rows)

    async def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """Rows of a read-only query."""
        return await self.db.read(lambda c: [tuple(r) for r in c.execute(sql, args).fetchall()])

    async def answers(self) -> list[tuple[str, str, str | None]]:
        """(person key, item ext_id, value) of every answer, in order."""
        rows = await self.query(
            """SELECT a.key, i.ext_id, x.value FROM answers x JOIN items i ON i.id = x.item_id
               JOIN annotators a ON a.id = x.annotator_id ORDER BY x.id"""
        )
        return [(r[0], r[1], r[2]) for r in rows]


@contextlib.asynccontextmanager
async def running_web(
    tmp: Path,
    projects: list[dict[str, Any]] | None = None,
    *,
    access: dict[str, Any] | None = None,
    secret: str | None = SECRET,
    settings: Web | None = None,
) -> AsyncIterator[WebBench]:
    """Database, service and web chat on 127.0.0.1 (a free port); all closed afterwards."""
    config = make_config(tmp, projects or [project()], **(access or {}))
    clock = FakeClock()
    db = await Database(config.database_path()).open()
    try:
        service = LabelingService(db, config, clock=clock, rng=random.Random(3))
        await service.start()
        reports = Reports(service)
        transport = WebTransport(
            service,
            reports,
            settings or Web(port=0),
            secret=secret,
            secret_path=config.web_secret_path(),
            media_cache=config.media_cache_path(),
            export_results=export_stub,
        )
        transport.push_interval = 0.2
        transport.inbound = (1000.0, 1000.0)  # tests type fast; flood control is tested alone
        await transport.start()
        bench = WebBench(db, service, reports, transport, clock, tmp)
        try:
            yield bench
        finally:
            for v in bench.visitors:
                await v.close()
            await transport.stop()
    finally:
        await db.close()
