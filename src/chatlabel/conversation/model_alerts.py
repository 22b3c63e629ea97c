"""Coordinators hear when routing by a project's model switches itself off, in their language.

The alert is an outbox row per coordinator, queued in the transaction that switches routing
off (service.suggestions), so it reaches coordinators on every platform whichever process
serves them; conversation.bulk words it with `routing_off_text` when it is sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .catalog import Texts


def routing_off_text(t: Texts, title: str, params: Mapping[str, Any], command: str) -> str:
    """The alert, with the model's record: its accuracy on gold and audits against the bar,
    and how to switch routing on again (`command`: /routing as typed here)."""
    alert = t(
        "model.routing_off",
        title=title,
        accuracy=t.percent(float(params["accuracy"])),
        n=int(params["n"]),
        min=t.percent(float(params["min"])),
    )
    return alert + "\n" + t("model.switch_on_later", command=command)
