"""The service: the use cases both bots and the CLI call; the only caller of storage."""

from .labeling import LabelingService
from .reports import Reports
from .types import Idle, JoinResult, Outcome, Push, Task, UserRef

__all__ = ["Idle", "JoinResult", "LabelingService", "Outcome", "Push", "Reports", "Task", "UserRef"]
