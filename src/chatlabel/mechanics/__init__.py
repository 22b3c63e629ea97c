"""Shared mechanics written once: a bounded cache, per-key locks, single flight, log redaction,
pacing of platform calls, a limit on failed attempts."""

from .attempts import AttemptLimiter
from .cache import BoundedCache
from .locks import LockMap
from .pacing import Dropped, LatestEdit, Limit, Pacer, Priority, Scope
from .redact import Redactor, redacted_logger
from .single_flight import SingleFlight

__all__ = [
    "AttemptLimiter",
    "BoundedCache",
    "Dropped",
    "LatestEdit",
    "Limit",
    "LockMap",
    "Pacer",
    "Priority",
    "Redactor",
    "Scope",
    "SingleFlight",
    "redacted_logger",
]
