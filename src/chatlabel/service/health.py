"""The database's health as the conversation layer and the CLI see it: incidents and space.

Data only: the conversation layer words the person's toast and the coordinators' alerts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..config import Storage
from ..storage.health import (
    DiskSpace,
    IncidentCleared,
    IncidentStarted,
    Listener,
    LowSpace,
    SpaceRecovered,
    StorageEvent,
    StorageIncident,
    StorageUnavailable,
    disk_space,
    file_size,
    human_bytes,
)
from ..storage.store import Store

__all__ = [
    "DiskSpace",
    "Health",
    "IncidentCleared",
    "IncidentStarted",
    "Listener",
    "LowSpace",
    "SpaceRecovered",
    "StorageEvent",
    "StorageIncident",
    "StorageStatus",
    "StorageUnavailable",
    "human_bytes",
]

log = logging.getLogger("chatlabel.storage")


@dataclass(frozen=True)
class StorageStatus:
    """The database file, its WAL, the free space beside them and any open incident."""

    database: Path | str  # the file, or a PostgreSQL URL (without password)
    database_bytes: int
    wal_bytes: int
    space: DiskSpace | None  # None on PostgreSQL: its disk is the server's to watch
    incident: StorageIncident | None


class Health:
    """Incidents and free space of the service's database, for subscribers and `status`."""

    def __init__(self, db: Store, storage: Storage) -> None:
        self.db = db
        self.storage = storage
        self._low = False  # what the last space check found, to announce changes only

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Hear every StorageEvent (incident started/cleared, low space/recovered).

        `listener(event)` runs on the event loop's thread and must not block; if it returns a
        coroutine, that runs as a task of its own. Returns the call that unsubscribes.
        """
        return self.db.incidents.subscribe(listener)

    @property
    def incident(self) -> StorageIncident | None:
        """The open incident, if writes are being refused now."""
        return self.db.incidents.incident

    def space(self) -> DiskSpace:
        """Free space on the database's filesystem, against the configured threshold."""
        path = self.db.path
        if path is None:
            raise OSError("the database is on a PostgreSQL server, not on a local disk")
        return disk_space(path.parent, self.storage.min_free_mb, self.storage.min_free_percent)

    def status(self) -> StorageStatus:
        """Sizes of the database and its WAL, free space, and any open incident."""
        path = self.db.path
        if path is None:
            return StorageStatus(self.db.label, 0, 0, None, self.incident)
        return StorageStatus(
            path,
            file_size(path),
            file_size(path.with_name(path.name + "-wal")),
            self.space(),
            self.incident,
        )

    def check_space(self) -> DiskSpace:
        """Check free space now: log a warning while it is low, tell subscribers of changes."""
        space = self.space()
        if space.low:
            log.warning(
                "low disk space next to the database %s: %s free of %s (warning under %s); "
                "answers cannot be saved once the disk is full",
                self.db.path,
                human_bytes(space.free),
                human_bytes(space.total),
                human_bytes(space.threshold),
            )
        if space.low != self._low:
            if not space.low:
                log.info(
                    "disk space next to %s is fine again: %s free",
                    self.db.path,
                    human_bytes(space.free),
                )
            self._low = space.low
            self.db.incidents.emit(LowSpace(space) if space.low else SpaceRecovered(space))
        return space

    async def watch(self, stop: asyncio.Event) -> None:
        """Check free space now and every `space_check_seconds` until `stop` is set.

        Nothing to watch on PostgreSQL: the server's disk is its operator's (a full one still
        reaches subscribers as a disk_full incident)."""
        while not stop.is_set() and self.db.path is not None:
            try:
                self.check_space()
            except OSError as exc:  # the folder vanished or cannot be read: say so, keep going
                log.warning("cannot read free space next to %s: %s", self.db.path, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.storage.space_check_seconds)
