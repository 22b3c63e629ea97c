"""Compact button data: row ids and an index, checked against the database when pressed.

Buttons carry only row ids and a choice index, e.g. "a:123:2" (answer assignment 123 with its
third choice). Everything is checked again when pressed, so forged data can do nothing a real
button could not; it stays far below Telegram's 64-byte limit.
"""

from __future__ import annotations

from dataclasses import dataclass

ACTIONS = {
    "a": "answer",  # a:<assignment>:<choice index>
    "t": "toggle",  # t:<assignment>:<choice index>   (multi)
    "m": "select",  # m:<assignment>                 (multi: the ticked set comes with the press)
    "d": "done",  # d:<assignment>                     (multi)
    "s": "skip",  # s:<assignment>
    "u": "undo",  # u:<answer>
    "p": "project",  # p:<project index>              (choice of project at /start)
    "g": "page",  # g:<assignment>:<page>           (long label lists, one page at a time)
    "l": "language",  # l:<language index>            (/language)
    "b": "start",  # b:0                              (a home page's Start button)
    "x": "export",  # x:<project index>               (a coordinator's Export button)
    "r": "report",  # r:<assignment>                   (Report: show the reasons)
    "c": "reason",  # c:<assignment>:<reason index>    (report the item for this reason)
    "y": "why",  # y:<answer>:<skip reason index>      (why an item was skipped)
    "n": "continue",  # n:0                             (a reminder's Continue button)
    "o": "restore",  # o:<item row>                    (a coordinator puts a held item back)
    "z": "remove",  # z:<item row>                     (a coordinator removes a held item)
    "e": "send",  # e:<announcement>                   (send a previewed announcement)
    "q": "cancel",  # q:<announcement>                 (cancel an announcement)
}
_CODES = {v: k for k, v in ACTIONS.items()}
_WITH_INDEX = ("answer", "toggle", "page", "reason", "why")
MAX_DATA = 64


@dataclass(frozen=True)
class Press:
    """A decoded button press."""

    action: str
    ref: int
    index: int | None = None
    # The toggle data of every choice the platform shows ticked, when it sends them with the
    # press (Slack's checkboxes send their whole state each time); None when it does not.
    ticked: tuple[str, ...] | None = None


def encode(action: str, ref: int, index: int | None = None) -> str:
    """Compact button data for an action on a database row."""
    code = _CODES[action]
    return f"{code}:{ref}" if index is None else f"{code}:{ref}:{index}"


def decode(data: str, ticked: tuple[str, ...] | None = None) -> Press | None:
    """The press a button's data stands for (with the ticks sent with it); None for anything
    malformed or unknown."""
    if len(data) > MAX_DATA:
        return None
    parts = data.split(":")
    if len(parts) not in (2, 3) or parts[0] not in ACTIONS:
        return None
    # Plain ASCII digits only: int() would also take " 5", "+5", "5_0" and other scripts' digits.
    if not all(p.isascii() and p.isdigit() for p in parts[1:]):
        return None
    nums = [int(p) for p in parts[1:]]
    if any(n < 0 or n > 2**62 for n in nums):
        return None
    action = ACTIONS[parts[0]]
    needs_index = action in _WITH_INDEX
    if needs_index != (len(nums) == 2):
        return None
    return Press(action, nums[0], nums[1] if needs_index else None, ticked)


def choice_of(choices: tuple[str, ...], index: int | None) -> str | None:
    """The choice a button index points at, None when out of range."""
    if index is None or not 0 <= index < len(choices):
        return None
    return choices[index]
