"""Shared mechanics written once: a bounded cache, per-key locks, single flight, log redaction."""

from .cache import BoundedCache
from .locks import LockMap
from .redact import Redactor, redacted_logger
from .single_flight import SingleFlight

__all__ = ["BoundedCache", "LockMap", "Redactor", "SingleFlight", "redacted_logger"]
