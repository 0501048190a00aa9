"""How dogpile_warm keeps values in a dogpile.cache region.

Every value is stored as an :class:`Entry`: the value, when its computation
started, its ttl, and the versions of its tags read *before* the computation
started. A read is valid only while each of those tag versions is still the
current one in the backend, so an invalidation is seen by every process that
shares the backend on its very next read (see :mod:`dogpile_warm.tags`).

The store only reads and writes through the region's public API (``get``,
``get_multi``, ``set``, ``set_multi``, ``delete``), so the region's own key
mangler, serializer and invalidation keep working; keys pass through
:func:`~dogpile_warm.keys.safe_key` first so that any key suits any backend.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from dogpile.cache import CacheRegion
from dogpile.cache.api import NO_VALUE, CacheMutex
from dogpile.util import NameRegistry

from .errors import WarmError
from .keys import safe_key
from .memory_index import MemoryIndex, index_for
from .tags import TagVersions, tag_key

__all__ = ["BackendHealth", "CacheStore", "Entry"]

log = logging.getLogger(__name__)


class Entry(NamedTuple):
    """What dogpile_warm stores under a key (pickled by the backend)."""

    value: Any
    created: float  # wall clock (time.time()) when the computation started
    ttl: float
    tags: TagVersions  # ((tag, version), ...) sorted by tag
    cost: float = 0.0  # seconds the computation took (XFetch uses it)

    def age(self, now: float | None = None) -> float:
        return (time.time() if now is None else now) - self.created


# How an Entry is kept in the backend: a plain tuple behind a format marker.
# Pickling a NamedTuple names its class, and every unpickling then looks the
# class up through the import system (about 2.5 us a read on memcached).
_FORMAT = "dogpile_warm/1"


def _stored(entry: Entry) -> tuple[Any, ...]:
    return (_FORMAT, *entry)


def _loaded(found: Any) -> Entry | None:
    if type(found) is tuple and len(found) == 6 and found[0] == _FORMAT:
        # found[1:] is every field in order: made as the tuple it is, without
        # the NamedTuple's Python-level __new__ (on every read but a memory hit).
        return tuple.__new__(Entry, found[1:])
    return None


class BackendHealth:
    """Counts backend failures and logs each outage once, with the key that met it.

    Thread-safe. ``errors`` only ever grows; ``down`` is True from the first
    failure until the next successful operation.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.errors = 0
        self.down = False
        self._lock = threading.Lock()

    def failed(self, exc: BaseException, key: str, operation: str) -> None:
        with self._lock:
            self.errors += 1
            first = not self.down
            self.down = True
        if first:
            log.warning(
                "cache backend of region %r failed on %s of key %r (%s: %s); "
                "computing without the cache until it answers again",
                self.name,
                operation,
                key,
                type(exc).__name__,
                exc,
            )

    def succeeded(self) -> None:
        if self.down:
            with self._lock:
                was_down, self.down = self.down, False
            if was_down:
                log.warning("cache backend of region %r answers again", self.name)


class _LocalMutex:
    """A threading.Lock that can live in a weak registry (dogpile's CacheMutex)."""

    __slots__ = ("__weakref__", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def acquire(self, wait: bool = True) -> bool:
        return self._lock.acquire(wait)

    def release(self) -> None:
        self._lock.release()

    def locked(self) -> bool:
        return self._lock.locked()


class CacheStore:
    """One region as dogpile_warm uses it: entries, tag versions, mutexes, health."""

    def __init__(self, region: CacheRegion, health: BackendHealth | None = None) -> None:
        self.region = region
        self.health = health or BackendHealth(str(region.name or "default"))
        # Same scheme as CacheRegion._mutex: the backend's (distributed) mutex
        # when it has one, else one process-local lock per key.
        self._local_mutexes: NameRegistry = NameRegistry(lambda key: _LocalMutex())
        self._creating_versions = threading.Lock()
        # For dogpile's in-process memory backend: verified entries, so a hit
        # can skip the region (see dogpile_warm.memory_index).
        self.index: MemoryIndex | None = index_for(region.backend)

    # -- values ---------------------------------------------------------
    def read(self, key: str, tags: Sequence[str] = ()) -> Entry | None:
        """Return the valid entry under ``key`` or None (missing, or a tag invalidated).

        ``tags`` (sorted) are the tags the caller expects the entry to carry:
        their versions are read in the same round trip as the value; an entry
        carrying other tags costs a second one. Raises whatever the backend
        raises. Does not check the ttl: callers do, against their own.
        """
        index = self.index
        stamp = index.stamp(key) if index is not None else None
        if tags:
            found = self._get_multi([safe_key(key), *map(tag_key, tags)])
            entry, current = _loaded(found[0]), found[1:]
        else:
            entry = _loaded(self._get(safe_key(key)))
            current = []
        if entry is None:
            return None
        if not entry.tags:
            if tags:
                return None
            if index is not None and stamp is not None:
                index.verified(key, entry, stamp)
            return entry
        if len(entry.tags) != len(tags) or any(
            name != expected for (name, _), expected in zip(entry.tags, tags, strict=True)
        ):
            current = self._get_multi([tag_key(t) for t, _ in entry.tags])
        for cur, (_, version) in zip(current, entry.tags, strict=True):
            if cur != version:
                return None
        if index is not None and stamp is not None:
            index.verified(key, entry, stamp)
        return entry

    def _get(self, key: str) -> Any:
        """``region.get(key, ignore_expiration=True)``: the payload stored, or ``NO_VALUE``.

        Where the region has no serializer of its own (memory, memcached: the
        backend stores dogpile's ``CachedValue`` as it is) the backend is asked
        directly, without the region's layers of calls (a few microseconds of
        a memcached hit); that is all ``region.get`` does when told to ignore
        expiration, which also leaves region invalidation unchecked.
        """
        region = self.region
        if region.deserializer is not None:
            return region.get(key, ignore_expiration=True)
        if region.key_mangler is not None:
            key = region.key_mangler(key)
        return region.backend.get(key).payload

    def _get_multi(self, keys: Sequence[str]) -> list[Any]:
        """``region.get_multi(keys, ignore_expiration=True)``, the same way as :meth:`_get`."""
        region = self.region
        if region.deserializer is not None:
            return list(region.get_multi(keys, ignore_expiration=True))
        if not keys:
            return []
        mangler = region.key_mangler
        if mangler is not None:
            keys = [mangler(key) for key in keys]
        return [value.payload for value in region.backend.get_multi(keys)]

    def fresh_value(self, key: str, tags: Sequence[str] = (), ttl: float | None = None) -> Any:
        """The value under ``key`` if valid and within ``ttl`` (default: its own), else
        ``NO_VALUE``; a backend failure is counted and reads as ``NO_VALUE``."""
        try:
            entry = self.read(key, tags)
        except Exception as exc:
            self.health.failed(exc, key, "read")
            return NO_VALUE
        if entry is None or time.time() - entry.created > (entry.ttl if ttl is None else ttl):
            return NO_VALUE
        return entry.value

    def peek_many(self, keys: Sequence[str]) -> list[Entry | None]:
        """The entries under ``keys`` in one backend call, without tag checks (None if missing).

        For planning only (when is a value due?): a caller that serves or
        replaces a value reads it again with :meth:`read`.
        """
        found = self._get_multi([safe_key(k) for k in keys])
        return [_loaded(e) for e in found]

    def write(self, key: str, entry: Entry) -> None:
        try:
            self.region.set(safe_key(key), _stored(entry))
        finally:
            if self.index is not None:
                self.index.written(key)

    def write_many(self, entries: dict[str, Entry]) -> None:
        """Store several entries in one backend call where the backend allows."""
        try:
            self.region.set_multi({safe_key(k): _stored(e) for k, e in entries.items()})
        finally:
            if self.index is not None:
                for key in entries:
                    self.index.written(key)

    def delete(self, key: str) -> None:
        try:
            self.region.delete(safe_key(key))
        finally:
            if self.index is not None:
                self.index.written(key)

    # -- tags -------------------------------------------------------------
    def tag_versions(self, tags: Iterable[str]) -> TagVersions:
        """Return the current ``((tag, version), ...)``, creating versions not yet stored.

        Called before a computation starts, so a computation that races an
        invalidation stores an entry that is already stale.
        """
        names = sorted(set(tags))
        if not names:
            return ()
        keys = [tag_key(t) for t in names]
        current = self._get_multi(keys)
        if any(v is NO_VALUE for v in current):
            current = self._create_versions(keys)
        return tuple(zip(names, current, strict=True))

    def _create_versions(self, keys: list[str]) -> list[str]:
        """Store a version for each of ``keys`` that has none; return every version as stored."""
        # One thread of this process at a time, so the others find its versions
        # instead of racing to store their own: the loser's entry would read
        # as stale once, a recompute (two warmings of a user's data did so).
        with self._creating_versions:
            current = self._get_multi(keys)
            missing = {
                k: _new_version() for k, v in zip(keys, current, strict=True) if v is NO_VALUE
            }
            if not missing:
                return current
            self.region.set_multi(missing)
            # Another process may have stored versions of the same tags a
            # moment ago: take what the backend kept, so only a write landing
            # after this read can leave an entry stale (one recompute).
            stored = self._get_multi(keys)
        return [v if v is not NO_VALUE else missing[k] for k, v in zip(keys, stored, strict=True)]

    def bump_tags(self, tags: Iterable[str]) -> None:
        """Give every tag a new version: entries carrying an older one become stale.

        The new versions are read back: some clients drop a write without
        raising (pymemcache while it considers a server failed), and a lost
        invalidation must not look like a done one. Raises :class:`WarmError`.
        """
        versions = {tag_key(t): _new_version() for t in tags}
        try:
            self.region.set_multi(versions)
        finally:
            if self.index is not None:
                self.index.invalidated()  # after the new versions are in place
        stored = self._get_multi(list(versions))
        if list(versions.values()) != stored:
            raise WarmError(
                f"the backend of region {self.region.name!r} did not record new tag versions"
            )

    def after_fork_in_child(self) -> None:
        # A lock another thread held at fork time stays held in the child.
        self._creating_versions = threading.Lock()
        self.health._lock = threading.Lock()

    # -- locking ----------------------------------------------------------
    def mutex(self, key: str) -> CacheMutex:
        """The dogpile mutex for ``key``: distributed when the backend offers one."""
        backend_key = safe_key(key)
        if self.region.key_mangler is not None:
            backend_key = self.region.key_mangler(backend_key)
        mutex = self.region.backend.get_mutex(backend_key)
        if mutex is not None:
            return mutex  # type: ignore[no-any-return]
        return self._local_mutexes.get(backend_key)  # type: ignore[no-any-return]


def _new_version() -> str:
    # Random, never a counter: a version that was evicted and recreated must
    # not match the one stale entries carry.
    return os.urandom(8).hex()
