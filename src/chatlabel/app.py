"""The composition root: the one place storage, service and transports are wired together."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import exporter
from .config import Config, ConfigError
from .conversation import Catalog
from .models import make_model
from .service.labeling import LabelingService
from .service.model_loop import ModelLoop
from .service.quality import BatchRecompute
from .service.reports import Reports
from .storage.lock import RunLock
from .storage.store import Store, open_store

log = logging.getLogger("chatlabel")


class Transport(Protocol):
    """A chat platform adapter: started and stopped with the app."""

    async def start(self) -> None:
        """Connect to the platform and begin handling updates."""

    async def stop(self) -> None:
        """Stop handling updates and close every connection."""


@dataclass
class Runtime:
    """Everything one chatlabel process runs."""

    config: Config
    db: Store
    service: LabelingService
    reports: Reports
    transports: list[Transport] = field(default_factory=list)
    background: list[asyncio.Task[None]] = field(default_factory=list)
    models: ModelLoop | None = None  # the projects' models (their worker processes)
    lock: RunLock | None = None  # this process's claim on the database
    failure: BaseException | None = None  # why a transport gave up, ending the run
    failed: asyncio.Event = field(default_factory=asyncio.Event)

    def fail(self, exc: BaseException) -> None:
        """A transport cannot go on (e.g. another process polls its token): end the run."""
        if self.failure is None:
            self.failure = exc
        self.failed.set()

    async def close(self) -> None:
        """Stop background work and the transports, close the database, release its lock."""
        for task in self.background:
            task.cancel()
        await asyncio.gather(*self.background, return_exceptions=True)
        if self.models is not None:
            await self.models.close()
        for t in reversed(self.transports):
            try:
                await t.stop()
            except Exception:
                log.exception("stopping %s failed", _name(t))
        try:
            await self.db.close()
        finally:
            if self.lock is not None:
                self.lock.release()


def _name(t: Transport) -> str:
    return type(t).__name__.removesuffix("Transport")


def _env(env: Mapping[str, str], var: str) -> str | None:
    value = env.get(var, "").strip()
    return value or None


def tune_gc_for_serving() -> None:
    """Freeze what start-up left alive and collect young garbage less often (once a process)."""
    # A full collection walks every tracked object with the GIL held: ~100,000 of them once
    # the bots' libraries are imported, 55 ms on the reference machine, a stall for every
    # button press in flight. What exists after start-up lives as long as the process, so
    # walking it again finds nothing: freeze it.
    gc.collect()
    gc.freeze()
    # At the default threshold (700 allocations) a bot at 1,000 presses/s ran 26 young and 2
    # middle-aged collections a second (up to 6 ms each) for next to nothing: reference
    # counting frees a press's objects (a full collection after 2,000 presses found ~600
    # objects). 50,000 leaves one collection every few seconds or less.
    gc.set_threshold(50_000, *gc.get_threshold()[1:])


async def open_service(
    config: Config, *, clock: Callable[[], float] | None = None
) -> tuple[Store, LabelingService]:
    """Open the database and start the service (for the CLI commands that need no platform)."""
    db = await open_store(config)
    try:
        kw: dict[str, Any] = {} if clock is None else {"clock": clock}
        service = LabelingService(db, config, **kw)
        await service.start()
    except BaseException:
        await db.close()
        raise
    return db, service


async def build(
    config: Config,
    env: Mapping[str, str],
    *,
    clock: Callable[[], float] | None = None,
    paced: bool = True,
) -> Runtime:
    """Open storage and the service, and create a transport per configured platform.

    A SQLite file's lock is taken first: a second `chatlabel run` on it stops here
    (DatabaseInUse names the holder) before it touches anything. A PostgreSQL database takes
    any number of processes (docs/scaling.md), so there is no lock to take.

    `paced=False`: the bots call their platforms without waiting for a turn (for emulators
    that enforce no rate limits).
    """
    lock = None if config.storage.is_postgres else RunLock(config.database_path()).acquire()
    try:
        db, service = await open_service(config, clock=clock)
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    rt = Runtime(config, db, service, Reports(service), lock=lock)
    models = {p.name: m for p in config.project if (m := make_model(p, env)) is not None}
    if service.model_projects():
        # Even without a model of our own (imported suggestions) the record is watched.
        rt.models = ModelLoop(service, models)

    async def export_results(project: str) -> tuple[str, bytes]:
        return await exporter.results_file(service, project)

    catalog = Catalog()  # every sentence people read, loaded once for every platform

    try:
        if config.telegram is not None:
            token = _env(env, config.telegram.token_env)
            if token is None:
                log.warning(
                    "[telegram] is configured but %s is not set: Telegram is off",
                    config.telegram.token_env,
                )
            else:
                from .transports.telegram import TelegramTransport

                telegram = TelegramTransport(
                    service,
                    rt.reports,
                    config.telegram,
                    token,
                    media_cache=config.media_cache_path(),
                    export_results=export_results,
                    catalog=catalog,
                    on_fatal=rt.fail,
                )
                if not paced:
                    telegram.max_rate, telegram.chat_limit = 0.0, None  # read at start()
                rt.transports.append(telegram)
        if config.slack is not None:
            s = config.slack
            bot, signing = _env(env, s.bot_token_env), _env(env, s.signing_secret_env)
            if bot is None or signing is None:
                log.warning(
                    "[slack] is configured but %s or %s is not set: Slack is off",
                    s.bot_token_env,
                    s.signing_secret_env,
                )
            else:
                from .transports.slack import SlackTransport

                rt.transports.append(
                    SlackTransport(
                        service,
                        rt.reports,
                        s,
                        bot,
                        signing,
                        app_token=_env(env, s.app_token_env),
                        media_cache=config.media_cache_path(),
                        export_results=export_results,
                        catalog=catalog,
                        limits=None if paced else {},
                    )
                )
        if config.web is not None:
            from .transports.web import WebTransport

            # Without a secret in the environment, one is generated and kept beside the
            # database, so sessions survive restarts.
            rt.transports.append(
                WebTransport(
                    service,
                    rt.reports,
                    config.web,
                    secret=_env(env, config.web.secret_env),
                    secret_path=config.web_secret_path(),
                    media_cache=config.media_cache_path(),
                    export_results=export_results,
                    catalog=catalog,
                )
            )
    except BaseException:
        await rt.close()
        raise
    return rt


async def serve(rt: Runtime, stop: asyncio.Event) -> None:
    """Start every transport, run until `stop` is set, then shut down cleanly."""
    try:
        if not rt.transports:
            raise ConfigError(
                f"{rt.config.path}: no platform to run: configure [telegram], [slack] or [web] "
                "(and set the bots' token variables)"
            )
        for t in rt.transports:
            await t.start()
            log.info("%s started", _name(t))
        tune_gc_for_serving()
        # Free space beside the database: a warning now and every minute while it is low.
        rt.background.append(asyncio.create_task(rt.service.health.watch(stop)))
        if rt.models is not None:
            # Models train in their worker and write in small transactions: presses go first.
            rt.background.append(asyncio.create_task(rt.models.run(stop)))
        if rt.service.schedules():
            # Reminders and digests: queued into the outbox when due; each platform sends its own.
            rt.background.append(asyncio.create_task(rt.service.run_schedule(stop)))
        batch = BatchRecompute(rt.service)
        if batch.projects():
            # Dawid-Skene is a batch method: recompute after bursts of answers, never per press.
            rt.background.append(asyncio.create_task(batch.run(stop)))
        log.info(
            "chatlabel running: %s (database %s)",
            ", ".join(_name(t) for t in rt.transports),
            rt.db.label,
        )
        waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(rt.failed.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        if rt.failure is not None:
            raise rt.failure
        log.info("stopping")
    finally:
        await rt.close()
        log.info("stopped cleanly")
