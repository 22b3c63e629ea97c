"""One bounded cache for every per-person or per-message map in the package."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Generic, TypeVar, overload

K = TypeVar("K")
V = TypeVar("V")
D = TypeVar("D")


class BoundedCache(Generic[K, V]):
    """A dict that forgets its least recently used entries beyond `size`.

    Maps keyed by strangers (people, messages, events) must not grow without end: a flood of
    new senders would otherwise become a memory leak.
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self.size = size
        self._data: OrderedDict[K, V] = OrderedDict()

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __iter__(self) -> Iterator[K]:
        return iter(list(self._data))

    def __getitem__(self, key: K) -> V:
        value = self._data[key]
        self._data.move_to_end(key)
        return value

    def __setitem__(self, key: K, value: V) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self.size:
            self._data.popitem(last=False)

    def __delitem__(self, key: K) -> None:
        del self._data[key]

    @overload
    def get(self, key: K) -> V | None: ...
    @overload
    def get(self, key: K, default: D) -> V | D: ...
    def get(self, key: K, default: object = None) -> object:
        """The value for `key` (marked as recently used), or `default`."""
        if key not in self._data:
            return default
        return self[key]

    def peek(self, key: K) -> V | None:
        """The value for `key` without marking it recently used, or None."""
        return self._data.get(key)

    def pop(self, key: K, default: V | None = None) -> V | None:
        """Remove and return the value for `key`, or `default`."""
        return self._data.pop(key, default)

    def values(self) -> list[V]:
        """The values, least recently used first."""
        return list(self._data.values())

    def clear(self) -> None:
        """Forget everything."""
        self._data.clear()
