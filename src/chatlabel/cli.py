"""The chatlabel command line: init, import, status, export, report, backup, invite, run, demo."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import sqlite3
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import __version__
from .config import Config, ConfigError, load_config

T = TypeVar("T")
console = Console(stderr=True)


def _run(coro: Awaitable[T]) -> T:
    """Run a coroutine; turn the errors users can fix into a clean message and exit 1."""
    from .importer import ImportError_
    from .service.health import StorageUnavailable
    from .storage.lock import DatabaseInUse
    from .storage.schema import UnusableDatabase

    try:
        return asyncio.run(coro)  # type: ignore[arg-type]
    except (
        ConfigError,
        ImportError_,
        StorageUnavailable,
        UnusableDatabase,
        DatabaseInUse,
    ) as exc:
        raise click.ClickException(str(exc)) from None


def _config(path: str) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _project(cfg: Config, name: str | None) -> str:
    try:
        return cfg.get_project(name).name
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


async def _with_service(cfg: Config, fn: Callable[..., Awaitable[T]]) -> T:
    from .app import open_service

    db, service = await open_service(cfg)
    try:
        return await fn(service)
    finally:
        await db.close()


@click.group()
@click.version_option(__version__, prog_name="chatlabel")
def main() -> None:
    """Label data in chat: Telegram and Slack bots backed by one SQLite file."""


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--items", default=40, show_default=True, help="Sample items to write.")
def init(directory: Path, items: int) -> None:
    """Write a starter config and sample data into DIRECTORY."""
    from .sample import write_sample

    if (directory / "chatlabel.toml").exists():
        raise click.ClickException(f"{directory / 'chatlabel.toml'} exists; not overwriting it")
    config = write_sample(directory, items)
    click.echo(
        f"Wrote {config} and {directory / 'items.jsonl'}.\nNext:\n"
        f"  chatlabel import {config} {directory / 'items.jsonl'}\n"
        f"  chatlabel status {config}"
    )


@main.command(name="import")
@click.argument("config", type=click.Path(dir_okay=False))
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--project", "-p", help="Project to import into (needed with several).")
@click.option(
    "--media-root",
    "media_roots",
    multiple=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Also allow media files under DIR (default: only under the data file's folder).",
)
def import_(config: str, data: Path, project: str | None, media_roots: tuple[Path, ...]) -> None:
    """Import items from a JSONL or CSV file, or a folder of images (all rows or none)."""
    from .importer import import_file

    cfg = _config(config)
    name = _project(cfg, project)

    async def go(service: Any) -> Any:
        with Progress(
            TextColumn("importing"),
            BarColumn(),
            TextColumn("{task.completed} rows"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as bar:
            task = bar.add_task("import", total=None)
            return await import_file(
                service,
                name,
                data,
                progress=lambda n: bar.update(task, completed=n),
                media_roots=media_roots,
            )

    s = _run(_with_service(cfg, go))
    click.echo(
        f"Imported {s.items} items into {name} ({s.gold} gold); "
        f"skipped {s.duplicates} already there."
    )


@main.command()
@click.argument("config", type=click.Path(dir_okay=False))
def status(config: str) -> None:
    """Show each project's progress, then the database's size and the free space beside it."""
    from .core.gold import accuracy
    from .service.reports import Reports

    cfg = _config(config)

    async def go(service: Any) -> tuple[list[Any], Any]:
        reports = Reports(service)
        out = []
        for p in cfg.project:
            prog = await reports.progress(p.name)
            # People's gold record only: the model has its own line below.
            people = [
                a for a in await reports.annotators(p.name, limit=1_000_000) if a.role != "model"
            ]
            gold = sum(a.gold_answers for a in people)
            right = sum(round((a.gold_accuracy or 0) * a.gold_answers) for a in people)
            out.append((prog, accuracy(right, gold).raw, await service.model_state(p.name)))
        return out, service.health.status()

    table = Table(title=f"chatlabel — {cfg.path.name}")
    for col in (
        "project",
        "items",
        "resolved",
        "escalated",
        "open",
        "answers",
        "gold acc.",
        "annotators",
        "suspended",
    ):
        table.add_column(col, justify="left" if col == "project" else "right")
    rows, storage = _run(_with_service(cfg, go))
    for prog, gold_acc, _ in rows:
        table.add_row(
            prog.title + (" (paused)" if prog.paused else ""),
            str(prog.items),
            str(prog.resolved),
            str(prog.escalated),
            str(prog.pending),
            str(prog.answers),
            "n/a" if gold_acc is None else f"{gold_acc:.0%}",
            f"{prog.annotators_active} active / {prog.annotators_total}",
            str(prog.suspended),
        )
    # Piped output gets a fixed, wide table instead of rich's 80-column default.
    out = Console(width=None if sys.stdout.isatty() else 120)
    out.print(table)
    for prog, _, model in rows:
        if model is not None:
            out.print(_model_line(prog.title, model), highlight=False, soft_wrap=True)
    out.print(_storage_line(storage), highlight=False, soft_wrap=True)


def _model_line(title: str, m: Any) -> str:
    """A project's model for `status`: routing on or off (and why), what it did, its record."""
    from rich.markup import escape

    routing = "routing on" if m.routing else "[bold red]routing OFF[/]"
    if not m.routing and m.reason is not None and m.reason.code == "model_accuracy":
        p = m.reason.params
        routing += (
            f" (right on {float(p['accuracy']):.0%} of {p['n']}, below {float(p['min']):.0%})"
        )
    record = f"right on {m.right} of {m.scored} gold items and audits" if m.scored else "unscored"
    return (
        f"{escape(title)}: model {escape(m.version or m.kind)}, {routing}; {m.suggested} "
        f"suggested, {m.verified} settled by one yes, {m.rejected} sent on by a no; {record}"
    )


def _storage_line(st: Any) -> str:
    """The database's size, its WAL's and the free space beside them, for `status`."""
    from rich.markup import escape

    from .service.health import human_bytes

    space = st.space
    if space is None:
        return f"database {escape(str(st.database))} (PostgreSQL)"
    line = (
        f"database {escape(str(st.database))}: {human_bytes(st.database_bytes)}, "
        f"WAL {human_bytes(st.wal_bytes)}; {human_bytes(space.free)} free of "
        f"{human_bytes(space.total)}"
    )
    if space.low:
        line += f" [bold red]LOW (under {human_bytes(space.threshold)})[/]"
    return line


@main.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--project", "-p", help="Project to export (needed with several).")
@click.option(
    "--what",
    type=click.Choice(["results", "answers", "annotators", "reports"]),
    default="results",
    show_default=True,
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "csv", "label-studio"]),
    default="jsonl",
    show_default=True,
    help="label-studio: the results as Label Studio's task JSON (tasks, predictions, results).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File to write (default: standard output).",
)
def export(config: str, project: str | None, what: str, fmt: str, output: Path | None) -> None:
    """Export results, answers, annotators or reports on items, streamed."""
    from . import exporter

    cfg = _config(config)
    name = _project(cfg, project)
    if fmt == "label-studio" and what != "results":
        raise click.BadParameter(
            "Label Studio's format holds tasks and their results: use --what results",
            param_hint="'--format'",
        )

    async def go(service: Any) -> int:
        if output is None:
            return await exporter.write(service, name, what, fmt, sys.stdout)  # type: ignore[arg-type]
        tmp = output.with_name(output.name + ".part")
        with tmp.open("w", encoding="utf-8", newline="") as f:
            n = await exporter.write(service, name, what, fmt, f)  # type: ignore[arg-type]
        tmp.replace(output)  # never leave a half-written export under the real name
        return n

    n = _run(_with_service(cfg, go))
    if output is not None:
        click.echo(f"Wrote {n} rows to {output}", err=True)


@main.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--project", "-p", help="Project to report on (needed with several).")
@click.option(
    "-o",
    "--output",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for report.html and its PNG figures (default: report-PROJECT).",
)
@click.option(
    "--language",
    help="Language of the report, e.g. es (default: the project's language, else English).",
)
def report(config: str, project: str | None, out_dir: Path | None, language: str | None) -> None:
    """Write an HTML report with charts (figures also as PNG files) for coordinators."""
    from .conversation import Catalog
    from .report import write_report

    if language is not None:
        catalog = Catalog()
        # "es", or a regional tag of a shipped language ("pt-BR"); nothing falls back silently.
        tag = language.strip().replace("_", "-").lower()
        chosen = catalog.best(tag) if re.fullmatch(r"[a-z]{2,3}(-[a-z0-9]{2,8})*", tag) else None
        if chosen is None:
            raise click.BadParameter(
                f"{language!r} is not a shipped language; choose one of "
                f"{', '.join(catalog.languages)}.",
                param_hint="'--language'",
            )
        language = chosen

    cfg = _config(config)
    name = _project(cfg, project)
    folder = out_dir or Path(f"report-{name}")

    async def go(service: Any) -> Any:
        return await write_report(service, name, folder, language)

    written = _run(_with_service(cfg, go))
    click.echo(f"Wrote {written.html} and {len(written.figures)} PNG figures in {folder}")


@main.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The copy to write (replaced if it exists).",
)
def backup(config: str, output: Path) -> None:
    """Copy the database safely while chatlabel run keeps serving (SQLite's online backup)."""
    from .storage.backup import BackupError
    from .storage.backup import backup as copy_database
    from .storage.schema import UnusableDatabase

    cfg = _config(config)
    if cfg.storage.is_postgres:
        raise click.ClickException(
            f"{cfg.path}: backup copies a SQLite file; for PostgreSQL use pg_dump, or "
            "chatlabel migrate-db CONFIG --to sqlite:///COPY.db"
        )
    try:
        s = copy_database(cfg.database_path(), output)
    except (BackupError, UnusableDatabase) as exc:
        raise click.ClickException(str(exc)) from None
    except sqlite3.Error as exc:
        raise click.ClickException(f"{cfg.database_path()}: backup failed: {exc}") from None
    counts = ", ".join(f"{n:,} {table}" for table, n in s.counts.items())
    click.echo(
        f"Backed up {s.source} to {s.target}: {s.bytes / 2**20:.1f} MiB ({s.pages:,} pages, "
        f"schema version {s.schema_version}) in {s.seconds:.2f} s; integrity check ok.\n"
        f"It holds {counts or 'no tables yet'}."
    )


@main.command(name="migrate-db")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option(
    "--to",
    "target",
    required=True,
    help="Where to copy the database: postgresql://USER@HOST:PORT/DB or sqlite:///FILE "
    "(must be empty).",
)
@click.option(
    "--to-password-env",
    default="",
    help="Variable holding the target's PostgreSQL password (default: the config's).",
)
def migrate_db(config: str, target: str, to_password_env: str) -> None:
    """Copy the database to an empty SQLite file or PostgreSQL database, and verify the copy.

    Stop `chatlabel run` first: answers given during the copy would not be in it. Then point
    [storage] url at the target.
    """
    from pydantic import ValidationError

    from .config import Storage, secret
    from .storage.schema import UnusableDatabase
    from .storage.transfer import TransferError, transfer

    cfg = _config(config)
    try:
        target = Storage(url=target).url
    except ValidationError as exc:
        why = exc.errors()[0]["msg"].removeprefix("Value error, ")
        raise click.ClickException(f"--to: {why}") from None
    if target.startswith("sqlite:///"):
        rest = target[len("sqlite:///") :]
        target = f"sqlite:///{cfg._resolve(Path(rest)) if not rest.startswith('/') else rest}"
    source = cfg.storage_url()
    if target == source:
        raise click.ClickException(f"--to: {target} is the database the config already uses")
    password = cfg.storage_password()
    to_password = secret(to_password_env) if to_password_env else password

    def progress(table: str, n: int) -> None:
        if n % 100_000 < 5000:
            console.print(f"  {table}: {n:,} rows", highlight=False)

    try:
        report = transfer(
            source, target, password=password, target_password=to_password, progress=progress
        )
    except (TransferError, UnusableDatabase) as exc:
        raise click.ClickException(str(exc)) from None
    except Exception as exc:  # the driver's own words: unreachable server, refused login
        raise click.ClickException(f"copying to {target} failed: {exc}") from None
    for name, t in report.tables.items():
        click.echo(f"{name:>12}: {t.rows:,} rows, digest {t.source_digest[:16]} = copy's")
    click.echo(
        f"Copied {report.source} to {report.target} (schema version {report.version}) in "
        f"{report.seconds:.1f} s; every table's count and digest match. Point [storage] url "
        "at the copy to use it."
    )


@main.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option(
    "--project", "-p", help="Project the invitation is for (checked; needed with several)."
)
@click.option(
    "--bot", "bot", help="The Telegram bot's username (default: [telegram] bot_username)."
)
def invite(config: str, project: str | None, bot: str | None) -> None:
    """Print a fresh, strong invite code and its Telegram link (the config is not changed)."""
    import secrets

    cfg = _config(config)
    name = _project(cfg, project)
    # 128 random bits in Telegram's deep-link alphabet (A-Z a-z 0-9 _ -), 22 characters.
    code = secrets.token_urlsafe(16)
    username = (bot or (cfg.telegram.bot_username if cfg.telegram else "")).lstrip("@")
    click.echo(f"Invite code: {code}")
    if username:
        click.echo(f"Telegram link: https://t.me/{username}?start={code}")
    else:
        click.echo(
            "Telegram link: give the bot's username with --bot NAME or [telegram] bot_username"
        )
    if cfg.slack is not None:
        click.echo(f"Slack: {cfg.slack.command} {code}")
    if cfg.web is not None:
        w = cfg.web
        host = "THIS-MACHINE" if w.host in ("", "0.0.0.0", "::") else w.host
        base = w.base_url.rstrip("/") or f"http://{host}:{w.port}"
        click.echo(f"Web link: {base}/join/{code}")
    click.echo(
        f"\nTo use it, add it to {cfg.path} under [access], next to any codes already there,\n"
        "and restart chatlabel run (codes are read at start):\n\n"
        f'  [access]\n  mode = "invite"\n  invite_codes = ["{code}"]'
    )
    if len(cfg.project) > 1:
        click.echo(
            f"\nA code admits to every project; with {len(cfg.project)} projects the person "
            f"then chooses {name} from the list."
        )
    if cfg.access.mode != "invite":
        click.echo(f'\nNote: access.mode is "{cfg.access.mode}"; codes matter only in "invite".')


@main.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("-v", "--verbose", is_flag=True, help="Log debug details.")
def run(config: str, verbose: bool) -> None:
    """Run the bots configured in CONFIG until Ctrl-C or SIGTERM."""
    from .app import build, serve

    cfg = _config(config)
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # httpx logs request URLs, and Telegram's URLs contain the bot token.
    logging.getLogger("httpx").setLevel(logging.WARNING)

    async def go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        rt = await build(cfg, os.environ)
        await serve(rt, stop)

    _run(go())


@main.command()
@click.option("--annotators", default=6, show_default=True, help="Simulated annotators.")
@click.option("--items", default=40, show_default=True, help="Sample items.")
@click.option(
    "--keep",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep the database and exports in this folder.",
)
@click.option("--seed", default=7, show_default=True, help="Random seed.")
@click.option(
    "--platform",
    type=click.Choice(["telegram", "slack"]),
    default="telegram",
    show_default=True,
    help="Which bot to run against its emulated platform.",
)
@click.option(
    "--web",
    is_flag=True,
    help="Also serve the web chat: label in your browser beside the crowd, until Ctrl-C.",
)
@click.option(
    "--port",
    default=8080,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="With --web: the page's port on 127.0.0.1 (a free one if taken).",
)
def demo(
    annotators: int, items: int, keep: Path | None, seed: int, platform: str, web: bool, port: int
) -> None:
    """Run everything locally: the real bot, an emulated Telegram or Slack, simulated people."""
    from .demo import run_demo

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if not web:
        _run(
            run_demo(
                annotators=annotators,
                items=items,
                keep=keep,
                seed=seed,
                platform=platform,
                console=Console(),
            )
        )
        return
    if platform != "telegram":
        raise click.UsageError("--web runs beside the emulated Telegram crowd: drop --platform")
    from .demo_web import run_web_demo

    async def go() -> None:
        # Ctrl-C ends the demo the normal way: results printed, everything closed, exit 0.
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await run_web_demo(
            annotators=annotators,
            items=items,
            keep=keep,
            seed=seed,
            port=port,
            stop=stop,
            console=Console(),
        )

    _run(go())
