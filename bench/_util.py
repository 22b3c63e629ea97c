"""Small helpers the benchmarks share: machine description, percentiles, table printing."""

from __future__ import annotations

import os
import platform
import sqlite3
import sys
from collections.abc import Sequence

import numpy as np


def machine() -> str:
    """One line naming the CPU, core count, Python and SQLite versions."""
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{model}, {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
        f"SQLite {sqlite3.sqlite_version}, {platform.system()} {platform.release()}"
    )


def load() -> str:
    """The 1-minute load average and how many cores share it (other work skews figures)."""
    try:
        one = os.getloadavg()[0]
    except OSError:
        return "load average unknown"
    return f"load average {one:.2f} on {os.cpu_count()} cores"


def pct(values: Sequence[float] | np.ndarray, q: float) -> float:
    """The q-th percentile of values (0 when empty)."""
    arr = np.asarray(values, dtype=float)
    return float(np.percentile(arr, q)) if arr.size else 0.0


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table, ready to paste into the README."""
    cells = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells
    ]
    return "\n".join([line, rule, *body])


def human(n: float) -> str:
    """A count with thousands separators."""
    return f"{n:,.0f}"


def postgres_cpu() -> float:
    """CPU seconds used so far by every PostgreSQL server process on this machine (0 if none).

    Read from /proc: a local server's share of each phase, next to the client's own CPU.
    Processes that ended in between are not counted (the bench's connections stay open).
    """
    total = 0
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="ascii", errors="replace") as f:
                stat = f.read()
        except OSError:
            continue
        name_end = stat.rfind(")")
        if stat[stat.find("(") + 1 : name_end] != "postgres":
            continue
        fields = stat[name_end + 2 :].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick
