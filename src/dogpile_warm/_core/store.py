"""How dogpile_warm keeps values in a dogpile.cache region, and the one place backend
failures are caught.

Every value is stored as an :class:`~dogpile_warm._core.entry.Entry`, valid
only while the versions of its tags are still current (see
:mod:`dogpile_warm._core.tags`).

The store reads and writes through the region's key mangler, serializer and
backend, so the region's own settings keep working; keys pass through
:func:`~dogpile_warm._core.keys.safe_key` first so that any key suits any backend.

Every backend operation goes through :meth:`CacheStore.attempt` (or, for the
hit path, the same steps written out in :meth:`CacheStore.read`): skipped
while the region's circuit breaker is open, timed against the caller's
budget, and a failure classified, counted and logged by the region's
:class:`~dogpile_warm._core.health.BackendHealth` and handed back as a
:class:`~dogpile_warm.errors.BackendError`, never raised. The one exception
is an invalidation (:meth:`TagVersionBook.bump
<dogpile_warm._core.tag_versions.TagVersionBook.bump>`): one that did not
happen must not look done.
"""

from __future__ import annotations

import logging
import math
import weakref
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from dogpile.cache import CacheRegion
from dogpile.cache.api import NO_VALUE, CachedValue

from .._backends import traits
from ..errors import (
    BackendError,
    BackendUnavailable,
    LockLost,
    ValueRefused,
    ValueUnreadable,
    describe_error,
)
from . import forks, health, region_io
from .entry import (
    ENTRY_METADATA,
    UNAVAILABLE,
    Entry,
    Unavailable,
    decode,
    stored,
)
from .health import BackendHealth, round_trip_budget
from .keys import safe_key
from .locks import KeyLock, LocalMutex
from .memory_index import MemoryIndex, index_for
from .tag_versions import TagVersionBook
from .tags import TagVersions, tag_key

__all__ = ["UNAVAILABLE", "CacheStore", "Entry", "Unavailable"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")


# What a failure that is not a connection error means, by operation: a read
# got something it cannot read back, a write was refused, a lock released or
# renewed was no longer ours; anything else counts as the backend failing.
_MEANING = {
    "read": "read",
    "tag read": "read",
    "write": "write",
    "unlock": "lock",
    "renew": "lock",
}


class CacheStore:
    """One region as dogpile_warm uses it: entries, tag versions, locks, health."""

    def __init__(self, region: CacheRegion, health: BackendHealth | None = None) -> None:
        self.region = region
        self.health = health or BackendHealth(_label(region))
        self.tags = TagVersionBook(self)
        self._local_mutexes: weakref.WeakValueDictionary[str, LocalMutex] = (
            weakref.WeakValueDictionary()
        )
        self._local_mutexes_lock = forks.new_lock()
        # For dogpile's in-process memory backend (unless the region serializes
        # its values): verified entries, so a hit can skip the region (see
        # dogpile_warm._core.memory_index), and entries stored as they are.
        self.index: MemoryIndex | None = (
            index_for(region.backend) if region.serializer is None else None
        )
        # Round trips count against a caller's budget only over a network.
        self.timed = traits.is_remote(region.actual_backend)
        # Whether an event loop must call this backend off the loop (see _core.loops).
        self.blocking = not traits.never_blocks(region.actual_backend)
        # What reads go through where dogpile's reads would not do (None: dogpile's):
        # Sentinel's replicas (their lag would let a value outlive its invalidation),
        # Cluster's one-slot MGET. The backend's clients are made once and outlive a
        # fork (redis-py reconnects in the child), so it is resolved once.
        self.reader = traits.direct_reader(region.actual_backend)
        self.read_one = region_io.one_reader(region, self.reader)
        forks.after_fork_in_child(self, CacheStore._after_fork_in_child)

    # -- every backend operation ----------------------------------------------------
    def usable(self) -> bool:
        """Whether to try the backend now: False while its breaker is open (but for a
        probe), and for the rest of a call that has spent its round-trip budget."""
        if self.timed and health.overspent():
            return False  # asked first: a probe granted and not made would hold up others
        health_ = self.health
        return not health_.open or health_.allows()

    def attempt(
        self,
        operation: str,
        key: str,
        call: Callable[[], _T],
        *,
        owner: str | None = None,
        always: bool = False,
    ) -> _T | BackendError:
        """Run one backend operation, the store's way; its result, or what went wrong.

        Skipped (a ``BackendUnavailable``) while the breaker is open, unless
        ``always``; timed against the caller's round-trip budget; a failure is
        classified, counted and logged, and returned. ``owner`` names whose
        value a write stores (a refusal is logged once per owner).
        """
        if not always and not self.usable():
            return self.skipped(key, operation)
        started = self.health.clock()
        try:
            result = call()
        except Exception as exc:
            return self.failed(exc, key, operation, owner)
        self.answered(started, key, operation)
        return result

    def skipped(self, key: str, operation: str) -> BackendUnavailable:
        """What an operation skipped while the breaker is open reports."""
        return BackendUnavailable(
            f"{operation} of {key!r} skipped: the backend of region "
            f"{self.health.name!r} is unavailable"
        )

    def answered(self, started: float, key: str, operation: str) -> None:
        """The backend answered ``operation`` on ``key``, begun at ``started`` (the
        health's clock). Past the caller's round-trip budget (see
        :func:`dogpile_warm._core.health.call_budget`) it counts as unavailable."""
        health_ = self.health
        if self.timed and health.spend(health_.clock() - started):
            health_.failed_unavailable(
                TimeoutError(f"one call spent over {health.CALL_BUDGET:g} s on round trips to it"),
                key,
                operation,
            )
        elif health_.open or health_.in_outage:
            health_.succeeded(started)

    def failed(
        self, exc: BaseException, key: str, operation: str, owner: str | None = None
    ) -> BackendError:
        """Classify, count and log a failed ``operation`` on ``key``; return it as a
        :class:`~dogpile_warm.errors.BackendError` (``owner`` names whose value it was)."""
        meaning = _MEANING.get(operation, "other")
        what = f"{operation} of {key!r}: {describe_error(exc)}"
        error: BackendError
        if traits.is_unavailable(exc) or meaning == "other":
            self.health.failed_unavailable(exc, key, operation)
            error = BackendUnavailable(what)
        elif meaning == "write":
            self.health.failed_refused(exc, key, owner or key)
            error = ValueRefused(what)
        elif meaning == "read":
            self.health.failed_unreadable(describe_error(exc) or "", key)
            error = ValueUnreadable(what)
        else:  # a lease that ran out: the lock is someone else's now
            log.info("the lock of %r was no longer ours: %s", key, describe_error(exc))
            error = LockLost(what)
        error.__cause__ = exc
        return error

    # -- values -------------------------------------------------------------------------
    def read(
        self, key: str, tags: Sequence[str] = (), seen: list[TagVersions] | None = None
    ) -> Entry | Unavailable | None:
        """The valid entry under ``key``; None if missing, unreadable or carrying an
        invalidated tag; :data:`UNAVAILABLE` if the backend did not answer.

        The versions of ``tags`` read with the value (if all exist) are appended to
        ``seen``, for a computation starting now.

        ``tags`` (sorted) are the tags the caller expects the entry to carry:
        their versions are read in the same round trip as the value; an entry
        carrying other tags costs a second one. Does not check the ttl:
        callers do, against their own.
        """
        index = self.index
        stamp = index.stamp(key) if index is not None else None
        found = self.fetch(key, tags)
        if found is UNAVAILABLE:
            return UNAVAILABLE
        if seen is not None and tags:
            _note_versions(seen, tags, found[1:])
        return self.entry_of(key, found, tags, stamp)

    def fetch(self, key: str, tags: Sequence[str] = ()) -> list[Any] | Unavailable:
        """:meth:`read`'s round trip: ``[what is stored under key, *versions of
        tags]`` (each a payload, ``NO_VALUE`` or a ``ValueUnreadable``), or
        :data:`UNAVAILABLE` if the backend did not answer or was skipped. A read
        that failed otherwise (an answer it could not read) is counted as such
        and comes back as nothing found.

        The hit path: :meth:`attempt`'s steps written out. Reads of a backend
        without a memory index start here (see dogpile_warm._cached.reader).
        """
        health_ = self.health
        budget = round_trip_budget.get()  # None on a hit's first read: nothing to time
        if budget is not None and budget[0] < 0 and self.timed:
            return UNAVAILABLE  # this call made its last round trip
        if health_.open and not health_.allows():
            return UNAVAILABLE
        # Timed for a call's budget, and while the breaker is open (only an
        # answer begun after it opened may close it); a plain hit is not.
        started = health_.clock() if budget is not None or health_.open else -math.inf
        try:
            if tags:
                found = region_io.get_many(
                    self.region, [safe_key(key), *map(tag_key, tags)], self.reader
                )
            else:
                found = [self.read_one(safe_key(key))]
        except Exception as exc:
            error = self.failed(exc, key, "read")
            if isinstance(error, BackendUnavailable):
                return UNAVAILABLE
            return [NO_VALUE] * (1 + len(tags))
        if budget is not None or health_.open or health_.in_outage:
            self.answered(started, key, "read")
        return found

    def entry_of(
        self,
        key: str,
        found: Sequence[Any],
        tags: Sequence[str] = (),
        stamp: tuple[int, int] | None = None,
    ) -> Entry | Unavailable | None:
        """The valid entry in ``found``, what :meth:`fetch` read for ``key`` and
        ``tags``: None if missing, unreadable or carrying an invalidated tag,
        :data:`UNAVAILABLE` if checking its tags needed a round trip that failed.
        ``stamp``: the memory index's, taken before the read."""
        entry = self._entry(found[0], key)
        if entry is None:
            return None
        index = self.index
        if not entry.tags:
            if tags:
                return None
            if index is not None and stamp is not None:
                index.verified(key, entry, stamp)
            return entry
        current: Sequence[Any]
        if len(entry.tags) != len(tags) or any(
            name != expected for (name, _), expected in zip(entry.tags, tags, strict=True)
        ):
            versions = self.attempt(
                "tag read",
                key,
                lambda: region_io.get_many(
                    self.region, [tag_key(t) for t, _ in entry.tags], self.reader
                ),
            )
            if isinstance(versions, BackendError):
                return UNAVAILABLE if isinstance(versions, BackendUnavailable) else None
            current = versions
        else:
            current = found[1:]
        for cur, (_, version) in zip(current, entry.tags, strict=True):
            if cur != version:
                return None
        if index is not None and stamp is not None:
            index.verified(key, entry, stamp)
        return entry

    def _entry(self, found: Any, key: str) -> Entry | None:
        """The Entry stored as ``found``; None if nothing is (or what is cannot be read)."""
        if type(found) is Entry:  # the memory backend's own object, on the hit path
            return found
        entry = decode(found, key)
        if isinstance(entry, str):
            self.health.failed_unreadable(entry, key)
            return None
        return entry

    def backend_key(self, key: str) -> str:
        """``key`` as the backend sees it: made safe, then through the region's key mangler."""
        return region_io.mangled(self.region, safe_key(key))

    def fresh_value(
        self, key: str, now: float, tags: Sequence[str] = (), ttl: float | None = None
    ) -> Any:
        """The value under ``key`` if valid and within ``ttl`` (default: its own) at ``now``
        (epoch seconds on the clock that stamped it), else ``NO_VALUE`` (also when the
        backend does not answer)."""
        entry = self.read(key, tags)
        if not isinstance(entry, Entry):
            return NO_VALUE
        if now - entry.created > (entry.ttl if ttl is None else ttl):
            return NO_VALUE
        return entry.value

    def peek_many(self, keys: Sequence[str]) -> list[Entry | None] | None:
        """The entries under ``keys`` in one backend call, without tag checks (None if
        missing); None altogether if the backend does not answer.

        For planning only (when is a value due?): a caller that serves or
        replaces a value reads it again with :meth:`read`.
        """
        found = self.attempt(
            "read",
            f"{len(keys)} keys",
            lambda: region_io.get_many(self.region, [safe_key(k) for k in keys], self.reader),
        )
        if isinstance(found, BackendError):
            return None
        return [self._entry(value, key) for key, value in zip(keys, found, strict=True)]

    def write(self, key: str, entry: Entry, owner: str | None = None) -> BackendError | None:
        """Store ``entry`` under ``key``; None when stored, else what went wrong.

        ``owner`` (a function's name) is who a refused value is logged for.
        """
        return self._write(
            key, {key: entry}, owner, lambda: self.region.set(safe_key(key), stored(key, entry))
        )

    def write_many(
        self, entries: dict[str, Entry], owner: str | None = None
    ) -> BackendError | None:
        """Store several entries in one backend call where the backend allows."""
        mapping = {safe_key(k): stored(k, e) for k, e in entries.items()}
        return self._write(
            f"{len(entries)} keys", entries, owner, lambda: region_io.set_many(self.region, mapping)
        )

    def _write(
        self,
        label: str,
        entries: dict[str, Entry],
        owner: str | None,
        region_write: Callable[[], None],
    ) -> BackendError | None:
        """Store ``entries`` with ``region_write`` (or, in dogpile's memory backend, directly)."""
        index = self.index
        if index is not None:
            in_memory = {self.backend_key(k): e for k, e in entries.items()}
            result = self.attempt(
                "write",
                label,
                lambda: index.store(entries, lambda: self._set_in_memory(in_memory), self._current),
                owner=owner,
            )
        else:
            result = self.attempt("write", label, region_write, owner=owner)
        return result if isinstance(result, BackendError) else None

    def _current(self, entry: Entry) -> bool:
        """Whether ``entry``'s tag versions are the backend's now (an in-process read)."""
        if not entry.tags:
            return True
        current = region_io.get_many(
            self.region, [tag_key(tag) for tag, _ in entry.tags], self.reader
        )
        return all(cur == version for cur, (_, version) in zip(current, entry.tags, strict=True))

    def _set_in_memory(self, entries: dict[str, Entry]) -> None:
        """Store entries (under backend keys) in dogpile's memory backend, as ``region.set``
        would, but with one metadata dict shared by all: dogpile_warm's reads never look
        at it, and a dict per key would be one more object per live key
        (``benchmarks/key_memory.py`` measures what a key costs)."""
        self.region.backend.set_multi(
            {key: CachedValue(entry, ENTRY_METADATA) for key, entry in entries.items()}
        )

    def delete(self, key: str) -> BackendError | None:
        """Remove the value under ``key``; None when done, else what went wrong."""
        try:
            result = self.attempt("delete", key, lambda: self.region.delete(safe_key(key)))
        finally:
            if self.index is not None:
                self.index.written(key)
        return result if isinstance(result, BackendError) else None

    # -- locking ------------------------------------------------------------------------
    def lock(
        self, key: str, ready: Callable[[], bool] | None = None, expected: float | None = None
    ) -> KeyLock:
        """The dogpile mutex of ``key`` (see :class:`~dogpile_warm._core.locks.KeyLock`):
        distributed when the backend offers one, else one process-local lock per key.

        ``ready()`` says whether a usable value has appeared meanwhile (ending a
        wait); ``expected`` is the seconds a computation of the key takes.
        """
        backend_key = self.backend_key(key)
        # Not skipped while the breaker is open: dogpile's backends make the
        # object without a round trip, and the key's lock must stay the same kind.
        mutex = self.attempt(
            "lock", key, lambda: self.region.backend.get_mutex(backend_key), always=True
        )
        if isinstance(mutex, BackendError):
            mutex = None
        if mutex is not None:
            return KeyLock(self, key, mutex, local=False, ready=ready, expected=expected)
        with self._local_mutexes_lock:
            local = self._local_mutexes.get(backend_key)
            if local is None:
                local = self._local_mutexes[backend_key] = LocalMutex()
        return KeyLock(self, key, local, local=True, ready=ready, expected=expected)

    def _after_fork_in_child(self) -> None:
        # Per-key locks another thread held at fork time would stay held.
        self._local_mutexes = weakref.WeakValueDictionary()


def _label(region: CacheRegion) -> str:
    """How logs and figures name a region: its name, else its backend's class."""
    return str(region.name) if region.name else f"unnamed {type(region.actual_backend).__name__}"


def _note_versions(seen: list[TagVersions], tags: Sequence[str], current: Sequence[Any]) -> None:
    """Append ``tags``' versions as read, if every one of them exists."""
    if all(type(version) is str for version in current):
        seen.append(tuple(zip(tags, current, strict=True)))
