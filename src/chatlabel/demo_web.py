"""`chatlabel demo --web`: label in your browser beside the simulated crowd.

The same sample project and the same emulated Telegram crowd as `chatlabel demo`, slowed to
a person's pace, plus the web chat on 127.0.0.1: the link is printed (and opened where a
browser can be), progress and the annotators table are printed as they change, and it all
keeps running until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import sys
import time
import webbrowser
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .app import Runtime, build
from .config import Web
from .demo import (
    FIRST_ANNOTATOR_ID,
    Crowd,
    DemoResult,
    folder,
    personas,
    print_results,
    results,
    stage_for,
    truth_by_text,
)
from .importer import import_file
from .service.types import AnnotatorRow
from .transports.web import WebTransport

# Seconds a simulated annotator takes per item: slow enough to label beside them.
PACE = (2.0, 6.0)
REFRESH = 2.0  # at most one progress line every this many seconds
TABLE_EVERY = 15.0  # the annotators table again after this long, if anything changed


def free_port(host: str, wanted: int) -> int:
    """`wanted` if nothing listens on it yet, else 0 (the system picks a free port)."""
    if wanted == 0:
        return 0
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, wanted))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return 0
            raise
    return wanted


def open_in_browser(url: str) -> bool:
    """Open `url` in the desktop's browser where there is one; never fails."""
    has_display = sys.platform in ("darwin", "win32") or bool(
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    )
    if not has_display:
        return False  # a terminal browser (lynx) would take over this very terminal
    try:
        return bool(webbrowser.open(url, new=2))
    except Exception:
        return False


async def run_web_demo(
    *,
    annotators: int = 6,
    items: int = 40,
    keep: Path | None = None,
    seed: int = 7,
    port: int = 8080,
    stop: asyncio.Event | None = None,
    open_browser: bool = True,
    pace: tuple[float, float] = PACE,
    console: Console | None = None,
) -> DemoResult:
    """Run the crowd and the web chat on one project until `stop`; print the results."""
    console = console or Console()
    stop = stop or asyncio.Event()
    people = personas(annotators)
    started = time.monotonic()
    async with folder(keep) as directory, stage_for("telegram", directory, items, seed) as stage:
        web = Web(port=free_port("127.0.0.1", port))
        stage.config = stage.config.model_copy(update={"web": web})
        rt = await build(stage.config, stage.env)
        try:
            name = stage.config.project[0].name
            title = stage.config.project[0].title
            summary = await import_file(rt.service, name, directory / "items.jsonl")
            for transport in rt.transports:
                await transport.start()
            (chat,) = (t for t in rt.transports if isinstance(t, WebTransport))
            console.print(
                f"[bold]chatlabel demo[/]: {summary.items} items ({summary.gold} gold) in "
                f"[cyan]{escape(title)}[/], {len(people)} simulated annotators on {stage.where}"
            )
            console.print(
                f"\n  Label beside them in your browser: [bold underline]{chat.url}[/]\n"
                "  (keys on a desktop: 1-9 choose, s skip, u undo; Ctrl-C stops the demo)\n",
                soft_wrap=True,
            )
            if open_browser:
                await asyncio.to_thread(open_in_browser, chat.url)
            screens = [stage.screen(FIRST_ANNOTATOR_ID + i, p.name) for i, p in enumerate(people)]
            crowd = Crowd(screens, people, truth_by_text(directory), seed, pace=pace)
            await _watch(rt, name, crowd, console, stop)
            result = await results(rt, name, crowd, directory, started, False, keep, [])
        finally:
            await rt.close()
    print_results(console, result, title)
    return result


async def _watch(
    rt: Runtime, name: str, crowd: Crowd, console: Console, stop: asyncio.Event
) -> None:
    """Let the crowd work; print progress and the table as they change, until `stop`."""
    workers = [asyncio.create_task(crowd.work(i)) for i in range(len(crowd.screens))]
    names = {s.key: p.name for s, p in zip(crowd.screens, crowd.people, strict=True)}
    line: tuple[int, ...] = ()
    people: tuple[tuple[str, str], ...] = ()
    line_at = table_at = 0.0
    shown: tuple[int, ...] = ()
    settled_said = False
    try:
        while not stop.is_set():
            p = await rt.reports.progress(name)
            rows = await rt.reports.annotators(name, limit=50)
            now, settled = time.monotonic(), p.resolved + p.escalated
            figures = (settled, p.answers)
            if figures != line and now - line_at >= REFRESH:
                line, line_at = figures, now
                console.print(
                    f"[dim]{time.strftime('%H:%M:%S')}[/] {settled} of {p.items} items settled, "
                    f"{p.answers} answers"
                )
            # The table when someone joins or changes status, else now and then as it fills.
            who = tuple((r.key, r.status) for r in rows)
            if rows and (who != people or now - table_at >= TABLE_EVERY and figures != shown):
                people, table_at, shown = who, now, figures
                console.print(_table(rows, names))
            if p.items and p.pending == 0 and not settled_said:
                settled_said = True
                console.print(
                    "[green]Every item is settled.[/] The chat stays open for /stats and the "
                    "rest; press Ctrl-C to see the results and quit."
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)
    finally:
        crowd.stop.set()
        for w in workers:
            w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)


def _table(rows: list[AnnotatorRow], names: dict[str, str]) -> Table:
    """The annotators as they stand, you included."""
    table = Table(title="Annotators", title_justify="left")
    for col in ("annotator", "answers", "gold accuracy", "status"):
        table.add_column(col)
    for r in rows:
        who = names.get(r.key)
        if who is None:
            who = f"[bold]you[/] ({escape(r.key)})" if r.key.startswith("web:") else escape(r.key)
        gold = "n/a" if r.gold_accuracy is None else f"{r.gold_accuracy:.0%} of {r.gold_answers}"
        status = "[green]active[/]" if r.status == "active" else f"[red]{r.status}[/]"
        table.add_row(who, str(r.answers), gold, status)
    return table
