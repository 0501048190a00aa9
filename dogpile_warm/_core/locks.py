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
import itertools
import logging
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dogpile.cache.api import CacheMutex

from .._backends import traits
from ..errors import BackendError, BackendUnavailable, ReentrantCallError
from . import forks, health

if TYPE_CHECKING:
    from .store import CacheStore

__all__ = [
    "KeyLock",
    "LeaseKeeper",
    "LocalMutex",
    "begin_compute",
    "check_not_computing",
    "end_compute",
    "lease_keeper",
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
# A release the backend does not answer is tried again this often, this long.
_RELEASE_RETRY = 0.5
_RELEASE_FOR = 300.0

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
        store = self._store
        step = self._first_step
        ask_at = time.monotonic() + self._patience
        while True:
            time.sleep(step)
            polled = time.monotonic()
            if self._ready is not None and self._ready():
                return True
            if time.monotonic() - polled > _SLOW_POLL:
                return True  # the backend is too slow to wait on: compute
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


@dataclass(eq=False)
class _Release:
    release: Callable[[], Any]
    store: CacheStore
    key: str
    due: float
    since: float


@dataclass(eq=False)
class _Lease:
    renew: Callable[[], bool]
    period: float
    due: float
    store: CacheStore
    key: str


class LeaseKeeper:
    """One daemon thread renewing every distributed lock this process holds, each every
    third of its expiry, and releasing those its holders could not. Started on first
    use; it ends after ``idle`` seconds with nothing to do and starts again when
    needed. Thread-safe and fork-safe."""

    def __init__(self, idle: float = 10.0) -> None:
        self.idle = idle
        self._reset()
        forks.after_fork_in_child(self, LeaseKeeper._reset)

    def _reset(self) -> None:
        self._leases: dict[int, _Lease] = {}
        self._releases: list[_Release] = []
        self._releasing: list[_Release] = []  # taken from _releases, being tried now
        self._ids = itertools.count()
        self._wake = threading.Condition(forks.new_lock())
        self._thread: threading.Thread | None = None

    def keep(self, renew: Callable[[], bool], seconds: float, store: CacheStore, key: str) -> int:
        """Renew a lock every ``seconds / 3`` until :meth:`drop`; returns the lease's id."""
        period = max(0.05, seconds / 3)
        lease = _Lease(renew, period, time.monotonic() + period, store, key)
        with self._wake:
            lease_id = next(self._ids)
            self._leases[lease_id] = lease
            self._start()
        return lease_id

    def drop(self, lease_id: int) -> None:
        with self._wake:
            self._leases.pop(lease_id, None)

    def release_later(self, release: Callable[[], Any], store: CacheStore, key: str) -> None:
        """Release a lock (through ``store``) in the keeper's thread: at once, then, while
        the backend does not answer, every ``_RELEASE_RETRY`` seconds for up to
        ``_RELEASE_FOR`` seconds (a lock without expiry has no other way out)."""
        with self._wake:
            self._releases.append(_Release(release, store, key, 0.0, time.monotonic()))
            self._start()

    def settle(self, stores: Collection[CacheStore], timeout: float = 2.0) -> None:
        """Try now, in the caller's thread, every release still waiting for one of
        ``stores`` (once each), and wait up to ``timeout`` seconds for those the keeper is
        trying: an engine closing leaves no lock behind, and no connection opened after
        its own were closed."""
        wanted = {id(store) for store in stores}
        with self._wake:
            mine = [r for r in self._releases if id(r.store) in wanted]
            self._releases = [r for r in self._releases if id(r.store) not in wanted]
        for release in mine:
            release.store.attempt("unlock", release.key, release.release, always=True)
        deadline = time.monotonic() + timeout
        with self._wake:
            while any(id(r.store) in wanted for r in self._releasing):
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._wake.wait(left)

    def held(self) -> int:
        """How many leases are being kept."""
        with self._wake:
            return len(self._leases)

    def _start(self) -> None:
        # Called with _wake held.
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="dogpile_warm-leases", daemon=True
            )
            self._thread.start()
        self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                if not self._leases and not self._releases:
                    self._wake.wait(self.idle)
                    if not self._leases and not self._releases:
                        self._thread = None
                        return
                now = time.monotonic()
                releases = [r for r in self._releases if r.due <= now]
                self._releases = [r for r in self._releases if r.due > now]
                self._releasing = releases
                due = [(i, lease) for i, lease in self._leases.items() if lease.due <= now]
                if not due and not releases:
                    upcoming = [lease.due for lease in self._leases.values()]
                    upcoming += [r.due for r in self._releases]
                    self._wake.wait(min(upcoming) - now)
                    continue
                for _, lease in due:
                    lease.due = now + lease.period
            for release in releases:
                self._release(release)
            if releases:
                with self._wake:
                    self._releasing = []
                    self._wake.notify_all()  # settle() may be waiting for them
            for lease_id, lease in due:
                if not self._renew(lease_id, lease):
                    self.drop(lease_id)

    def _release(self, release: _Release) -> None:
        result = release.store.attempt("unlock", release.key, release.release, always=True)
        if not isinstance(result, BackendUnavailable):
            return
        if time.monotonic() - release.since < _RELEASE_FOR:
            release.due = time.monotonic() + _RELEASE_RETRY
            with self._wake:
                self._releases.append(release)
        else:
            log.warning(
                "could not release the lock of %r for %g s; it stays until it expires",
                release.key,
                _RELEASE_FOR,
            )

    def _renew(self, lease_id: int, lease: _Lease) -> bool:
        """Renew one lease; False once it is lost (someone else holds the lock now)."""
        # Tried even while the breaker is open: other threads' failures must not
        # cost a live holder its lease (the server may well answer).
        kept = lease.store.attempt("renew", lease.key, lease.renew, always=True)
        if isinstance(kept, BackendUnavailable):
            return True  # try again next period
        if kept is True:
            return True
        with self._wake:
            released = lease_id not in self._leases
        if not released:  # not its holder releasing it meanwhile
            if isinstance(kept, BackendError):
                reason = f"it cannot be renewed ({kept})"
            else:
                reason = "it expired while its value was being computed"
            log.warning(
                "the lock of %r is no longer this process's: %s; another process may "
                "compute the value too",
                lease.key,
                reason,
            )
        return False


_keeper: LeaseKeeper | None = None
_keeper_lock = forks.new_lock()


def lease_keeper() -> LeaseKeeper:
    """The process's :class:`LeaseKeeper`."""
    global _keeper
    keeper = _keeper
    if keeper is None:
        with _keeper_lock:
            if _keeper is None:
                _keeper = LeaseKeeper()
            keeper = _keeper
    return keeper
