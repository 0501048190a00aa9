"""``@warmable``: a function becomes a cached, self-refreshing, warmable value.

The read path is dogpile's own :class:`dogpile.lock.Lock`, fed with a value
function that treats an entry past its ``ttl`` (or carrying an invalidated
tag) as missing, and with ``refresh_ahead * ttl`` as the lock's expiry: past
it, the caller gets the cached value at once while one background refresh
runs through the engine's ``async_creation_runner``; past ``ttl`` the caller
waits for the recompute, under the lock (distributed where the backend has one).
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

import wrapt
from dogpile.cache import CacheRegion
from dogpile.cache.api import NO_VALUE, CacheMutex, NoValue
from dogpile.lock import Lock, NeedRegenerationException

from . import signals
from .errors import WarmError
from .keys import KeyBuilder
from .store import CacheStore, Entry
from .tags import normalize_tags
from .task import CRITICAL_PRIORITY, WarmingTask
from .validation import check_priority, check_refresh_ahead, check_ttl

if TYPE_CHECKING:
    from .engine import CacheWarmingEngine

__all__ = ["WarmableFunction", "warmable"]

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

WarmArgs = Iterable[tuple[Any, ...] | Mapping[str, Any]]


class KeyResult:
    """The outcome of warming one key (a row of ``warm_critical_data()["results"]``)."""

    __slots__ = ("duration_ms", "error", "key", "success")

    def __init__(self, key: str, success: bool, duration_ms: float, error: str | None) -> None:
        self.key = key
        self.success = success
        self.duration_ms = duration_ms
        self.error = error


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
    ) -> None:
        self.fn = fn  # the plain function (a staticmethod's or classmethod's __func__)
        self.name = name
        self.engine = engine
        self.region = region
        self.ttl = ttl
        self.refresh_ahead = refresh_ahead
        # Lock expiry: past it a read triggers the background refresh.
        self.soft_ttl = ttl * refresh_ahead if refresh_ahead is not None else ttl
        self.tags = tags
        self.sorted_tags = tuple(sorted(tags))
        self.user_arg = user_arg
        self.warm_args = warm_args
        self.keys = KeyBuilder(name, fn)
        self.sender: Any = None  # the WarmableFunction, set once it exists
        self.task: WarmingTask = None  # type: ignore[assignment]  # set by warmable()
        self._store: tuple[int, CacheStore] | None = None

    # -- region -----------------------------------------------------------
    def store(self) -> CacheStore:
        """The store of this function's region, resolved at first use (after configure())."""
        cached = self._store
        generation = self.engine._region_generation
        if cached is None or cached[0] != generation:
            cached = (generation, self.engine._store_for(self.region))
            self._store = cached
        return cached[1]

    # -- the read path ------------------------------------------------------
    def __call__(
        self,
        wrapped: Callable[..., Any],
        instance: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        """The wrapt wrapper: ``wrapped`` is already bound, ``args`` exclude self/cls."""
        return self.call(lambda: wrapped(*args, **kwargs), self.keys.key(args, kwargs))

    def call(self, compute: Callable[[], Any], key: str) -> Any:
        """Return the cached value of ``key``, computing it with ``compute`` when needed.

        Sends exactly one of ``cache_hit`` / ``cache_miss``. Exceptions from
        ``compute`` reach the caller; backend failures never do.
        """
        store = self.store()
        ttl = self.ttl
        ran = user_failed = False
        created: Entry | None = None
        compute_ms = 0.0

        def creator() -> tuple[Entry, float]:
            nonlocal ran, user_failed, created, compute_ms
            ran = True
            versions = self._tag_versions(store, key)
            started = time.time()
            t0 = time.perf_counter()
            try:
                value = compute()
            except BaseException:
                user_failed = True
                raise
            compute_ms = (time.perf_counter() - t0) * 1000.0
            created = Entry(value, started, ttl, versions or ())
            if versions is not None:
                self._write(store, key, created)
            return created, started

        def value_and_created() -> tuple[Entry, float]:
            entry = store.read(key, self.sorted_tags)
            if entry is None or time.time() - entry.created > ttl:
                raise NeedRegenerationException()
            return entry, entry.created

        async_creator = None
        if self.refresh_ahead is not None:

            def async_creator(mutex: CacheMutex) -> None:
                self.engine._run_refresh(lambda: self._refresh(store, key, compute), mutex)

        try:
            with Lock(
                store.mutex(key), creator, value_and_created, self.soft_ttl, async_creator
            ) as entry:
                pass
            store.health.succeeded()
        except Exception as exc:
            if user_failed:
                raise
            store.health.failed(exc, key, "read")
            if created is None:
                ran = True
                t0 = time.perf_counter()
                value = compute()
                compute_ms = (time.perf_counter() - t0) * 1000.0
                return self._report(key, True, compute_ms, None, value)
            entry = created
        return self._report(key, ran, compute_ms, entry, entry.value)

    def _report(
        self, key: str, miss: bool, compute_ms: float, entry: Entry | None, value: Any
    ) -> Any:
        engine = self.engine
        if miss:
            engine._record_access(self, key, hit=False)
            if signals.cache_miss.receivers:
                signals.cache_miss.send(self.sender, key=key, duration_ms=compute_ms)
        else:
            engine._record_access(self, key, hit=True)
            if signals.cache_hit.receivers:
                age = time.time() - entry.created if entry is not None else 0.0
                signals.cache_hit.send(self.sender, key=key, age=age)
        return value

    # -- computing and storing ------------------------------------------------
    def _tag_versions(self, store: CacheStore, key: str) -> tuple[tuple[str, str], ...] | None:
        """Tag versions to store with a new value, or None when the backend cannot say."""
        if not self.sorted_tags:
            return ()
        try:
            return store.tag_versions(self.sorted_tags)
        except Exception as exc:
            store.health.failed(exc, key, "tag read")
            return None

    def _write(self, store: CacheStore, key: str, entry: Entry) -> bool:
        try:
            store.write(key, entry)
        except Exception as exc:
            store.health.failed(exc, key, "write")
            return False
        return True

    def _refresh(self, store: CacheStore, key: str, compute: Callable[[], Any]) -> None:
        """The background refresh-ahead job: never raises, reports instead."""
        t0 = time.perf_counter()
        try:
            _, stored = self._compute_and_locked_store(store, key, compute, lock=False)
        except Exception as exc:
            self.engine._refresh_failed(self, key, exc)
            return
        duration_ms = (time.perf_counter() - t0) * 1000.0
        self.engine._record_refresh(self, key, duration_ms, stored)
        if stored and signals.refreshed.receivers:
            signals.refreshed.send(self.sender, key=key, duration_ms=duration_ms)

    def _compute_and_locked_store(
        self, store: CacheStore, key: str, compute: Callable[[], Any], *, lock: bool = True
    ) -> tuple[Entry, bool]:
        """Compute and store under the key's dogpile mutex (``lock=False``: caller holds it)."""
        if not lock:
            return self._timed_compute(store, key, compute)
        try:
            mutex = store.mutex(key)
            mutex.acquire()
        except Exception as exc:
            store.health.failed(exc, key, "lock")
            return self._timed_compute(store, key, compute)
        try:
            return self._timed_compute(store, key, compute)
        finally:
            try:
                mutex.release()
            except Exception as exc:
                store.health.failed(exc, key, "unlock")

    def _timed_compute(
        self, store: CacheStore, key: str, compute: Callable[[], Any]
    ) -> tuple[Entry, bool]:
        versions = self._tag_versions(store, key)
        started = time.time()
        entry = Entry(compute(), started, self.ttl, versions or ())
        stored = versions is not None and self._write(store, key, entry)
        return entry, stored

    # -- attributes of the decorated function ----------------------------------
    def key_for(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
        return self.keys.key(args, kwargs)

    def get(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
        key = self.keys.key(args, kwargs)
        store = self.store()
        try:
            entry = store.read(key, self.sorted_tags)
        except Exception as exc:
            store.health.failed(exc, key, "read")
            return NO_VALUE
        if entry is None or time.time() - entry.created > self.ttl:
            return NO_VALUE
        return entry.value

    def set(self, value: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
        key = self.keys.key(args, kwargs)
        store = self.store()
        versions = self._tag_versions(store, key)
        if versions is not None:
            self._write(store, key, Entry(value, time.time(), self.ttl, versions))

    def invalidate(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
        key = self.keys.key(args, kwargs)
        store = self.store()
        try:
            store.delete(key)
        except Exception as exc:
            store.health.failed(exc, key, "delete")

    def refresh(self, compute: Callable[[], Any], key: str) -> Any:
        entry, _ = self._compute_and_locked_store(self.store(), key, compute)
        return entry.value

    def warm_key(self, compute: Callable[[], Any], key: str) -> KeyResult:
        """Compute and store ``key`` now; report, signal and log the outcome, never raise."""
        t0 = time.perf_counter()
        error: BaseException | None = None
        try:
            _, stored = self._compute_and_locked_store(self.store(), key, compute)
        except Exception as exc:
            stored, error = False, exc
        duration_ms = (time.perf_counter() - t0) * 1000.0
        if stored:
            result = KeyResult(key, True, duration_ms, None)
        else:
            if error is None:
                error = WarmError(f"computed {key!r} but the cache backend did not store it")
            result = KeyResult(key, False, duration_ms, f"{type(error).__name__}: {error}")
        self.engine._record_warm(self.task, result, error)
        return result

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
class _BoundWarmableFunction(wrapt.BoundFunctionWrapper):  # type: ignore[type-arg]
    """A warmable method looked up on a class or an instance.

    Same attributes as the function; ``refresh`` and ``warm`` call the bound
    method, so ``obj.method.warm(x)`` computes with ``obj``.
    """

    def __getattr__(self, name: str) -> Any:
        if name in _SHARED_ATTRIBUTES:
            return getattr(self._self_parent, name)
        return getattr(self.__wrapped__, name)

    def refresh(self, *args: Any, **kwargs: Any) -> Any:
        cached: CachedFunction = self._self_parent._self_cached
        bound = self.__wrapped__
        return cached.refresh(lambda: bound(*args, **kwargs), cached.key_for(args, kwargs))

    def warm(self, *args: Any, **kwargs: Any) -> bool:
        cached: CachedFunction = self._self_parent._self_cached
        bound = self.__wrapped__
        return cached.warm_key(lambda: bound(*args, **kwargs), cached.key_for(args, kwargs)).success


class WarmableFunction(wrapt.FunctionWrapper, Generic[P, R]):  # type: ignore[type-arg]
    """What ``@warmable`` returns: the function, cached, with warming attributes.

    Calling it returns the cached value (see :func:`warmable`). Attributes:
    ``task``, ``original``, ``key_for``, ``get``, ``set``, ``invalidate``,
    ``refresh`` and ``warm``; they take the function's own arguments
    (without ``self``/``cls``).
    """

    __bound_function_wrapper__ = _BoundWarmableFunction

    def __init__(self, wrapped: Callable[P, R], cached: CachedFunction) -> None:
        super().__init__(wrapped, cached)
        self._self_cached = cached

    @property
    def task(self) -> WarmingTask:
        return self._self_cached.task

    @property
    def original(self) -> Callable[P, R]:
        return self.__wrapped__

    def key_for(self, *args: Any, **kwargs: Any) -> str:
        """The cache key of a call with these arguments (before key mangling)."""
        return self._self_cached.key_for(args, kwargs)

    def get(self, *args: Any, **kwargs: Any) -> Any | NoValue:
        """The cached value for these arguments, or ``NO_VALUE``; never computes."""
        return self._self_cached.get(args, kwargs)

    def set(self, value: Any, *args: Any, **kwargs: Any) -> None:
        """Store ``value`` as the result of a call with these arguments."""
        self._self_cached.set(value, args, kwargs)

    def invalidate(self, *args: Any, **kwargs: Any) -> None:
        """Remove the cached value for these arguments."""
        self._self_cached.invalidate(args, kwargs)

    def refresh(self, *args: Any, **kwargs: Any) -> Any:
        """Recompute now under the key's lock, store and return the value."""
        cached = self._self_cached
        fn = cached.fn
        return cached.refresh(lambda: fn(*args, **kwargs), cached.key_for(args, kwargs))

    def warm(self, *args: Any, **kwargs: Any) -> bool:
        """Compute and store now; True on success. Failures are signalled, never raised."""
        cached = self._self_cached
        fn = cached.fn
        return cached.warm_key(lambda: fn(*args, **kwargs), cached.key_for(args, kwargs)).success


_SHARED_ATTRIBUTES = frozenset(("task", "original", "key_for", "get", "set", "invalidate"))


def warmable(
    *,
    priority: int = 50,
    ttl: float = 3600,
    tags: Iterable[str] | str = (),
    region: CacheRegion | str | None = None,
    critical: bool | None = None,
    name: str | None = None,
    namespace: str | None = None,
    user_arg: str | None = None,
    warm_args: WarmArgs | Callable[[], WarmArgs] | None = None,
    refresh_ahead: float | None = 0.8,
    engine: CacheWarmingEngine | None = None,
) -> Callable[[Callable[P, R]], WarmableFunction[P, R]]:
    """Cache a function on a dogpile.cache region and register it as a warming task.

    Bad arguments raise ``TypeError``/``ValueError`` here, at decoration,
    naming the argument and the value. See DESIGN.md for the full contract.
    """
    check_priority(priority)
    ttl = check_ttl(ttl)
    refresh_ahead = check_refresh_ahead(refresh_ahead)
    tag_set = normalize_tags(tags)
    if region is not None and not isinstance(region, CacheRegion | str):
        raise TypeError(f"region must be a CacheRegion, a region name or None, got {region!r}")
    if critical is not None and not isinstance(critical, bool):
        raise TypeError(f"critical must be True, False or None, got {critical!r}")
    for label, text in (("name", name), ("namespace", namespace), ("user_arg", user_arg)):
        if text is not None and (not isinstance(text, str) or not text):
            raise TypeError(f"{label} must be a non-empty string or None, got {text!r}")
    if warm_args is not None and not callable(warm_args):
        if isinstance(warm_args, str | bytes) or not isinstance(warm_args, Iterable):
            raise TypeError(f"warm_args must be an iterable or a callable, got {warm_args!r}")
        warm_args = tuple(warm_args)  # a generator would be used up by the first warming
        for item in warm_args:
            if not isinstance(item, tuple | Mapping):
                raise TypeError(f"warm_args must hold tuples or dicts, got {item!r}")
    is_critical = priority >= CRITICAL_PRIORITY if critical is None else critical

    def decorate(fn: Callable[P, R]) -> WarmableFunction[P, R]:
        plain = fn.__func__ if isinstance(fn, staticmethod | classmethod) else fn
        if not callable(plain):
            raise TypeError(f"@warmable needs a function, got {fn!r}")
        try:
            parameters = inspect.signature(plain).parameters
        except (TypeError, ValueError) as exc:
            raise TypeError(f"@warmable cannot read the signature of {fn!r}: {exc}") from None
        if user_arg is not None and user_arg not in parameters:
            raise ValueError(
                f"user_arg {user_arg!r} is not a parameter of {_qualname(plain)}"
                f" (parameters: {', '.join(parameters) or 'none'})"
            )
        task_name = name or _qualname(plain)
        if namespace is not None:
            task_name = f"{task_name}|{namespace}"
        from .default import get_warming_engine

        owner = engine if engine is not None else get_warming_engine()
        cached = CachedFunction(
            plain,
            name=task_name,
            engine=owner,
            region=region,
            ttl=ttl,
            refresh_ahead=refresh_ahead,
            tags=tag_set,
            user_arg=user_arg,
            warm_args=warm_args,
        )
        wrapper: WarmableFunction[P, R] = WarmableFunction(fn, cached)
        cached.sender = wrapper
        cached.task = WarmingTask(
            task_id=task_name,
            name=task_name,
            cache_key=task_name,
            compute_fn=plain,
            ttl=ttl,
            priority=priority,
            tags=tag_set,
            region=region,
        )
        owner._register(cached.task, is_critical, source=cached, replace=True)
        return wrapper

    return decorate


def _qualname(fn: Any) -> str:
    return f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', repr(fn))}"
