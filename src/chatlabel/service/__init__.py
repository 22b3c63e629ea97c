"""The service: the use cases both bots and the CLI call; the only caller of storage."""

from .health import (
    IncidentCleared,
    IncidentStarted,
    LowSpace,
    SpaceRecovered,
    StorageEvent,
    StorageIncident,
    StorageStatus,
    StorageUnavailable,
)
from .labeling import LabelingService
from .reports import Reports
from .types import Idle, JoinResult, Outcome, Push, Task, UserRef

__all__ = [
    "Idle",
    "IncidentCleared",
    "IncidentStarted",
    "JoinResult",
    "LabelingService",
    "LowSpace",
    "Outcome",
    "Push",
    "Reports",
    "SpaceRecovered",
    "StorageEvent",
    "StorageIncident",
    "StorageStatus",
    "StorageUnavailable",
    "Task",
    "UserRef",
]
