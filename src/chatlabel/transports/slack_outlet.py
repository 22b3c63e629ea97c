"""Views on Slack: Block Kit messages in each person's DM, ephemeral notes, files uploaded once."""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import ipaddress
import logging
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from ..conversation import (
    Document,
    Mechanics,
    MediaFailed,
    Message,
    MessageRef,
    Priority,
    SendFailed,
    Texts,
    Unreachable,
)
from ..conversation.render import cut
from ..mechanics import BoundedCache, SingleFlight
from ..media import MediaError, prepare_image
from ..service.labeling import LabelingService
from ..service.types import UserRef
from .slack_blocks import JSON, esc, image_block, message_blocks, notification

log = logging.getLogger("chatlabel.slack")

PEOPLE = 20_000  # DM channels and locales remembered
HANDLE_EVENT = "chatlabel_outbox"  # the metadata event type that carries a bulk copy's handle
# Errors that mean we can no longer write to this person.
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


def is_loopback(url: str) -> bool:
    """True for URLs on this machine (where an HTTP proxy from the environment must not apply)."""
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def slack_id(user: UserRef) -> str:
    """The Slack user id (U…) inside a `T…/U…` user id."""
    return user.user_id.rsplit("/", 1)[-1]


@dataclass
class CommandReply:
    """Where replies to the slash command being handled go: its response_url, its channel."""

    response_url: str
    channel: str
    texts: Texts
    told_dm: bool = False
    pending: list[str] = field(default_factory=list)


# Set by the adapter while it hands a slash command to the conversation.
REPLYING: contextvars.ContextVar[CommandReply | None] = contextvars.ContextVar(
    "chatlabel_slack_command", default=None
)


class SlackOutlet:
    """Renders the conversation's views as Slack Web API calls."""

    platform = "slack"

    def __init__(
        self, client: AsyncWebClient, service: LabelingService, media_cache: Path, command: str
    ) -> None:
        self.client = client
        self.service = service
        self.media_cache = media_cache
        self.mechanics = Mechanics(
            command=lambda name: f"{command} {name}",
            writer="modal",
            toggles="checkboxes",
            attached=("audio", "video"),
        )
        self._dm: BoundedCache[str, str] = BoundedCache(PEOPLE)
        self._uploads: SingleFlight[str] = SingleFlight()

    # -- people ---------------------------------------------------------------------------

    def remember_dm(self, user: UserRef, channel: str) -> None:
        """Remember a person's DM channel (events tell us without asking)."""
        self._dm[user.key] = channel

    def cached_dm(self, user: UserRef) -> str | None:
        """The person's DM channel if known, without asking Slack."""
        return self._dm.get(user.key) or user.address

    async def dm(self, user: UserRef) -> str:
        """The id of the person's DM channel with the bot (conversations.open, once)."""
        channel = self.cached_dm(user)
        if channel is None:
            try:
                opened = await self.client.conversations_open(users=slack_id(user))
            except SlackApiError as e:
                raise self._failure(e) from None
            channel = str(opened["channel"]["id"])
        self._dm[user.key] = channel
        return channel

    @staticmethod
    def _failure(e: SlackApiError) -> Exception:
        error = str(e.response.get("error"))
        return Unreachable(error) if error in GONE else SendFailed(error)

    # -- the outlet -----------------------------------------------------------------------

    async def send(
        self, to: UserRef, view: Message | Document, priority: Priority = Priority.INTERACTIVE
    ) -> MessageRef | None:
        """Post a view: a command's plain reply ephemerally where it was typed, else in the DM."""
        reply = REPLYING.get()
        try:
            if isinstance(view, Message) and view.transient and _plain(view):
                if reply is not None:
                    await self._respond(reply.response_url, esc(view.text))
                else:
                    await self.toast(to, None, view.text, False)
                return None
            channel = await self.dm(to)
            if reply is not None and reply.channel != channel and not reply.told_dm:
                reply.told_dm = True
                await self._respond(reply.response_url, esc(reply.texts("platform.sent_to_dm")))
            if isinstance(view, Document):
                await self.client.files_upload_v2(
                    channel=channel,
                    file=view.data,
                    filename=view.filename,
                    title=view.caption or view.filename,
                    initial_comment=esc(view.caption),
                )
                return None
            if view.chart is not None:
                await self.client.files_upload_v2(
                    channel=channel,
                    file=view.chart.png,
                    filename=view.chart.filename,
                    title=cut(view.text.partition("\n")[0], 200),
                    initial_comment=esc(view.text),
                )
                return None
            image = await self._media(to, channel, view)
            sent = await self._post(channel, view, image)
        except SlackApiError as e:
            raise self._failure(e) from None
        return f"{channel}:{sent}"

    async def _post(self, channel: str, view: Message, image: JSON | None) -> str:
        blocks = message_blocks(view, image)
        # A bulk copy carries its handle as message metadata: `delivered` finds it after a crash.
        meta = (
            {"event_type": HANDLE_EVENT, "event_payload": {"handle": view.handle}}
            if view.handle
            else None
        )
        try:
            sent = await self.client.chat_postMessage(
                channel=channel, text=notification(view), blocks=blocks, metadata=meta
            )
        except SlackApiError as e:
            if image is None or e.response.get("error") != "invalid_blocks":
                raise
            # Slack may not have processed a just-uploaded file yet: wait once, then send the
            # item without its picture rather than not at all.
            await asyncio.sleep(1.5)
            try:
                sent = await self.client.chat_postMessage(
                    channel=channel, text=notification(view), blocks=blocks, metadata=meta
                )
            except SlackApiError:
                raise MediaFailed("Slack refused the image block") from None
        return str(sent["ts"])

    async def delivered(self, to: UserRef, handle: str) -> bool | None:
        """Whether a message carrying `handle` is among the latest in the person's DM.

        Read from the DM's history (scope im:history); None when Slack cannot tell us. A copy
        in flight at a crash is among the last few messages sent there, so 200 are plenty.
        """
        try:
            channel = await self.dm(to)
            found = await self.client.conversations_history(
                channel=channel, include_all_metadata=True, limit=200
            )
        except (SlackApiError, Unreachable, SendFailed) as e:
            log.info("cannot look for %s in %s's DM: %s", handle, to.key, e)
            return None
        for m in found.get("messages") or []:
            meta = m.get("metadata") or {}
            payload = meta.get("event_payload") or {}
            if meta.get("event_type") == HANDLE_EVENT and payload.get("handle") == handle:
                return True
        return False

    async def edit(
        self, to: UserRef, ref: MessageRef, view: Message, priority: Priority = Priority.INTERACTIVE
    ) -> None:
        """Replace a message's blocks; a failure is logged and the flow goes on."""
        channel, _, ts = ref.partition(":")
        try:
            image = await self._media(to, channel, view, upload=False)
            await self.client.chat_update(
                channel=channel, ts=ts, text=notification(view), blocks=message_blocks(view, image)
            )
        except (SlackApiError, MediaFailed) as e:
            log.warning("could not update message %s: %s", ts, e)

    async def delete(self, to: UserRef, ref: MessageRef) -> None:
        """Delete a message the bot posted."""
        channel, _, ts = ref.partition(":")
        try:
            await self.client.chat_delete(channel=channel, ts=ts)
        except SlackApiError as e:
            log.info("could not delete message %s: %s", ts, e.response.get("error"))

    async def toast(self, to: UserRef, press: object, text: str | None, alert: bool) -> None:
        """Slack has no toasts: a note only this person sees, in the DM (nothing when silent)."""
        if not text:
            return
        try:
            channel = await self.dm(to)
            await self.client.chat_postEphemeral(channel=channel, user=slack_id(to), text=esc(text))
        except (SlackApiError, Unreachable, SendFailed) as e:
            log.info("could not tell %s: %s", to.key, e)

    async def _respond(self, url: str, text: str) -> None:
        hook = AsyncWebhookClient(url)
        if is_loopback(url):
            hook.proxy = None  # it read HTTP(S)_PROXY, which would swallow loopback calls
        await hook.send(text=text, response_type="ephemeral")

    # -- media ----------------------------------------------------------------------------

    async def _media(
        self, to: UserRef, channel: str, view: Message, *, upload: bool = True
    ) -> JSON | None:
        """The image block for a view's picture; audio and video are posted just before."""
        media = view.media
        if media is None:
            return None
        try:
            if media.kind == "image":
                return image_block(await self._image_file_id(view), media.alt)
            if upload:
                # Slack cannot play audio or video inside blocks: share the file in the DM
                # first (a file is shared into a conversation only when it is uploaded).
                await self.client.files_upload_v2(
                    channel=channel, file=media.path, filename=Path(media.path).name
                )
            return None
        except (MediaError, OSError) as e:
            raise MediaFailed(str(e)) from e

    async def _image_file_id(self, view: Message) -> str:
        """Prepare an item's picture once and upload it once; later sends reuse the file id."""
        media = view.media
        assert media is not None
        prepared = await asyncio.to_thread(
            prepare_image,
            Path(media.path),
            self.media_cache,
            max_side=media.max_side,
            boxes=list(media.boxes) or None,
        )
        data = await asyncio.to_thread(prepared.read_bytes)
        sha = hashlib.sha256(data).hexdigest()
        known = await self.service.media_file_id(sha, "slack")
        if known:
            return known

        async def upload() -> str:
            again = await self.service.media_file_id(sha, "slack")
            if again:
                return again
            # No channel: the file stays private to the bot, and image blocks show it by id.
            sent = await self.client.files_upload_v2(
                file=data, filename=f"item-{sha[:12]}.jpg", alt_txt=cut(media.alt, 200)
            )
            file_id = str(sent["file"]["id"])
            await self.service.save_media_file_id(sha, "slack", file_id)
            return file_id

        return await self._uploads.run(sha, upload)


def _plain(view: Message) -> bool:
    """A text-only message: what a command's ephemeral reply can carry."""
    return not (view.buttons or view.media or view.chart or view.item is not None)
