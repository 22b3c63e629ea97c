"""What the Slack adapter reads out of Slack's payloads (no I/O)."""

from __future__ import annotations

from typing import Any

from ..conversation.buttons import decode
from .slack_blocks import TEXT_ACTION, TEXT_BLOCK

__all__ = ["actor", "assignment", "enterprise", "modal_text"]


def modal_text(view: dict[str, Any]) -> str:
    """The text typed into the answer modal ('' when missing)."""
    values = ((view.get("state") or {}).get("values")) or {}
    entry = (values.get(TEXT_BLOCK) or {}).get(TEXT_ACTION) or {}
    return str(entry.get("value") or "")


def actor(body: dict[str, Any]) -> tuple[str, str, str, object]:
    """Workspace, user id, name and Enterprise Grid organisation behind an interaction.

    Under Grid an org-wide app's interactions may have no `team` at all: the person's own
    workspace is then in user.team_id, and the organisation in `enterprise`.
    """
    who = body.get("user") or {}
    team = (body.get("team") or {}).get("id") or who.get("team_id") or ""
    grid = (
        (body.get("enterprise") or {}).get("id")
        or (body.get("team") or {}).get("enterprise_id")
        or who.get("enterprise_id")
    )
    return str(team), str(who.get("id", "")), str(who.get("username", "")), grid


def enterprise(body: dict[str, Any]) -> object:
    """The Enterprise Grid organisation an event or command came from (None outside Grid)."""
    if body.get("enterprise_id"):
        return body["enterprise_id"]
    auths = body.get("authorizations") or [{}]
    return (auths[0] or {}).get("enterprise_id") if isinstance(auths[0], dict) else None


def assignment(data: str) -> int | None:
    """The assignment a press is about (for reading the checkboxes it carries)."""
    press = decode(data)
    if press is None or press.action not in ("done", "answer", "skip"):
        return None
    return press.ref
