"""State, method table and Block Kit checks of the loopback Slack Web API fake."""

from __future__ import annotations

import copy
import json
import random
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

JSON = dict[str, Any]

MESSAGE_BLOCK_LIMIT = 50
VIEW_BLOCK_LIMIT = 100
VIEW_SIZE_LIMIT = 250_000


@dataclass(frozen=True)
class MethodSpec:
    """Required args, rate-limit tier (as in Slack's reference) and the errors the fake returns.

    Tiers: t1 1+, t2 20+, t3 50+, t4 100+ calls a minute per method and workspace; t5 is
    Slack's "special" (chat.postMessage: about one message a second per channel).
    """

    required: tuple[str, ...]
    errors: frozenset[str] = frozenset()
    app_token: bool = False
    tier: str = "t3"


def _spec(
    required: tuple[str, ...], *errors: str, app_token: bool = False, tier: str = "t3"
) -> MethodSpec:
    return MethodSpec(required, frozenset(errors), app_token, tier)


# Checked against the reference in tests/specs/slack-methods by tests/test_slack_emulator.py.
METHOD_SPECS: dict[str, MethodSpec] = {
    "apps.connections.open": _spec(("token",), "forbidden_team", "missing_args", app_token=True),
    "auth.test": _spec(("token",), tier="t5"),
    "chat.delete": _spec(
        ("token", "ts", "channel"), "cant_delete_message", "channel_not_found", "message_not_found"
    ),
    "chat.postEphemeral": _spec(
        ("token", "user", "channel"),
        "channel_not_found",
        "invalid_blocks",
        "invalid_blocks_format",
        "no_text",
        "user_not_in_channel",
        tier="t4",
    ),
    "chat.postMessage": _spec(
        ("token", "channel"),
        "channel_not_found",
        "invalid_blocks",
        "invalid_blocks_format",
        "no_text",
        tier="t5",
    ),
    "chat.update": _spec(
        ("token", "ts", "channel"),
        "cant_update_message",
        "channel_not_found",
        "invalid_blocks",
        "invalid_blocks_format",
        "message_not_found",
        "no_text",
    ),
    "conversations.history": _spec(("token", "channel"), "channel_not_found", "invalid_ts_oldest"),
    "conversations.open": _spec(
        ("token",), "channel_not_found", "user_not_found", "users_list_not_supplied"
    ),
    "files.completeUploadExternal": _spec(
        ("token", "files"), "channel_not_found", "file_not_found", "invalid_blocks", tier="t4"
    ),
    "files.getUploadURLExternal": _spec(
        ("token", "length", "filename"), "missing_argument", tier="t4"
    ),
    "users.info": _spec(("token", "user"), "user_not_found", tier="t4"),
    "views.open": _spec(
        ("token", "view"),
        "exchanged_trigger_id",
        "expired_trigger_id",
        "invalid_trigger_id",
        "view_too_large",
        tier="t4",
    ),
    "views.publish": _spec(
        ("token", "user_id", "view"), "hash_conflict", "view_too_large", tier="t4"
    ),
    "views.update": _spec(
        ("token", "view"), "hash_conflict", "not_found", "view_too_large", tier="t4"
    ),
}

# Errors any Slack method can return (Slack documents them once, not per method).
COMMON_ERRORS = frozenset(
    {
        "not_authed",
        "invalid_auth",
        "invalid_arguments",
        "invalid_form_data",
        "invalid_json",
        "json_not_object",
        "ratelimited",
        "unknown_method",
    }
)

# What Slack answers when one of these required args is missing, if the method documents it.
MISSING_ARG_ERRORS = {
    "channel": "channel_not_found",
    "ts": "message_not_found",
    "user": "user_not_found",
}


class SlackEmulatorError(Exception):
    """A simulated user or test asked for something Slack would not let a person do."""


class ApiFailure(Exception):
    """A Web API call fails with Slack's `{"ok": false, "error": ...}` shape."""

    def __init__(self, error: str, detail: str | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.detail = detail

    def body(self) -> JSON:
        """The JSON body Slack sends for this failure."""
        body: JSON = {"ok": False, "error": self.error}
        if self.detail:
            body["response_metadata"] = {"messages": [f"[ERROR] {self.detail}"]}
        return body


@dataclass
class SlackMessage:
    """A message as stored in a channel (or shown to one user, if ephemeral); mutated in place."""

    channel: str
    ts: str
    user: str
    team: str
    text: str = ""
    blocks: list[JSON] = field(default_factory=list)
    files: list[JSON] = field(default_factory=list)
    thread_ts: str | None = None
    bot_id: str | None = None
    app_id: str | None = None
    ephemeral: bool = False
    edited_ts: str | None = None
    metadata: JSON | None = None  # chat.postMessage's `metadata` (event_type, event_payload)

    def to_dict(self) -> JSON:
        """The message object as Slack returns it in API responses and interaction payloads."""
        d: JSON = {
            "type": "message",
            "ts": self.ts,
            "user": self.user,
            "team": self.team,
            "text": self.text,
        }
        if self.bot_id:
            d.update(bot_id=self.bot_id, app_id=self.app_id)
        if self.blocks:
            d["blocks"] = copy.deepcopy(self.blocks)
        if self.files:
            d.update(files=copy.deepcopy(self.files), upload=True)
        if self.thread_ts:
            d["thread_ts"] = self.thread_ts
        if self.edited_ts:
            d["edited"] = {"user": self.user, "ts": self.edited_ts}
        return d

    @property
    def button_texts(self) -> list[str]:
        """Texts of the buttons currently in the message, in display order."""
        return [
            el["text"]["text"]
            for _, el in interactive_elements(self.blocks)
            if el.get("type") == "button"
        ]


@dataclass
class SlackFile:
    """A file uploaded through files.getUploadURLExternal and the upload URL."""

    id: str
    name: str
    title: str
    length: int
    user: str
    created: int
    url_private: str
    content: bytes | None = None
    mimetype: str = "application/octet-stream"
    channels: list[str] = field(default_factory=list)

    def to_dict(self) -> JSON:
        """The file object as Slack shows it in messages."""
        return {
            "id": self.id,
            "created": self.created,
            "timestamp": self.created,
            "name": self.name,
            "title": self.title,
            "mimetype": self.mimetype,
            "filetype": self.name.rpartition(".")[2].lower() if "." in self.name else "",
            "user": self.user,
            "size": len(self.content or b""),
            "url_private": self.url_private,
            "url_private_download": self.url_private,
            "channels": list(self.channels),
        }


@dataclass(frozen=True)
class SlackCall:
    """One Web API request the fake received, with its args (token removed) and reply."""

    method: str
    args: JSON
    status: int
    response: JSON

    @property
    def ok(self) -> bool:
        """True if the call succeeded."""
        return bool(self.response.get("ok"))

    @property
    def error(self) -> str | None:
        """Slack's error code, if the call failed."""
        return self.response.get("error")


@dataclass(frozen=True)
class ResponseUrlPost:
    """One post the bot made to an interaction's `response_url`."""

    user_id: str
    channel_id: str
    payload: JSON
    status: int


@dataclass
class SlackFaults:
    """Injected faults: 429s (seeded random, or the next N calls), slow methods, lost
    Socket Mode acks and response_url posts cut off unanswered."""

    rate_429: float = 0.0
    retry_after: int = 1
    seed: int = 0
    methods: frozenset[str] | None = None
    slow: dict[str, float] = field(default_factory=dict)  # seconds a method's answer waits
    _forced: int = field(default=0, init=False, repr=False)
    _next: Counter[str] = field(default_factory=Counter, init=False, repr=False)  # one-offs
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def ratelimit_next(self, count: int = 1) -> None:
        """Answer the next `count` matching calls with 429, whatever the rate."""
        self._forced += count

    def lose_next_acks(self, count: int = 1) -> None:
        """Drop the next `count` Socket Mode acks on the way to Slack, as a flaky network would."""
        self._next["ack"] += count

    def should_lose_ack(self) -> bool:
        """Decide (and consume) whether the Socket Mode ack just received is lost."""
        return self._take("ack")

    def cut_next_responses(self, count: int = 1) -> None:
        """Drop the connection of the next `count` response_url posts without an answer."""
        self._next["response"] += count

    def should_cut_response(self) -> bool:
        """Decide (and consume) whether the response_url post just received is cut off."""
        return self._take("response")

    def _take(self, fault: str) -> bool:
        if self._next[fault] <= 0:
            return False
        self._next[fault] -= 1
        return True

    def should_ratelimit(self, method: str) -> bool:
        """Decide (and consume) whether this call of `method` gets a 429."""
        if self.methods is not None and method not in self.methods:
            return False
        if self._forced:
            self._forced -= 1
            return True
        return self.rate_429 > 0 and self._rng.random() < self.rate_429


def _contains_none(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_contains_none(v) for v in value.values())
    if isinstance(value, list):
        return any(v is None or _contains_none(v) for v in value)
    return False


def parse_blocks(
    raw: Any,
    *,
    limit: int = MESSAGE_BLOCK_LIMIT,
    error: str = "invalid_blocks",
    format_error: str = "invalid_blocks_format",
) -> list[JSON]:
    """Decode and validate a `blocks` arg (JSON string or list) the way Slack rejects bad ones."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise ApiFailure(format_error, "blocks is not valid JSON") from None
    if not isinstance(raw, list) or not all(isinstance(b, dict) for b in raw):
        raise ApiFailure(format_error, "blocks must be an array of objects")
    if len(raw) > limit:
        raise ApiFailure(error, f"no more than {limit} items allowed [json-pointer:/blocks]")
    for i, raw_block in enumerate(raw):
        block = Block.parse(raw_block)
        if block is None:
            raise ApiFailure(error, f"unknown block type [json-pointer:/blocks/{i}]")
        try:
            # to_dict() validates nested elements too; validate_json() alone checks one level.
            rendered = block.to_dict()
        except SlackObjectFormationError as e:
            raise ApiFailure(error, f"{e} [json-pointer:/blocks/{i}]") from None
        if _contains_none(rendered):
            raise ApiFailure(error, f"unknown element type [json-pointer:/blocks/{i}]")
    return copy.deepcopy(raw)


def parse_view(raw: Any, *, allowed_types: frozenset[str]) -> JSON:
    """Decode and validate a `view` arg; Slack answers `invalid_arguments` for a bad view."""
    if isinstance(raw, str):
        if len(raw) > VIEW_SIZE_LIMIT:
            raise ApiFailure("view_too_large")
        try:
            raw = json.loads(raw)
        except ValueError:
            raise ApiFailure("invalid_arguments", "view is not valid JSON") from None
    if not isinstance(raw, dict):
        raise ApiFailure("invalid_arguments", "view must be an object")
    if len(json.dumps(raw)) > VIEW_SIZE_LIMIT:
        raise ApiFailure("view_too_large")
    if raw.get("type") not in allowed_types:
        raise ApiFailure("invalid_arguments", f"view type must be one of {sorted(allowed_types)}")
    if raw["type"] == "modal" and not raw.get("title"):
        raise ApiFailure("invalid_arguments", "a modal needs a title")
    view = copy.deepcopy(raw)
    view["blocks"] = parse_blocks(
        raw.get("blocks", []),
        limit=VIEW_BLOCK_LIMIT,
        error="invalid_arguments",
        format_error="invalid_arguments",
    )
    try:
        # Blocks were checked above; this shallow check covers their count, title, close,
        # submit and metadata.
        View(**view).validate_json()
    except SlackObjectFormationError as e:
        raise ApiFailure("invalid_arguments", str(e)) from None
    return view


def interactive_elements(blocks: list[JSON]) -> Iterator[tuple[str, JSON]]:
    """(block_id, element) for every interactive element in `blocks`."""
    for block in blocks:
        block_id = block.get("block_id", "")
        if block.get("type") in ("actions", "context_actions"):
            for element in block.get("elements", []):
                yield block_id, element
        elif isinstance(block.get("accessory"), dict):
            yield block_id, block["accessory"]
        elif block.get("type") == "input" and isinstance(block.get("element"), dict):
            yield block_id, block["element"]


def assign_ids(blocks: list[JSON], prefix: str) -> None:
    """Give blocks and interactive elements the ids Slack generates when the sender omits them."""
    for i, block in enumerate(blocks):
        block.setdefault("block_id", f"{prefix}b{i}")
    for n, (_, element) in enumerate(interactive_elements(blocks)):
        if element.get("type") != "image":
            element.setdefault("action_id", f"{prefix}a{n}")


def find_element(blocks: list[JSON], action: str) -> tuple[str, JSON]:
    """The element whose action_id or button text is `action`; error if none or several."""
    elements = list(interactive_elements(blocks))
    matches = [
        (bid, el)
        for bid, el in elements
        if el.get("action_id") == action
        or (el.get("type") == "button" and el.get("text", {}).get("text") == action)
    ]
    if len(matches) == 1:
        return matches[0]
    shown = (
        ", ".join(
            f"{el.get('type')} {el.get('action_id')!r}"
            + (f" ({el['text']['text']!r})" if el.get("type") == "button" else "")
            for _, el in elements
        )
        or "none"
    )
    what = "no element" if not matches else f"{len(matches)} elements"
    raise SlackEmulatorError(f"{what} matching {action!r}; available: {shown}")


def find_options(element: JSON, values: list[str]) -> list[JSON]:
    """The options of a checkboxes element with these values; error on an unknown value."""
    options = {o["value"]: o for o in element.get("options", [])}
    unknown = [v for v in values if v not in options]
    if unknown:
        raise SlackEmulatorError(
            f"no option {unknown} in {element.get('action_id')!r}; options: {sorted(options)}"
        )
    return [copy.deepcopy(options[v]) for v in values]


def text_and_blocks(args: Mapping[str, Any]) -> tuple[str | None, list[JSON] | None]:
    """The `text` and validated `blocks` of a message-like payload; None when absent."""
    text, blocks = args.get("text"), args.get("blocks")
    return (None if text is None else str(text)), (None if blocks is None else parse_blocks(blocks))
