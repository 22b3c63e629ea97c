"""The suite stands alone: nothing beside the repository is read, nothing is skipped."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from standalone import ROOT, _outside_repo


def test_paths_beside_the_repository_are_told_apart() -> None:
    root, temp = Path("/srv/work/chatlabel"), Path("/tmp")
    sibling = Path("/srv/work/datasets/specs/telegram-bot-api.json")
    assert _outside_repo(sibling, root, temp) == sibling
    assert _outside_repo("/srv/work/elsewhere", root, temp) is not None
    assert _outside_repo(root / "tests" / "specs" / "x.json", root, temp) is None
    assert _outside_repo("/tmp/pytest-of-root/x.db", root, temp) is None
    assert _outside_repo("/usr/lib/python3/x.py", root, temp) is None
    assert _outside_repo(3, root, temp) is None  # a file descriptor
    # A clone in /tmp/ci/chatlabel: /tmp/ci/datasets is beside it, other temp files are not.
    root = Path("/tmp/ci/chatlabel")
    assert _outside_repo("/tmp/ci/datasets/data.csv", root, temp) is not None
    assert _outside_repo("/tmp/pytest-of-root/x.db", root, temp) is None


def test_reading_beside_the_repository_fails_the_test() -> None:
    sibling = ROOT.parent / "no-such-sibling" / "data.csv"
    if _outside_repo(sibling) is None:
        # The repository lies right in the temporary directory (or at /): its siblings can't
        # be told from scratch files there, so opening one must just fail as usual.
        with pytest.raises(FileNotFoundError):
            open(sibling)  # noqa: SIM115
        return
    with pytest.raises(PermissionError, match="outside the repository"):
        open(sibling)  # noqa: SIM115
    from standalone import _READ_OUTSIDE

    _READ_OUTSIDE.clear()  # this one was on purpose


def test_a_skipped_test_fails_the_run(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text((ROOT / "tests" / "conftest.py").read_text())
    (tmp_path / "test_x.py").write_text(
        "import pytest\n\ndef test_skipped():\n    pytest.skip('no data')\n"
    )
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(str(ROOT / d) for d in ("tests", "src"))},
    )
    assert run.returncode == 1, run.stdout
    assert "skipped: test_x.py::test_skipped" in run.stdout


def test_no_source_names_a_folder_beside_the_repository() -> None:
    """No source reaches `../<name>` where such a folder really lies beside this clone."""
    tracked = subprocess.run(
        ["git", "ls-files", "src", "tests", "bench", ".ci"],
        capture_output=True, text=True, cwd=ROOT, check=True,
    ).stdout.split()  # fmt: skip
    offenders = sorted(
        f"{f}: ../{name}"
        for f in tracked
        if f.endswith((".py", "run", ".toml", ".cfg"))
        for name in set(re.findall(r"\.\./([\w.-]+)", (ROOT / f).read_text(errors="replace")))
        # A stat, not a listing: the guard above forbids reading beside the repository.
        if name not in (ROOT.name, "..") and (ROOT.parent / name).is_dir()
    )
    assert offenders == []
