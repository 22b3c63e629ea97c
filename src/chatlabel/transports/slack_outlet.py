"""Views on Slack: Block Kit messages in each person's DM, ephemeral notes, files uploaded once."""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import ipaddress
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlparse

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse
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
from ..mechanics import (
    BoundedCache,
    Dropped,
    LatestEdit,
    Pacer,
    Scope,
    SingleFlight,
    redacted_logger,
)
from ..media import MediaError, prepare_image
from ..service.labeling import LabelingService
from ..service.types import UserRef
from .slack_blocks import JSON, esc, image_block, message_blocks, notification
from .slack_pacing import (
    POST,
    POST_CHANNEL,
    UPLOAD,
    Responder,
    retry_after,
)

log = logging.getLogger("chatlabel.slack")
T = TypeVar("T")

PEOPLE = 20_000  # DM channels and locales remembered
HOOK_TIMEOUT = 30  # seconds a response_url post may take (slack_sdk's own default)
HANDLE_EVENT = "chatlabel_outbox"  # the metadata event type that carries a bulk copy's handle
HISTORY = "conversations.history"  # read only after a crash, to settle copies left in flight
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
    """Renders the conversation's views as Slack Web API calls, paced per method and workspace.

    Every Web API call waits for its turn in the pacer (its method's tier for the workspace;
    chat.postMessage also per channel); a 429 holds only that method (or channel) for its
    Retry-After, and the call is tried again. Edits of a message whose button was just pressed
    go through the press's response_url, which no tier limits; others through chat.update.
    """

    platform = "slack"
    retries = 3  # 429s a call waits out before it fails

    def __init__(
        self,
        client: AsyncWebClient,
        service: LabelingService,
        media_cache: Path,
        command: str,
        pacer: Pacer | None = None,
    ) -> None:
        self.client = client
        self.service = service
        self.media_cache = media_cache
        self.pacer = pacer or Pacer()
        self.team = ""  # the workspace (or organisation) the bot token belongs to
        self.mechanics = Mechanics(
            command=lambda name: f"{command} {name}",
            writer="modal",
            toggles="checkboxes",
            attached=("audio", "video"),
        )
        self._dm: BoundedCache[str, str] = BoundedCache(PEOPLE)
        self._uploads: SingleFlight[str] = SingleFlight()
        self._responders: BoundedCache[MessageRef, Responder] = BoundedCache(PEOPLE)
        self._edits: LatestEdit[MessageRef] = LatestEdit(PEOPLE)
        # One HTTP session for every response_url post, opened by the first: without one,
        # slack_sdk opens (and closes) a session with its own connection pool per post.
        self._hooks: aiohttp.ClientSession | None = None

    def close(self) -> None:
        """Stopping: calls waiting for their turn give up."""
        self.pacer.close()

    async def aclose(self) -> None:
        """Close the response_url session (once nothing posts any more).

        It stays closed: a post after this gets slack_sdk's one-off session, closed after it.
        """
        if self._hooks is not None:
            await self._hooks.close()

    # -- calls ----------------------------------------------------------------------------

    async def api(
        self,
        methods: str | tuple[str, ...],
        call: Callable[[], Awaitable[T]],
        *,
        priority: int = Priority.INTERACTIVE,
        channel: str | None = None,
        wanted: Callable[[], bool] | None = None,
    ) -> T:
        """Make a Web API call in its turn, waiting out 429s; Dropped if no longer wanted."""
        names = (methods,) if isinstance(methods, str) else methods
        scopes: list[Scope] = [(m, self.team) for m in names]
        if POST in names and channel:
            scopes.append((POST_CHANNEL, channel))
        attempts = self.retries
        while True:
            turn = await self.pacer.turn(scopes, priority, wanted)
            if not turn:
                raise Dropped
            try:
                return await call()
            except SlackApiError as e:
                if e.response.status_code != 429 or not attempts:
                    raise
                attempts -= 1
                wait = retry_after(e)
                log.info("Slack asked to wait %.0f s before more %s", wait, "/".join(names))
                self.pacer.refused(scopes, wait)
            finally:
                turn.done()  # counted from Slack's answer: see Pacer

    async def ready(self, to: UserRef, priority: Priority = Priority.BULK) -> None:
        """Wait until a message to this person could be posted at this priority."""
        channel = self.cached_dm(to) or ""
        await self.pacer.ready([(POST, self.team), (POST_CHANNEL, channel)], priority)

    def remember_response(self, ref: MessageRef, url: str) -> None:
        """A press on message `ref` came with this response_url: later edits of it use it."""
        if url:
            self._responders[ref] = Responder(url)

    # -- people ---------------------------------------------------------------------------

    def remember_dm(self, user: UserRef, channel: str) -> None:
        """Remember a person's DM channel (events tell us without asking)."""
        self._dm[user.key] = channel

    def cached_dm(self, user: UserRef) -> str | None:
        """The person's DM channel if known, without asking Slack."""
        return self._dm.get(user.key) or user.address

    async def dm(self, user: UserRef, priority: int = Priority.INTERACTIVE) -> str:
        """The id of the person's DM channel with the bot (conversations.open, once)."""
        channel = self.cached_dm(user)
        if channel is None:
            try:
                opened = await self.api(
                    "conversations.open",
                    lambda: self.client.conversations_open(users=slack_id(user)),
                    priority=priority,
                )
            except SlackApiError as e:
                raise self._failure(e) from None
            except Dropped:
                raise SendFailed("the bot is stopping") from None
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
            channel = await self.dm(to, priority)
            if reply is not None and reply.channel != channel and not reply.told_dm:
                reply.told_dm = True
                await self._respond(reply.response_url, esc(reply.texts("platform.sent_to_dm")))
            if isinstance(view, Document):
                await self._upload(
                    priority,
                    channel=channel,
                    file=view.data,
                    filename=view.filename,
                    title=view.caption or view.filename,
                    initial_comment=esc(view.caption),
                )
                return None
            if view.chart is not None:
                await self._upload(
                    priority,
                    channel=channel,
                    file=view.chart.png,
                    filename=view.chart.filename,
                    title=cut(view.text.partition("\n")[0], 200),
                    initial_comment=esc(view.text),
                )
                return None
            image = await self._media(to, channel, view, priority=priority)
            sent = await self._post(channel, view, image, priority)
        except SlackApiError as e:
            raise self._failure(e) from None
        except Dropped:
            raise SendFailed("the bot is stopping") from None
        return f"{channel}:{sent}"

    async def _post(self, channel: str, view: Message, image: JSON | None, priority: int) -> str:
        blocks = message_blocks(view, image)
        # A bulk copy carries its handle as message metadata: `delivered` finds it after a crash.
        meta = (
            {"event_type": HANDLE_EVENT, "event_payload": {"handle": view.handle}}
            if view.handle
            else None
        )

        def post() -> Awaitable[AsyncSlackResponse]:
            return self.client.chat_postMessage(
                channel=channel, text=notification(view), blocks=blocks, metadata=meta
            )

        try:
            sent = await self.api(POST, post, priority=priority, channel=channel)
        except SlackApiError as e:
            if image is None or e.response.get("error") != "invalid_blocks":
                raise
            # Slack may not have processed a just-uploaded file yet: wait once, then give up
            # on showing the item (the conversation never offers it without its picture).
            await asyncio.sleep(1.5)
            try:
                sent = await self.api(POST, post, priority=priority, channel=channel)
            except SlackApiError:
                raise MediaFailed("Slack refused the image block") from None
        return str(sent["ts"])

    async def delivered(self, to: UserRef, handle: str) -> bool | None:
        """Whether a message carrying `handle` is among the latest in the person's DM.

        Read from the DM's history (scope im:history); None when Slack cannot tell us. A copy
        in flight at a crash is among the last few messages there: 15 are plenty (and all that
        Slack gives apps distributed outside its Marketplace, once a minute).
        """
        try:
            channel = await self.dm(to, Priority.BULK)
            found = await self.api(
                HISTORY,
                lambda: self.client.conversations_history(
                    channel=channel, include_all_metadata=True, limit=15
                ),
                priority=Priority.BULK,
            )
        except (SlackApiError, Unreachable, SendFailed, Dropped) as e:
            log.info("cannot look for %s in %s's DM: %r", handle, to.key, e)
            return None
        for m in found.get("messages") or []:
            meta = m.get("metadata") or {}
            payload = meta.get("event_payload") or {}
            if meta.get("event_type") == HANDLE_EVENT and payload.get("handle") == handle:
                return True
        return False

    async def _upload(self, priority: int, **kwargs: object) -> AsyncSlackResponse:
        return await self.api(
            UPLOAD,
            lambda: self.client.files_upload_v2(**kwargs),  # type: ignore[arg-type]
            priority=priority,
        )

    async def edit(
        self, to: UserRef, ref: MessageRef, view: Message, priority: Priority = Priority.INTERACTIVE
    ) -> None:
        """Replace a message's blocks; only the latest edit of a message goes out.

        Through the response_url of a press on it while that lasts (no tier limits it),
        else chat.update in its turn. A failure is logged and the flow goes on.
        """
        channel, _, ts = ref.partition(":")
        wanted = self._edits.claim(ref, self.pacer)
        try:
            image = await self._media(to, channel, view, upload=False)
            blocks = message_blocks(view, image)
            hook = self._responders.get(ref)
            if hook is not None and hook.usable():
                hook.uses += 1
                if await self._replace(hook.url, view, blocks):
                    return
            if not wanted():
                return
            await self.api(
                "chat.update",
                lambda: self.client.chat_update(
                    channel=channel, ts=ts, text=notification(view), blocks=blocks
                ),
                priority=priority,
                wanted=wanted,
            )
        except Dropped:
            log.debug("an edit of message %s was superseded by a newer one", ts)
        except (SlackApiError, MediaFailed) as e:
            # Never silently: the message keeps what it showed (a stale press is answered
            # by the conversation), and whoever runs the bot can see why.
            log.warning("could not update message %s, giving up: %s", ts, e)

    async def _replace(self, url: str, view: Message, blocks: list[JSON]) -> bool:
        """Replace the pressed message through its response_url; False if Slack refused."""
        hook = self._webhook(url)
        try:
            sent = await hook.send(text=notification(view), blocks=blocks, replace_original=True)
        except (TimeoutError, OSError, aiohttp.ClientError) as e:
            log.info("a response_url post failed (%s); using chat.update", e)
            return False
        if sent.status_code != 200:
            log.info("a response_url was refused (%s); using chat.update", sent.body)
            return False
        return True

    async def delete(self, to: UserRef, ref: MessageRef) -> None:
        """Delete a message the bot posted."""
        channel, _, ts = ref.partition(":")
        self._edits.forget(ref)
        try:
            await self.api("chat.delete", lambda: self.client.chat_delete(channel=channel, ts=ts))
        except (SlackApiError, Dropped) as e:
            log.info("could not delete message %s: %s", ts, e)

    async def toast(self, to: UserRef, press: object, text: str | None, alert: bool) -> None:
        """Slack has no toasts: a note only this person sees, in the DM (nothing when silent)."""
        if not text:
            return
        try:
            channel = await self.dm(to)
            await self.api(
                "chat.postEphemeral",
                lambda: self.client.chat_postEphemeral(
                    channel=channel, user=slack_id(to), text=esc(text)
                ),
            )
        except (SlackApiError, Unreachable, SendFailed, Dropped) as e:
            log.info("could not tell %s: %s", to.key, e)

    def _webhook(self, url: str) -> AsyncWebhookClient:
        """A client for one response_url on the outlet's session, logging through the redactor
        (the URL is a secret)."""
        if self._hooks is None:
            # As slack_sdk's per-post sessions: its timeout, and trust_env off (the proxy is
            # each client's, per request: see below).
            self._hooks = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=HOOK_TIMEOUT), trust_env=False
            )
        hook = AsyncWebhookClient(
            url,
            timeout=HOOK_TIMEOUT,
            session=self._hooks,
            logger=redacted_logger("chatlabel.slack.response"),
        )
        if is_loopback(url):
            hook.proxy = None  # it read HTTP(S)_PROXY, which would swallow loopback calls
        return hook

    async def _respond(self, url: str, text: str) -> None:
        """Reply to a slash command ephemerally; a failure is logged and the command goes on."""
        hook = self._webhook(url)
        try:
            sent = await hook.send(text=text, response_type="ephemeral")
        except (TimeoutError, OSError, aiohttp.ClientError) as e:
            # The class only: some of these errors quote the URL, whose path is a secret.
            log.warning("a response_url post failed (%s); the reply is lost", type(e).__name__)
            return
        if sent.status_code != 200:
            log.warning("a response_url was refused (%s); the reply is lost", sent.body)

    # -- media ----------------------------------------------------------------------------

    async def _media(
        self,
        to: UserRef,
        channel: str,
        view: Message,
        *,
        upload: bool = True,
        priority: int = Priority.INTERACTIVE,
    ) -> JSON | None:
        """The image block for a view's picture; audio and video are posted just before."""
        media = view.media
        if media is None:
            return None
        try:
            if media.kind == "image":
                return image_block(await self._image_file_id(view, priority), media.alt)
            if upload:
                # Slack cannot play audio or video inside blocks: share the file in the DM
                # first (a file is shared into a conversation only when it is uploaded).
                await self._upload(
                    priority, channel=channel, file=media.path, filename=Path(media.path).name
                )
            return None
        except (MediaError, OSError) as e:
            raise MediaFailed(str(e)) from e

    async def _image_file_id(self, view: Message, priority: int) -> str:
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
            sent = await self._upload(
                priority, file=data, filename=f"item-{sha[:12]}.jpg", alt_txt=cut(media.alt, 200)
            )
            file_id = str(sent["file"]["id"])
            await self.service.save_media_file_id(sha, "slack", file_id)
            return file_id

        return await self._uploads.run(sha, upload)


def _plain(view: Message) -> bool:
    """A text-only message: what a command's ephemeral reply can carry."""
    return not (view.buttons or view.media or view.chart or view.item is not None)
