"""Items in Slack DMs: posting them (with images), and what presses, ticks and modals do."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from ..media import MediaError, prepare_image
from ..service.labeling import LabelingService
from ..service.types import Idle, Outcome, Push, Task, UserRef
from .common import choice_of, cut, decode, outcome_line
from .slack_blocks import (
    CHECKBOX_PATTERN,
    JSON,
    OPTIONS_PER_CHECKBOXES,
    TEXT_ACTION,
    TEXT_BLOCK,
    answered_blocks,
    closed_blocks,
    controls,
    esc,
    image_block,
    notification,
    project_of_block,
    sanitize,
    slackify,
    static_blocks,
    task_blocks,
    text_modal,
)

log = logging.getLogger("chatlabel.slack")

MEMORY = 5000  # messages remembered for in-place updates; older ones fall back to the payload
# Errors that mean we can no longer write to this person: stop pushing to them.
GONE = frozenset({"channel_not_found", "is_archived", "account_inactive", "user_disabled",
                  "cannot_dm_bot", "messages_tab_disabled", "user_not_found"})
FORGED = "That button doesn't work any more."


@dataclass(frozen=True)
class Shown:
    """A message in a DM that shows an item: whose, where, and its unchanging blocks."""

    user: str
    aid: int
    project: str
    kind: str
    channel: str
    ts: str
    static: list[JSON]


def slack_id(user: UserRef) -> str:
    """The Slack user id (U…) inside a `T…/U…` user id."""
    return user.user_id.rsplit("/", 1)[-1]


def _remember(cache: OrderedDict[Any, Any], key: Any, value: Any) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > MEMORY:
        cache.popitem(last=False)


def _shows(blocks: Any, aid: int) -> bool:
    """True when a message's blocks carry controls for assignment `aid` (so it shows it)."""
    if not isinstance(blocks, list):
        return False
    for b in blocks:
        for el in b.get("elements", []) if isinstance(b, dict) else []:
            if not isinstance(el, dict):
                continue
            if el.get("action_id") == "cl.write" and el.get("value") == str(aid):
                return True
            m = CHECKBOX_PATTERN.match(str(el.get("action_id", "")))
            if m and int(m.group(1)) == aid:
                return True
            btn = decode(str(el.get("value", "")))
            if btn and btn.action in ("answer", "skip", "done") and btn.ref == aid:
                return True
    return False


class SlackItems:
    """Shows items in DMs and turns presses into service calls; one per transport."""

    def __init__(self, service: LabelingService, client: AsyncWebClient, media_cache: Path,
                 command: str, spawn: Callable[[Awaitable[None]], None]) -> None:
        self.service = service
        self.client = client
        self.media_cache = media_cache
        self.command = command
        self._spawn = spawn
        self._dm: dict[str, str] = {}
        self._shown: OrderedDict[int, Shown] = OrderedDict()  # by assignment id
        self._at: OrderedDict[tuple[str, str], Shown] = OrderedDict()  # by (channel, ts)
        self._locks: dict[str, asyncio.Lock] = {}
        self._media_locks: dict[str, asyncio.Lock] = {}
        self._undo_timers: dict[tuple[str, str], asyncio.TimerHandle] = {}

    def close(self) -> None:
        """Forget pending undo timers (the buttons simply stay; the service refuses late undos)."""
        for handle in self._undo_timers.values():
            handle.cancel()
        self._undo_timers.clear()

    # -- people ---------------------------------------------------------------------------------

    def user(self, team: str, uid: str, name: str = "") -> UserRef:
        """The UserRef of a Slack user: key `slack:T…/U…`, address their DM with the bot."""
        ref = UserRef("slack", f"{team}/{uid}", name)
        return UserRef("slack", ref.user_id, name, self._dm.get(ref.key))

    def know_dm(self, user: UserRef, channel: str) -> None:
        """Remember a user's DM channel (App Home events tell us without asking)."""
        self._dm[user.key] = channel

    async def with_dm(self, user: UserRef) -> UserRef:
        """The user with their DM channel id as address (conversations.open, once per user)."""
        channel = self._dm.get(user.key) or user.address
        if channel is None:
            opened = await self.client.conversations_open(users=slack_id(user))
            channel = str(opened["channel"]["id"])
        self._dm[user.key] = channel
        return UserRef(user.platform, user.user_id, user.name, channel)

    def lock(self, user: UserRef) -> asyncio.Lock:
        """One lock per person, so two paths never post the same item twice."""
        return self._locks.setdefault(user.key, asyncio.Lock())

    async def tell(self, user: UserRef, text: str) -> None:
        """A brief note only this person sees, in their DM with the bot."""
        user = await self.with_dm(user)
        await self.client.chat_postEphemeral(channel=user.address, user=slack_id(user),
                                             text=esc(slackify(text, self.command)))

    async def post(self, user: UserRef, text: str, blocks: list[JSON] | None = None) -> str:
        """A message in the person's DM; returns its ts."""
        user = await self.with_dm(user)
        if blocks is None:
            sent = await self.client.chat_postMessage(
                channel=user.address, text=esc(slackify(text, self.command)))
        else:
            sent = await self.client.chat_postMessage(channel=user.address, text=cut(text, 150),
                                                      blocks=blocks)
        return str(sent["ts"])

    # -- showing items --------------------------------------------------------------------------

    async def send_next(self, user: UserRef, *, force: bool = False, idle: bool = True) -> None:
        """Post the person's next item (or why there is none, if `idle`)."""
        user = await self.with_dm(user)
        async with self.lock(user):
            got = await self.service.next_task(user)
            if isinstance(got, Idle):
                if idle:
                    await self.post(user, got.message)
                return
            await self._show(user, got, force=force)

    async def push(self, push: Push) -> None:
        """Deliver an item the push loop found for someone who was waiting."""
        try:
            user = await self.with_dm(push.user)
            async with self.lock(user):
                await self._show(user, push.task)
        except SlackApiError as e:
            if e.response.get("error") in GONE:
                log.info("cannot reach %s on Slack (%s); not pushing to them any more",
                         push.user.key, e.response.get("error"))
                await self.service.mark_blocked(push.user)
                return
            raise

    async def _show(self, user: UserRef, task: Task, *, force: bool = False) -> None:
        """Post one item (caller holds the person's lock); an item already on screen is skipped."""
        if not force and task.assignment_id in self._shown:
            return
        assert user.address is not None
        image, attached = await self._media(user, task)
        ts = await self._post_item(user.address, task, image, attached)
        self._record(user, task, user.address, ts, static_blocks(task, image, attached=attached))
        await self.service.remember_message(task.assignment_id, f"{user.address}/{ts}")

    def _record(self, user: UserRef, task: Task, channel: str, ts: str,
                static: list[JSON]) -> None:
        shown = Shown(user.key, task.assignment_id, task.project.name, task.project.kind,
                      channel, ts, static)
        _remember(self._shown, task.assignment_id, shown)
        _remember(self._at, (channel, ts), shown)

    async def _post_item(self, channel: str, task: Task, image: JSON | None,
                         attached: bool) -> str:
        blocks = task_blocks(task, image, attached=attached)
        try:
            sent = await self.client.chat_postMessage(channel=channel, text=notification(task),
                                                      blocks=blocks)
        except SlackApiError as e:
            if image is None or e.response.get("error") != "invalid_blocks":
                raise
            # Slack may not have processed a just-uploaded file yet: wait once, then send the
            # item without its picture rather than not at all.
            await asyncio.sleep(1.5)
            try:
                sent = await self.client.chat_postMessage(channel=channel,
                                                          text=notification(task), blocks=blocks)
            except SlackApiError:
                log.warning("Slack refused the image of item %s; sending it without",
                            task.item_id)
                blocks = task_blocks(task, None, attached=attached)
                sent = await self.client.chat_postMessage(channel=channel,
                                                          text=notification(task), blocks=blocks)
        return str(sent["ts"])

    async def _media(self, user: UserRef, task: Task, *, upload: bool = True
                     ) -> tuple[JSON | None, bool]:
        """The image block for an item's picture, or (audio/video) the file posted just before."""
        media = task.media
        if media is None:
            return None, False
        try:
            if media.kind == "image":
                file_id = await self._image_file_id(task)
                return image_block(file_id, task.text or f"item {task.item_id}"), False
            if not upload:
                return None, True
            # Slack cannot play audio or video inside blocks: share the file in the DM first.
            await self.client.files_upload_v2(channel=user.address, file=media.path,
                                              filename=Path(media.path).name,
                                              title=f"Item {task.item_id}")
            return None, True
        except (MediaError, OSError, SlackApiError) as e:
            log.warning("could not attach the %s of item %s: %s", media.kind, task.item_id, e)
            return None, False

    async def _image_file_id(self, task: Task) -> str:
        """Prepare an item's picture once and upload it once; later sends reuse the file id."""
        assert task.media is not None
        project = self.service.projects[task.project.name]
        prepared = await asyncio.to_thread(
            prepare_image, Path(task.media.path), self.media_cache,
            max_side=project.max_image_side, boxes=task.boxes or None)
        data = await asyncio.to_thread(prepared.read_bytes)
        sha = hashlib.sha256(data).hexdigest()
        async with self._media_locks.setdefault(sha, asyncio.Lock()):
            known = await self.service.media_file_id(sha, "slack")
            if known:
                return known
            # No channel: the file stays private to the bot, and image blocks show it by id.
            sent = await self.client.files_upload_v2(
                file=data, filename=f"item-{sha[:12]}.jpg", title=f"Item {task.item_id}",
                alt_txt=cut(task.text or task.item_id, 200))
            file_id = str(sent["file"]["id"])
            await self.service.save_media_file_id(sha, "slack", file_id)
            return file_id

    # -- presses --------------------------------------------------------------------------------

    def _where(self, user: UserRef, body: Mapping[str, Any], aid: int) -> Shown | None:
        """The message in the person's own DM that showed assignment `aid`, if that was pressed."""
        container = body.get("container") or {}
        key = (str(container.get("channel_id")), str(container.get("message_ts")))
        if container.get("type") != "message" or key[0] != self._dm.get(user.key):
            return None
        known = self._at.get(key)
        if known is not None:
            return known if known.aid == aid else None
        message = body.get("message") or {}
        if not _shows(message.get("blocks"), aid):
            return None
        # After a restart: rebuild what we need from the message Slack echoed back.
        return Shown(user.key, aid, "", "", key[0], key[1], sanitize(message.get("blocks")))

    async def press(self, user: UserRef, body: Mapping[str, Any],
                    start: Callable[[UserRef, str], Awaitable[None]]) -> None:
        """A button with data from common.encode: answer, skip, done, undo or a project choice."""
        action = (body.get("actions") or [{}])[0]
        btn = decode(str(action.get("value", "")))
        user = await self.with_dm(user)
        if btn is None or btn.action == "toggle":
            await self.tell(user, FORGED)
            return
        if btn.action == "project":
            await self._choose(user, body, btn.ref, start)
            return
        if btn.action == "undo":
            await self._undo(user, body, btn.ref)
            return
        project = project_of_block(action.get("block_id"))
        if btn.action == "answer":
            choice = (choice_of(self.service.info(project).labels, btn.index)
                      if project in self.service.projects else None)
            if choice is None:
                await self.tell(user, FORGED)
                return
            out = await self.service.answer(user, btn.ref, choice)
        elif btn.action == "skip":
            out = await self.service.skip(user, btn.ref)
        else:  # done: what the checkboxes show now wins over ticks still on their way
            out = await self.service.answer(user, btn.ref, self._ticked(body, project, btn.ref))
        await self.after(user, out, btn.ref, self._where(user, body, btn.ref))

    def _ticked(self, body: Mapping[str, Any], project: str | None, aid: int) -> list[str] | None:
        """The labels ticked in a multi item's checkboxes, from the press's state; None if absent."""
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
        if out.ok:
            self._shown.pop(aid, None)
            if where is not None:
                await self._mark_answered(where, out)
            await self.send_next(user)
            return
        await self.tell(user, out.message)
        if out.status == "stale":
            if where is not None:
                # Its buttons can no longer do anything: take them away.
                self._cancel_undo((where.channel, where.ts))
                await self.client.chat_update(channel=where.channel, ts=where.ts,
                                              text=out.message,
                                              blocks=closed_blocks(where.static,
                                                                   f"⌛ {out.message}"))
            # A timed-out item promised a fresh one; an item already on screen is not re-sent.
            await self.send_next(user, idle=False)

    async def _mark_answered(self, where: Shown, out: Outcome) -> None:
        key = (where.channel, where.ts)
        self._cancel_undo(key)
        project = where.project or "x"
        await self.client.chat_update(channel=where.channel, ts=where.ts, text=outcome_line(out),
                                      blocks=answered_blocks(where.static, out, project))
        if out.undo_until is not None and out.answer_id is not None:
            delay = min(max(out.undo_until - self.service.clock(), 0.0), 86400.0)
            final = answered_blocks(where.static, out, project, undo=False)

            def expire() -> None:
                self._undo_timers.pop(key, None)
                self._spawn(self._drop_undo(where, out, final))

            self._undo_timers[key] = asyncio.get_running_loop().call_later(delay, expire)

    async def _drop_undo(self, where: Shown, out: Outcome, blocks: list[JSON]) -> None:
        await self.client.chat_update(channel=where.channel, ts=where.ts, text=outcome_line(out),
                                      blocks=blocks)

    def _cancel_undo(self, key: tuple[str, str]) -> None:
        handle = self._undo_timers.pop(key, None)
        if handle is not None:
            handle.cancel()

    async def _undo(self, user: UserRef, body: Mapping[str, Any], answer_id: int) -> None:
        out = await self.service.undo(user, answer_id)
        if not out.ok or out.task is None:
            await self.tell(user, out.message)
            return
        task = out.task
        container = body.get("container") or {}
        key = (str(container.get("channel_id")), str(container.get("message_ts")))
        async with self.lock(user):
            if container.get("type") == "message" and key[0] == user.address:
                # The item comes back in place, buttons and all.
                self._cancel_undo(key)
                image, attached = await self._media(user, task, upload=False)
                await self.client.chat_update(channel=key[0], ts=key[1], text=notification(task),
                                              blocks=task_blocks(task, image, attached=attached))
                self._record(user, task, key[0], key[1],
                             static_blocks(task, image, attached=attached))
            else:
                await self._show(user, task, force=True)

    async def _choose(self, user: UserRef, body: Mapping[str, Any], index: int,
                      start: Callable[[UserRef, str], Awaitable[None]]) -> None:
        names = list(self.service.projects)
        if not 0 <= index < len(names):
            await self.tell(user, FORGED)
            return
        container = body.get("container") or {}
        if container.get("type") == "message" and container.get("channel_id") == user.address:
            title = self.service.info(names[index]).title
            await self.client.chat_update(
                channel=user.address, ts=str(container.get("message_ts")), text=title,
                blocks=[{"type": "section", "text": {"type": "mrkdwn",
                                                     "text": f"➡️ *{esc(title)}*"}}])
        await start(user, names[index])

    # -- multi-choice ticks ---------------------------------------------------------------------

    async def tick(self, user: UserRef, body: Mapping[str, Any]) -> None:
        """Checkboxes changed: bring the stored selection in line with what the person sees."""
        action = (body.get("actions") or [{}])[0]
        m = CHECKBOX_PATTERN.match(str(action.get("action_id", "")))
        project = project_of_block(action.get("block_id"))
        user = await self.with_dm(user)
        if m is None or project not in self.service.projects:
            await self.tell(user, FORGED)
            return
        aid, chunk = int(m.group(1)), int(str(action["action_id"]).rsplit(".", 1)[1])
        labels = self.service.info(project).labels
        mine = labels[chunk * OPTIONS_PER_CHECKBOXES:(chunk + 1) * OPTIONS_PER_CHECKBOXES]
        wanted = _option_labels(action.get("selected_options"), aid, labels)
        where = self._where(user, body, aid)
        before = _initial(body, str(action["action_id"]), aid, labels)
        changed = [lab for lab in mine if (lab in wanted) != (lab in before)]
        if not changed:
            return
        async with self.lock(user):
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
                await self.tell(user, out.message)
                return
            if where is not None:
                # Re-render so the message's initial options match what is stored.
                await self.client.chat_update(channel=where.channel, ts=where.ts,
                                              text=notification(out.task),
                                              blocks=[*where.static, *controls(out.task)])

    # -- free text ------------------------------------------------------------------------------

    async def open_writer(self, body: Mapping[str, Any]) -> None:
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
        view = text_modal(int(value), project_of_block(action.get("block_id")) or "",
                          str(container.get("channel_id", "")),
                          str(container.get("message_ts", "")), shown)
        await self.client.views_open(trigger_id=body["trigger_id"], view=view)

    async def submitted(self, user: UserRef, view: Mapping[str, Any]) -> None:
        """A free-text answer from the modal."""
        try:
            meta = json.loads(view.get("private_metadata") or "{}")
            aid = int(meta["a"])
        except (ValueError, KeyError, TypeError):
            return
        text = modal_text(view)
        user = await self.with_dm(user)
        out = await self.service.answer(user, aid, text)
        where = None
        key = (str(meta.get("c", "")), str(meta.get("t", "")))
        if key[0] == user.address:
            known = self._at.get(key)
            if known is not None and known.aid == aid:
                where = known
            elif known is None:
                where = Shown(user.key, aid, str(meta.get("p", "")), "text", key[0], key[1],
                              sanitize(view.get("blocks"))[:1])
        await self.after(user, out, aid, where)

    async def said(self, user: UserRef, text: str) -> None:
        """A message in the DM: the answer to the person's open free-text item, if any."""
        user = await self.with_dm(user)
        open_text = sorted(s.aid for s in self._shown.values()
                           if s.user == user.key and s.kind == "text")
        if open_text:
            aid = open_text[0]
            out = await self.service.answer(user, aid, text)
            await self.after(user, out, aid, self._shown.get(aid))
            return
        out = await self.service.answer_text(user, text)
        if out.ok:
            await self.post(user, outcome_line(out))
            await self.send_next(user)
        else:
            await self.tell(user, f"{out.message} Use the buttons, or `{self.command} help`.")


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


def _initial(body: Mapping[str, Any], action_id: str, aid: int,
             labels: tuple[str, ...]) -> set[str]:
    """The labels a checkboxes element showed as ticked in the message as last rendered."""
    for b in (body.get("message") or {}).get("blocks") or []:
        for el in b.get("elements", []) if isinstance(b, dict) else []:
            if isinstance(el, dict) and el.get("action_id") == action_id:
                return _option_labels(el.get("initial_options"), aid, labels)
    return set()
