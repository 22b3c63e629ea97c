"""python-telegram-bot's HTTP layer over aiohttp: the bot's requests at a third of the CPU.

PTB talks HTTP through a `BaseRequest`; its default, `HTTPXRequest`, cost about 1.6 ms of CPU
per Bot API call on the benchmark machine (bench/telegram.py), most of it in httpcore's
connection pool, which capped the bot near 140 answers/s on one core. This one does the same
job through aiohttp (already a chatlabel dependency) and lifts that past 400/s. Its constructor
takes HTTPXRequest's timeout arguments; write and pool timeouts are not separate in aiohttp and
fall under the read timeout.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from telegram._utils.defaultvalue import DefaultValue
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData


class AiohttpRequest(BaseRequest):
    """PTB's request interface over one aiohttp ClientSession."""

    def __init__(
        self,
        connection_pool_size: int = 256,
        read_timeout: float | None = 5.0,
        write_timeout: float | None = 5.0,
        connect_timeout: float | None = 5.0,
        pool_timeout: float | None = 1.0,
        **_: Any,
    ) -> None:
        self._pool = connection_pool_size
        self._read = read_timeout
        self._connect = connect_timeout
        self._session: aiohttp.ClientSession | None = None

    @property
    def read_timeout(self) -> float | None:
        """The default read timeout (PTB adds the long-poll time to it for getUpdates)."""
        return self._read

    async def initialize(self) -> None:
        """Open the session (no proxies from the environment: loopback stays loopback)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._pool), trust_env=False
            )

    async def shutdown(self) -> None:
        """Close the session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: Any = BaseRequest.DEFAULT_NONE,
        write_timeout: Any = BaseRequest.DEFAULT_NONE,
        connect_timeout: Any = BaseRequest.DEFAULT_NONE,
        pool_timeout: Any = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        """One HTTP request; timeouts and transport errors become PTB's TimedOut/NetworkError."""
        if self._session is None:
            raise RuntimeError("This AiohttpRequest is not initialized!")
        read = self._read if isinstance(read_timeout, DefaultValue) else read_timeout
        connect = self._connect if isinstance(connect_timeout, DefaultValue) else connect_timeout
        data: Any = None
        if request_data is not None:
            files = request_data.multipart_data
            if files:
                form = aiohttp.FormData()
                for name, value in request_data.json_parameters.items():
                    form.add_field(name, value)
                for name, part in files.items():
                    filename, content, mime = part
                    form.add_field(name, content, filename=filename, content_type=mime)
                data = form
            else:
                data = request_data.json_parameters
        timeout = aiohttp.ClientTimeout(sock_read=read, sock_connect=connect)
        try:
            async with self._session.request(method, url, data=data, timeout=timeout) as r:
                return r.status, await r.read()
        except TimeoutError as exc:
            raise TimedOut from exc
        except aiohttp.ClientError as exc:
            raise NetworkError(f"aiohttp.{type(exc).__name__}: {exc}") from exc
