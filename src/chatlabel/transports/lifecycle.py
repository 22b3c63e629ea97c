"""What the transports share about their manual lifecycle (start / stop)."""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


def started(value: T | None, transport: str) -> T:
    """`value`, set by the transport's start(); a RuntimeError naming the transport before that."""
    if value is None:
        raise RuntimeError(f"start() the {transport} transport first")
    return value
