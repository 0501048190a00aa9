"""The tag versions of one region: read before each computation, created when missing,
replaced by an invalidation.

A value is stored with the versions its tags had when its computation
started; :mod:`dogpile_warm._core.tags` says why that makes invalidation
strict and fleet-wide. The backend calls go through the store's failure
policy (:meth:`CacheStore.attempt <dogpile_warm._core.store.CacheStore.attempt>`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from dogpile.cache.api import NO_VALUE

from .._backends import traits
from ..errors import BackendError, ValueUnreadable, WarmError
from . import forks, region_io
from .tags import TagVersions, tag_key

if TYPE_CHECKING:
    from .store import CacheStore

__all__ = ["TagVersionBook"]


class TagVersionBook:
    """The tag versions of ``store``'s region (thread-safe)."""

    def __init__(self, store: CacheStore) -> None:
        self._store = store
        self._creating = forks.new_lock()

    def current(self, tags: Iterable[str]) -> TagVersions | BackendError:
        """The current ``((tag, version), ...)``, creating versions not yet stored; the
        error when the backend cannot say (a value computed then must not be stored).

        Called before a computation starts, so a computation that races an
        invalidation stores an entry that is already stale.
        """
        store = self._store
        names = sorted(set(tags))
        if not names:
            return ()
        keys = [tag_key(t) for t in names]

        def versions() -> list[str]:
            current = region_io.get_many(store.region, keys, store.reader)
            if all(isinstance(v, str) for v in current):
                return current
            return self._create_versions(keys)

        current = store.attempt("tag read", ",".join(names), versions)
        if isinstance(current, BackendError):
            return current
        return tuple(zip(names, current, strict=True))

    def _create_versions(self, keys: list[str]) -> list[str]:
        """Store a version for each of ``keys`` that has none; return every version as stored."""
        store = self._store
        # One thread of this process at a time, so the others find its versions
        # instead of racing to store their own: the loser's entries would read
        # as stale once, a recompute.
        with self._creating:
            current = region_io.get_many(store.region, keys, store.reader)
            for key, value in zip(keys, current, strict=True):
                if value is not NO_VALUE and not isinstance(value, str):
                    # Bytes another client wrote: replaced below, so the tag's
                    # values are cached again (and count as invalidated once). Named
                    # by type: str() of a crafted value can raise or take forever.
                    why = (
                        str(value)  # its own reason, as dogpile_warm wrote it
                        if isinstance(value, ValueUnreadable)
                        else f"not a tag version but a {type(value).__name__}"
                    )
                    store.health.failed_unreadable(why, key)
            missing = {
                k: _new_version()
                for k, v in zip(keys, current, strict=True)
                if not isinstance(v, str)
            }
            if not missing:
                return current
            self._set_versions(missing)
            # Another process may have stored versions of the same tags a
            # moment ago: take what the backend kept, so only a write landing
            # after this read can leave an entry stale (one recompute).
            stored = region_io.get_many(store.region, keys, store.reader)
        return [v if isinstance(v, str) else missing[k] for k, v in zip(keys, stored, strict=True)]

    def _set_versions(self, versions: dict[str, str]) -> None:
        """Store tag versions, without the expiry the region's backend gives values.

        A tag version that expired would invalidate every value carrying it at
        once, on a timer; it lives as long as the backend keeps it (an
        evicted one still counts as invalidated).
        """
        store = self._store
        region_io.set_many(store.region, versions)
        traits.persist(
            store.region.actual_backend, [region_io.mangled(store.region, k) for k in versions]
        )

    def bump(self, tags: Iterable[str]) -> None:
        """Give every tag a new version: entries carrying an older one become stale.

        Tried even while the breaker is open (an invalidation is worth a probe).
        The versions are read before and after the write: some clients drop a
        write without raising, and a lost invalidation must not look like a
        done one. What is read back may be another process's newer version (it
        invalidated the same tag meanwhile), which is as good as ours; the
        version from before, or none at all (a client that answers reads with
        misses while it thinks the server failed), means the write was lost.
        Raises :class:`WarmError` when the backend did not record them.
        """
        store = self._store
        keys = [tag_key(t) for t in tags]
        label = ",".join(sorted(tags))

        def bump() -> tuple[list[Any], list[Any]]:
            before = region_io.get_many(store.region, keys, store.reader)
            self._set_versions({key: _new_version() for key in keys})
            return before, region_io.get_many(store.region, keys, store.reader)

        try:
            result = store.attempt("invalidate", label, bump, always=True)
        finally:
            if store.index is not None:
                store.index.invalidated()  # after the new versions are in place
        if isinstance(result, BackendError):
            raise WarmError(
                f"could not invalidate tags {sorted(tags)} in region {store.health.name!r}: {result}"
            ) from result.__cause__
        before, after = result
        lost = [
            key
            for key, old, new in zip(keys, before, after, strict=True)
            if not isinstance(new, str) or new == old
        ]
        if lost:
            raise WarmError(
                f"the backend of region {store.health.name!r} did not record new versions of {lost}"
            )


def _new_version() -> str:
    # Random, never a counter: a version that was evicted and recreated must
    # not match the one stale entries carry.
    return os.urandom(8).hex()
