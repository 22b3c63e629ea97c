"""What presses, ticks, modals and DM replies do: service calls, then the message follows."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from slack_sdk.errors import SlackApiError

from ..service.types import Outcome, UserRef
from .common import choice_of, decode, outcome_line
from .slack_blocks import (
    CHECKBOX_PATTERN,
    JSON,
    OPTIONS_PER_CHECKBOXES,
    TEXT_ACTION,
    TEXT_BLOCK,
    WRITE_ID,
    answered_blocks,
    closed_blocks,
    controls,
    esc,
    notification,
    project_of_block,
    sanitize,
    static_blocks,
    task_blocks,
    text_modal,
)
from .slack_items import FORGED, Shown, SlackItems

log = logging.getLogger("chatlabel.slack")


class SlackPresses:
    """Turns interactions into service calls and updates the pressed message in place."""

    def __init__(self, items: SlackItems, spawn: Callable[[Awaitable[None]], None]) -> None:
        self.items = items
        self.service = items.service
        self.client = items.client
        self.command = items.command
        self._spawn = spawn
        self._undo_timers: dict[tuple[str, str], asyncio.TimerHandle] = {}

    def close(self) -> None:
        """Forget pending undo timers (the buttons simply stay; the service refuses late undos)."""
        for handle in self._undo_timers.values():
            handle.cancel()
        self._undo_timers.clear()

    def _where(
        self, user: UserRef, body: Mapping[str, Any], aid: int, project: str | None = None
    ) -> Shown | None:
        """The message in the person's own DM that showed assignment `aid`, if that was pressed."""
        container = body.get("container") or {}
        key = (str(container.get("channel_id")), str(container.get("message_ts")))
        if container.get("type") != "message" or key[0] != self.items.cached_dm(user):
            return None
        known = self.items.at.get(key)
        if known is not None:
            return known if known.aid == aid else None
        message = body.get("message") or {}
        if not _shows(message.get("blocks"), aid):
            return None
        # After a restart: rebuild what we need from the message Slack echoed back.
        static = sanitize(message.get("blocks"))
        return Shown(user.key, aid, project or "", "", key[0], key[1], static)

    async def press(
        self,
        user: UserRef,
        body: Mapping[str, Any],
        start: Callable[[UserRef, str], Awaitable[None]],
    ) -> None:
        """A button with data from common.encode: answer, skip, done, undo or a project choice."""
        action = (body.get("actions") or [{}])[0]
        btn = decode(str(action.get("value", "")))
        user = await self.items.with_dm(user)
        if btn is None or btn.action == "toggle":
            await self.items.tell(user, FORGED)
            return
        if btn.action == "project":
            await self._choose(user, body, btn.ref, start)
            return
        if btn.action == "undo":
            await self._undo(user, body, btn.ref)
            return
        project = project_of_block(action.get("block_id"))
        if btn.action == "answer":
            choice = (
                choice_of(self.service.info(project).labels, btn.index)
                if project in self.service.projects
                else None
            )
            if choice is None:
                await self.items.tell(user, FORGED)
                return
            out = await self.service.answer(user, btn.ref, choice, then_next=True)
        elif btn.action == "skip":
            out = await self.service.skip(user, btn.ref, then_next=True)
        else:  # done: what the checkboxes show now wins over ticks still on their way
            ticked = self._ticked(body, project, btn.ref)
            out = await self.service.answer(user, btn.ref, ticked, then_next=True)
        await self.after(user, out, btn.ref, self._where(user, body, btn.ref, project))

    def _ticked(self, body: Mapping[str, Any], project: str | None, aid: int) -> list[str] | None:
        """The labels ticked in a multi item's checkboxes (from the press); None if absent."""
        if project not in self.service.projects:
            return None
        labels = self.service.info(project).labels
        values = ((body.get("state") or {}).get("values")) or {}
        found, chosen = False, set()
        for block_id, by_action in values.items():
            if project_of_block(block_id) != project or not isinstance(by_action, dict):
                continue
            for action_id, value in by_action.items():
                m = CHECKBOX_PATTERN.match(str(action_id))
                if not m or int(m.group(1)) != aid or not isinstance(value, dict):
                    continue
                found = True
                chosen |= _option_labels(value.get("selected_options"), aid, labels)
        return [lab for lab in labels if lab in chosen] if found else None

    async def after(self, user: UserRef, out: Outcome, aid: int, where: Shown | None) -> None:
        """What follows an answer or skip: the item shows the choice, then the next item."""
        mine = self.items.shown.get(aid)
        if mine is not None and mine.user == user.key and out.status != "invalid":
            self.items.shown.pop(aid)  # it is done (or dead): a DM reply must not go to it
        if out.ok:
            if where is not None:
                await self._update(
                    where,
                    outcome_line(out),
                    answered_blocks(where.static, out, where.project or "x"),
                )
                self._undo_later(where, out)
            # The next item was leased with the answer, in the same commit.
            await self.items.send_next(user, got=out.next)
            return
        await self.items.tell(user, out.message)
        if out.status == "stale":
            if where is not None:
                # Its buttons can no longer do anything: take them away.
                self._cancel_undo((where.channel, where.ts))
                closed = closed_blocks(where.static, f"⌛ {out.message}")
                await self._update(where, out.message, closed)
            # A timed-out item promised a fresh one; an item already on screen is not re-sent.
            await self.items.send_next(user, idle=False)

    async def _update(self, where: Shown, text: str, blocks: list[JSON]) -> None:
        """Edit an item's message; a failure is logged, the flow goes on (the next item)."""
        try:
            await self.client.chat_update(
                channel=where.channel, ts=where.ts, text=esc(text), blocks=blocks
            )
        except SlackApiError as e:
            log.warning("could not update message %s: %s", where.ts, e.response.get("error"))

    def _undo_later(self, where: Shown, out: Outcome) -> None:
        """Take the Undo button away when the undo window closes."""
        key = (where.channel, where.ts)
        self._cancel_undo(key)
        if out.undo_until is None or out.answer_id is None:
            return
        delay = min(max(out.undo_until - self.service.clock(), 0.0), 86400.0)
        final = answered_blocks(where.static, out, where.project or "x", undo=False)

        def expire() -> None:
            self._undo_timers.pop(key, None)
            self._spawn(self._update(where, outcome_line(out), final))

        self._undo_timers[key] = asyncio.get_running_loop().call_later(delay, expire)

    def _cancel_undo(self, key: tuple[str, str]) -> None:
        handle = self._undo_timers.pop(key, None)
        if handle is not None:
            handle.cancel()

    async def _undo(self, user: UserRef, body: Mapping[str, Any], answer_id: int) -> None:
        out = await self.service.undo(user, answer_id)
        if not out.ok or out.task is None:
            await self.items.tell(user, out.message)
            return
        task = out.task
        container = body.get("container") or {}
        key = (str(container.get("channel_id")), str(container.get("message_ts")))
        async with self.items.lock(user):
            if container.get("type") == "message" and key[0] == user.address:
                # The item comes back in place, buttons and all.
                self._cancel_undo(key)
                image, attached = await self.items.media(user, task, upload=False)
                await self.client.chat_update(
                    channel=key[0],
                    ts=key[1],
                    text=notification(task),
                    blocks=task_blocks(task, image, attached=attached),
                )
                self.items.record(
                    user, task, key[0], key[1], static_blocks(task, image, attached=attached)
                )
            else:
                await self.items.show(user, task, force=True)

    async def _choose(
        self,
        user: UserRef,
        body: Mapping[str, Any],
        index: int,
        start: Callable[[UserRef, str], Awaitable[None]],
    ) -> None:
        names = list(self.service.projects)
        if not 0 <= index < len(names):
            await self.items.tell(user, FORGED)
            return
        container = body.get("container") or {}
        channel = await self.items.dm(user)
        if container.get("type") == "message" and container.get("channel_id") == channel:
            title = self.service.info(names[index]).title
            await self.client.chat_update(
                channel=channel,
                ts=str(container.get("message_ts")),
                text=title,
                blocks=[
                    {"type": "section", "text": {"type": "mrkdwn", "text": f"➡️ *{esc(title)}*"}}
                ],
            )
        await start(user, names[index])

    # -- multi-choice ticks ---------------------------------------------------------------------

    async def tick(self, user: UserRef, body: Mapping[str, Any]) -> None:
        """Checkboxes changed: bring the stored selection in line with what the person sees."""
        action = (body.get("actions") or [{}])[0]
        m = CHECKBOX_PATTERN.match(str(action.get("action_id", "")))
        project = project_of_block(action.get("block_id"))
        user = await self.items.with_dm(user)
        if m is None or project not in self.service.projects:
            await self.items.tell(user, FORGED)
            return
        aid, chunk = int(m.group(1)), int(str(action["action_id"]).rsplit(".", 1)[1])
        labels = self.service.info(project).labels
        mine = labels[chunk * OPTIONS_PER_CHECKBOXES : (chunk + 1) * OPTIONS_PER_CHECKBOXES]
        wanted = _option_labels(action.get("selected_options"), aid, labels)
        where = self._where(user, body, aid, project)
        before = _initial(body, str(action["action_id"]), aid, labels)
        changed = [lab for lab in mine if (lab in wanted) != (lab in before)]
        if not changed:
            return
        async with self.items.lock(user):
            # Toggle one label, read the stored selection back, then fix whatever still differs:
            # quick ticks can arrive together, and the outcome says what is really stored.
            out = await self.service.toggle(user, aid, changed[0])
            while out.ok and out.task is not None:
                stored = set(out.task.selected)
                diff = [lab for lab in mine if (lab in stored) != (lab in wanted)]
                if not diff:
                    break
                out = await self.service.toggle(user, aid, diff[0])
            if not out.ok or out.task is None:
                await self.items.tell(user, out.message)
                return
            if where is not None:
                # Re-render so the message's initial options match what is stored.
                await self.client.chat_update(
                    channel=where.channel,
                    ts=where.ts,
                    text=notification(out.task),
                    blocks=[*where.static, *controls(out.task)],
                )

    # -- free text ------------------------------------------------------------------------------

    async def open_writer(self, user: UserRef, body: Mapping[str, Any]) -> None:
        """The Write answer button: open the modal at once (its trigger lasts 3 seconds)."""
        action = (body.get("actions") or [{}])[0]
        value = str(action.get("value", ""))
        if not re.fullmatch(r"\d{1,18}", value):
            return
        container = body.get("container") or {}
        blocks = (body.get("message") or {}).get("blocks") or []
        shown = ""
        if blocks and isinstance(blocks[0], dict) and isinstance(blocks[0].get("text"), dict):
            shown = str(blocks[0]["text"].get("text", ""))
        view = text_modal(
            int(value),
            project_of_block(action.get("block_id")) or "",
            str(container.get("channel_id", "")),
            str(container.get("message_ts", "")),
            shown,
        )
        try:
            await self.client.views_open(trigger_id=body["trigger_id"], view=view)
        except SlackApiError as e:  # e.g. the 3-second trigger ran out on a slow network
            log.warning("could not open the answer form: %s", e.response.get("error"))
            await self.items.tell(
                user, "I couldn't open the form: just reply here with your answer."
            )

    async def submitted(self, user: UserRef, view: Mapping[str, Any]) -> None:
        """A free-text answer from the modal."""
        try:
            meta = json.loads(view.get("private_metadata") or "{}")
            aid = int(meta["a"])
        except (ValueError, KeyError, TypeError):
            return
        text = modal_text(view)
        user = await self.items.with_dm(user)
        out = await self.service.answer(user, aid, text)
        where = None
        key = (str(meta.get("c", "")), str(meta.get("t", "")))
        if key[0] == user.address:
            known = self.items.at.get(key)
            if known is not None and known.aid == aid:
                where = known
            elif known is None:
                where = Shown(
                    user.key,
                    aid,
                    str(meta.get("p", "")),
                    "text",
                    key[0],
                    key[1],
                    sanitize(view.get("blocks"))[:1],
                )
        await self.after(user, out, aid, where)

    async def said(self, user: UserRef, text: str) -> None:
        """A message in the DM: the answer to the person's open free-text item, if any."""
        user = await self.items.with_dm(user)
        open_text = sorted(
            s.aid for s in self.items.shown.values() if s.user == user.key and s.kind == "text"
        )
        if open_text:
            aid = open_text[0]
            out = await self.service.answer(user, aid, text)
            await self.after(user, out, aid, self.items.shown.get(aid))
            return
        out = await self.service.answer_text(user, text)
        if out.ok:
            await self.items.post(user, outcome_line(out))
            await self.items.send_next(user)
        else:
            await self.items.tell(user, f"{out.message} Use the buttons, or `{self.command} help`.")


def _shows(blocks: Any, aid: int) -> bool:
    """True when a message's blocks carry controls for assignment `aid` (so it shows it)."""
    if not isinstance(blocks, list):
        return False
    for b in blocks:
        for el in b.get("elements", []) if isinstance(b, dict) else []:
            if not isinstance(el, dict):
                continue
            if el.get("action_id") == WRITE_ID and el.get("value") == str(aid):
                return True
            m = CHECKBOX_PATTERN.match(str(el.get("action_id", "")))
            if m and int(m.group(1)) == aid:
                return True
            btn = decode(str(el.get("value", "")))
            if btn and btn.action in ("answer", "skip", "done") and btn.ref == aid:
                return True
    return False


def modal_text(view: Mapping[str, Any]) -> str:
    """The text typed into the answer modal ('' when missing)."""
    values = ((view.get("state") or {}).get("values")) or {}
    entry = (values.get(TEXT_BLOCK) or {}).get(TEXT_ACTION) or {}
    return str(entry.get("value") or "")


def _option_labels(options: Any, aid: int, labels: tuple[str, ...]) -> set[str]:
    """The labels checkbox options stand for (options of other assignments are ignored)."""
    out = set()
    for option in options if isinstance(options, list) else []:
        btn = decode(str(option.get("value", ""))) if isinstance(option, dict) else None
        if btn and btn.action == "toggle" and btn.ref == aid:
            label = choice_of(labels, btn.index)
            if label is not None:
                out.add(label)
    return out


def _initial(
    body: Mapping[str, Any], action_id: str, aid: int, labels: tuple[str, ...]
) -> set[str]:
    """The labels a checkboxes element showed as ticked in the message as last rendered."""
    for b in (body.get("message") or {}).get("blocks") or []:
        for el in b.get("elements", []) if isinstance(b, dict) else []:
            if isinstance(el, dict) and el.get("action_id") == action_id:
                return _option_labels(el.get("initial_options"), aid, labels)
    return set()
