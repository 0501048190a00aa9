"""One decorated function's cache: the read path, refresh-ahead, and its attributes.

The read path is dogpile's own :class:`dogpile.lock.Lock`, fed with a value
function that treats an entry past its ``ttl`` (or carrying an invalidated
tag) as missing, and that asks for a refresh once the refresh policy finds
it due (see :mod:`dogpile_warm._cached.refresh`): the caller then gets the
cached value at once while one background refresh runs in the engine's
refresh pool; past ``ttl`` the caller waits for the recompute, under the
key's lock (see :mod:`dogpile_warm._core.locks` for how it waits).
Every call starts in :mod:`dogpile_warm._cached.reader` (the memory
shortcut); computing and storing is :mod:`dogpile_warm._cached.computation`'s.
Ages are measured on the engine's clock, the one that stamps entries. A read
the store cannot make comes back as ``UNAVAILABLE`` and the caller computes
without the cache: nothing here catches a backend exception.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from dogpile.cache.api import CacheMutex
from dogpile.lock import Lock, NeedRegenerationException

from .. import signals
from .._core import health
from .._core.batch import KeyResult, WriteBatch
from .._core.keys import KeyBuilder
from .._core.locks import check_not_computing
from .._core.loops import is_async_function
from .._core.regions import RegionRegistry, check_backend_expiry
from .._core.store import UNAVAILABLE, CacheStore, Entry, Unavailable
from .._core.tags import TagVersions
from ..errors import describe_error
from ..task import WarmingTask
from .computation import Computation
from .reader import Reader, make_reader
from .refresh import DUE, FRESH, Freshness, RefreshBackoff, make_policy
from .refresh_runner import RefreshRunner
from .settings import FunctionSettings

if TYPE_CHECKING:
    from .._usage.usage import Usage
    from .._warming.outcomes import Outcomes

__all__ = ["CachedFunction"]

log = logging.getLogger(__name__)

# Freshness is decided here, on the engine's clock; dogpile's Lock gets the verdict in
# its own time.time() terms: "created now" when fresh, this ("long ago") when due for
# refresh, which makes it hand its mutex to async_creator.
_REFRESH_NOW = 1.0


class CachedFunction:
    """Everything ``@warmable`` knows about one function; shared by its wrappers.

    It gets from its engine only the parts it uses: ``usage`` (hits, misses,
    remembered calls), ``outcomes`` (what warmings and refreshes did),
    ``regions`` (where its region is), ``refresher`` (the background refresh
    pool) and ``clock``. ``sender`` is what its signals are sent as: the
    decorated function users hold.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        settings: FunctionSettings,
        *,
        usage: Usage,
        outcomes: Outcomes,
        regions: RegionRegistry,
        refresher: RefreshRunner,
        clock: Callable[[], float],
        sender: Any,
    ) -> None:
        s = settings
        self.fn = fn  # the plain function (a staticmethod's or classmethod's __func__)
        self.name = s.name
        self.region = s.region
        self.ttl = s.ttl
        self.tags = s.tags
        self.sorted_tags = tuple(sorted(s.tags))
        self.refresh_ahead = s.refresh_ahead
        self.refresh_policy = s.refresh_policy if s.refresh_ahead is not None else None
        self.policy = make_policy(self.refresh_policy, s, usage.read_gap, clock, refresher.lateness)
        # Up to this age a read returns the value with nothing else to decide (None:
        # xfetch, whose decision is random on every read).
        self.fresh_for = s.ttl if self.policy is None else self.policy.fresh_for
        self.stale_if_error = s.stale_if_error
        self.user_arg = s.user_arg
        self.warm_args = s.warm_args
        self.keys = KeyBuilder(s.name, fn, s.key_by)
        self.sender = sender
        self.clock = clock
        self.task = WarmingTask(
            task_id=s.name,
            name=s.name,
            cache_key=s.name,
            compute_fn=fn,
            ttl=s.ttl,
            priority=s.priority,
            tags=s.tags,
            region=s.region,
        )
        awaits = is_async_function(fn)
        self.computation = Computation(
            s.name, s.ttl, s.tags, clock, outcomes, self.task, s.should_cache_fn, awaitable=awaits
        )
        self.backoff = RefreshBackoff(clock=clock)
        self.usage = usage
        self.refresher = refresher
        self._outcomes = outcomes
        self._regions = regions
        self._store: tuple[int, CacheStore] | None = None
        # The verified entries of the memory backend's index while reads may
        # answer from them: set by store(), dropped when a region is rebound.
        self.memory_entries: dict[str, Entry] | None = None
        # The store a read of an untagged function fetches from without a memory
        # index in front (see dogpile_warm._cached.reader): set by store(), dropped
        # when a region is rebound.
        self.direct_store: CacheStore | None = None
        regions.watch(self)
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
            if self.fresh_for is not None:
                if store.index is not None:
                    self.memory_entries = store.index.entries
                elif not self.sorted_tags:
                    self.direct_store = store
                # A region rebound meanwhile must not leave these in use: add()
                # bumps the generation before it calls regions_changed(), so one
                # of the two clears them.
                if self._regions.generation != generation:
                    self.regions_changed()
        return cached[1]

    def regions_changed(self) -> None:
        """A region name was rebound: reads stop answering from the memory index, or
        fetching from the store directly, until :meth:`store` has resolved the region
        again. The next :meth:`store` does, even if a call in between already resolved
        it at the new generation (which would leave these unset for good)."""
        self.memory_entries = None
        self.direct_store = None
        self._store = None

    # -- the read path ------------------------------------------------------
    def __call__(
        self,
        wrapped: Callable[..., Any],
        instance: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        """The wrapt wrapper: ``wrapped`` is already bound, ``args`` exclude self/cls."""
        first = self.first_argument(wrapped, instance)
        if first:
            return self.read(self.fn, *first, *args, **kwargs)
        return self.read(wrapped, *args, **kwargs)

    def first_argument(self, wrapped: Any, instance: Any) -> tuple[Any, ...]:
        """What a call through wrapt's binding passes before its own arguments.

        A method whose first parameter is named neither ``self`` nor ``cls`` keeps
        that parameter in its key, as dogpile's key generator does: when
        ``wrapped`` is :attr:`fn` bound to ``instance`` (an instance, or a
        classmethod's class), that is the call's first argument. wrapt hands a
        method called on its class over as a partial of :attr:`fn`, hence
        ``__wrapped__`` beside a bound method's ``__func__``.
        """
        if instance is None or self.keys.skips_first:
            return ()
        fn = self.fn
        if getattr(wrapped, "__func__", None) is fn or getattr(wrapped, "__wrapped__", None) is fn:
            return (instance,)
        return ()

    def read_through(
        self, key: str, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """The read of ``key`` past the memory shortcut; ``fn(*args, **kwargs)`` computes it."""
        store = self.store()
        return self.read_entry(key, fn, args, kwargs, store, store.read(key, self.sorted_tags))

    def read_entry(
        self,
        key: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        store: CacheStore,
        entry: Entry | Unavailable | None,
    ) -> Any:
        """The answer to a call of ``fn(*args, **kwargs)`` under ``key``, given ``entry``,
        what reading it from ``store`` found."""
        # A method of its own: a lambda in read() would make its arguments
        # closure cells, allocated on every call, hit or not.
        self.usage.remember_call(self, key, args, kwargs)
        if type(entry) is Entry and self.fresh_for is not None:
            # A hit younger than fresh_for, written out: what freshness() and
            # report() decide and do for it (tests/test_read_path.py checks that
            # the two agree), without the compute closure a hit never calls.
            now = self.clock()
            age = now - entry.created
            if age <= self.fresh_for:
                self.usage.queued_hits.append((self, key, now))
                if signals.cache_hit.receivers:
                    signals.cache_hit.send(self.sender, key=key, age=age)
                return entry.value
        return self.answer(store, key, entry, lambda: fn(*args, **kwargs))

    def answer(
        self,
        store: CacheStore,
        key: str,
        entry: Entry | Unavailable | None,
        compute: Callable[[], Any],
    ) -> Any:
        """The cached value of ``key``, given ``entry``, what reading it from ``store``
        found; computed with ``compute`` when needed.

        Sends exactly one of ``cache_hit`` / ``cache_miss``. Exceptions from
        ``compute`` reach the caller (but see :meth:`stale_or_raise`); backend
        failures never do.
        """
        if entry is UNAVAILABLE:
            return self.compute_uncached(store, compute, key)
        if entry is not None and self.freshness(entry, key) is FRESH:
            # Fresh and not due for refresh: exactly what dogpile's Lock would
            # answer at once, without building it or looking up the mutex.
            return self.report(key, False, entry.cost, entry, entry.value)
        try:
            return self._call_locked(store, compute, key, entry)
        except Exception as exc:
            if self.stale_if_error is None or entry is None:
                raise
            return self.stale_or_raise(key, entry, exc)

    def stale_or_raise(self, key: str, entry: Entry, error: Exception) -> Any:
        """``entry``'s value if it is at most ``stale_if_error`` seconds past its ttl
        (counted and signalled as ``served_stale``); else ``error`` is raised."""
        assert self.stale_if_error is not None
        age = self.clock() - entry.created
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

    def freshness(self, entry: Entry, key: str) -> Freshness | None:
        """Whether ``entry`` may be served as it is, served while a refresh runs, or not
        served at all (None)."""
        now = self.clock()
        age = now - entry.created
        if age > self.ttl:
            # The freshness promise: never served, even while another thread
            # or process holds the lock; the caller waits for the recompute.
            return None
        fresh_for = self.fresh_for
        if fresh_for is not None and age <= fresh_for:
            return FRESH  # the common case, without asking the policy
        policy = self.policy
        if (
            policy is not None
            and policy.due(key, entry.created, entry.cost, now)
            and self.backoff.allows(key, now)
        ):
            return DUE
        return FRESH

    def compute_uncached(self, store: CacheStore, compute: Callable[[], Any], key: str) -> Any:
        """Compute for the caller alone, as if there were no cache (the backend is unavailable)."""
        value, cost = self.computation.run(store, key, compute)
        return self.report(key, True, cost, None, value)

    def ready_check(self, store: CacheStore, key: str) -> Callable[[], bool]:
        """Whether a wait for ``key``'s lock can end: a usable value appeared, or the
        backend stopped answering (the waiter then computes without the cache)."""

        def ready() -> bool:
            entry = store.read(key, self.sorted_tags)
            return entry is UNAVAILABLE or (
                entry is not None and self.freshness(entry, key) is not None
            )

        return ready

    def _call_locked(
        self, store: CacheStore, compute: Callable[[], Any], key: str, seen: Entry | None
    ) -> Any:
        """The read through dogpile's Lock: missing, expired or due values.

        ``seen`` is the entry :meth:`answer` was given (None: nothing): the Lock's first
        look at the key is that, not another round trip. A wait for another
        caller's computation is paced by what the key's last computation
        took, if known (else by this function's average).
        """
        ttl = self.ttl
        ran = False
        due: Entry | None = None  # the value whose refresh a read triggers
        first: list[Entry | None] = [seen]  # handed to the Lock's first look, once
        versions: list[TagVersions] = []  # read by the Lock's last look, for creator()

        def creator() -> tuple[Entry, float]:
            nonlocal ran
            ran = True
            created, _ = self.computation.store_new(store, key, compute, versions)
            return created, created.created

        def value_and_created() -> tuple[Entry, float]:
            nonlocal due
            versions.clear()
            entry = first.pop() if first else store.read(key, self.sorted_tags, versions)
            state = self.freshness(entry, key) if isinstance(entry, Entry) else None
            if state is None:
                # No usable value: dogpile's Lock now waits for the key's lock,
                # which this thread may hold itself (a computation asking for
                # its own key): refuse that wait rather than make it forever.
                check_not_computing(store, key, self.name)
                raise NeedRegenerationException()
            assert isinstance(entry, Entry)
            due = entry
            return entry, (time.time() if state is FRESH else _REFRESH_NOW)

        async_creator = None
        if self.refresh_policy is not None:

            def async_creator(mutex: CacheMutex) -> None:
                # Released here, by the thread that took it (some locks, such as
                # dbm's file lock or a thread-local Redis lock, only work that
                # way); the refresh takes it again in its own thread.
                mutex.release()
                assert due is not None and self.policy is not None
                created = due.created
                self.refresher.submit(
                    (store, key),
                    lambda: self.refresh_in_background(store, key, compute, created),
                    self.policy.refresh_delay(created, due.cost, self.clock()),
                )

        expected = seen.cost if seen is not None else self.computation.cost_estimate
        mutex = store.lock(key, self.ready_check(store, key), expected)
        with (
            health.call_budget(),
            Lock(mutex, creator, value_and_created, ttl, async_creator) as entry,
        ):
            pass
        if not ran and self.clock() - entry.created > ttl:
            # The value crossed its ttl between the read and now (thread
            # switches): the promise is about what the caller receives.
            return self.answer(store, key, store.read(key, self.sorted_tags), compute)
        if ran and self.stored_too_late(entry):
            return self.compute_uncached(store, compute, key)
        return self.report(key, ran, entry.cost, entry, entry.value)

    def stored_too_late(self, entry: Entry) -> bool:
        """Whether ``entry``, computed in time, passed its ttl while it was being stored (a
        backend that hung): a fresher value is then one computation away."""
        return self.clock() - entry.created > self.ttl and entry.cost <= self.ttl

    def report(self, key: str, miss: bool, cost: float, entry: Entry | None, value: Any) -> Any:
        now = self.clock()
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

    def refresh_in_background(
        self, store: CacheStore, key: str, compute: Callable[[], Any], seen: float
    ) -> None:
        """The refresh-ahead job, in a refresh thread: reports, never raises.

        Takes the key's lock without waiting (whoever holds it is computing
        the value already) and recomputes only if the value is still the one
        created at ``seen`` that the triggering read found due.
        """
        try:
            done = self.computation.store_new_unless_held(
                store, key, compute, lambda entry: entry is None or entry.created <= seen
            )
        except Exception as exc:  # the lock or the read, not the computation
            self.refresh_failed(key, exc)
            return
        if done is None:
            return
        if done.entry is None:
            assert isinstance(done.error, Exception)  # what the computation raised
            self.refresh_failed(key, done.error)
        else:
            self.refreshed(key, done.entry, done.error)

    def refresh_failed(self, key: str, error: Exception) -> None:
        """A background refresh of ``key`` raised: back off, report."""
        delay = self.backoff.failed(key)
        self._outcomes.refresh_failed(self.task, key, error, delay, self.ttl, self.tags)

    def refreshed(self, key: str, entry: Entry, error: BaseException | None) -> None:
        """A background refresh of ``key`` computed ``entry`` (not stored: ``error``)."""
        self.backoff.succeeded(key)
        duration_ms = entry.cost * 1000.0
        stored = error is None
        self._outcomes.refreshed(self.task, key, duration_ms, stored, self.ttl, self.tags)
        if stored and signals.refreshed.receivers:
            signals.refreshed.send(self.sender, key=key, duration_ms=duration_ms)

    # -- attributes of the decorated function ----------------------------------
    def key_for(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
        return self.keys.key(args, kwargs)

    def get(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
        key = self.keys.key(args, kwargs)
        return self.store().fresh_value(key, self.clock(), self.sorted_tags, self.ttl)

    def set(self, value: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
        self.computation.set(self.store(), self.keys.key(args, kwargs), value)

    def invalidate(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
        self.store().delete(self.keys.key(args, kwargs))

    def refresh(self, compute: Callable[[], Any], key: str) -> Any:
        store = self.store()
        with health.call_budget():
            entry, _ = self.computation.store_new_locked(store, key, compute)
        if self.stored_too_late(entry):
            return self.compute_uncached(store, compute, key)
        return entry.value

    def warm_key(
        self, compute: Callable[[], Any], key: str, batch: WriteBatch | None = None
    ) -> KeyResult:
        """Compute and store ``key`` now (see :meth:`Computation.warm`); never raises."""
        return self.computation.warm(self.store(), key, compute, batch)
