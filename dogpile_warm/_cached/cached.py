"""One decorated function's cache: the read path, computing and storing, and warming.

The read path is dogpile's own :class:`dogpile.lock.Lock`, fed with a value
function that treats an entry past its ``ttl`` (or carrying an invalidated
tag) as missing, and with ``refresh_ahead * ttl`` as the lock's expiry: past
it, the caller gets the cached value at once while one background refresh
runs in the engine's refresh pool; past ``ttl`` the caller waits for the
recompute, under the key's lock (distributed where the backend has one; see
:mod:`dogpile_warm._core.locks` for how it waits). Every call starts in
:mod:`dogpile_warm._cached.reader`, which answers a fresh value on dogpile's memory
backend before any of this (see :mod:`dogpile_warm._core.memory_index`).

Backend failures are the store's to handle (:mod:`dogpile_warm._core.store`): a
read it cannot make comes back as ``UNAVAILABLE`` and the caller computes
without the cache; nothing here catches a backend exception.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from dogpile.cache import CacheRegion
from dogpile.cache.api import CacheMutex
from dogpile.lock import Lock, NeedRegenerationException

from .. import signals
from .._core import health
from .._core.batch import KeyResult, WriteBatch
from .._core.keys import KeyBuilder, KeyBy
from .._core.locks import begin_compute, check_not_computing, end_compute
from .._core.regions import check_backend_expiry
from .._core.store import UNAVAILABLE, CacheStore, Entry
from ..errors import WarmError, describe_error
from .reader import Reader, make_reader
from .refresh import RefreshBackoff, refresh_due

if TYPE_CHECKING:
    from ..engine import CacheWarmingEngine
    from ..task import WarmingTask

__all__ = ["CachedFunction", "WarmArgs"]

log = logging.getLogger(__name__)

# What value_and_created() reports to dogpile's Lock for a value that is
# within its ttl but due for refresh: an epoch second long past, so the Lock
# sees "expired, but a value exists" and hands its mutex to async_creator.
_REFRESH_NOW = 1.0

WarmArgs = Iterable[tuple[Any, ...] | Mapping[str, Any]]


class CachedFunction:
    """Everything ``@warmable`` knows about one function; shared by its wrappers."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str,
        engine: CacheWarmingEngine,
        region: CacheRegion | str | None,
        ttl: float,
        refresh_ahead: float | None,
        tags: frozenset[str],
        user_arg: str | None,
        warm_args: WarmArgs | Callable[[], WarmArgs] | None,
        refresh_policy: str = "window",
        xfetch_beta: float = 1.0,
        should_cache_fn: Callable[[Any], bool] | None = None,
        key_by: KeyBy | None = None,
        stale_if_error: float | None = None,
    ) -> None:
        self.fn = fn  # the plain function (a staticmethod's or classmethod's __func__)
        self.name = name
        self.engine = engine
        self.region = region
        self.ttl = ttl
        self.refresh_ahead = refresh_ahead
        self.refresh_policy = refresh_policy if refresh_ahead is not None else None
        # Up to this age a read returns the value with nothing else to decide:
        # None for xfetch, whose decision is random on every read.
        self.fresh_for: float | None = {
            None: ttl,
            "window": ttl * (refresh_ahead or 0.0),
        }.get(self.refresh_policy)
        self.xfetch_beta = xfetch_beta
        self.should_cache_fn = should_cache_fn
        self.stale_if_error = stale_if_error
        self.backoff = RefreshBackoff()
        # Seconds a computation takes, smoothed (None until one ran): lock waits fit it.
        self.cost_estimate: float | None = None
        self.tags = tags
        self.sorted_tags = tuple(sorted(tags))
        self.user_arg = user_arg
        self.warm_args = warm_args
        self.keys = KeyBuilder(name, fn, key_by)
        self.sender: Any = None  # the WarmableFunction, set once it exists
        self.task: WarmingTask = None  # type: ignore[assignment]  # set by warmable()
        self._store: tuple[int, CacheStore] | None = None
        # The verified entries of the memory backend's index while reads may
        # answer from them: set by store(), dropped when a region is rebound.
        self._memory: dict[str, Entry] | None = None
        self.usage = engine._usage
        self.refresher = engine._refresher
        self._regions = engine._regions
        self._regions.watch(self)
        self.read: Reader = make_reader(self)

    # -- region -----------------------------------------------------------
    def store(self) -> CacheStore:
        """The store of this function's region, resolved at first use (after configure())."""
        cached = self._store
        generation = self._regions.generation
        if cached is None or cached[0] != generation:
            store = self._regions.store_for(self.region)
            check_backend_expiry(store.region, self.ttl, self.name)
            cached = self._store = (generation, store)
            if store.index is not None and self.fresh_for is not None:
                self._memory = store.index.entries
                # A region rebound meanwhile must not leave these entries in
                # use: add() bumps the generation before it calls
                # regions_changed(), so one of the two clears them.
                if self._regions.generation != generation:
                    self._memory = None
        return cached[1]

    def regions_changed(self) -> None:
        """A region name was rebound: reads stop answering from the memory index until
        :meth:`store` has resolved the region again."""
        self._memory = None

    # -- the read path ------------------------------------------------------
    def __call__(
        self,
        wrapped: Callable[..., Any],
        instance: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        """The wrapt wrapper: ``wrapped`` is already bound, ``args`` exclude self/cls."""
        return self.read(wrapped, *args, **kwargs)

    def read_through(
        self, key: str, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """The read of ``key`` past the memory shortcut; ``fn(*args, **kwargs)`` computes it."""
        # A method of its own: a lambda in read() would make its arguments
        # closure cells, allocated on every call, hit or not.
        self.usage.remember_call(self, key, args, kwargs)
        return self.call(lambda: fn(*args, **kwargs), key)

    def call(self, compute: Callable[[], Any], key: str) -> Any:
        """Return the cached value of ``key``, computing it with ``compute`` when needed.

        Sends exactly one of ``cache_hit`` / ``cache_miss``. Exceptions from
        ``compute`` reach the caller (but see :meth:`_stale_or_raise`); backend
        failures never do.
        """
        store = self.store()
        entry = store.read(key, self.sorted_tags)
        if entry is UNAVAILABLE:
            return self._compute_uncached(store, compute, key)
        if entry is not None and self._lock_time(entry, key) == entry.created:
            # Fresh and not due for refresh: exactly what dogpile's Lock would
            # answer at once, without building it or looking up the mutex.
            return self._report(key, False, entry.cost, entry, entry.value)
        try:
            return self._call_locked(store, compute, key, entry.cost if entry else None)
        except Exception as exc:
            if self.stale_if_error is None or entry is None:
                raise
            return self._stale_or_raise(key, entry, exc)

    def _stale_or_raise(self, key: str, entry: Entry, error: Exception) -> Any:
        """``entry``'s value if it is at most ``stale_if_error`` seconds past its ttl
        (counted and signalled as ``served_stale``); else ``error`` is raised."""
        assert self.stale_if_error is not None
        age = time.time() - entry.created
        if age > self.ttl + self.stale_if_error:
            raise error
        self.usage.counters.served_stale()
        log.info(
            "serving %r %.1f s past its ttl: its recompute failed (%s)",
            key,
            age - self.ttl,
            describe_error(error),
        )
        if signals.served_stale.receivers:
            signals.served_stale.send(self.sender, key=key, age=age, error=error)
        return entry.value

    def _lock_time(self, entry: Entry, key: str) -> float | None:
        """The creation time to show dogpile's Lock: None means "no usable value"."""
        age = time.time() - entry.created
        if age > self.ttl:
            # The freshness promise: never served, even while another thread
            # or process holds the lock; the caller waits for the recompute.
            return None
        fresh_for = self.fresh_for
        if fresh_for is not None and age <= fresh_for:
            return entry.created  # the common case, without asking the policy
        policy = self.refresh_policy
        if (
            policy is not None
            and refresh_due(
                policy, age, self.ttl, self.refresh_ahead or 0.0, entry.cost, self.xfetch_beta
            )
            and self.backoff.allows(key)
        ):
            return _REFRESH_NOW
        return entry.created

    def _compute_uncached(self, store: CacheStore, compute: Callable[[], Any], key: str) -> Any:
        """Compute for the caller alone, as if there were no cache (the backend is unavailable)."""
        value, cost = self._compute(store, key, compute)
        return self._report(key, True, cost, None, value)

    def _ready_check(self, store: CacheStore, key: str) -> Callable[[], bool]:
        """Whether a wait for ``key``'s lock can end: a usable value appeared, or the
        backend stopped answering (the waiter then computes without the cache)."""

        def ready() -> bool:
            entry = store.read(key, self.sorted_tags)
            return entry is UNAVAILABLE or (
                entry is not None and self._lock_time(entry, key) is not None
            )

        return ready

    def _call_locked(
        self, store: CacheStore, compute: Callable[[], Any], key: str, cost: float | None = None
    ) -> Any:
        """The read through dogpile's Lock: missing, expired or due values.

        ``cost``: what the key's last computation took, if known; a wait for
        another caller's computation is paced by it (else by this function's
        average).
        """
        ttl = self.ttl
        ran = False
        due: Entry | None = None  # the value whose refresh a read triggers

        def creator() -> tuple[Entry, float]:
            nonlocal ran
            ran = True
            created, _ = self._compute_entry(store, key, compute)
            return created, created.created

        def value_and_created() -> tuple[Entry, float]:
            nonlocal due
            entry = store.read(key, self.sorted_tags)
            when = self._lock_time(entry, key) if isinstance(entry, Entry) else None
            if entry is None or entry is UNAVAILABLE or when is None:
                # No usable value: dogpile's Lock now waits for the key's lock,
                # which this thread may hold itself (a computation asking for
                # its own key): refuse that wait rather than make it forever.
                check_not_computing(store, key, self.name)
                raise NeedRegenerationException()
            due = entry
            return entry, when

        async_creator = None
        if self.refresh_policy is not None:

            def async_creator(mutex: CacheMutex) -> None:
                # Released here, by the thread that took it (some locks, such as
                # dbm's file lock or a thread-local Redis lock, only work that
                # way); the refresh takes it again in its own thread.
                mutex.release()
                seen = due.created if due is not None else 0.0
                self.refresher.submit(
                    (store, key), lambda: self.refresh_in_background(store, key, compute, seen)
                )

        expected = cost if cost is not None else self.cost_estimate
        mutex = store.lock(key, self._ready_check(store, key), expected)
        with (
            health.call_budget(),
            Lock(mutex, creator, value_and_created, ttl, async_creator) as entry,
        ):
            pass
        if not ran and time.time() - entry.created > ttl:
            # The value crossed its ttl between the read and now (thread
            # switches): the promise is about what the caller receives.
            return self.call(compute, key)
        if ran and self._stored_too_late(entry):
            return self._compute_uncached(store, compute, key)
        return self._report(key, ran, entry.cost, entry, entry.value)

    def _stored_too_late(self, entry: Entry) -> bool:
        """Whether ``entry``, computed in time, passed its ttl while it was being stored (a
        backend that hung): a fresher value is then one computation away."""
        return time.time() - entry.created > self.ttl and entry.cost <= self.ttl

    def _report(self, key: str, miss: bool, cost: float, entry: Entry | None, value: Any) -> Any:
        now = time.time()
        if miss:
            self.usage.miss(self, key, now)
            if signals.cache_miss.receivers:
                signals.cache_miss.send(self.sender, key=key, duration_ms=cost * 1000.0)
        else:
            self.usage.hit(self, key, now)
            if signals.cache_hit.receivers:
                age = now - entry.created if entry is not None else 0.0
                signals.cache_hit.send(self.sender, key=key, age=age)
        return value

    # -- computing and storing ------------------------------------------------
    def _compute(
        self, store: CacheStore, key: str, compute: Callable[[], Any]
    ) -> tuple[Any, float]:
        """Run ``compute()`` as the computation of ``key``; return its value and seconds.

        Marks the key as computed by this thread meanwhile (a call asking for
        it raises ReentrantCallError), and folds the time into
        :attr:`cost_estimate`, which paces other callers' waits. The
        computation runs outside the caller's round-trip budget: cached calls
        it makes are theirs to account for, not the caller's.
        """
        token = begin_compute(store, key, self.name)
        no_budget = health.round_trip_budget.set(None)
        t0 = time.perf_counter()
        try:
            value = compute()
        finally:
            health.round_trip_budget.reset(no_budget)
            end_compute(token)
        cost = time.perf_counter() - t0
        previous = self.cost_estimate
        self.cost_estimate = cost if previous is None else 0.8 * previous + 0.2 * cost
        return value, cost

    def _compute_entry(
        self, store: CacheStore, key: str, compute: Callable[[], Any]
    ) -> tuple[Entry, BaseException | None]:
        """Compute now and store; return the entry and why it was not stored (None: stored).

        Tag versions are read before the computation starts. Exceptions from
        ``compute`` propagate and nothing is stored, so the last good value
        stays; backend failures are counted and logged by the store.
        """
        entry, unstorable = self._new_entry(store, key, compute)
        if unstorable is not None:
            return entry, unstorable
        return entry, store.write(key, entry, self.name)

    def _new_entry(
        self, store: CacheStore, key: str, compute: Callable[[], Any]
    ) -> tuple[Entry, BaseException | None]:
        """Compute now; return the entry and why it may not be stored (None: it may)."""
        versions = store.tag_versions(self.sorted_tags)
        started = time.time()
        value, cost = self._compute(store, key, compute)
        if isinstance(versions, BaseException):
            return Entry(value, started, self.ttl, (), cost), versions
        entry = Entry(value, started, self.ttl, versions, cost)
        if self.should_cache_fn is not None and not self.should_cache_fn(value):
            return entry, WarmError(f"should_cache_fn refused the value of {key!r}")
        return entry, None

    def _locked_compute_entry(
        self, store: CacheStore, key: str, compute: Callable[[], Any]
    ) -> tuple[Entry, BaseException | None]:
        """:meth:`_compute_entry` under the key's lock (computed anyway if the backend fails)."""
        check_not_computing(store, key, self.name)
        mutex = store.lock(key, expected=self.cost_estimate)
        mutex.acquire()
        try:
            return self._compute_entry(store, key, compute)
        finally:
            mutex.release()

    def refresh_in_background(
        self, store: CacheStore, key: str, compute: Callable[[], Any], seen: float
    ) -> None:
        """The refresh-ahead job, in a refresh thread: reports, never raises.

        Takes the key's lock without waiting (whoever holds it is computing
        the value already) and recomputes only if the value is still the one
        created at ``seen`` that the triggering read found due.
        """
        mutex = store.lock(key)
        if not mutex.acquire(False):
            return
        try:
            current = store.read(key, self.sorted_tags)
            if current is UNAVAILABLE or (isinstance(current, Entry) and current.created > seen):
                return  # no backend to refresh into, or refreshed meanwhile
            try:
                entry, error = self._compute_entry(store, key, compute)
            except Exception as exc:
                delay = self.backoff.failed(key)
                self.engine._refresh_failed(self, key, exc, delay)
                return
        finally:
            mutex.release()
        self.backoff.succeeded(key)
        duration_ms = entry.cost * 1000.0
        stored = error is None
        self.engine._record_refresh(self, key, duration_ms, stored)
        if stored and signals.refreshed.receivers:
            signals.refreshed.send(self.sender, key=key, duration_ms=duration_ms)

    # -- attributes of the decorated function ----------------------------------
    def key_for(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
        return self.keys.key(args, kwargs)

    def get(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
        return self.store().fresh_value(self.keys.key(args, kwargs), self.sorted_tags, self.ttl)

    def set(self, value: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
        key = self.keys.key(args, kwargs)
        store = self.store()
        versions = store.tag_versions(self.sorted_tags)
        if not isinstance(versions, BaseException):
            store.write(key, Entry(value, time.time(), self.ttl, versions), self.name)

    def invalidate(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
        self.store().delete(self.keys.key(args, kwargs))

    def refresh(self, compute: Callable[[], Any], key: str) -> Any:
        store = self.store()
        with health.call_budget():
            entry, _ = self._locked_compute_entry(store, key, compute)
        if self._stored_too_late(entry):
            return self._compute_uncached(store, compute, key)
        return entry.value

    def warm_key(
        self, compute: Callable[[], Any], key: str, batch: WriteBatch | None = None
    ) -> KeyResult:
        """Compute and store ``key`` now; report, signal and log the outcome, never raise.

        Alone, under the key's lock. With ``batch`` (a warm run), the value is
        computed without it and stored with the batch, which completes the
        returned result (see :mod:`dogpile_warm._core.batch`). While the backend is
        being skipped, nothing is computed and the result says so.
        """
        t0 = time.perf_counter()
        store = self.store()
        if store.health.open:  # nothing could be stored: nothing is computed
            return self._warmed(key, t0, store.skipped(key, "warm"))
        if batch is None:
            return self._warm(lambda store: self._locked_compute_entry(store, key, compute), key)
        try:
            entry, unstorable = self._new_entry(store, key, compute)
        except Exception as exc:
            return self._warmed(key, t0, exc)
        if unstorable is not None:
            return self._warmed(key, t0, unstorable)
        result = KeyResult(key, False, (time.perf_counter() - t0) * 1000.0, None, final=False)
        batch.put(store, key, entry, lambda error: self._complete(result, error), self.name)
        return result

    def prewarm(
        self, compute: Callable[[], Any], key: str, needed: Callable[[Entry | None], bool]
    ) -> KeyResult | None:
        """Warm ``key`` ahead of a predicted read, unless someone is already on it.

        Takes the key's lock without waiting: a holder (a caller or a
        background refresh, in any process) is already computing the value.
        Under the lock the value is read again and computed only if
        ``needed(entry)`` still holds (``entry`` None when missing or stale by
        tag). Returns None when nothing was computed; never raises.
        """
        store = self.store()
        mutex = store.lock(key)
        if not mutex.acquire(False):
            return None
        try:
            entry = store.read(key, self.sorted_tags)
            if entry is UNAVAILABLE or not needed(entry):
                return None
            return self._warm(lambda store: self._compute_entry(store, key, compute), key)
        finally:
            mutex.release()

    def _warm(
        self,
        compute_entry: Callable[[CacheStore], tuple[Entry, BaseException | None]],
        key: str,
    ) -> KeyResult:
        t0 = time.perf_counter()
        try:
            _, error = compute_entry(self.store())
        except Exception as exc:
            return self._warmed(key, t0, exc)
        return self._warmed(key, t0, error)

    def _warmed(self, key: str, t0: float, error: BaseException | None) -> KeyResult:
        result = KeyResult(key, False, (time.perf_counter() - t0) * 1000.0, None, final=False)
        self._complete(result, error)
        return result

    def _complete(self, result: KeyResult, error: BaseException | None) -> None:
        """Settle ``result`` (stored when ``error`` is None) and report it to the engine."""
        result.complete(error is None, describe_error(error))
        self.engine._record_warm(self.task, result, error, ttl=self.ttl, tags=self.tags)

    def calls_to_warm(self) -> list[tuple[tuple[Any, ...], dict[str, Any]]] | None:
        """The argument sets warming computes, or None when warming cannot call the function."""
        if self.keys.skips_first:
            return None  # a method needs an instance that warming does not have
        if self.warm_args is None:
            try:
                self.keys.bind((), {})
            except TypeError:
                return None
            return [((), {})]
        spec = self.warm_args() if callable(self.warm_args) else self.warm_args
        return [_as_call(item, self.name) for item in spec]


def _as_call(item: Any, name: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if isinstance(item, Mapping):
        return (), dict(item)
    if isinstance(item, tuple):
        return item, {}
    raise TypeError(f"warm_args of {name} must hold tuples or dicts, got {item!r}")


# wrapt's wrappers are generic only in its stubs, not at run time.
