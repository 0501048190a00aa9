"""The hit path's shortcut for dogpile's in-process memory backend.

A ``dogpile.cache.memory`` backend lives in this process, and every value
dogpile_warm keeps in it is written, deleted and invalidated through its
:class:`~dogpile_warm._core.store.CacheStore`. So the store can remember each
entry it has stored or verified (value present, tag versions current) and
answer the next read of that key from a dict, without the region's
``get_multi``, key mangling and tag reads, as long as it can prove nothing
changed since. An entry is the very object in the backend, under the very
key string, so a live key costs one more dict slot and nothing else:

- a write or delete of a key removes its entry and stamps the key with the
  next number of a running count (``last_write[key]``); an entry is
  remembered only if its key was not stamped after the verifying read
  started, so a read racing a write never leaves a stale entry. Stamps are
  forgotten in bulk past :data:`MAX_STAMPS` keys: reads begun before that
  are then not remembered (a later read is), so nothing per key outlives
  the key for long;
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
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dogpile.cache.backends.memory import MemoryBackend

from . import forks

if TYPE_CHECKING:
    from .store import Entry

__all__ = ["MAX_STAMPS", "MemoryIndex", "index_for"]

# Keys whose last write is remembered at most (a dict slot, the key and an int each).
MAX_STAMPS = 10_000
# Entries removed, beyond half of those kept, before the dict is compacted.
_COMPACT_AFTER = 1024


class MemoryIndex:
    """Verified entries of one memory backend, shared by every store that uses it.

    Every entry in ``entries`` is current: a write, a delete or a tag
    invalidation removes what it makes stale, and :meth:`verified` refuses an
    entry whose read began before one of those. So the hit path's lookup is a
    plain ``entries.get(key)``.
    """

    __slots__ = (
        "__weakref__",
        "_floor",
        "_lock",
        "_removed",
        "entries",
        "generation",
        "last_write",
        "writes",
    )

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        self.writes = 0  # writes and deletes so far, of any key
        self.last_write: dict[str, int] = {}  # key -> ``writes`` after its last write
        self._floor = 0  # ``writes`` when last_write was last emptied
        self.generation = 0  # tag invalidations so far
        self._removed = 0  # entries removed since the dict was last compacted
        self._lock = forks.new_lock()

    def stamp(self, key: str) -> tuple[int, int]:
        """Taken before a verifying read, and handed to :meth:`verified` after it."""
        return self.generation, self.writes

    def verified(self, key: str, entry: Entry, stamp: tuple[int, int]) -> None:
        """Remember ``entry`` unless ``key`` was written or tags invalidated since ``stamp``."""
        generation, writes = stamp
        with self._lock:
            if (
                generation == self.generation
                and writes >= self._floor  # stamps forgotten since: cannot tell
                and self.last_write.get(key, 0) <= writes
            ):
                self.entries[key] = entry

    def written(self, key: str) -> None:
        """After a write or delete of ``key``: earlier verifications no longer hold."""
        with self._lock:
            self._written(key)

    def _written(self, key: str) -> None:
        # Called with the lock held.
        self.writes += 1
        if len(self.last_write) >= MAX_STAMPS:
            self.last_write.clear()
            self._floor = self.writes
        self.last_write[key] = self.writes
        if self.entries.pop(key, None) is not None:
            self._removed += 1
            if self._removed > len(self.entries) // 2 + _COMPACT_AFTER:
                self._compact()

    def store(
        self,
        entries: dict[str, Entry],
        write: Callable[[], None],
        current: Callable[[Entry], bool],
    ) -> None:
        """``write()`` entries to the backend and remember each one that is ``current`` (its
        tag versions are the backend's), as one step against other writes: the entry
        remembered is the one stored, under the very key string the caller built."""
        with self._lock:
            try:
                write()
            finally:
                for key in entries:
                    self._written(key)
            for key, entry in entries.items():
                if current(entry):
                    self.entries[key] = entry

    def _compact(self) -> None:
        """Give the dict of entries back the room of keys removed since the last time.

        A dict never shrinks as keys leave it; emptied and filled again in place
        (readers of ``entries`` meanwhile see a miss, and read the backend), it
        is sized for the keys it holds.
        """
        kept = list(self.entries.items())
        self.entries.clear()
        self.entries.update(kept)
        self._removed = 0

    def invalidated(self) -> None:
        """After new tag versions are stored: every earlier verification is void."""
        with self._lock:
            self.generation += 1
            self.entries.clear()
            self._removed = 0


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
