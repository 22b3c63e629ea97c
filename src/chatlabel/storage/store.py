"""The storage interface the service uses, and the one place that picks its implementation.

Two implementations: storage.db.Database (one SQLite file, one writer, group commit) and
storage.pg.PgDatabase (PostgreSQL, several processes). The service, the conversation and the
adapters see only this interface: transaction functions `fn(conn, *args)` run by `write` and
`read`, streamed exports, incidents, and the few calls several processes need.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from .health import IncidentTracker

if TYPE_CHECKING:
    from ..config import Config

T = TypeVar("T")


class Store(Protocol):
    """What the service needs from a database, whichever it is."""

    dialect: str  # "sqlite" | "postgresql"
    label: str  # how logs and messages name it (a file, or a URL without password)
    incidents: IncidentTracker

    @property
    def path(self) -> Path | None:
        """The SQLite file (None on PostgreSQL: no file, no WAL, no free-space watch)."""

    async def open(self) -> Store:
        """Connect and migrate the schema."""

    async def close(self) -> None:
        """Close every connection."""

    async def write(
        self, fn: Callable[..., T], *args: Any, short: bool = False, background: bool = False
    ) -> T:
        """Run fn(conn, *args) in one transaction; its result once committed (a `background`
        write gives way to the others)."""

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run fn(conn, *args) for reading."""

    def stream_batches(
        self,
        sql: str,
        params: tuple[Any, ...] | dict[str, Any] = (),
        batch: int = 2000,
        *,
        named: bool = False,
    ) -> AsyncIterator[list[Any]]:
        """A query's rows in lists, from a connection of its own."""

    def announce(self) -> None:
        """Tell other processes on this database that work may have appeared."""

    def after_commit(self, fn: Callable[[], None]) -> None:
        """Call fn once the transaction running on this thread commits (at once outside one;
        never if it rolls back)."""

    def on_change(self, callback: Callable[[], None]) -> None:
        """Call `callback` on the event loop when another process announces work."""

    def exclusive(self, name: str) -> contextlib.AbstractAsyncContextManager[bool]:
        """Hold the named lock across processes for a block; yields False if another has it."""


def make_store(config: Config) -> Store:
    """The Store the config names (not opened yet)."""
    if config.storage.is_postgres:
        try:
            from .pg import PgDatabase
        except ImportError as exc:
            from ..config import ConfigError

            raise ConfigError(
                f"{config.path}: storage.url: PostgreSQL needs the driver, which is not "
                f"installed ({exc.name} is missing): pip install 'chatlabel[postgres]'"
            ) from None
        return PgDatabase(
            config.storage.url,
            password=config.storage_password(),
            pool_size=config.storage.pool_size,
        )
    from .db import Database

    return Database(config.database_path())


async def open_store(config: Config) -> Store:
    """The Store the config names, opened and migrated."""
    return await make_store(config).open()
