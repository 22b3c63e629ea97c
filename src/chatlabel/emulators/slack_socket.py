"""Socket Mode in the loopback Slack fake: apps.connections.open, the WebSocket, envelopes.

As on Slack (https://api.slack.com/apis/connections/socket-implement): the app calls
`apps.connections.open` with its app-level token and gets a one-time
`ws://…/link/?ticket=…&app_id=…` URL; on connect the server sends `hello`, then every event,
interaction and slash command as an envelope `{envelope_id, type, payload,
accepts_response_payload, retry_attempt, retry_reason}`, which the app acks with
`{"envelope_id": …, "payload"?: …}` within `ack_timeout` seconds. An event that is not acked
is sent again (same envelope and event ids, `retry_attempt` + 1, `retry_reason` "timeout")
after each of `retry_delays` (Slack waits about 0 s, 1 min and 5 min; the fake compresses
that); an interaction or command that is not acked fails for the person. `disconnect`
(`{"type": "disconnect", "reason": …}`) asks the app to connect again; the old connection
gets no new envelopes and is closed `close_after` seconds later. At most 10 connections
are open at once, as on Slack.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from chatlabel.emulators.slack_model import JSON, ApiFailure, SlackFaults
from chatlabel.emulators.slack_user import BotResponse

ACK_TIMEOUT = 3.0  # seconds Slack waits for an envelope's ack
RETRY_DELAYS = (0.2, 0.5, 1.0)  # before each of Slack's 3 event retries (compressed)
MAX_CONNECTIONS = 10  # open WebSockets Slack allows one app
TICKET_TTL = 30.0  # seconds an apps.connections.open URL can be used
HOST = "applink-emulator"
KINDS = frozenset({"events_api", "interactive", "slash_commands"})


@dataclass(eq=False)
class SocketConnection:
    """One open WebSocket from the app."""

    id: str
    ws: web.WebSocketResponse
    draining: bool = False  # told to disconnect: gets new envelopes only if nothing else is open
    # The link died quietly (a NAT forgot it, a laptop slept): nothing gets through either way,
    # pings go unanswered, and neither side is told.
    stalled: bool = False

    @property
    def closed(self) -> bool:
        """True once the WebSocket is closed (by either side)."""
        return self.ws.closed


@dataclass(eq=False)
class Envelope:
    """One envelope sent to the app (or that found no connection), and the app's ack."""

    envelope_id: str
    type: str
    payload: JSON
    accepts_response_payload: bool
    retry_attempt: int = 0
    retry_reason: str = ""
    connection: str | None = None  # the connection that carried it; None: none was open
    ack: JSON | None = None  # the frame the app acked it with

    @property
    def acked(self) -> bool:
        """True if the app acked this envelope in time."""
        return self.ack is not None

    def frame(self) -> JSON:
        """The message Slack writes on the WebSocket."""
        return {
            "envelope_id": self.envelope_id,
            "type": self.type,
            "payload": self.payload,
            "accepts_response_payload": self.accepts_response_payload,
            "retry_attempt": self.retry_attempt,
            "retry_reason": self.retry_reason,
        }


@dataclass
class _Pending:
    envelope_id: str
    future: asyncio.Future[JSON] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class SlackSocketMode:
    """The Socket Mode side of the fake: tickets, connections, envelopes and acks."""

    def __init__(
        self,
        app_id: str,
        faults: SlackFaults,
        notify: Callable[[], Awaitable[None]],
        *,
        enabled: bool = False,
    ) -> None:
        self.app_id = app_id
        self.faults = faults
        self.enabled = enabled
        self.ack_timeout = ACK_TIMEOUT
        self.retry_delays: tuple[float, ...] = RETRY_DELAYS
        self.url = ""  # the server's root URL, set when it starts
        self.connections: list[SocketConnection] = []  # open now
        self.opened = 0  # connections accepted so far
        self.envelopes: list[Envelope] = []
        self.frames: list[Any] = []  # everything the app wrote, decoded when it was JSON
        self._notify = notify
        self._tickets: dict[str, float] = {}
        self._pending: list[_Pending] = []
        self._ids = itertools.count(1)
        self._turn = 0
        self._closers: set[asyncio.Task[None]] = set()

    # ---- the Web API method and the WebSocket endpoint ------------------------------------

    def connections_open(self, args: JSON) -> JSON:
        """apps.connections.open: a one-time WebSocket URL (the token was checked already)."""
        if not self.enabled:
            raise ApiFailure(
                "forbidden_team",
                "Socket Mode is off for this app; SlackApiEmulator(socket_mode=True) turns it on",
            )
        ticket = secrets.token_urlsafe(16)
        self._tickets[ticket] = time.monotonic()
        return {
            "url": f"{self.url.replace('http', 'ws', 1)}/link/?ticket={ticket}&app_id={self.app_id}"
        }

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Accept a WebSocket with a fresh ticket, say hello, and read the app's acks."""
        issued = self._tickets.pop(request.query.get("ticket", ""), None)
        if not self.enabled or issued is None or time.monotonic() - issued > TICKET_TTL:
            return web.Response(status=401, text="invalid, used or expired ticket")
        # Pings are answered by hand, like Slack answers them, so a stalled link can stop.
        ws = web.WebSocketResponse(autoping=False)
        await ws.prepare(request)
        if len([c for c in self.connections if not c.closed]) >= MAX_CONNECTIONS:
            await ws.send_json(self._disconnect_frame("too_many_websockets"))
            await ws.close()
            return ws
        conn = SocketConnection(f"C{next(self._ids)}", ws)
        self.connections.append(conn)
        self.opened += 1
        await ws.send_json(
            {
                "type": "hello",
                "num_connections": len(self.connections),
                "debug_info": {
                    "host": HOST,
                    "build_number": 1,
                    "approximate_connection_time": 18060,
                },
                "connection_info": {"app_id": self.app_id},
            }
        )
        await self._notify()
        try:
            async for msg in ws:
                if conn.stalled:
                    continue  # lost on the way
                if msg.type == WSMsgType.PING:
                    await ws.pong(msg.data)
                elif msg.type == WSMsgType.TEXT:
                    self._received(msg.data)
        finally:
            self.connections.remove(conn)
            await self._notify()
        return ws

    def _received(self, data: str) -> None:
        try:
            frame: Any = json.loads(data)
        except ValueError:
            frame = None
        self.frames.append(frame if frame is not None else data)
        if not isinstance(frame, dict) or not isinstance(frame.get("envelope_id"), str):
            return
        if self.faults.should_lose_ack():
            return
        # Acks may come on any of the app's connections (slack_sdk acks on its newest one).
        waiting = next(
            (
                p
                for p in self._pending
                if p.envelope_id == frame["envelope_id"] and not p.future.done()
            ),
            None,
        )
        if waiting is not None:
            waiting.future.set_result(frame)

    # ---- deliveries ---------------------------------------------------------------------------

    async def deliver(self, kind: str, payload: JSON) -> BotResponse:
        """Send what a person did as Slack does: ack, or retries (events) or a failure."""
        envelope_id = str(uuid.uuid4())
        retries = self.retry_delays if kind == "events_api" else ()
        envelope = await self.send(kind, payload, envelope_id=envelope_id)
        for attempt, delay in enumerate(retries, start=1):
            if envelope.acked:
                break
            await asyncio.sleep(delay)
            envelope = await self.send(
                kind,
                payload,
                envelope_id=envelope_id,
                retry_attempt=attempt,
                retry_reason="timeout",
            )
        if envelope.ack is not None:
            return _response(envelope.ack)
        if envelope.connection is None:  # what Slack shows when no app is connected
            return BotResponse(503, "dispatch_failed", "text/plain")
        return BotResponse(504, "operation_timeout", "text/plain")

    async def send(
        self,
        kind: str,
        payload: JSON,
        *,
        envelope_id: str | None = None,
        retry_attempt: int = 0,
        retry_reason: str = "",
    ) -> Envelope:
        """Write one envelope on one open connection and wait (up to ack_timeout) for its ack."""
        if kind not in KINDS:
            raise ValueError(f"envelope type must be one of {sorted(KINDS)}, not {kind!r}")
        conn = self._pick()
        envelope = Envelope(
            envelope_id or str(uuid.uuid4()),
            kind,
            copy.deepcopy(payload),
            _accepts_response_payload(kind, payload),
            retry_attempt,
            retry_reason,
            conn.id if conn else None,
        )
        self.envelopes.append(envelope)
        if conn is None:
            await self._notify()
            return envelope
        pending = _Pending(envelope.envelope_id)
        self._pending.append(pending)
        try:
            await conn.ws.send_json(envelope.frame())
            async with asyncio.timeout(self.ack_timeout):
                envelope.ack = await pending.future
        except (TimeoutError, ConnectionError):
            pass  # not acked: the caller decides (retry an event, fail an interaction)
        finally:
            self._pending.remove(pending)
        await self._notify()
        return envelope

    def _pick(self) -> SocketConnection | None:
        """The next connection in turn, preferring ones not told to disconnect."""
        live = [c for c in self.connections if not c.closed and not c.stalled]
        pool = [c for c in live if not c.draining] or live
        if not pool:
            return None
        self._turn += 1
        return pool[self._turn % len(pool)]

    # ---- what tests make Slack do -------------------------------------------------------------

    async def disconnect(
        self, reason: str = "refresh_requested", *, close_after: float = 1.0
    ) -> None:
        """Send `disconnect` on every open connection and close each `close_after` s later."""
        for conn in [c for c in self.connections if not c.closed]:
            conn.draining = True
            await conn.ws.send_json(self._disconnect_frame(reason))
            task = asyncio.create_task(self._close_later(conn, close_after))
            self._closers.add(task)
            task.add_done_callback(self._closers.discard)

    def stall(self) -> None:
        """Let every open link die quietly: no close, no disconnect, nothing gets through."""
        for conn in self.connections:
            conn.stalled = True

    async def drop(self) -> None:
        """Close every connection at once, without a `disconnect` first."""
        for conn in list(self.connections):
            await conn.ws.close()

    async def close(self) -> None:
        """Close every connection and forget pending acks (the server is stopping)."""
        for task in list(self._closers):
            task.cancel()
        await asyncio.gather(*self._closers, return_exceptions=True)
        for pending in self._pending:
            if not pending.future.done():
                pending.future.cancel()
        await self.drop()

    async def _close_later(self, conn: SocketConnection, delay: float) -> None:
        await asyncio.sleep(delay)
        await conn.ws.close()

    @staticmethod
    def _disconnect_frame(reason: str) -> JSON:
        return {"type": "disconnect", "reason": reason, "debug_info": {"host": HOST}}


def _accepts_response_payload(kind: str, payload: JSON) -> bool:
    """Whether Slack reads a payload in the ack (commands, modal submissions, options)."""
    if kind == "slash_commands":
        return True
    return kind == "interactive" and payload.get("type") in ("view_submission", "block_suggestion")


def _response(ack: JSON) -> BotResponse:
    """The ack as the reply an HTTP request URL would have given (Bolt wraps text as {text})."""
    payload = ack.get("payload")
    if not payload:
        return BotResponse(200, "", "text/plain")
    if isinstance(payload, dict) and set(payload) == {"text"} and isinstance(payload["text"], str):
        return BotResponse(200, payload["text"], "text/plain")
    return BotResponse(200, json.dumps(payload, ensure_ascii=False), "application/json")
