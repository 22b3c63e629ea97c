"""Items in Slack DMs: who is who, where their DM is, and posting items (with images)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from ..media import MediaError, prepare_image
from ..service.labeling import LabelingService
from ..service.types import Idle, Push, Task, UserRef
from .common import cut
from .slack_blocks import (
    JSON,
    esc,
    image_block,
    notification,
    slackify,
    static_blocks,
    task_blocks,
)

log = logging.getLogger("chatlabel.slack")

MEMORY = 5000  # messages remembered for in-place updates; older ones fall back to the payload
# Errors that mean we can no longer write to this person: stop pushing to them.
GONE = frozenset(
    {
        "channel_not_found",
        "is_archived",
        "account_inactive",
        "user_disabled",
        "cannot_dm_bot",
        "messages_tab_disabled",
        "user_not_found",
    }
)
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


class SlackItems:
    """Shows items in people's DMs with the bot; one per transport."""

    def __init__(
        self,
        service: LabelingService,
        client: AsyncWebClient,
        media_cache: Path,
        command: str,
    ) -> None:
        self.service = service
        self.client = client
        self.media_cache = media_cache
        self.command = command
        self._dm: dict[str, str] = {}
        self.shown: OrderedDict[int, Shown] = OrderedDict()  # by assignment id
        self.at: OrderedDict[tuple[str, str], Shown] = OrderedDict()  # by (channel, ts)
        self._locks: dict[str, asyncio.Lock] = {}
        self._uploads: dict[str, asyncio.Future[str]] = {}  # images being uploaded, by sha256

    # -- people ---------------------------------------------------------------------------------

    def user(self, team: str, uid: str, name: str = "") -> UserRef:
        """The UserRef of a Slack user: key `slack:T…/U…`, address their DM with the bot."""
        ref = UserRef("slack", f"{team}/{uid}", name)
        return UserRef("slack", ref.user_id, name, self._dm.get(ref.key))

    def remember_dm(self, user: UserRef, channel: str) -> None:
        """Remember a user's DM channel (App Home and message events tell us without asking)."""
        self._dm[user.key] = channel

    def cached_dm(self, user: UserRef) -> str | None:
        """The user's DM channel if known, without asking Slack."""
        return self._dm.get(user.key)

    async def with_dm(self, user: UserRef) -> UserRef:
        """The user with their DM channel id as address (conversations.open, once per user)."""
        channel = self._dm.get(user.key) or user.address
        if channel is None:
            opened = await self.client.conversations_open(users=slack_id(user))
            channel = str(opened["channel"]["id"])
        self._dm[user.key] = channel
        return UserRef(user.platform, user.user_id, user.name, channel)

    async def dm(self, user: UserRef) -> str:
        """The id of the person's DM channel with the bot."""
        channel = (await self.with_dm(user)).address
        assert channel is not None
        return channel

    def lock(self, user: UserRef) -> asyncio.Lock:
        """One lock per person, so two paths never post the same item twice."""
        return self._locks.setdefault(user.key, asyncio.Lock())

    async def tell(self, user: UserRef, text: str) -> None:
        """A brief note only this person sees, in their DM with the bot."""
        channel = await self.dm(user)
        await self.client.chat_postEphemeral(
            channel=channel, user=slack_id(user), text=esc(slackify(text, self.command))
        )

    async def post(self, user: UserRef, text: str, blocks: list[JSON] | None = None) -> str:
        """A message in the person's DM; returns its ts."""
        channel = await self.dm(user)
        if blocks is None:
            sent = await self.client.chat_postMessage(
                channel=channel, text=esc(slackify(text, self.command))
            )
        else:
            sent = await self.client.chat_postMessage(
                channel=channel, text=esc(cut(text, 150)), blocks=blocks
            )
        return str(sent["ts"])

    # -- showing items --------------------------------------------------------------------------

    async def send_next(
        self,
        user: UserRef,
        *,
        force: bool = False,
        idle: bool = True,
        got: Task | Idle | None = None,
    ) -> None:
        """Post the person's next item (or why there is none, if `idle`); `got` if known."""
        user = await self.with_dm(user)
        async with self.lock(user):
            if got is None:
                got = await self.service.next_task(user)
            if isinstance(got, Idle):
                if idle:
                    await self.post(user, got.message)
                return
            await self.show(user, got, force=force)

    async def push(self, push: Push) -> None:
        """Deliver an item the push loop found for someone who was waiting."""
        try:
            user = await self.with_dm(push.user)
            async with self.lock(user):
                await self.show(user, push.task)
        except SlackApiError as e:
            if e.response.get("error") in GONE:
                log.info(
                    "cannot reach %s on Slack (%s); not pushing to them any more",
                    push.user.key,
                    e.response.get("error"),
                )
                await self.service.mark_blocked(push.user)
                return
            raise

    async def show(self, user: UserRef, task: Task, *, force: bool = False) -> None:
        """Post one item (caller holds the person's lock); an item already on screen is skipped."""
        if not force and task.assignment_id in self.shown:
            return
        assert user.address is not None
        image, attached = await self.media(user, task)
        ts = await self._post_item(user.address, task, image, attached)
        self.record(user, task, user.address, ts, static_blocks(task, image, attached=attached))

    def record(self, user: UserRef, task: Task, channel: str, ts: str, static: list[JSON]) -> None:
        """Remember that a message shows an item, for updating it in place later."""
        shown = Shown(
            user.key, task.assignment_id, task.project.name, task.project.kind, channel, ts, static
        )
        _remember(self.shown, task.assignment_id, shown)
        _remember(self.at, (channel, ts), shown)

    async def _post_item(self, channel: str, task: Task, image: JSON | None, attached: bool) -> str:
        blocks = task_blocks(task, image, attached=attached)
        try:
            sent = await self.client.chat_postMessage(
                channel=channel, text=notification(task), blocks=blocks
            )
        except SlackApiError as e:
            if image is None or e.response.get("error") != "invalid_blocks":
                raise
            # Slack may not have processed a just-uploaded file yet: wait once, then send the
            # item without its picture rather than not at all.
            await asyncio.sleep(1.5)
            try:
                sent = await self.client.chat_postMessage(
                    channel=channel, text=notification(task), blocks=blocks
                )
            except SlackApiError:
                log.warning("Slack refused the image of item %s; sending it without", task.item_id)
                blocks = task_blocks(task, None, attached=attached)
                sent = await self.client.chat_postMessage(
                    channel=channel, text=notification(task), blocks=blocks
                )
        return str(sent["ts"])

    async def media(
        self, user: UserRef, task: Task, *, upload: bool = True
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
            await self.client.files_upload_v2(
                channel=user.address,
                file=media.path,
                filename=Path(media.path).name,
                title=f"Item {task.item_id}",
            )
            return None, True
        except (MediaError, OSError, SlackApiError) as e:
            log.warning("could not attach the %s of item %s: %s", media.kind, task.item_id, e)
            return None, False

    async def _image_file_id(self, task: Task) -> str:
        """Prepare an item's picture once and upload it once; later sends reuse the file id."""
        assert task.media is not None
        project = self.service.projects[task.project.name]
        prepared = await asyncio.to_thread(
            prepare_image,
            Path(task.media.path),
            self.media_cache,
            max_side=project.max_image_side,
            boxes=task.boxes or None,
        )
        data = await asyncio.to_thread(prepared.read_bytes)
        sha = hashlib.sha256(data).hexdigest()
        known = await self.service.media_file_id(sha, "slack")
        if known:
            return known
        pending = self._uploads.get(sha)
        if pending is not None:  # someone else is uploading this very picture: share theirs
            return await asyncio.shield(pending)
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        future.add_done_callback(lambda f: f.cancelled() or f.exception())  # no "never retrieved"
        self._uploads[sha] = future
        try:
            # No channel: the file stays private to the bot, and image blocks show it by id.
            sent = await self.client.files_upload_v2(
                file=data,
                filename=f"item-{sha[:12]}.jpg",
                title=f"Item {task.item_id}",
                alt_txt=cut(task.text or task.item_id, 200),
            )
            file_id = str(sent["file"]["id"])
            await self.service.save_media_file_id(sha, "slack", file_id)
            future.set_result(file_id)
            return file_id
        except BaseException as e:
            future.set_exception(e)
            raise
        finally:
            del self._uploads[sha]
