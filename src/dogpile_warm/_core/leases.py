"""Leases and late releases of the distributed locks this process holds.

One daemon thread per process, the :class:`LeaseKeeper`, renews every held
lock with an expiry every third of it (so a short expiry frees a key soon
after its holder is killed, and never while it lives), and releases the
locks a holder could not release itself because the backend did not answer,
retrying every 0.5 s for up to 5 minutes. :func:`lease_keeper` is the
process's keeper (a forked child gets its own).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import BackendError, BackendUnavailable
from . import forks

if TYPE_CHECKING:
    from .store import CacheStore

__all__ = ["LeaseKeeper", "lease_keeper"]

log = logging.getLogger(__name__)

# A release the backend does not answer is tried again this often, this long.
_RELEASE_RETRY = 0.5
_RELEASE_FOR = 300.0


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
