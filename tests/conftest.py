"""Shared fixtures: a real SQLite file or PostgreSQL database, a clock, a service over a project.

Tests that take the `backend` fixture run on SQLite only, unless their module says
`BACKENDS = ("sqlite", "postgresql")`: then they run on both (PostgreSQL on a throwaway
server, tests/pg.py).
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import pg
from chatlabel.config import Config, parse_config
from chatlabel.service.labeling import LabelingService
from chatlabel.storage.store import Store, open_store
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


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run `backend` tests on the backends their module names (SQLite alone by default)."""
    if "backend" in metafunc.fixturenames:
        backends = getattr(metafunc.module, "BACKENDS", ("sqlite",))
        metafunc.parametrize("backend", backends, ids=list(backends))


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop the throwaway PostgreSQL server when the run ends, if a test started it.

    Here rather than in a session fixture: a fixture's teardown runs inside the last test's
    timeout, and deleting the folder of a few hundred test databases can take a minute on a
    busy disk (it once failed a browser test that had passed)."""
    pg.stop_server()


@pytest.fixture
def storage_url(backend: str, tmp_path: Path) -> str:
    """Where a test's data lives: a SQLite file in tmp_path or a fresh PostgreSQL database."""
    if backend == "postgresql":
        return pg.fresh_database()
    return f"sqlite:///{tmp_path / 'chatlabel.db'}"


def make_config(
    tmp_path: Path,
    projects: list[dict[str, Any]] | None = None,
    *,
    url: str | None = None,
    **top: Any,
) -> Config:
    """A validated config whose database lives in tmp_path (or at `url`)."""
    data: dict[str, Any] = {
        "storage": {"url": url} if url else {"database": str(tmp_path / "chatlabel.db")},
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
def telegram_storage(storage_url: str) -> Iterator[str]:
    """Make tests/telegram_harness.py's running_bot keep its data at `storage_url`."""
    import sys

    import tests.telegram_harness  # noqa: F401 (imported under both names by the tests)

    harnesses = [
        m for n in ("telegram_harness", "tests.telegram_harness") if (m := sys.modules.get(n))
    ]
    for h in harnesses:
        h.storage_url = None if storage_url.startswith("sqlite:") else storage_url
    yield storage_url
    for h in harnesses:
        h.storage_url = None


@pytest.fixture
def backend() -> str:
    """SQLite, unless the module asks for both backends (see pytest_generate_tests)."""
    return "sqlite"


@pytest.fixture
async def service_factory(
    tmp_path: Path, clock: Clock, storage_url: str
) -> AsyncIterator[ServiceFactory]:
    """Build services over a real SQLite file (or PostgreSQL database); all closed at the end."""
    dbs: list[Store] = []

    async def make(projects: list[dict[str, Any]] | None = None, **top: Any) -> LabelingService:
        url = None if storage_url.startswith("sqlite:") else storage_url
        cfg = make_config(tmp_path, projects, url=url, **top)
        db = await open_store(cfg)
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
