"""The suite stands alone: no test reads beside the repository, and none is skipped.

Both once made a fresh clone's suite differ from CI's: tests read API references from a folder
only our machines had, and skipped when it was missing. conftest.py installs the guard.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

# -- the suite stands alone -------------------------------------------------------------------
# Nothing a test reads may live beside the repository (a folder only some machines have), and
# no test may be skipped on a normal machine: both made a fresh clone's suite differ from CI's.

ROOT = Path(__file__).resolve().parents[1]


def _outside_repo(
    path: object, root: Path = ROOT, temp: Path = Path(tempfile.gettempdir())
) -> Path | None:
    """The path when it lies in a folder beside the repository `root`, else None.

    Temporary files are fine, unless the repository itself sits in a folder inside the
    temporary directory: then that folder's other entries are its siblings, not scratch space.
    """
    if isinstance(path, int):
        return None
    try:
        p = Path(os.fsdecode(path)).resolve()  # type: ignore[arg-type]
    except (TypeError, ValueError, OSError):
        return None
    temp = temp.resolve()
    if not p.is_relative_to(root.parent) or p.is_relative_to(root):
        return None
    if p.is_relative_to(Path(sys.prefix).resolve()):
        return None
    if p.is_relative_to(temp) and temp.is_relative_to(root.parent):
        return None  # the repository's parent holds the temporary directory: can't tell
    return p


def _audit(event: str, args: tuple[object, ...]) -> None:
    if event in ("open", "os.listdir", "os.scandir") and args:
        p = _outside_repo(args[0])
        if p is not None:
            _READ_OUTSIDE.append(p)
            raise PermissionError(f"tests must not read outside the repository: {p}")


_READ_OUTSIDE: list[Path] = []
_SKIPPED: list[str] = []
# With the repository right under / every system path would be "beside" it: no check then.


def install_guard() -> None:
    """Fail any test that opens or lists a path beside the repository (once per process)."""
    # With the repository right under / every system path would be "beside" it: no check then.
    if ROOT.parent != Path(ROOT.anchor) and not _INSTALLED:
        _INSTALLED.append(True)
        # The first gettempdir() opens a probe file; from inside the hook that re-entered the
        # hook and deadlocked on tempfile's lock (with -s nothing had called it before).
        tempfile.gettempdir()
        sys.addaudithook(_audit)


_INSTALLED: list[bool] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Remember skipped tests (an expected failure is not a skip)."""
    if report.skipped and not hasattr(report, "wasxfail"):
        _SKIPPED.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when a test was skipped or read a file beside the repository."""
    problems = [f"skipped: {n}" for n in _SKIPPED]
    problems += [f"read outside the repository: {p}" for p in dict.fromkeys(_READ_OUTSIDE)]
    if problems and exitstatus == 0:
        print("\nThe suite must stand alone and skip nothing:\n  " + "\n  ".join(problems))
        session.exitstatus = 1
