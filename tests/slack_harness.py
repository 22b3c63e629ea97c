"""Shared set-up for the Slack bot tests: the real Bolt app against the loopback Slack API.

`make_bot(..., socket_mode=True)` runs the same bot in Socket Mode: the emulator has Socket
Mode on and the transport gets the app-level token, so simulated users' requests travel as
envelopes over the WebSocket instead of signed HTTP requests; everything else is the same.
"""

from __future__ import annotations

import copy
import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chatlabel.config import Access, Config, Project, Quality, Slack
from chatlabel.emulators.slack import SlackApiEmulator, SlackFaults, SlackMessage, SlackSimUser
from chatlabel.emulators.slack_model import find_element
from chatlabel.importer import import_file
from chatlabel.mechanics import Limit
from chatlabel.service.labeling import LabelingService
from chatlabel.service.reports import Reports
from chatlabel.storage.db import Database
from chatlabel.transports.slack import SlackTransport

SECRET = "test-signing-secret"
NO_GOLD = Quality(qualification=0, gold_rate=0.0)


def project(name: str = "triage", **kw: Any) -> Project:
    """A project for tests: no gold unless asked, overlap 2."""
    defaults: dict[str, Any] = {
        "title": "Spam triage",
        "instructions": "Is this message spam?",
        "kind": "single",
        "labels": ["spam", "ham", "unsure"],
        "overlap": 2,
        "max_overlap": 3,
        "quality": NO_GOLD,
    }
    defaults.update(kw)
    return Project(name=name, **defaults)


@dataclass
class Clock:
    """A clock tests can move forward."""

    now: float = field(default_factory=time.time)

    def __call__(self) -> float:
        return self.now


@dataclass
class Bot:
    """One running Slack transport wired to a fake Slack and a temp database."""

    emu: SlackApiEmulator
    db: Database
    service: LabelingService
    transport: SlackTransport
    clock: Clock
    tmp: Path
    exports: list[str]

    async def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """Rows of a read query, as plain tuples."""

        def q(conn: Any) -> list[tuple[Any, ...]]:
            return [tuple(r) for r in conn.execute(sql, args).fetchall()]

        return await self.db.read(q)

    async def answers(self) -> list[tuple[Any, ...]]:
        """(annotator key, item id, value) of every answer, in order."""
        return await self.rows(
            """SELECT a.key, i.ext_id, x.value FROM answers x
               JOIN annotators a ON a.id = x.annotator_id JOIN items i ON i.id = x.item_id
               ORDER BY x.id"""
        )

    async def state(self) -> tuple[list[tuple[Any, ...]], ...]:
        """Everything a stray press could change, to compare before and after."""
        return (
            await self.answers(),
            await self.rows("SELECT item_id, status, n_answers FROM verdicts ORDER BY 1"),
            await self.rows("SELECT annotator_id, answers, skips, status FROM members"),
            await self.rows("SELECT id, state, draft FROM assignments ORDER BY id"),
        )

    async def add_items(self, name: str, rows: Sequence[dict[str, Any]]) -> None:
        """Import items into a project through the real importer."""
        path = self.tmp / f"{name}-{time.monotonic_ns()}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        await import_file(self.service, name, path)


async def make_bot(
    stack: Any,
    tmp: Path,
    *projects: Project,
    items: dict[str, list[dict[str, Any]]] | None = None,
    access: Access | None = None,
    faults: SlackFaults | None = None,
    db_path: Path | None = None,
    socket_mode: bool = False,
    limits: dict[str, Limit] | None = None,
    enterprise_id: str | None = None,
) -> Bot:
    """Start the fake Slack, the database, the service and the transport; stack closes them."""
    emu = SlackApiEmulator(faults=faults, socket_mode=socket_mode, enterprise_id=enterprise_id)
    await emu.start()
    stack.push_async_callback(emu.stop)
    db = await Database(db_path or tmp / "chatlabel.db").open()
    stack.push_async_callback(db.close)
    config = Config(
        project=list(projects or [project()]),
        access=access or Access(coordinators=["slack:UBOSS"]),
        slack=Slack(port=0, base_url=emu.base_url),
    )
    clock = Clock()
    service = LabelingService(db, config, clock=clock, rng=random.Random(7))
    await service.start()
    exports: list[str] = []

    async def export(name: str) -> tuple[str, bytes]:
        exports.append(name)
        return f"{name}-results.jsonl", b'{"id": "m1", "label": "spam"}\n'

    assert config.slack is not None
    transport = SlackTransport(
        service,
        Reports(service),
        config.slack,
        emu.token,
        SECRET,
        app_token=emu.app_token if socket_mode else None,
        media_cache=tmp / "cache",
        export_results=export,
        inbound=(1000.0, 1000.0),  # tests type fast; flood control: test_faults_limits.py
        # The emulator has no rate limits unless a test sets emu.limits: pace nothing unless
        # asked (limits=slack_limits() paces as in production).
        limits={} if limits is None else limits,
    )
    await transport.start()
    stack.push_async_callback(transport.stop)
    if not socket_mode:
        emu.configure_bot(transport.url, SECRET)
    bot = Bot(emu, db, service, transport, clock, tmp, exports)
    for name, rows in (items or {}).items():
        await bot.add_items(name, rows)
    return bot


# -- what people see ---------------------------------------------------------------------------


def shown(msg: SlackMessage | dict[str, Any]) -> str:
    """All the text a message or view shows: its text, sections and context."""
    blocks = msg.blocks if isinstance(msg, SlackMessage) else msg.get("blocks", [])
    parts = [msg.text] if isinstance(msg, SlackMessage) else []
    for b in blocks:
        if isinstance(b.get("text"), dict):
            parts.append(b["text"]["text"])
        for e in b.get("elements", []):
            if e.get("type") in ("mrkdwn", "plain_text"):
                parts.append(e["text"])
    return "\n".join(parts)


def items(user: SlackSimUser) -> list[SlackMessage]:
    """The item messages in a user's DM (answered or not), oldest first."""
    return [m for m in user.messages if "answered so far" in shown(m)]


def open_items(user: SlackSimUser) -> list[SlackMessage]:
    """Item messages that can still be answered: they offer Skip (an answered one never does)."""
    return [
        m
        for m in items(user)
        if any(
            str(e.get("value", "")).startswith("s:")
            for b in m.blocks
            for e in b.get("elements", [])
        )
    ]


def click(
    user: SlackSimUser, message: SlackMessage, button: str, *, value: str | None = None
) -> dict[str, Any]:
    """A block_actions payload for a button as the message showed it (to replay or forge)."""
    block_id, element = find_element(message.blocks, button)
    action = {
        "type": "button",
        "action_id": element["action_id"],
        "block_id": block_id,
        "text": copy.deepcopy(element["text"]),
        "value": element["value"] if value is None else value,
        "action_ts": f"{time.time():.6f}",
    }
    return {
        "type": "block_actions",
        "user": {"id": user.id, "username": user.name, "name": user.name, "team_id": user.team_id},
        "team": {"id": user.team_id, "domain": "chatlabel"},
        "api_app_id": "A0001",
        "token": user.emulator.verification_token,
        "trigger_id": user.emulator.workspace.issue_trigger(user.id),
        "container": {
            "type": "message",
            "message_ts": message.ts,
            "channel_id": message.channel,
            "is_ephemeral": False,
        },
        "channel": {"id": message.channel, "name": "directmessage"},
        "message": message.to_dict(),
        "state": {"values": {}},
        "actions": [action],
    }


def checkbox_values(message: SlackMessage) -> tuple[str, dict[str, str]]:
    """The checkboxes element's action_id and its option values by label."""
    for b in message.blocks:
        for e in b.get("elements", []):
            if e.get("type") == "checkboxes":
                return e["action_id"], {o["text"]["text"]: o["value"] for o in e["options"]}
    raise AssertionError("no checkboxes in the message")
