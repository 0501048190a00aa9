"""Where background refreshes run: a small pool, a timer for those that wait for their time.

:class:`RefreshRunner` is the engine's one runner: refresh-ahead, dogpile's
``async_creation_runner`` and pattern warming hand it their jobs. When to
refresh is :mod:`dogpile_warm._cached.refresh`'s to decide.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import logging
import sys
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from dogpile.cache.api import CacheMutex

from .._core import forks

__all__ = ["LATE_MARGIN", "LATE_WEIGHT", "RefreshRunner"]

log = logging.getLogger(__name__)

# Refreshes start this many times earlier than they should as jobs have lately
# started late: a moving average, each start weighing this much (a spike, such
# as a pool busy with a burst of refreshes, moves it little).
LATE_MARGIN = 2.0
LATE_WEIGHT = 0.05


class RefreshRunner:
    """Runs background refreshes on a small pool, created on first use; thread-safe.

    :meth:`submit` runs a job unless one with the same key is waiting or
    running already, now or at a later time (a timer thread, started on first
    use, hands it to the pool then); :meth:`run` (dogpile's
    ``async_creation_runner``) runs a job that comes with the mutex its
    caller acquired, released when the job ends, also when it raises. At most
    ``max_pending`` jobs are queued in the pool or run at once (and at most
    ``max_timed`` wait for their time): beyond that, and after :meth:`close`,
    a job is dropped (its mutex released at once) and readers keep getting
    the cached value, still within its ttl.
    """

    def __init__(self, workers: int, max_pending: int = 1000, max_timed: int = 100_000) -> None:
        self.workers = workers
        self.max_pending = max_pending
        self.max_timed = max_timed
        self._lock = forks.new_lock()
        self._closed = False
        self._reset()
        forks.after_fork_in_child(self, RefreshRunner._reset)

    def _reset(self) -> None:
        # Also in a forked child: the pool's and the timer's threads do not exist there.
        self._pool: ThreadPoolExecutor | None = None
        self._pending: set[Hashable] = set()
        self._count = 0
        # (monotonic time, order, key, job) of jobs waiting for their time
        self._timed: list[tuple[float, int, Hashable, Callable[[], Any]]] = []
        self._order = itertools.count()
        self._timer: threading.Thread | None = None
        self._wakeup = threading.Condition(self._lock)
        # Seconds jobs started after their time, lately (a moving average); until
        # one has, a GIL switch interval: what a thread may wait to run.
        self._late = sys.getswitchinterval()

    def submit(self, key: Hashable, job: Callable[[], Any], delay: float = 0.0) -> bool:
        """Run ``job`` in the pool, after ``delay`` seconds if positive, unless a job for
        ``key`` is pending; True if queued.

        A job waiting for its time takes no place among the ``max_pending`` (it
        costs nothing yet; at most ``max_timed`` wait), one in the pool when its
        time comes, and is dropped then if the pool is full.
        """
        with self._lock:
            if key in self._pending or self._closed:
                return False
            if delay > 0:
                if len(self._timed) >= self.max_timed:
                    return False
                self._pending.add(key)
                heapq.heappush(self._timed, (time.monotonic() + delay, next(self._order), key, job))
                if self._timer is None:
                    self._timer = threading.Thread(
                        target=self._wait_for_timed, name="dogpile_warm-refresh-timer", daemon=True
                    )
                    self._timer.start()
                self._wakeup.notify()
                return True
            if self._count >= self.max_pending:
                return False
            self._pending.add(key)
            self._count += 1
        return self._start(job, lambda: self._forget(key))

    def _wait_for_timed(self) -> None:
        """The timer thread: hands each timed job to the pool when its time comes."""
        while True:
            with self._lock:
                due: list[tuple[float, int, Hashable, Callable[[], Any]]] = []
                while not due:
                    if self._closed:
                        return
                    now = time.monotonic()
                    while self._timed and self._timed[0][0] <= now:
                        due.append(heapq.heappop(self._timed))
                    if not due:
                        self._wakeup.wait(self._timed[0][0] - now if self._timed else None)
            for when, _, key, job in due:
                with self._lock:
                    full = self._count >= self.max_pending
                    if not full:
                        self._count += 1
                if full:  # dropped, as a refresh found due with the pool full is
                    self._forget(key)
                else:
                    self._start(job, functools.partial(self._forget, key), when)

    def lateness(self) -> float:
        """Seconds a refresh should start early to make up for how late jobs have lately
        started in this process (a busy one: threads holding the GIL for whole
        switch intervals, a pool full of other refreshes)."""
        return LATE_MARGIN * self._late

    def _forget(self, key: Hashable) -> None:
        with self._lock:
            self._pending.discard(key)

    def run(self, job: Callable[[], Any], mutex: CacheMutex) -> None:
        """Run ``job`` in the pool, then release ``mutex`` (dogpile's async runner contract)."""
        with self._lock:
            full = self._count >= self.max_pending
            if not full:
                self._count += 1
        if full:
            _release(mutex)
            return
        self._start(job, lambda: _release(mutex))

    def _start(
        self, job: Callable[[], Any], on_done: Callable[[], Any], when: float | None = None
    ) -> bool:
        """Run ``job`` in the pool, then ``on_done()`` (outside the runner's lock: it may
        talk to a backend); if the pool is closed, ``on_done()`` at once. True if queued.
        ``when`` (monotonic; default now) is when it should start: how late it did is
        noted (see :meth:`lateness`)."""
        intended = time.monotonic() if when is None else when

        def run() -> None:
            late = time.monotonic() - intended
            with self._lock:
                self._late += LATE_WEIGHT * (late - self._late)
            try:
                job()
            except Exception:
                log.exception("background refresh failed")
            finally:
                with self._lock:
                    self._count -= 1
                on_done()

        try:
            self._executor().submit(run)
        except RuntimeError:  # closed
            with self._lock:
                self._count -= 1
            on_done()
            return False
        return True

    def _executor(self) -> ThreadPoolExecutor:
        pool = self._pool
        if pool is None:
            with self._lock:
                if self._closed:
                    raise RuntimeError("refreshes are closed")
                pool = self._pool
                if pool is None:
                    pool = self._pool = ThreadPoolExecutor(
                        self.workers, thread_name_prefix="dogpile_warm-refresh"
                    )
        return pool

    def close(self) -> None:
        """Refuse new refreshes, drop those waiting for their time, and wait for those
        under way. Idempotent."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
            for _, _, key, _ in self._timed:
                self._pending.discard(key)
            self._timed.clear()
            self._wakeup.notify()
        if pool is not None:
            pool.shutdown(wait=True)


def _release(mutex: CacheMutex) -> None:
    """Release a mutex dogpile handed over, logging (never raising) a failure: a lock
    whose expiry passed during a long refresh is someone else's now."""
    try:
        mutex.release()
    except Exception:
        log.warning("releasing the lock of a background refresh failed", exc_info=True)
