"""A key's lock as dogpile_warm holds it: waits that fit the work, leases that die with
their holder, and no waiting on oneself.

:class:`KeyLock` is the ``CacheMutex`` dogpile's ``Lock`` is given for a key.
It wraps the backend's distributed mutex (or a process-local lock), talks to
the backend only through its store (:meth:`CacheStore.attempt
<dogpile_warm._core.store.CacheStore.attempt>`), and

- *waits in short steps that fit the work*: the first sleep is a quarter of
  the key's expected compute time (1 ms to 50 ms), growing to 0.2 s; after
  each, a fresh value stored by anyone ends the wait at once (dogpile's
  ``Lock`` then reads and returns it), as does the store finding the backend
  unavailable, or so slow that one poll takes over 0.25 s (the caller then
  computes, without the cache or without the lock);
- *keeps a lease*: while held, a distributed lock with an expiry is renewed
  every third of it by the :class:`LeaseKeeper` thread, so a short expiry
  frees the key soon after its holder is killed and never while it lives;
  so a waiter waits as long as the holder computes, except for a lock that
  never expires (a peer without ``lock_timeout``, a lock written by hand):
  after 15 s (or four times the expected compute time) it computes without;
- *never blocks on a backend failure*: a lock that cannot be taken because
  the backend is unavailable counts as taken without being held, so the
  caller computes its value as it would without a cache; one that cannot
  be released then is released by the keeper thread, not by the caller.

:func:`begin_compute` / :func:`end_compute` mark the keys this thread (or
task) is computing; asking for the lock of one of them raises
:class:`~dogpile_warm.errors.ReentrantCallError` instead of waiting forever.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

from dogpile.cache.api import CacheMutex

from .._backends import traits
from ..errors import BackendError, BackendUnavailable, ReentrantCallError
from . import health
from .leases import lease_keeper

if TYPE_CHECKING:
    from .store import CacheStore

__all__ = [
    "KeyLock",
    "LocalMutex",
    "begin_compute",
    "check_not_computing",
    "end_compute",
]

log = logging.getLogger(__name__)

_FIRST_STEP_MIN = 0.001
_FIRST_STEP_MAX = 0.05
_FIRST_STEP_UNKNOWN = 0.005  # no compute time measured yet
_STEP_GROWTH = 1.5
_STEP_MAX = 0.2
# After this long (or that many times the expected compute time, if longer) a
# waiter asks whether the lock it waits for can ever expire; one that cannot is
# not waited for any longer. Asked again after as long again.
_PATIENCE_MIN = 15.0
_PATIENCE_FACTOR = 4.0
# Seconds one poll of a wait (is a value there? is the lock free?) may take: a
# backend slower than that makes waiting cost more than computing.
_SLOW_POLL = 0.25

# (store, key) pairs being computed in this thread or task, innermost last.
_computing: contextvars.ContextVar[tuple[tuple[CacheStore, str], ...]] = contextvars.ContextVar(
    "dogpile_warm_computing", default=()
)


def check_not_computing(store: CacheStore, key: str, name: str) -> None:
    """``ReentrantCallError`` if this thread is computing ``key`` of ``store`` right now."""
    if (store, key) in _computing.get():
        raise ReentrantCallError(
            f"computing {name} for key {key!r} needs the value of that same key "
            "(directly or through other cached functions); it would wait for itself forever"
        )


def begin_compute(store: CacheStore, key: str, name: str) -> contextvars.Token[Any]:
    """Mark ``key`` as being computed by this thread (``ReentrantCallError`` if it already
    is); pass the token to :func:`end_compute`."""
    check_not_computing(store, key, name)
    return _computing.set((*_computing.get(), (store, key)))


def end_compute(token: contextvars.Token[Any]) -> None:
    _computing.reset(token)


class LocalMutex:
    """A process-local lock for one key (when the backend has no distributed one)."""

    __slots__ = ("__weakref__", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()  # a per-key lock; the store forgets them all on fork

    def acquire(self, wait: bool = True, timeout: float = -1) -> bool:
        return self._lock.acquire(wait, timeout if wait else -1)

    def release(self) -> None:
        self._lock.release()

    def locked(self) -> bool:
        return self._lock.locked()


class KeyLock(CacheMutex):
    """dogpile's mutex for one key of a store (see the module docstring).

    ``held`` says whether this object holds the underlying lock: False after
    an ``acquire`` that returned True because a value appeared or the backend
    is unavailable, in which case ``release`` does nothing.
    """

    __slots__ = (
        "_first_step",
        "_key",
        "_lease",
        "_mutex",
        "_patience",
        "_ready",
        "_store",
        "held",
        "is_local",
    )

    def __init__(
        self,
        store: CacheStore,
        key: str,
        mutex: Any,
        *,
        local: bool,
        ready: Callable[[], bool] | None = None,
        expected: float | None = None,
    ) -> None:
        self._store = store
        self._key = key
        self._mutex = mutex
        self.is_local = local
        self._ready = ready
        self._first_step = (
            _FIRST_STEP_UNKNOWN
            if expected is None
            else min(_FIRST_STEP_MAX, max(_FIRST_STEP_MIN, expected / 4))
        )
        self._patience = max(_PATIENCE_MIN, _PATIENCE_FACTOR * (expected or 0.0))
        self._lease: int | None = None
        self.held = False

    def acquire(self, wait: bool = True) -> bool:
        if self.is_local:
            if self._mutex.acquire(False):
                self.held = True
                return True
        else:
            got = self._store.attempt("lock", self._key, lambda: self._mutex.acquire(False))
            if isinstance(got, BackendError):
                return wait  # no backend: compute without the lock, or leave the refresh
            if got:
                self._hold()
                return True
        if not wait:
            return False
        # Waiting for another's computation is not this call's round trips: its
        # polls spend no budget (a long computation would otherwise exhaust it).
        no_budget = health.round_trip_budget.set(None)
        try:
            return self._wait_local() if self.is_local else self._wait_distributed()
        finally:
            health.round_trip_budget.reset(no_budget)

    def _wait_local(self) -> bool:
        step = self._first_step
        while True:
            if self._mutex.acquire(True, step):
                self.held = True
                return True
            polled = time.monotonic()
            if self._ready is not None and self._ready():
                return True
            if time.monotonic() - polled > _SLOW_POLL:
                return True  # the backend is too slow to wait on: compute
            step = min(step * _STEP_GROWTH, _STEP_MAX)

    def _wait_distributed(self) -> bool:
        polls = self.polls()
        pause = next(polls)
        while True:
            time.sleep(pause)
            try:
                pause = polls.send(None)
            except StopIteration as done:
                return bool(done.value)

    def polls(self) -> Generator[float, None, bool]:
        """The wait of ``acquire()`` after a first try failed, as pauses.

        Yields how long to pause before each poll; each resumption polls the
        backend (blocking) and the generator returns ``acquire``'s answer when
        the wait is over. :meth:`acquire` drives it with ``time.sleep``; an
        awaiting caller pauses with ``asyncio.sleep`` and resumes it off its loop.
        """
        store = self._store
        step = self._first_step
        ask_at = time.monotonic() + self._patience
        while True:
            yield step
            polled = time.monotonic()
            if self._ready is not None and self._ready():
                return True
            if time.monotonic() - polled > _SLOW_POLL:
                return True  # the backend is too slow to wait on: compute
            if self.is_local:
                if self._mutex.acquire(False):
                    self.held = True
                    return True
                step = min(step * _STEP_GROWTH, _STEP_MAX)
                continue
            got = store.attempt("lock", self._key, lambda: self._mutex.acquire(False))
            if isinstance(got, BackendError):
                return True
            if got:
                self._hold()
                return True
            if time.monotonic() - polled > _SLOW_POLL:
                return True  # the backend is too slow to wait on: compute
            if time.monotonic() >= ask_at:
                if self._never_expires():
                    log.warning(
                        "the lock of %r has no expiry (a process without lock_timeout, or "
                        "written by hand) and was held for %.3g s; computing without it",
                        self._key,
                        self._patience,
                    )
                    return True
                ask_at = time.monotonic() + self._patience
            step = min(step * _STEP_GROWTH, _STEP_MAX)

    def _never_expires(self) -> bool:
        """Whether the lock waited for will never expire (a leased lock always does)."""
        answer = self._store.attempt(
            "lock check", self._key, lambda: traits.lock_never_expires(self._mutex)
        )
        if isinstance(answer, BackendError):
            return False
        if answer is None:  # the lock cannot say: go by how the backend makes locks
            return traits.endless_lock_setting(self._store.region.actual_backend) is not None
        return answer

    def _hold(self) -> None:
        self.held = True
        try:
            lease = traits.renewer(self._mutex)
        except Exception:  # renewal is a bonus; the lock itself is held
            log.debug("cannot renew the lock of %r", self._key, exc_info=True)
            lease = None
        if lease is not None:
            renew, seconds = lease
            self._lease = lease_keeper().keep(renew, seconds, self._store, self._key)

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        if self._lease is not None:
            lease_keeper().drop(self._lease)
            self._lease = None
        if self.is_local:
            self._mutex.release()
            return
        store = self._store
        release = traits.releaser(self._mutex)
        if release is not None and not store.usable():
            # Not in the caller's time: the keeper releases it when it can (a
            # lock without expiry would otherwise stay held for good).
            lease_keeper().release_later(release, store, self._key)
            return
        result = store.attempt("unlock", self._key, self._mutex.release, always=True)
        if isinstance(result, BackendUnavailable) and release is not None:
            lease_keeper().release_later(release, store, self._key)

    def locked(self) -> bool:
        """Whether anyone holds the key's lock (False when the backend cannot say)."""
        answer = self._store.attempt("lock check", self._key, self._mutex.locked)
        return answer is True
