"""Shared fixtures: a real SQLite file, a controllable clock, a service over a small project."""

from __future__ import annotations

import json
import os
import random
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from chatlabel.config import Config, parse_config
from chatlabel.service.labeling import LabelingService
from chatlabel.storage.db import Database
from standalone import install_guard, pytest_runtest_logreport, pytest_sessionfinish


@pytest.fixture(autouse=True)
def _no_proxies_or_platform_env() -> Iterator[None]:
    """Tests talk to loopback fakes only: no proxies, no SLACK_* that would change Bolt's mode."""
    saved = {
        k: v
        for k, v in os.environ.items()
        if k.upper() in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY") or k.startswith("SLACK_")
    }
    for k in saved:
        del os.environ[k]
    yield
    os.environ.update(saved)


class Clock:
    """A clock tests move by hand."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    """A controllable clock."""
    return Clock()


def make_config(tmp_path: Path, projects: list[dict[str, Any]] | None = None, **top: Any) -> Config:
    """A validated config whose database lives in tmp_path."""
    data: dict[str, Any] = {
        "storage": {"database": str(tmp_path / "chatlabel.db")},
        "project": projects
        if projects is not None
        else [
            {
                "name": "p",
                "labels": ["a", "b", "c"],
                "overlap": 3,
                "max_overlap": 5,
                "quality": {"qualification": 0, "gold_rate": 0.0},
            }
        ],
    }
    data.update(top)
    return parse_config(data, tmp_path / "chatlabel.toml")


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Write rows as a JSONL file."""
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


ServiceFactory = Callable[..., Any]


@pytest.fixture
async def service_factory(tmp_path: Path, clock: Clock) -> AsyncIterator[ServiceFactory]:
    """Build services over real SQLite files in tmp_path; all closed at the end."""
    dbs: list[Database] = []

    async def make(projects: list[dict[str, Any]] | None = None, **top: Any) -> LabelingService:
        cfg = make_config(tmp_path, projects, **top)
        db = await Database(cfg.database_path()).open()
        dbs.append(db)
        # Seeded: gold draws are random, and a test should fail or pass the same every run.
        svc = LabelingService(db, cfg, clock=clock, rng=random.Random(0))
        await svc.start()
        return svc

    yield make
    for db in dbs:
        await db.close()


install_guard()
__all__ = ["pytest_runtest_logreport", "pytest_sessionfinish"]  # pytest hooks, re-exported
