"""`chatlabel run` in a process of its own, as an operator starts it (the crash, two-worker and
operator tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def chatlabel_run(cfg: Path, log: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """`chatlabel run CONFIG` with `env` added to this environment, output appended to `log`;
    killed at the end if it is still running."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "chatlabel", "run", str(cfg)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
