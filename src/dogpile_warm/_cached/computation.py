"""Computing, tagging and storing one key: the one way a value gets into a region.

A read that misses, a background refresh, ``refresh()``, a warm run, a
pattern pre-warm and a plain :class:`~dogpile_warm.task.WarmingTask` all go
through :class:`Computation`: tag versions are read before the computation
starts (so an invalidation during it makes the value stale at once), the
value is computed with the key marked as being computed by this thread, and
the entry is stored. A computation that returns a coroutine (an ``async
def``'s) is computed by awaiting it (see :func:`~dogpile_warm._core.loops.result_of`);
the awaited read path runs it with :meth:`Computation.run_async`. Exceptions from the computation reach the caller and
store nothing, so the last good value stays; backend failures come back as
values from the store (see :mod:`dogpile_warm._core.store`), never raised.
"""

from __future__ import annotations

import contextvars
import inspect
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from .._core import health
from .._core.batch import KeyResult, WriteBatch
from .._core.locks import begin_compute, check_not_computing, end_compute
from .._core.loops import check_may_wait, result_of
from .._core.store import UNAVAILABLE, CacheStore, Entry
from .._core.tags import TagVersions
from ..errors import WarmError, describe_error

if TYPE_CHECKING:
    from .._warming.outcomes import Outcomes
    from ..task import WarmingTask

__all__ = ["Computation", "Recomputed"]


class Recomputed(NamedTuple):
    """What :meth:`Computation.store_new_unless_held` did: ``entry`` computed and stored,
    unless ``error`` says why not; ``entry`` None: the computation raised ``error``.
    ``started``: ``time.perf_counter()`` when the computation began."""

    entry: Entry | None
    error: BaseException | None
    started: float


# What marks a computation as running (see Computation._begin): the caller's round-trip
# budget set aside, and the key's mark as this thread's (or task's) computation.
_Marks = tuple[contextvars.Token[Any], contextvars.Token[Any] | None]


class Computation:
    """How the values of one function (or one plain task) are computed and stored.

    ``name`` names the values in errors and lock ownership; ``clock`` (epoch
    seconds) stamps each entry's creation; ``task`` is what warm outcomes are
    reported for (None: a ``warm_cache`` value); ``should_cache_fn(value)``
    returning False keeps a value out of the cache, as in dogpile.

    ``awaitable``: ``compute`` gives a coroutine (an ``async def``'s), which a
    thread running an event loop cannot wait for: refused there before the
    key's lock is taken.

    ``owns_key`` is True for a decorated function, whose computation is the
    only one of its keys: it marks the key as being computed (a call asking
    for it from inside raises ``ReentrantCallError``) and, warmed alone, takes
    the key's lock. A plain task or a ``warm_cache`` value owns no key: its
    ``compute_fn`` may well read that very key through the function that
    owns it, so it is computed and stored without either.
    """

    def __init__(
        self,
        name: str,
        ttl: float,
        tags: frozenset[str],
        clock: Callable[[], float],
        outcomes: Outcomes,
        task: WarmingTask | None,
        should_cache_fn: Callable[[Any], bool] | None = None,
        *,
        owns_key: bool = True,
        awaitable: bool = False,
    ) -> None:
        self.name = name
        self.owns_key = owns_key
        self.awaitable = awaitable
        self.ttl = ttl
        self.tags = tags
        self.sorted_tags = tuple(sorted(tags))
        self.clock = clock
        self.task = task
        self.should_cache_fn = should_cache_fn
        self._outcomes = outcomes
        # Seconds a computation takes, smoothed (None until one ran): lock waits fit it.
        self.cost_estimate: float | None = None

    def run(self, store: CacheStore, key: str, compute: Callable[[], Any]) -> tuple[Any, float]:
        """Run ``compute()`` as the computation of ``key``; return its value and seconds.

        Marks the key as computed by this thread meanwhile (a call asking for
        it raises ReentrantCallError), and folds the time into
        :attr:`cost_estimate`. The computation runs outside the caller's
        round-trip budget: cached calls it makes are theirs to account for.
        """
        t0 = time.perf_counter()
        marks = self._begin(store, key)
        try:
            value = compute()
            if inspect.iscoroutine(value):  # an async function's: its result is the value
                value = result_of(value, self.name)
        finally:
            _end(marks)
        return value, self._measured(t0)

    async def run_async(
        self, store: CacheStore, key: str, compute: Callable[[], Awaitable[Any]]
    ) -> tuple[Any, float]:
        """:meth:`run` for an awaitable computation, awaited in the calling task."""
        t0 = time.perf_counter()
        marks = self._begin(store, key)
        try:
            value = await compute()
        finally:
            _end(marks)
        return value, self._measured(t0)

    def _begin(self, store: CacheStore, key: str) -> _Marks:
        """What runs ``key``'s computation: marked as this thread's (or task's) when it
        :attr:`owns_key`, and outside the caller's round-trip budget, until :func:`_end`.
        (A pair of calls rather than a context manager: every warmed key runs it.)"""
        token = begin_compute(store, key, self.name) if self.owns_key else None
        return health.round_trip_budget.set(None), token

    def _measured(self, t0: float) -> float:
        """Seconds since ``t0``, folded into :attr:`cost_estimate`."""
        cost = time.perf_counter() - t0
        previous = self.cost_estimate
        self.cost_estimate = cost if previous is None else 0.8 * previous + 0.2 * cost
        return cost

    def new_entry(
        self,
        store: CacheStore,
        key: str,
        compute: Callable[[], Any],
        seen: Sequence[TagVersions] = (),
    ) -> tuple[Entry, BaseException | None]:
        """Compute now; return the entry and why it may not be stored (None: it may).

        ``seen``: the tag versions :meth:`CacheStore.read
        <dogpile_warm._core.store.CacheStore.read>` just read with the key (the
        last are used); read now when there are none.
        """
        versions = self.versions(store, seen)
        started = self.clock()
        value, cost = self.run(store, key, compute)
        return self.entry(key, value, started, cost, versions)

    def versions(
        self, store: CacheStore, seen: Sequence[TagVersions] = ()
    ) -> TagVersions | BaseException:
        """The tag versions a computation starting now is stored with: the last of
        ``seen``, else read now (what went wrong, if they cannot be)."""
        return seen[-1] if seen else store.tags.current(self.sorted_tags)

    def entry(
        self,
        key: str,
        value: Any,
        started: float,
        cost: float,
        versions: TagVersions | BaseException,
    ) -> tuple[Entry, BaseException | None]:
        """The entry of ``value``, computed from ``started`` in ``cost`` seconds, and why
        it may not be stored (None: it may)."""
        if isinstance(versions, BaseException):
            return Entry(value, started, self.ttl, (), cost), versions
        entry = Entry(value, started, self.ttl, versions, cost)
        if self.should_cache_fn is not None and not self.should_cache_fn(value):
            return entry, WarmError(f"should_cache_fn refused the value of {key!r}")
        return entry, None

    def store_new(
        self,
        store: CacheStore,
        key: str,
        compute: Callable[[], Any],
        seen: Sequence[TagVersions] = (),
    ) -> tuple[Entry, BaseException | None]:
        """Compute now and store; return the entry and why it was not stored (None: stored)."""
        entry, unstorable = self.new_entry(store, key, compute, seen)
        if unstorable is not None:
            return entry, unstorable
        return entry, store.write(key, entry, self.name)

    def store_new_locked(
        self, store: CacheStore, key: str, compute: Callable[[], Any]
    ) -> tuple[Entry, BaseException | None]:
        """:meth:`store_new` under the key's lock (computed anyway if the backend fails)."""
        check_not_computing(store, key, self.name)
        if self.awaitable:  # refused before the lock, which the loop might hold itself
            check_may_wait(self.name)
        mutex = store.lock(key, expected=self.cost_estimate)
        mutex.acquire()
        try:
            return self.store_new(store, key, compute)
        finally:
            mutex.release()

    def set(self, store: CacheStore, key: str, value: Any) -> None:
        """Store ``value`` under ``key`` as if computed now (nothing stored if the tag
        versions cannot be read)."""
        versions = store.tags.current(self.sorted_tags)
        if not isinstance(versions, BaseException):
            store.write(key, Entry(value, self.clock(), self.ttl, versions), self.name)

    # -- warming: compute and store now, report the outcome, never raise -----------------
    def warm(
        self,
        store: CacheStore,
        key: str,
        compute: Callable[[], Any],
        batch: WriteBatch | None = None,
    ) -> KeyResult:
        """Compute and store ``key`` now; report, signal and log the outcome, never raise.

        Alone, under the key's lock if it :attr:`owns_key`. With ``batch`` (a
        warm run), the value is computed without it and stored with the batch,
        which completes the returned result (see :mod:`dogpile_warm._core.batch`).
        While the backend is being skipped, nothing is computed and the result
        says so.
        """
        t0 = time.perf_counter()
        if store.health.open:  # nothing could be stored: nothing is computed
            return self._warmed(key, t0, store.skipped(key, "warm"))
        try:
            if batch is None:
                store_new = self.store_new_locked if self.owns_key else self.store_new
                _, error = store_new(store, key, compute)
                return self._warmed(key, t0, error)
            entry, unstorable = self.new_entry(store, key, compute)
        except Exception as exc:
            return self._warmed(key, t0, exc)
        if unstorable is not None:
            return self._warmed(key, t0, unstorable)
        result = KeyResult(key, False, (time.perf_counter() - t0) * 1000.0, None, final=False)
        batch.put(store, key, entry, lambda error: self._complete(result, error), self.name)
        return result

    def prewarm(
        self,
        store: CacheStore,
        key: str,
        compute: Callable[[], Any],
        needed: Callable[[Entry | None], bool],
    ) -> KeyResult | None:
        """Warm ``key`` ahead of a predicted read, unless someone is already on it.

        Takes the key's lock without waiting: a holder (a caller or a
        background refresh, in any process) is already computing the value.
        Under the lock the value is read again and computed only if
        ``needed(entry)`` still holds (``entry`` None when missing or stale by
        tag). Returns None when nothing was computed; never raises.
        """
        try:
            done = self.store_new_unless_held(store, key, compute, needed)
        except Exception as exc:  # the lock or the read, not the computation
            return self._warmed(key, time.perf_counter(), exc)
        return None if done is None else self._warmed(key, done.started, done.error)

    def store_new_unless_held(
        self,
        store: CacheStore,
        key: str,
        compute: Callable[[], Any],
        needed: Callable[[Entry | None], bool],
    ) -> Recomputed | None:
        """:meth:`store_new` under the key's lock, taken without waiting, if
        ``needed(entry)`` holds for what is stored under it then (``entry`` None when
        missing or stale by tag); None when the lock is held, the backend does not
        answer or the value is not needed. What ``compute`` raises is returned."""
        mutex = store.lock(key)
        if not mutex.acquire(False):
            return None
        try:
            versions: list[TagVersions] = []
            entry = store.read(key, self.sorted_tags, versions)
            if entry is UNAVAILABLE or not needed(entry):
                return None
            started = time.perf_counter()
            try:
                new, error = self.store_new(store, key, compute, versions)
            except Exception as exc:
                return Recomputed(None, exc, started)
            return Recomputed(new, error, started)
        finally:
            mutex.release()

    def _warmed(self, key: str, t0: float, error: BaseException | None) -> KeyResult:
        result = KeyResult(key, False, (time.perf_counter() - t0) * 1000.0, None, final=False)
        self._complete(result, error)
        return result

    def _complete(self, result: KeyResult, error: BaseException | None) -> None:
        """Settle ``result`` (stored when ``error`` is None) and report it."""
        result.complete(error is None, describe_error(error))
        self._outcomes.warmed(self.task, result, error, self.ttl, self.tags)


def _end(marks: _Marks) -> None:
    """Undo :meth:`Computation._begin`."""
    no_budget, token = marks
    try:
        health.round_trip_budget.reset(no_budget)
        if token is not None:
            end_compute(token)
    except ValueError:
        # A task left on a closed loop is closed by the garbage collector, outside
        # its context: the marks then die with the task, and cannot be reset.
        pass
