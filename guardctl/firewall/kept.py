"""What a run that meets the same lines again and again (`check --batch`), or one command in
several places (`normalize`), keeps of its work.

An agent's lines have only so many kinds: a batch of them repeats lines and commands. A
`Kept` holds values by key, at most `limit` of them (emptied when full, so memory stays
bounded whatever the batch holds); its users keep only what depends on the key alone.
"""

from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

# entries a batch keeps, and the characters a kept line or command may hold
LIMIT = 4096
MAX_CHARS = 4096


class Kept(Generic[K, V]):
    """Values by key, at most `limit` of them."""

    __slots__ = ("_entries", "_limit")

    def __init__(self, limit: int = LIMIT) -> None:
        self._entries: dict[K, V] = {}
        self._limit = limit

    def get(self, key: K) -> V | None:
        return self._entries.get(key)

    def keep(self, key: K, value: V) -> V:
        if len(self._entries) >= self._limit:
            self._entries.clear()
        self._entries[key] = value
        return value
