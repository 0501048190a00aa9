"""The read path of a decorated ``async def``: the awaiters of one key share one computation.

``await f(x)`` starts in :func:`~dogpile_warm._cached.reader.make_async_reader`
(the key and the memory shortcut, which returns without suspending);
everything else is :meth:`AwaitedReads.call`:

- *one flight per key and loop*: the first awaiter's read, and the
  computation if the value is missing or past its ttl, run as one task;
  later awaiters of the key await that task, shielded, so cancelling one
  awaiter cancels neither the computation nor the others' wait, and an
  exception reaches every awaiter and stores nothing;
- *the key's lock* (distributed where the backend has one, so one process
  of a fleet computes) is taken without blocking the loop: each try runs off
  the loop and the pauses between them are ``asyncio.sleep`` (see
  :meth:`KeyLock.polls <dogpile_warm._core.locks.KeyLock.polls>`);
- *refresh ahead*: a value due for refresh is returned at once while one
  refresh task per key runs on the loop;
- *backend calls* run off the loop (see :class:`~dogpile_warm._core.loops.OffLoop`)
  unless the backend never blocks (dogpile's memory backend).

What is fresh, what is reported and signalled, and ``stale_if_error`` are
:class:`~dogpile_warm._cached.cached.CachedFunction`'s, as for sync reads.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import math
import time
import weakref
from collections.abc import Awaitable, Callable, Generator
from typing import TYPE_CHECKING, Any, TypeVar

from .._core import health
from .._core.locks import KeyLock, check_not_computing
from .._core.loops import OffLoop
from .._core.store import UNAVAILABLE, CacheStore, Entry
from .._core.tags import TagVersions
from .refresh import DUE

if TYPE_CHECKING:
    from .cached import CachedFunction

__all__ = ["AwaitedReads"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")
Compute = Callable[[], Awaitable[Any]]
FlightKey = tuple[asyncio.AbstractEventLoop, str]
# A flight's outcome: (value, entry, miss: True/False, None when served stale, cost)
Resolved = tuple[Any, Entry | None, bool | None, float]


class _Flight:
    """One flight: its task, and when the tag versions its value carries were read."""

    __slots__ = ("__weakref__", "task", "versions_read")

    def __init__(self) -> None:
        self.task: asyncio.Task[Resolved] | None = None
        # time.monotonic() just before the read whose tag versions the value will
        # carry; +inf until that read is made.
        self.versions_read = math.inf


class AwaitedReads:
    """The awaited reads of one ``async def``'s keys (see the module docstring).

    ``offloop`` runs its backend calls; at most ``max_refreshes`` refresh
    tasks run at once (beyond that a due value is served without one, still
    within its ttl). Flights and refreshes are held weakly: a task left on a
    loop closed without it is collected, and its ``finally`` releases its lock.
    """

    def __init__(self, cached: CachedFunction, offloop: OffLoop, max_refreshes: int) -> None:
        self._cached = cached
        self._offloop = offloop
        self._max_refreshes = max_refreshes
        self._waiting = 0  # refresh tasks waiting for their time
        self._flights: weakref.WeakValueDictionary[FlightKey, _Flight] = (
            weakref.WeakValueDictionary()
        )
        self._refreshes: weakref.WeakValueDictionary[FlightKey, asyncio.Task[None]] = (
            weakref.WeakValueDictionary()
        )

    async def read_through(
        self, key: str, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...], kwargs: Any
    ) -> Any:
        """The awaited read of ``key`` past the memory shortcut; ``fn(*args, **kwargs)``
        computes it."""
        cached = self._cached
        cached.usage.remember_call(cached, key, args, kwargs)
        return await self.call(lambda: fn(*args, **kwargs), key)

    async def call(self, compute: Compute, key: str) -> Any:
        """The value of ``key``, computed by awaiting ``compute()`` when needed; every
        awaiter sends one ``cache_hit`` or ``cache_miss`` (a joiner's is a hit)."""
        cached = self._cached
        store = cached.store()
        # Awaiting a flight of a key this task is computing would wait for itself.
        check_not_computing(store, key, cached.name)
        loop = asyncio.get_running_loop()
        flight_key = (loop, key)
        flight = self._flights.get(flight_key)
        if flight is None or flight.task is None or flight.task.done():
            # No flight, or one landed whose callback has not removed it yet (a value
            # it found may have aged past its ttl since): a new flight reads again.
            flight = _Flight()
            task = flight.task = loop.create_task(self._resolve(flight, store, compute, key))
            self._flights[flight_key] = flight
            task.add_done_callback(functools.partial(self._landed, flight_key, flight))
            try:
                value, entry, miss, cost = await asyncio.shield(task)
            except asyncio.CancelledError:
                # Its outcome is still this read's to report, once the flight lands.
                task.add_done_callback(functools.partial(self._report_landed, key))
                raise
        else:
            joined = time.monotonic()
            value, entry, lead, _ = await asyncio.shield(flight.task)
            if lead is None:  # served stale to the flight: so to its joiners, as hits
                return cached.report(key, False, entry.cost if entry else 0.0, entry, value)
            miss, cost = False, entry.cost if entry else 0.0  # a joiner's read is a hit
            if cached.sorted_tags and flight.versions_read <= joined:
                # Its tag versions were read before this read began: an invalidation
                # since then (in any process) must not be missed. Read them again.
                current = await self._io(store, store.read, key, cached.sorted_tags)
                if not isinstance(current, Entry) or cached.freshness(current, key) is None:
                    return await self.call(compute, key)
                value, entry, cost = current.value, current, current.cost
        if miss is None:
            return value  # served stale, and said so
        if not miss and entry is not None and cached.clock() - entry.created > cached.ttl:
            # The value crossed its ttl while this awaiter waited for the loop to
            # resume it: the promise is about what the caller receives.
            return await self.call(compute, key)
        return cached.report(key, miss, cost, entry, value)

    def _report_landed(self, key: str, task: asyncio.Task[Resolved]) -> None:
        """Report the read of a flight's first awaiter, cancelled before it landed."""
        if task.cancelled() or task.exception() is not None:
            return
        value, entry, miss, cost = task.result()
        if miss is not None:
            self._cached.report(key, miss, cost, entry, value)

    def _landed(self, flight_key: FlightKey, flight: _Flight, task: asyncio.Task[Any]) -> None:
        if self._flights.get(flight_key) is flight:
            del self._flights[flight_key]
        if not task.cancelled():
            task.exception()  # retrieved: its awaiters got it (or all left)

    async def _io(self, store: CacheStore, fn: Callable[..., _T], *args: Any) -> _T:
        """``fn(*args)``, a call of ``store``'s backend: off the loop unless it never blocks."""
        return await self._offloop.call(store.blocking, fn, *args)

    async def _resolve(
        self, flight: _Flight, store: CacheStore, compute: Compute, key: str
    ) -> Resolved:
        """The flight of ``key``: the value, the entry it came from (None: computed
        without the cache), whether it was a miss (None: served stale, reported) and
        what computing it cost. The first awaiter reports it."""
        cached = self._cached
        flight.versions_read = time.monotonic()
        entry = await self._io(store, store.read, key, cached.sorted_tags)
        if entry is UNAVAILABLE:
            return await self._uncached(store, compute, key)
        if entry is not None:
            state = cached.freshness(entry, key)
            if state is not None:
                if state is DUE:
                    self._refresh_later(store, compute, key, entry)
                return entry.value, entry, False, entry.cost
        flight.versions_read = math.inf
        try:
            return await self._recompute(flight, store, compute, key, entry)
        except Exception as exc:
            if cached.stale_if_error is None or entry is None:
                raise
            return cached.stale_or_raise(key, entry, exc), entry, None, entry.cost

    async def _uncached(self, store: CacheStore, compute: Compute, key: str) -> Resolved:
        """Compute for the awaiters alone, as if there were no cache."""
        value, cost = await self._cached.computation.run_async(store, key, compute)
        return value, None, True, cost

    async def _recompute(
        self, flight: _Flight, store: CacheStore, compute: Compute, key: str, seen: Entry | None
    ) -> Resolved:
        """A missing or expired value: under the key's lock, unless someone stored it
        meanwhile, compute and store it."""
        cached = self._cached
        # This flight's round trips share one budget, as a sync caller's do.
        health.round_trip_budget.set([health.CALL_BUDGET])
        expected = seen.cost if seen is not None else cached.computation.cost_estimate
        lock = store.lock(key, cached.ready_check(store, key), expected)
        try:
            await self._acquire(store, lock, key)
            versions: list[TagVersions] = []
            flight.versions_read = time.monotonic()
            entry = await self._io(store, store.read, key, cached.sorted_tags, versions)
            if isinstance(entry, Entry) and cached.freshness(entry, key) is not None:
                return entry.value, entry, False, entry.cost
            new, _ = await self._store_new(store, compute, key, versions)
        finally:
            self._release(store, lock, key)
        if cached.stored_too_late(new):
            return await self._uncached(store, compute, key)
        return new.value, new, True, new.cost

    async def _store_new(
        self, store: CacheStore, compute: Compute, key: str, versions: list[TagVersions]
    ) -> tuple[Entry, BaseException | None]:
        """Compute now and store; the entry and why it was not stored (None: stored)."""
        computation = self._cached.computation
        tags = await self._io(store, computation.versions, store, versions)
        started = self._cached.clock()
        value, cost = await computation.run_async(store, key, compute)
        entry, unstorable = computation.entry(key, value, started, cost, tags)
        if unstorable is not None:
            return entry, unstorable
        return entry, await self._io(store, store.write, key, entry, computation.name)

    # -- the key's lock: taken and released by one thread, never left held ---------------
    async def _lock_io(
        self,
        store: CacheStore,
        lock: KeyLock,
        key: str,
        fn: Callable[..., _T],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> _T:
        """``fn(*args)``, a step of taking ``lock``: in the key's own io thread (where it
        will be released), and released there if the awaiter is gone by its end."""
        if not store.blocking:
            return fn(*args)
        return await self._offloop.run(
            fn, *args, context=context, pin=key, if_abandoned=functools.partial(_drop, lock)
        )

    async def _acquire(self, store: CacheStore, lock: KeyLock, key: str) -> None:
        """Wait for ``lock`` as ``lock.acquire()`` would, pausing on the loop."""
        if await self._lock_io(store, lock, key, lock.acquire, False):
            return
        polls = lock.polls()
        pause = next(polls)
        # Waiting for another's computation spends none of this flight's budget.
        quiet = contextvars.copy_context()
        quiet.run(health.round_trip_budget.set, None)
        while True:
            await asyncio.sleep(pause)
            step = await self._lock_io(store, lock, key, _next_pause, polls, context=quiet)
            if step is None:
                return
            pause = step

    def _release(self, store: CacheStore, lock: KeyLock, key: str) -> None:
        """Release ``lock`` without awaiting, so that it happens even in a cancelled task
        (a held distributed lock is otherwise renewed for as long as the process lives)."""
        if not lock.held:
            return
        if store.blocking:
            self._offloop.fire(functools.partial(_drop, lock), pin=key)
        else:
            lock.release()

    # -- refresh ahead ------------------------------------------------------------------
    def _refresh_later(self, store: CacheStore, compute: Compute, key: str, seen: Entry) -> None:
        """Start the refresh task of ``key`` (``seen`` found due) unless one runs, or too
        many do; it waits for the latest safe moment as the refresh pool would."""
        loop = asyncio.get_running_loop()
        flight_key = (loop, key)
        if flight_key in self._refreshes or len(self._refreshes) - self._waiting >= (
            self._max_refreshes
        ):
            return
        cached = self._cached
        assert cached.policy is not None
        delay = cached.policy.refresh_delay(seen.created, seen.cost, cached.clock())
        # A context of its own, as a refresh thread has: not the reader's budget or keys.
        task = loop.create_task(
            self._refresh(store, compute, key, seen.created, delay), context=contextvars.Context()
        )
        self._refreshes[flight_key] = task
        task.add_done_callback(functools.partial(self._refresh_ended, flight_key))

    def _refresh_ended(self, flight_key: FlightKey, task: asyncio.Task[None]) -> None:
        self._refreshes.pop(flight_key, None)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("background refresh of %r failed", flight_key[1], exc_info=error)

    async def _refresh(
        self, store: CacheStore, compute: Compute, key: str, seen: float, delay: float
    ) -> None:
        """The refresh task, after ``delay`` seconds: as
        :meth:`CachedFunction.refresh_in_background
        <dogpile_warm._cached.cached.CachedFunction.refresh_in_background>`, awaited."""
        if delay > 0:
            self._waiting += 1  # a refresh waiting for its time takes no place yet
            try:
                await asyncio.sleep(delay)
            finally:
                self._waiting -= 1
        cached = self._cached
        lock = store.lock(key)
        try:
            if not await self._lock_io(store, lock, key, lock.acquire, False):
                return  # its holder is computing the value already
            versions: list[TagVersions] = []
            current = await self._io(store, store.read, key, cached.sorted_tags, versions)
            if current is UNAVAILABLE or (isinstance(current, Entry) and current.created > seen):
                return  # no backend to refresh into, or refreshed meanwhile
            try:
                entry, error = await self._store_new(store, compute, key, versions)
            except Exception as exc:
                cached.refresh_failed(key, exc)
                return
        finally:
            self._release(store, lock, key)
        cached.refreshed(key, entry, error)


def _drop(lock: KeyLock) -> None:
    """Release ``lock`` if it is held (in the thread that took it)."""
    if lock.held:
        lock.release()


def _next_pause(polls: Generator[float, None, bool]) -> float | None:
    """Resume a lock's wait: the next pause, or None when the wait is over."""
    try:
        return polls.send(None)
    except StopIteration:
        return None
