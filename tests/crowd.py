"""The limit tests' crowds (shipped in chatlabel.emulators.crowd) and a nearest-rank percentile."""

from __future__ import annotations

from chatlabel.emulators.crowd import Annotator, SlackAnnotator

__all__ = ["Annotator", "SlackAnnotator", "percentile"]


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) of values, nearest rank; 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]
