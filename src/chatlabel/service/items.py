"""Items in and out in bulk: imports in one transaction, exports streamed in batches."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..core.model import ITEM_FIELDS, Rules
from ..storage import repo
from ..storage.exports import ExportFormat, ExportWhat, export_sql, tasks_sql

__all__ = ["ExportFormat", "ExportWhat", "ImportSummary", "Items"]
from .shared import Shared
from .suggestions import Suggestions

_GOLD, _SEQ, _EXT_ID = (ITEM_FIELDS.index(f) for f in ("gold", "seq", "ext_id"))


@dataclass(frozen=True)
class ItemTarget:
    """Where new items go: the project, its rules, and the sequence numbers they start after."""

    project_id: int
    rules: Rules
    overlap: int
    seq0: int  # a row's seq is seq0 + its line number: file order, unique
    now: float


@dataclass(frozen=True)
class ItemBatch:
    """Validated item rows (ITEM_FIELDS order), and the error that ends the input there, if any."""

    rows: list[tuple[Any, ...]]
    failure: Exception | None = None


@dataclass
class ImportSummary:
    """What an import did."""

    items: int = 0
    gold: int = 0
    duplicates: int = 0
    rows: int = 0


class DuplicateItem(ValueError):
    """An id that appears twice in the same input (line: its row's place in the input)."""

    def __init__(self, line: int, ext_id: str) -> None:
        super().__init__(f"duplicate id {ext_id!r} at line {line}")
        self.line, self.ext_id = line, ext_id


Produce = Callable[[ItemTarget], Iterable[ItemBatch]]


class Items:
    """Bulk use cases on items."""

    def __init__(self, shared: Shared, suggestions: Suggestions) -> None:
        self.s = shared
        self.suggestions = suggestions

    async def add(
        self, project: str, produce: Produce, progress: Callable[[int], None] | None = None
    ) -> ImportSummary:
        """Add what `produce` yields, all in one transaction: every row, or none."""
        pid, overlap, now = self.s.pids[project], self.s.projects[project].overlap, self.s.clock()
        rules = self.s.rules[project]

        def tx(conn: sqlite3.Connection) -> ImportSummary:
            summary = ImportSummary()
            target = ItemTarget(pid, rules, overlap, repo.max_seq(conn), now)
            for batch in produce(target):
                rows = batch.rows
                summary.rows += len(rows)
                inserted = repo.insert_items(conn, rows)
                if inserted == len(rows):
                    summary.items += inserted
                    summary.gold += sum(r[_GOLD] is not None for r in rows)
                else:
                    _sort_out_duplicates(conn, target, rows, summary)
                if batch.failure is not None:
                    raise batch.failure
                if progress is not None:
                    progress(summary.rows)
            # Imported suggestions with a score route their items (one check when confident).
            self.suggestions.route_imported(conn, project, target.seq0)
            return summary

        summary = await self.s.db.write(tx)
        if summary.items:
            self.s.notify()  # people waiting for work get it
        return summary

    async def export_batches(
        self, project: str, what: ExportWhat, fmt: ExportFormat
    ) -> AsyncIterator[list[Any]]:
        """An export's rows in batches: one JSON text per row (jsonl) or a tuple of CSV cells."""
        rules = self.s.rules[project]
        sql = export_sql(what, fmt, rules.kind, self.s.db.dialect)
        params = {"p": self.s.pids[project], "method": rules.method}
        async for batch in self.s.db.stream_batches(sql, params):
            yield batch

    async def task_batches(self, project: str) -> AsyncIterator[list[Any]]:
        """Every item with its suggestion and verdict, in batches (Label Studio's tasks)."""
        sql = tasks_sql(self.s.db.dialect)
        async for batch in self.s.db.stream_batches(sql, {"p": self.s.pids[project]}):
            yield batch


def _sort_out_duplicates(
    conn: sqlite3.Connection, target: ItemTarget, rows: list[tuple[Any, ...]], s: ImportSummary
) -> None:
    """Count a batch row by row once some of it was already there (rare: re-imports)."""
    for r in rows:
        seq = repo.item_seq(conn, target.project_id, r[_EXT_ID])
        if seq == r[_SEQ]:
            s.items += 1
            s.gold += r[_GOLD] is not None
        elif seq > target.seq0:
            raise DuplicateItem(r[_SEQ] - target.seq0, r[_EXT_ID])  # twice in this input
        else:
            s.duplicates += 1  # already there from an earlier import
