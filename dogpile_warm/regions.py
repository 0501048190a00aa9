"""Region set-up: the embedded default, named regions, and what a region must offer.

dogpile_warm never changes a region the user passes in; it reads and writes
through the region's public API and shares its backend. Regions that
dogpile_warm configures itself get defaults suited to warming (see
:func:`backend_defaults`) and the engine's ``async_creation_runner``, so the
user's own ``cache_on_arguments`` functions on them refresh in the background
too.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from dogpile.cache import CacheRegion, make_region, register_backend

from . import memcached
from .errors import UnknownRegionError
from .store import CacheStore

# A name only: dogpile imports the class when a region is configured with it.
register_backend(memcached.BACKEND_NAME, "dogpile_warm.memcached", "PyMemcacheBackend")

__all__ = [
    "MEMORY_BACKEND",
    "RegionRegistry",
    "backend_defaults",
    "backend_expiry",
    "build_region",
    "check_backend_expiry",
    "check_region",
]

MEMORY_BACKEND = "dogpile.cache.memory"

AsyncRunner = Callable[[CacheRegion, str, Callable[[], Any], Any], None]


_EXPIRY_ARGUMENT = {
    "dogpile.cache.pymemcache": "memcached_expire_time",
    "dogpile.cache.memcached": "memcached_expire_time",
    "dogpile.cache.pylibmc": "memcached_expire_time",
    "dogpile.cache.bmemcached": "memcached_expire_time",
    "dogpile.cache.redis": "redis_expiration_time",
}


def backend_defaults(backend: str, expiration_time: float | None = None) -> dict[str, Any]:
    """Backend arguments dogpile_warm sets unless the user gives their own.

    - memcached (pymemcache): a dead server is retried after one second, not
      sixty, so caching resumes within seconds of an outage ending; a
      distributed lock expires, so a killed holder cannot block a key forever.
    - Redis: the lock is not thread-local, because a background refresh
      releases it from another thread than the one that took it.
    - Both: with a region ``expiration_time``, the backend's own expiry is
      twice that, so a value outlives its soft expiry long enough to be
      served while it is refreshed (dogpile's advice); without one, the
      backend never expires values itself (memcached evicts by LRU).
    """
    defaults: dict[str, Any] = {}
    expiry_argument = _EXPIRY_ARGUMENT.get(backend)
    if expiry_argument and expiration_time:
        defaults[expiry_argument] = math.ceil(expiration_time * 2)
    if backend == "dogpile.cache.pymemcache":
        defaults.update(
            # No quiet retries: during pymemcache's retry window reads look
            # like misses and dogpile's lock sleeps on add() returning False.
            # Marked dead at once, the server raises (counted, logged) and is
            # tried again after a second.
            hashclient_retry_attempts=0,
            hashclient_retry_timeout=0,
            hashclient_dead_timeout=1,
            lock_timeout=30,
        )
    elif backend == "dogpile.cache.redis":
        defaults.update(thread_local_lock=False, lock_timeout=30)
    return defaults


def build_region(
    name: str,
    backend: str,
    *,
    expiration_time: float | None = None,
    arguments: Mapping[str, Any] | None = None,
    async_creation_runner: AsyncRunner | None = None,
    **region_kwargs: Any,
) -> CacheRegion:
    """Make and configure a region with :func:`backend_defaults` under ``arguments``."""
    if not isinstance(backend, str) or not backend:
        raise TypeError(f"backend must be a dogpile.cache backend name, got {backend!r}")
    merged = {**backend_defaults(backend, expiration_time), **(arguments or {})}
    region = make_region(name=name, async_creation_runner=async_creation_runner, **region_kwargs)
    if backend == "dogpile.cache.pymemcache":
        backend = memcached.BACKEND_NAME  # the same backend, without per-key hashing
    region.configure(backend, expiration_time=expiration_time, arguments=merged)
    return check_region(region)


def check_region(region: Any) -> CacheRegion:
    """Return ``region`` if dogpile_warm can use it, else raise naming what to change."""
    if not isinstance(region, CacheRegion):
        raise TypeError(f"region must be a dogpile.cache CacheRegion, got {region!r}")
    if not region.is_configured:
        raise ValueError(f"region {region.name!r} is not configured; call region.configure() first")
    backend = region.actual_backend
    if getattr(backend, "distributed_lock", False) and getattr(backend, "thread_local_lock", False):
        raise ValueError(
            f"region {region.name!r} uses a thread-local Redis lock, which a background "
            "refresh cannot release; configure it with arguments={'thread_local_lock': False}"
        )
    return region


def backend_expiry(region: CacheRegion) -> float | None:
    """Seconds after which the region's backend drops a value by itself, or None (never)."""
    backend = region.actual_backend
    expiry = getattr(backend, "set_arguments", {}).get("expire")  # memcached backends
    if expiry is None:
        expiry = getattr(backend, "redis_expiration_time", None)
    return float(expiry) if expiry else None


def check_backend_expiry(region: CacheRegion, ttl: float, what: str) -> None:
    """``ValueError`` if the backend would drop values before ``ttl`` has passed.

    A value the backend drops early is recomputed early: the ttl would be a
    lie in the other direction, and refresh-ahead would find nothing to serve.
    """
    expiry = backend_expiry(region)
    if expiry is not None and expiry < ttl:
        raise ValueError(
            f"region {region.name!r} expires values in its backend after {expiry:g} s, "
            f"sooner than the ttl={ttl:g} s of {what}; raise memcached_expire_time / "
            f"redis_expiration_time to at least {math.ceil(ttl * 2)} or leave it unset"
        )


class RegionRegistry:
    """An engine's regions by name, and the one :class:`CacheStore` of each region it uses.

    ``generation`` goes up whenever a name is bound to a region, so decorated
    functions know to resolve their region again; watchers (see :meth:`watch`)
    are told at once. Thread-safe.
    """

    def __init__(self, default: CacheRegion) -> None:
        self._regions: dict[str, CacheRegion] = {"default": check_region(default)}
        self._stores: dict[int, CacheStore] = {}
        self.generation = 0
        self._watchers: weakref.WeakSet[Any] = weakref.WeakSet()
        self._lock = threading.Lock()

    def watch(self, watcher: Any) -> None:
        """Call ``watcher.regions_changed()`` after every :meth:`add` (held weakly)."""
        with self._lock:
            self._watchers.add(watcher)

    def add(self, name: str, region: CacheRegion) -> None:
        check_region(region)
        with self._lock:
            self._regions[name] = region
            self.generation += 1  # before the watchers hear of it: see CachedFunction.store
            for watcher in list(self._watchers):
                watcher.regions_changed()

    def get(self, name: str) -> CacheRegion:
        """The region bound to ``name``; :class:`UnknownRegionError` if none is."""
        try:
            return self._regions[name]
        except KeyError:
            known = ", ".join(sorted(self._regions))
            raise UnknownRegionError(
                f"no region named {name!r} (configured: {known}); "
                f"call dogpile_warm.configure({name!r}, backend=...) first"
            ) from None

    def store_for(self, region: CacheRegion | str | None) -> CacheStore:
        """The store of a region, a region name, or (None) the default region."""
        if region is None:
            region = self._regions["default"]
        elif isinstance(region, str):
            region = self.get(region)
        key = id(region)
        store = self._stores.get(key)
        if store is None or store.region is not region:
            check_region(region)
            with self._lock:
                store = self._stores.get(key)
                if store is None or store.region is not region:
                    store = self._stores[key] = CacheStore(region)
        return store

    def stores_in_use(self, named: Iterable[CacheRegion | str]) -> list[CacheStore]:
        """The stores of every bound region and of ``named`` (names never bound are left out)."""
        with self._lock:
            specs: list[CacheRegion | str] = [*self._regions.values(), *named]
        stores: dict[int, CacheStore] = {}
        for spec in specs:
            try:
                store = self.store_for(spec)
            except UnknownRegionError:
                continue  # named by a task but never configured: holds no values
            stores[id(store)] = store
        return list(stores.values())

    def stores(self) -> list[CacheStore]:
        """Every store made so far."""
        with self._lock:
            return list(self._stores.values())

    def after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        for store in self._stores.values():
            store.after_fork_in_child()
