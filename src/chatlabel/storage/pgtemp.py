"""A throwaway PostgreSQL server on 127.0.0.1: initdb in a temporary folder, stopped at the end.

For the tests and the benchmarks (never for production data): it needs the server binaries
(Debian's `postgresql` package) and nothing else. Run as root, the server runs as the
unprivileged `postgres` user (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

# Where Debian puts the server binaries (one folder per major version).
_DEBIAN = Path("/usr/lib/postgresql")


class ServerMissing(RuntimeError):
    """The PostgreSQL server binaries are not installed here."""


def bindir() -> Path:
    """The folder with initdb and postgres; ServerMissing naming the package when absent."""
    env = os.environ.get("CHATLABEL_PG_BINDIR")
    candidates = [Path(env)] if env else []
    if _DEBIAN.is_dir():
        versions = sorted(
            (p for p in _DEBIAN.iterdir() if p.name.isdigit()), key=lambda p: int(p.name)
        )
        candidates += [p / "bin" for p in reversed(versions)]
    found = shutil.which("initdb")
    if found:
        candidates.append(Path(found).parent)
    for c in candidates:
        if (c / "initdb").is_file() and (c / "postgres").is_file():
            return c
    raise ServerMissing(
        "the PostgreSQL server binaries (initdb, postgres) are not installed: "
        "`apt-get install postgresql` (Debian), or set CHATLABEL_PG_BINDIR to their folder"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _runas() -> tuple[int, int] | None:
    """(uid, gid) to run the server as when we are root; None when we are not."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pw = pwd.getpwnam(name)
            return pw.pw_uid, pw.pw_gid
    raise ServerMissing("running as root and no unprivileged user (postgres, nobody) to run as")


class TempServer:
    """One throwaway server; `url(db)` names a database on it (user `chatlabel`, no password)."""

    def __init__(self, *, settings: dict[str, str] | None = None) -> None:
        self.settings = settings or {}
        self.port = 0
        self.dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._bin = bindir()

    def _preexec(self) -> None:  # runs in the child, before exec
        ids = _runas()
        if ids is not None:
            os.setgid(ids[1])
            os.setuid(ids[0])

    def start(self) -> TempServer:
        """initdb, then start the server on a free port; returns once it accepts connections."""
        self.dir = Path(tempfile.mkdtemp(prefix="chatlabel-pg-"))
        ids = _runas()
        if ids is not None:
            os.chown(self.dir, *ids)
        data = self.dir / "data"
        subprocess.run(
            [
                str(self._bin / "initdb"),
                "-D",
                str(data),
                "-U",
                "chatlabel",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=self._preexec,
            timeout=120,
        )
        options = {
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(self.dir),
            "max_connections": "200",
            "shared_buffers": "256MB",
            **self.settings,
        }
        for _ in range(5):  # another process may take the free port before the server does
            self.port = free_port()
            args = [str(self._bin / "postgres"), "-D", str(data), "-p", str(self.port)]
            for k, v in options.items():
                args += ["-c", f"{k}={v}"]
            log = open(self.dir / "server.log", "ab")  # noqa: SIM115 (the child keeps it)
            self._proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, preexec_fn=self._preexec
            )
            log.close()
            if self._wait_ready(30):
                return self
            self._kill()
        raise RuntimeError(f"PostgreSQL did not start: {self.log_tail()}")

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                return False
            ok = subprocess.run(
                [str(self._bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-q"],
                timeout=10,
            )
            if ok.returncode == 0:
                return True
            time.sleep(0.1)
        return False

    def log_tail(self, n: int = 2000) -> str:
        """The end of the server's log, for error messages."""
        if self.dir is None:
            return ""
        try:
            return (self.dir / "server.log").read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def url(self, database: str = "postgres") -> str:
        """A postgresql:// URL for a database on this server."""
        return f"postgresql://chatlabel@127.0.0.1:{self.port}/{database}"

    def socket_url(self, database: str = "postgres") -> str:
        """The same database reached through the server's Unix socket (no TCP)."""
        return f"postgresql://chatlabel@/{database}?host={self.dir}&port={self.port}"

    def create_database(self, name: str, template: str | None = None) -> str:
        """Create a database (optionally a copy of `template`); returns its URL."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            tmpl = f" TEMPLATE {template}" if template else ""
            conn.execute(f'CREATE DATABASE "{name}"{tmpl}')
        return self.url(name)

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete its folder."""
        if self._proc is not None and self._proc.poll() is None:
            # SIGINT is PostgreSQL's fast shutdown (SIGTERM's smart one waits for clients).
            self._proc.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(30)
        self._kill()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def _kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(10)
        self._proc = None

    def __enter__(self) -> TempServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
