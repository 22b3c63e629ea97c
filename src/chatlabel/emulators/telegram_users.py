"""Simulated Telegram users who write to the bot, press its buttons and read its answers."""

from __future__ import annotations

from collections.abc import Callable

from chatlabel.emulators.telegram_model import JSON, Chat, ChatMessage, EmulatorUsageError
from chatlabel.emulators.telegram_state import EmulatorState


class SimUser:
    """A simulated user in a private chat with the bot (chat id == user id)."""

    def __init__(self, state: EmulatorState, chat: Chat) -> None:
        self._state = state
        self._chat = chat

    def __repr__(self) -> str:
        return f"SimUser({self.id}, {self.first_name!r})"

    @property
    def id(self) -> int:
        """The user id, which is also the chat id."""
        return self._chat.id

    @property
    def first_name(self) -> str:
        """The user's first name."""
        return str(self._chat.user["first_name"])

    @property
    def username(self) -> str | None:
        """The user's @username without the @, if any."""
        return self._chat.user.get("username")

    @property
    def user_json(self) -> JSON:
        """The Telegram User object for this user."""
        return self._chat.user

    @property
    def chat(self) -> Chat:
        """The private chat with the bot, with every message in it."""
        return self._chat

    @property
    def messages(self) -> list[ChatMessage]:
        """The bot's messages in this chat as they are now (edits applied, deleted ones gone)."""
        return self._chat.bot_messages

    @property
    def last_message(self) -> ChatMessage:
        """The bot's latest message; raises EmulatorUsageError when there is none."""
        messages = self.messages
        if not messages:
            raise EmulatorUsageError(f"{self} has no messages from the bot yet")
        return messages[-1]

    @property
    def callback_answers(self) -> list[str]:
        """Texts the bot answered this user's callback queries with ("" for no text), in order."""
        return [
            query.answer_text or ""
            for query in self._state.callback_queries.values()
            if query.user_id == self.id and query.answered
        ]

    @property
    def blocked(self) -> bool:
        """Whether this user has blocked the bot."""
        return self._chat.blocked

    def block(self) -> None:
        """Block the bot: its calls to this chat get 403 until unblock()."""
        self._state.set_blocked(self._chat, True)

    def unblock(self) -> None:
        """Unblock the bot."""
        self._state.set_blocked(self._chat, False)

    async def send(self, text: str, reply_to: ChatMessage | int | None = None) -> ChatMessage:
        """Write a message to the bot ("/start CODE" carries a bot_command entity), as a reply
        to one of the chat's messages when `reply_to` is given."""
        if self.blocked:
            raise EmulatorUsageError(f"{self} has blocked the bot; unblock() first")
        if not text.strip():
            raise EmulatorUsageError("Telegram clients cannot send an empty message")
        replied = None
        if reply_to is not None:
            mid = reply_to if isinstance(reply_to, int) else reply_to.message_id
            replied = self._chat.messages.get(mid)
            if replied is None or replied.deleted:
                raise EmulatorUsageError(f"{self} has no message {mid} to reply to")
        return self._state.user_message(self._chat, text, replied)

    async def send_photo(self, caption: str | None = None) -> int:
        """Send the bot a photo (a tiny one, as a phone would: several sizes); the update id."""
        chat = self._chat
        chat.started = True
        message: JSON = {
            "message_id": chat.next_message_id,
            "from": chat.user,
            "chat": chat.to_json(),
            "date": 0,
            "photo": [
                {"file_id": f"AgAD{self.id}", "file_unique_id": f"u{self.id}", "width": 90,
                 "height": 90, "file_size": 900},
            ],
        }  # fmt: skip
        if caption:
            message["caption"] = caption
        chat.next_message_id += 1
        return self._state.queue_update("message", message)

    async def edit(self, message: ChatMessage, text: str) -> int:
        """Edit a message this user sent: an edited_message update (its id) reaches the bot."""
        if not text.strip():
            raise EmulatorUsageError("Telegram clients cannot leave a message empty")
        return self._state.edit_user_message(self._chat, message.message_id, text)

    async def press(self, message: ChatMessage | int, button: str) -> str:
        """Press a button by text or callback_data on a message's current keyboard; returns
        the callback query id."""
        message_id = message if isinstance(message, int) else message.message_id
        current = self._chat.messages.get(message_id)
        if current is None or current.deleted or not current.from_bot:
            shown = [m.describe() for m in self.messages[-5:]]
            raise EmulatorUsageError(
                f"{self} has no bot message {message_id} to press on; latest are {shown}"
            )
        chosen = current.button(button)
        if "callback_data" not in chosen:
            raise EmulatorUsageError(f"button {chosen['text']!r} has no callback_data: {chosen}")
        return self._state.callback_query(self._chat, message_id, chosen["callback_data"])

    async def press_raw(self, message_id: int, data: str) -> str:
        """Send callback data no button carries (a forged or stale press); returns the query id."""
        return self._state.callback_query(self._chat, message_id, data)

    async def wait_for(
        self,
        condition: Callable[[], bool],
        timeout: float = 5.0,  # noqa: ASYNC109 - every wait is bounded by default
        what: str = "condition",
    ) -> None:
        """Wait until condition() holds, or raise TimeoutError describing the chat."""
        if not await self._state.signal.wait_until(condition, timeout):
            shown = [m.describe() for m in self.messages[-5:]] or "none"
            raise TimeoutError(
                f"{self}: no {what} within {timeout}s; latest bot messages: {shown}; "
                f"callback answers: {self.callback_answers}"
            )

    async def wait_for_message(
        self,
        match: int | Callable[[ChatMessage], bool],
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> ChatMessage:
        """Wait until the bot has sent `match` messages here (returns the match-th), or until
        one of its messages, as it is now, satisfies `match` (returns the newest such)."""
        if isinstance(match, int):
            await self.wait_for(lambda: len(self.messages) >= match, timeout, f"message #{match}")
            return self.messages[match - 1]
        found: list[ChatMessage] = []

        def matched() -> bool:
            found[:] = [m for m in self.messages if match(m)][-1:]
            return bool(found)

        await self.wait_for(matched, timeout, "matching message")
        return found[0]

    async def wait_for_answer(
        self,
        query_id: str,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> str | None:
        """Wait until the bot answers a callback query; returns the answer's text."""
        query = self._state.callback_queries[query_id]
        await self.wait_for(lambda: query.answered, timeout, f"answer to callback query {query_id}")
        return query.answer_text
