"""The browser chat: a page where a person labels through the same conversation as in Telegram.

An aiohttp server on the configured host: `/` (or `/join/CODE`) serves the page; the page's
script asks for a session (a signed, HttpOnly, SameSite=Strict cookie naming a random person,
`web:<id>`), follows its events as server-sent events (numbered, so a dropped connection
resumes where it stopped) and posts presses and typed text, each checked for origin, CSRF
token, size and rate before the conversation sees it.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any
from urllib.parse import quote

from aiohttp import web

from ..config import Web
from ..conversation import Catalog, Conversation, Texts, Who
from ..conversation.bulk import STOP_GRACE as OUTBOX_GRACE
from ..conversation.commands import ANNOTATOR, COORDINATOR
from ..conversation.conversation import TokenBucket
from ..mechanics import BoundedCache
from ..mechanics.redact import hide
from ..service.labeling import LabelingService
from ..service.reports import Reports
from ..service.types import UserRef
from .lifecycle import started
from .web_outlet import PLATFORM, PressHandle, WebOutlet
from .web_session import Origins, Session, Sessions, languages, load_secret, new_person_id

log = logging.getLogger("chatlabel.web")

ExportResults = Callable[[str], Awaitable[tuple[str, bytes]]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

BODY_LIMIT = 16 * 1024  # bytes in a post: a press is ~100, a typed answer at most ~16 KiB
TEXT_LIMIT = 4000  # characters in a typed message (Telegram's is 4096)
HEARTBEAT = 15.0  # seconds between keep-alive comments on an idle event stream
PAGES_PER_PERSON = 6  # event streams one person may hold open (tabs)
MAX_PAGES = 2_000  # event streams open at once, everyone together
POST_RATE = (5.0, 20.0)  # posts per second per person, and the burst
SESSION_RATE = (0.5, 30.0)  # new sessions per second per address, and the burst
STOP_GRACE = 5.0
COMMAND = re.compile(r"^/([A-Za-z0-9_]{1,32})(?:@\S*)?(?:\s+(.*))?$", re.DOTALL)
CLIENT_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
STATIC = {"app.js": "text/javascript", "app.css": "text/css", "icon.svg": "image/svg+xml"}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "media-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
# The page's own words (the rest of what it shows comes from the conversation).
CHROME = ("messages", "type_answer", "send", "menu", "connecting", "reconnected", "send_failed",
          "too_many", "expired", "close", "instructions", "download", "chart", "keys",
          "noscript")  # fmt: skip


class WebTransport:
    """The browser chat in front of the conversation (manual lifecycle: start / stop)."""

    name = "web"
    push_interval = 5.0  # how often the push loop looks for expired leases without a signal
    outbox_grace = OUTBOX_GRACE  # seconds bulk copies in flight get to settle at stop()
    # Typed messages a person may send (per second, burst); None: the conversation's default.
    inbound: tuple[float, float] | None = None

    def __init__(
        self,
        service: LabelingService,
        reports: Reports,
        settings: Web,
        *,
        secret: str | None,
        secret_path: Path,
        media_cache: Path,
        export_results: ExportResults | None = None,
        catalog: Catalog | None = None,
    ) -> None:
        self.service = service
        self.settings = settings
        self.catalog = catalog or Catalog()
        self._secret, self._secret_path = secret, secret_path
        self.outlet = WebOutlet(media_cache)
        self._reports, self._export = reports, export_results
        self._conversation: Conversation | None = None
        self._sessions: Sessions | None = None
        self.origins = Origins(settings.host, settings.base_url)
        self.secure = settings.base_url.startswith("https://")
        # A __Host- cookie is bound to this host and path, and only ever sent over HTTPS.
        self.cookie_name = "__Host-chatlabel" if self.secure else "chatlabel"
        self._posts: BoundedCache[str, TokenBucket] = BoundedCache(20_000)
        self._new_sessions: BoundedCache[str, TokenBucket] = BoundedCache(20_000)
        self._typed: BoundedCache[str, bool] = BoundedCache(20_000)  # client message ids seen
        self._static: dict[str, tuple[bytes, str]] = {}
        self._template: Template | None = None
        self._runner: web.AppRunner | None = None
        self._stop = asyncio.Event()
        self._streams = 0
        self._port: int | None = None

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def conversation(self) -> Conversation:
        """The conversation with everyone in a browser (available after start())."""
        return started(self._conversation, "web")

    @property
    def sessions(self) -> Sessions:
        """What signs and checks session cookies (available after start())."""
        return started(self._sessions, "web")

    @property
    def port(self) -> int:
        """The TCP port the page is served on (useful with port 0)."""
        return started(self._port, "web")

    @property
    def url(self) -> str:
        """The page's address as people should open it."""
        if self.settings.base_url:
            return self.settings.base_url.rstrip("/") + "/"
        host = self.settings.host
        if host in ("", "0.0.0.0", "::"):
            host = "127.0.0.1"  # listening everywhere: this machine's own address works
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/"

    def links(self) -> list[str]:
        """The links to hand out: one per invite code in invite mode, else the page itself."""
        access = self.service.config.access
        if access.mode == "invite" and access.invite_codes:
            return [f"{self.url}join/{quote(code, safe='')}" for code in access.invite_codes]
        return [self.url]

    async def start(self) -> None:
        """Load the secret and the page, serve it, and start pushing items."""
        secret = await asyncio.to_thread(load_secret, self._secret, self._secret_path)
        hide(secret.decode())  # whoever might log it, it never reaches a log line
        self._sessions = Sessions(secret, self.settings.session_days * 86400)
        self._load_static()
        self._stop.clear()
        self._conversation = Conversation(
            self.service, self._reports, self.catalog, self.outlet,
            export_results=self._export, inbound=self.inbound,
        )  # fmt: skip
        app = web.Application(client_max_size=BODY_LIMIT, middlewares=[self._guard])
        app.router.add_get("/", self._page)
        app.router.add_get("/join/{code}", self._page)
        app.router.add_get("/static/{name}", self._static_file)
        app.router.add_post("/api/session", self._session_post)
        app.router.add_get("/api/events", self._events, allow_head=False)
        app.router.add_post("/api/start", self._start_post)
        app.router.add_post("/api/press", self._press_post)
        app.router.add_post("/api/text", self._text_post)
        app.router.add_get("/media/{token}", self._served)
        app.router.add_get("/files/{token}", self._served)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=STOP_GRACE)
        try:
            await self._runner.setup()
            site = web.TCPSite(self._runner, self.settings.host, self.settings.port)
            await site.start()
            self._port = int(self._runner.addresses[0][1])
            self.conversation.start_pushing(self._stop, self.push_interval)
            self.conversation.start_outbox(self._stop, self.push_interval)
        except BaseException:
            await self.stop()
            raise
        log.info("web chat listening on %s:%s; people open %s",
                 self.settings.host, self._port, " ".join(self.links()))  # fmt: skip

    async def stop(self) -> None:
        """Stop pushing, end every open page's stream and stop serving; safe to call twice."""
        self._stop.set()
        if self._conversation is not None:
            await self._conversation.stop_pushing()
            await self._conversation.stop_outbox(self.outbox_grace)
        self.outlet.close()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        if self._conversation is not None:
            await self._conversation.close()
        if runner is not None:
            log.info("web chat stopped")

    async def __aenter__(self) -> WebTransport:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _load_static(self) -> None:
        folder = resources.files("chatlabel") / "web"
        for name, kind in STATIC.items():
            self._static[name] = ((folder / name).read_bytes(), kind)
        # Each file's URL changes with its content, so browsers may keep it for a year.
        versions = {
            f"v_{name.split('.')[1]}": hashlib.sha256(data).hexdigest()[:12]
            for name, (data, _) in self._static.items()
        }
        text = (folder / "index.html").read_text(encoding="utf-8")
        self._template = Template(Template(text).safe_substitute(versions))

    # -- who is asking --------------------------------------------------------------------

    def _session(self, request: web.Request) -> Session | None:
        assert self._sessions is not None
        return self._sessions.check(request.cookies.get(self.cookie_name), self.service.now())

    def _who(self, request: web.Request, person: str) -> Who:
        tags = languages(request.headers.get("Accept-Language"))
        hint = self.catalog.best(*tags) or (tags[0] if tags else None)
        return Who(UserRef(PLATFORM, person), hint)

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Refuse foreign hosts and cross-site posts; add the headers every answer needs."""
        if not self.origins.host_ok(request.host):
            return web.Response(status=421, text="host")
        if request.method not in ("GET", "HEAD", "POST"):
            return web.Response(status=405)
        fetched = request.headers.get("Sec-Fetch-Site")
        if request.path.startswith("/api/"):
            if fetched not in (None, "same-origin"):
                return _error(403, "site")
            origin = request.headers.get("Origin")
            own = self.origins.origin_ok(origin, request.host, request.scheme)
            if request.method == "POST" and not own:
                return _error(403, "origin")
            if origin is not None and not own:
                return _error(403, "origin")
        try:
            response = await handler(request)
        except web.HTTPRequestEntityTooLarge:
            response = _error(413, "size")
        headers = response.headers
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "no-referrer")
        headers.setdefault("Cross-Origin-Resource-Policy", "same-origin")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Cache-Control", "no-store")
        return response

    async def _posted(self, request: web.Request) -> tuple[Session, dict[str, Any]] | web.Response:
        """A post's session and JSON body, or the answer that refuses it."""
        session = self._session(request)
        if session is None:
            return _error(401, "session")
        assert self._sessions is not None
        if not self._sessions.csrf_ok(session.person, request.headers.get("X-CSRF-Token")):
            return _error(403, "token")
        if not _take(self._posts, session.person, POST_RATE):
            return _error(429, "slow")
        if request.content_type != "application/json":
            return _error(415, "json")
        if (request.content_length or 0) > BODY_LIMIT:
            return _error(413, "size")
        try:
            body = json.loads(await request.read())
        except (ValueError, UnicodeDecodeError):
            return _error(400, "json")
        if not isinstance(body, dict):
            return _error(400, "json")
        return session, body

    # -- the page -------------------------------------------------------------------------

    async def _texts(self, request: web.Request) -> Texts:
        session = self._session(request)
        if session is not None:
            return await self.conversation.texts(self._who(request, session.person))
        tags = languages(request.headers.get("Accept-Language"))
        return self.catalog.texts(self.catalog.best(*tags))

    async def _page(self, request: web.Request) -> web.Response:
        # No side effects here: link previews and prefetchers fetch pages too. The script
        # asks for a session and starts the conversation once it runs.
        assert self._template is not None
        t = await self._texts(request)
        chrome = {key: t(f"web.{key}") for key in CHROME}
        values = {key: html.escape(text) for key, text in chrome.items()}
        values["lang"] = t.lang
        values["title"] = html.escape(t("home.title"))
        values["texts"] = html.escape(json.dumps(chrome, ensure_ascii=False))
        body = self._template.substitute(values)
        response = web.Response(
            text=body, content_type="text/html", headers={"Content-Security-Policy": CSP}
        )
        response.enable_compression()  # a third of the bytes on a slow phone connection
        return response

    async def _static_file(self, request: web.Request) -> web.Response:
        found = self._static.get(request.match_info["name"])
        if found is None:
            raise web.HTTPNotFound()
        data, kind = found
        cache = "public, max-age=31536000, immutable" if request.query.get("v") else "no-cache"
        response = web.Response(body=data, content_type=kind, headers={"Cache-Control": cache})
        response.enable_compression()
        return response

    # -- the API --------------------------------------------------------------------------

    async def _session_post(self, request: web.Request) -> web.Response:
        """The page's session: the one its cookie names, or a new one (the cookie is renewed)."""
        assert self._sessions is not None
        now = self.service.now()
        session = self._session(request)
        expired = session is None and bool(request.cookies.get(self.cookie_name))
        if session is None:
            if not _take(self._new_sessions, request.remote or "?", SESSION_RATE):
                return _error(429, "slow")
            session = Session(new_person_id(), int(now))
        who = self._who(request, session.person)
        t = await self.conversation.texts(who)
        names = ANNOTATOR + (COORDINATOR if self.service.is_coordinator(who.user) else ())
        response = web.json_response(
            {
                "token": self._sessions.csrf(session.person),
                "id": t("web.your_id", id=who.user.key),
                "expired": expired,
                "commands": [{"name": n, "label": f"/{n} — {t(f'menu.{n}')}"} for n in names],
            }
        )
        response.set_cookie(
            self.cookie_name,
            self._sessions.cookie(session.person, now),
            max_age=int(self.settings.session_days * 86400),
            path="/",
            secure=self.secure,
            httponly=True,
            samesite="Strict",
        )
        return response

    async def _events(self, request: web.Request) -> web.StreamResponse:
        """The person's events as server-sent events, resuming after Last-Event-ID."""
        session = self._session(request)
        if session is None:
            return _error(401, "session")
        key = f"{PLATFORM}:{session.person}"
        if self.outlet.pages(key) >= PAGES_PER_PERSON or self._streams >= MAX_PAGES:
            return _error(503, "pages")
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"}
        )
        response.headers["Cache-Control"] = "no-store"
        await response.prepare(request)
        last = request.headers.get("Last-Event-ID") or request.query.get("after", "")
        inbox, page = self.outlet.open_page(key)
        self._streams += 1
        try:
            # Nothing awaited between opening the page and reading the backlog: no event is
            # missed or sent twice.
            boot, _, seq = last.partition("-")
            backlog = inbox.since(int(seq)) if boot == self.outlet.boot and seq.isdigit() else None
            out = [b"retry: 2000\n\n"]
            if backlog is None:
                out += [_sse({"op": "reset"})] + [_sse(e) for e in inbox.snapshot()]
            else:
                out += [_sse(e, self._id(n)) for n, e in backlog]
            ready = {"op": "ready", "fresh": not inbox.shown}
            out.append(_sse(ready, self._id(inbox.seq)))
            await response.write(b"".join(out))
            while not self._stop.is_set():
                try:
                    got = await asyncio.wait_for(page.queue.get(), HEARTBEAT)
                except TimeoutError:
                    await response.write(b": ping\n\n")
                    continue
                if got is None:
                    break  # stopping, or the page fell behind: it reconnects and resumes
                await response.write(_sse(got[1], self._id(got[0])))
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._streams -= 1
            self.outlet.close_page(key, page)
        return response

    def _id(self, seq: int) -> str:
        return f"{self.outlet.boot}-{seq}"

    async def _start_post(self, request: web.Request) -> web.Response:
        """The page opened: /start, with the invite code of the link it was opened from."""
        posted = await self._posted(request)
        if isinstance(posted, web.Response):
            return posted
        session, body = posted
        code = body.get("code")
        if code is not None and (not isinstance(code, str) or len(code) > 200):
            return _error(400, "code")
        await self.conversation.start(self._who(request, session.person), code or None)
        return web.json_response({"ok": True})

    async def _press_post(self, request: web.Request) -> web.Response:
        """A pressed button: checked by the conversation like any platform's press."""
        posted = await self._posted(request)
        if isinstance(posted, web.Response):
            return posted
        session, body = posted
        data, ref = body.get("data"), body.get("ref")
        if not isinstance(data, str) or len(data) > 64 or not isinstance(ref, str | None):
            return _error(400, "press")
        who = self._who(request, session.person)
        # A message that is not on this person's screen is no message of theirs.
        if ref is not None and not self.outlet.owns(who.user.key, ref):
            ref = None
        await self.conversation.press(who, data, ref, PressHandle(ref))
        return web.json_response({"ok": True})

    async def _text_post(self, request: web.Request) -> web.Response:
        """A typed message: a command ("/stats") or an answer to a free-text item."""
        posted = await self._posted(request)
        if isinstance(posted, web.Response):
            return posted
        session, body = posted
        text, client_id = body.get("text"), body.get("id")
        if not isinstance(text, str) or not text.strip():
            return _error(400, "text")
        if len(text) > TEXT_LIMIT:
            return _error(413, "size")
        if not isinstance(client_id, str) or not CLIENT_ID.match(client_id):
            return _error(400, "id")
        who = self._who(request, session.person)
        seen = f"{who.user.key}:{client_id}"
        if seen in self._typed:
            return web.json_response({"ok": True})  # a retried post: done already
        self._typed[seen] = True
        text = text.strip()
        self.outlet.own(who.user, text)
        command = COMMAND.match(text)
        if command is not None:
            name, args = command.group(1).lower(), (command.group(2) or "").strip()
            await self.conversation.command(who, name, args)
        else:
            await self.conversation.text(who, text, source=f"web:{client_id}")
        return web.json_response({"ok": True})

    async def _served(self, request: web.Request) -> web.StreamResponse:
        """An item's media, a chart or an export, for the person it was shown to only."""
        session = self._session(request)
        token = request.match_info["token"]
        found = None if session is None else self.outlet.served(f"web:{session.person}", token)
        if found is None:
            raise web.HTTPNotFound()
        headers = {"Content-Type": found.content_type, "Cache-Control": "private, max-age=86400"}
        if found.path is not None:
            # Streamed from disk with Range support: a video seeks without a whole-file read.
            return web.FileResponse(found.path, headers=headers)
        if request.path.startswith("/files/") and not found.content_type.startswith("image/"):
            name = quote(found.filename, safe="")
            headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{name}"
        return web.Response(body=found.data, headers=headers)


def _take(buckets: BoundedCache[str, TokenBucket], key: str, rate: tuple[float, float]) -> bool:
    """One request from `key` under its rate; False when it is over."""
    now = time.monotonic()
    bucket = buckets.get(key)
    if bucket is None:
        bucket = buckets[key] = TokenBucket(rate[0], rate[1], now)
    return bucket.take(now)


def _error(status: int, reason: str) -> web.Response:
    """A refusal the page's script understands (it words it in the person's language)."""
    headers = {"Cache-Control": "no-store"}
    return web.json_response({"error": reason}, status=status, headers=headers)


def _sse(event: dict[str, Any], event_id: str | None = None) -> bytes:
    """One server-sent event (JSON never contains a raw newline)."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}data: {json.dumps(event, ensure_ascii=False)}\n\n".encode()
