"""The hit path's shortcut for dogpile's in-process memory backend.

A ``dogpile.cache.memory`` backend lives in this process, and every value
dogpile_warm keeps in it is written, deleted and invalidated through its
:class:`~dogpile_warm.store.CacheStore`. So the store can remember each
entry it has verified (value present, tag versions current) and answer the
next read of that key from a dict, without the region's ``get_multi``, key
mangling and tag reads, as long as it can prove nothing changed since:

- a write or delete of a key removes its entry, and counts in ``writes[key]``;
  an entry is remembered only if that count is what it was before the
  verifying read started, so a read racing a write never leaves a stale entry;
- ``generation`` counts tag invalidations of the whole backend, bumped (and
  every entry dropped) *after* the new tag versions are stored, so a read
  racing an invalidation either sees the new versions or is not remembered.

Only the exact ``MemoryBackend`` class qualifies (not the pickling variant,
not a backend behind a ``ProxyBackend``, whose behaviour we cannot vouch
for). Writes made to the backend behind dogpile_warm's back, through the
region itself, are not seen: dogpile_warm's keys are its own.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

from dogpile.cache.backends.memory import MemoryBackend

from . import forks

if TYPE_CHECKING:
    from .store import Entry

__all__ = ["MemoryIndex", "index_for"]


class MemoryIndex:
    """Verified entries of one memory backend, shared by every store that uses it.

    Every entry in ``entries`` is current: a write, a delete or a tag
    invalidation removes what it makes stale, and :meth:`verified` refuses an
    entry whose read began before one of those. So the hit path's lookup is a
    plain ``entries.get(key)``.
    """

    __slots__ = ("__weakref__", "_lock", "entries", "generation", "writes")

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        self.writes: dict[str, int] = {}  # key -> writes and deletes so far
        self.generation = 0  # tag invalidations so far
        self._lock = forks.new_lock()

    def lookup(self, key: str) -> Entry | None:
        """The verified entry of ``key``, or None."""
        return self.entries.get(key)

    def stamp(self, key: str) -> tuple[int, int]:
        """Taken before a verifying read, and handed to :meth:`verified` after it."""
        return self.generation, self.writes.get(key, 0)

    def verified(self, key: str, entry: Entry, stamp: tuple[int, int]) -> None:
        """Remember ``entry`` unless ``key`` was written or tags invalidated since ``stamp``."""
        with self._lock:
            if stamp == (self.generation, self.writes.get(key, 0)):
                self.entries[key] = entry

    def written(self, key: str) -> None:
        """After a write or delete of ``key``: earlier verifications no longer hold."""
        with self._lock:
            self.writes[key] = self.writes.get(key, 0) + 1
            self.entries.pop(key, None)

    def invalidated(self) -> None:
        """After new tag versions are stored: every earlier verification is void."""
        with self._lock:
            self.generation += 1
            self.entries.clear()


_indexes: weakref.WeakKeyDictionary[Any, MemoryIndex] = weakref.WeakKeyDictionary()
_indexes_lock = forks.new_lock()


def index_for(backend: Any) -> MemoryIndex | None:
    """The index of ``backend`` if it is dogpile's plain memory backend, else None."""
    if type(backend) is not MemoryBackend:
        return None
    with _indexes_lock:
        index = _indexes.get(backend)
        if index is None:
            index = _indexes[backend] = MemoryIndex()
    return index
