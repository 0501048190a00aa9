"""Region set-up: the embedded default, named regions, and what a region must offer.

dogpile_warm never changes a region the user passes in; it reads and writes
through the region's public API and shares its backend. Regions that
dogpile_warm configures itself get defaults suited to warming (see
:func:`backend_defaults`) and the engine's ``async_creation_runner``, so the
user's own ``cache_on_arguments`` functions on them refresh in the background
too.
"""

from __future__ import annotations

import datetime
import importlib
import math
import warnings
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from dogpile.cache import CacheRegion, make_region, register_backend

from .._backends import memcached, traits
from ..errors import UnknownRegionError
from . import forks
from .signing import make_serializer
from .store import CacheStore
from .validation import check_positive_number

# A name only: dogpile imports the class when a region is configured with it.
register_backend(memcached.BACKEND_NAME, "dogpile_warm._backends.memcached", "PyMemcacheBackend")

__all__ = [
    "MEMORY_BACKEND",
    "RegionRegistry",
    "backend_defaults",
    "backend_expiry",
    "build_region",
    "check_backend_expiry",
    "check_region",
    "warn_if_lock_never_expires",
]

MEMORY_BACKEND = "dogpile.cache.memory"

AsyncRunner = Callable[[CacheRegion, str, Callable[[], Any], Any], None]


_EXPIRY_ARGUMENT = {
    "dogpile.cache.pymemcache": "memcached_expire_time",
    "dogpile.cache.memcached": "memcached_expire_time",
    "dogpile.cache.pylibmc": "memcached_expire_time",
    "dogpile.cache.bmemcached": "memcached_expire_time",
    "dogpile.cache.redis": "redis_expiration_time",
    "dogpile.cache.redis_sentinel": "redis_expiration_time",
    "dogpile.cache.redis_cluster": "redis_expiration_time",
    "dogpile.cache.valkey": "valkey_expiration_time",
    "dogpile.cache.valkey_sentinel": "valkey_expiration_time",
    "dogpile.cache.valkey_cluster": "valkey_expiration_time",
}


# Seconds a client waits for a server to connect or answer, in regions that
# dogpile_warm configures: a loopback or LAN round trip takes about a
# millisecond, a hung server forever.
CLIENT_TIMEOUT = 0.5
# Seconds a distributed lock outlives its holder's last renewal: the holder
# renews it every third of that while computing (see dogpile_warm._core.locks), so
# a killed holder blocks its key about this long (memcached, whose clock ticks
# in whole seconds, up to one more), a live one never loses it.
LOCK_LEASE = 4


# The longest expiry memcached takes as seconds from now (30 days); a larger number is
# a Unix time.
MEMCACHED_MAX_RELATIVE = 30 * 24 * 3600


def backend_defaults(backend: str, expiration_time: float | None = None) -> dict[str, Any]:
    """Backend arguments dogpile_warm sets unless the user gives their own.

    - memcached (pymemcache), Redis and Valkey: connect and read timeouts of
      :data:`CLIENT_TIMEOUT`, no retry with backoff inside a caller's call
      (Redis and Valkey retry a refused or reset connection once, at once;
      memcached a reset one), and a distributed lock that expires
      :data:`LOCK_LEASE` seconds after its holder's last renewal.
    - memcached: a server that fails is not replaced by another for its keys
      (the store's circuit breaker skips the backend instead), so a server
      back from a pause never serves tag versions older than the others'.
    - Redis and Valkey (and their Sentinel backends): the lock is not
      thread-local, because the engine's
      ``async_creation_runner`` releases it in another thread than the one
      that took it.
    - Both: with a region ``expiration_time``, the backend's own expiry is
      twice that (memcached: none when that is over 30 days, which it would
      read as a date), so a value outlives its soft expiry long enough to be
      served while it is refreshed (dogpile's advice); without one, the
      backend never expires values itself (memcached evicts by LRU). Tag
      versions never carry that expiry.
    """
    defaults: dict[str, Any] = {}
    expiry_argument = _EXPIRY_ARGUMENT.get(backend)
    expiry = math.ceil(expiration_time * 2) if expiration_time else 0
    if expiry_argument == "memcached_expire_time" and expiry > MEMCACHED_MAX_RELATIVE:
        expiry = 0  # memcached would read it as a date in 1970: never expire instead
    if expiry_argument and expiry:
        defaults[expiry_argument] = expiry
    if backend == "dogpile.cache.pymemcache":
        defaults.update(
            connect_timeout=CLIENT_TIMEOUT,
            timeout=CLIENT_TIMEOUT,
            # With several servers: one that fails is tried again on the next
            # command rather than having its keys moved to the others.
            hashclient_retry_attempts=0,
            hashclient_retry_timeout=0,
            hashclient_dead_timeout=0,
            lock_timeout=LOCK_LEASE,
        )
    elif backend in _REDIS_CLIENTS:
        defaults.update(
            socket_timeout=CLIENT_TIMEOUT,
            socket_connect_timeout=CLIENT_TIMEOUT,
            connection_kwargs={"retry": _retry_once(_REDIS_CLIENTS[backend])},
            thread_local_lock=False,
            lock_timeout=LOCK_LEASE,
        )
    elif backend in _CLUSTERS:
        # A cluster client takes its settings in connection_kwargs only; without a
        # retry of its own it retries a node that does not answer with backoff, for
        # seconds of a caller's time.
        library = "valkey" if backend.startswith("dogpile.cache.valkey") else "redis"
        defaults.update(
            connection_kwargs={
                "socket_timeout": CLIENT_TIMEOUT,
                "socket_connect_timeout": CLIENT_TIMEOUT,
                "retry": _retry_once(library),
            },
            thread_local_lock=False,
            lock_timeout=LOCK_LEASE,
        )
    if backend.endswith("_sentinel"):  # asking a Sentinel for the primary is a call too
        defaults["sentinel_kwargs"] = {
            "socket_timeout": CLIENT_TIMEOUT,
            "socket_connect_timeout": CLIENT_TIMEOUT,
        }
    return defaults


# dogpile's Redis-protocol Cluster backends.
_CLUSTERS = ("dogpile.cache.redis_cluster", "dogpile.cache.valkey_cluster")

# dogpile's Redis-protocol backends, and the client library each one uses.
_REDIS_CLIENTS = {
    "dogpile.cache.redis": "redis",
    "dogpile.cache.redis_sentinel": "redis",
    "dogpile.cache.valkey": "valkey",
    "dogpile.cache.valkey_sentinel": "valkey",
}


def _retry_once(library: str) -> Any:
    """The client's retry policy: once, at once, and only a connection refused or reset.

    redis-py's (and valkey-py's) own default retries with backoff, seconds of
    a caller's time while a server is down, timeouts included.
    """
    backoff = importlib.import_module(f"{library}.backoff")
    exceptions = importlib.import_module(f"{library}.exceptions")
    retry = importlib.import_module(f"{library}.retry")
    return retry.Retry(backoff.NoBackoff(), 1, supported_errors=(exceptions.ConnectionError,))


def build_region(
    name: str,
    backend: str,
    *,
    expiration_time: float | None = None,
    arguments: Mapping[str, Any] | None = None,
    async_creation_runner: AsyncRunner | None = None,
    signing_key: bytes | str | Sequence[bytes | str] | None = None,
    serializer: str | Callable[[Any], bytes] | None = None,
    deserializer: Callable[[bytes], Any] | None = None,
    **region_kwargs: Any,
) -> CacheRegion:
    """Make and configure a region with :func:`backend_defaults` under ``arguments``.

    ``signing_key`` signs every value and tag version the region writes and
    refuses, unread, whatever lacks a valid signature (see
    :mod:`dogpile_warm._core.signing`). ``serializer`` is ``"pickle"``, ``"json"``,
    or dogpile's own pair: a function to bytes here and its ``deserializer``.
    Both concern backends outside the process; the memory backend keeps
    objects as they are and ignores them.
    """
    if not isinstance(backend, str) or not backend:
        raise TypeError(f"backend must be a dogpile.cache backend name, got {backend!r}")
    expiration_time = _check_expiration_time(expiration_time)
    if arguments is not None and not isinstance(arguments, Mapping):
        raise TypeError(f"arguments must be a mapping (a dict) or None, got {arguments!r}")
    if backend in _NEEDS_URL and not (arguments or {}).get("url"):
        raise ValueError(
            f"backend {backend!r} needs the server's address: arguments={{'url': "
            f"'127.0.0.1:11211'}} (or a list of them), got arguments={arguments!r}"
        )
    defaults = backend_defaults(backend, expiration_time)
    merged = {**defaults, **(arguments or {})}
    if "connection_kwargs" in defaults and arguments and "connection_kwargs" in arguments:
        merged["connection_kwargs"] = {
            **defaults["connection_kwargs"],
            **arguments["connection_kwargs"],
        }
    pair = _serializer(backend, serializer, deserializer, signing_key)
    if pair is not None:
        region_kwargs["serializer"], region_kwargs["deserializer"] = pair
        if backend == "dogpile.cache.pymemcache":
            # Values reach the client as bytes already: it must not unpickle either.
            if "serde" in merged:
                raise ValueError(
                    f"arguments={{'serde': {merged['serde']!r}}} cannot go with a signing_key "
                    "or a serializer: the region's serializer makes the bytes, and a client "
                    "serde could unpickle an item by its flags before any check; leave "
                    "'serde' out"
                )
            merged["serde"] = memcached.bytes_serde
    region = make_region(name=name, async_creation_runner=async_creation_runner, **region_kwargs)
    if backend == "dogpile.cache.pymemcache":
        backend = memcached.BACKEND_NAME  # the same backend, with timeouts (see memcached.py)
    region.configure(backend, expiration_time=expiration_time, arguments=merged)
    warn_if_lock_never_expires(region)
    return check_region(region)


# dogpile's memcached backends: no default server, and a KeyError('url') if none is given.
_NEEDS_URL = frozenset(
    {
        "dogpile.cache.pymemcache",
        "dogpile.cache.memcached",
        "dogpile.cache.pylibmc",
        "dogpile.cache.bmemcached",
        memcached.BACKEND_NAME,
    }
)


def _check_expiration_time(value: Any) -> float | None:
    """``expiration_time`` as dogpile takes it (seconds, a timedelta or None), checked here:
    dogpile reads ``-1`` as "never expires" and takes infinity, which no backend does."""
    if value is None:
        return None
    if isinstance(value, datetime.timedelta):
        value = value.total_seconds()
    return check_positive_number("expiration_time", value, " of seconds, a timedelta or None")


# Memcached clients that unpickle an item by its flags inside the client, before
# a region's deserializer could check a signature.
_UNPICKLING_CLIENTS = frozenset(
    {"dogpile.cache.memcached", "dogpile.cache.pylibmc", "dogpile.cache.bmemcached"}
)


def _serializer(
    backend: str, serializer: Any, deserializer: Any, signing_key: Any
) -> tuple[Callable[[Any], bytes], Callable[[bytes], Any]] | None:
    """The region's (serializer, deserializer), or None for the backend's own."""
    if callable(serializer) or deserializer is not None:
        if not (callable(serializer) and callable(deserializer)):
            raise TypeError(
                f"serializer and deserializer go together: a function to bytes and one back, "
                f"got serializer={serializer!r}, deserializer={deserializer!r}"
            )
        serializer = (serializer, deserializer)
    pair = make_serializer(serializer, signing_key)  # checks both arguments
    if pair is None or backend == MEMORY_BACKEND:
        return None  # objects stay in the process: nothing to serialize or sign
    if signing_key is not None and backend in _UNPICKLING_CLIENTS:
        raise ValueError(
            f"signing_key cannot protect backend {backend!r}: its client unpickles items by "
            f"their flags before any signature is checked; use 'dogpile.cache.pymemcache'"
        )
    return pair


def check_region(region: Any) -> CacheRegion:
    """Return ``region`` if dogpile_warm can use it, else raise naming what to change."""
    if not isinstance(region, CacheRegion):
        raise TypeError(f"region must be a dogpile.cache CacheRegion, got {region!r}")
    if not region.is_configured:
        raise ValueError(f"region {region.name!r} is not configured; call region.configure() first")
    return region


def warn_if_lock_never_expires(region: CacheRegion) -> None:
    """``UserWarning`` naming the setting if ``region``'s distributed lock never expires."""
    setting = traits.endless_lock_setting(region.actual_backend)
    if setting is not None:
        warnings.warn(
            f"region {region.name!r} has a distributed lock that never expires: a process "
            f"killed while computing a value blocks its key until someone deletes the lock; "
            f"set arguments={{{setting!r}: {LOCK_LEASE}}} (dogpile_warm renews the lock "
            "while its holder computes)",
            UserWarning,
            stacklevel=3,
        )


def backend_expiry(region: CacheRegion) -> float | None:
    """Seconds after which the region's backend drops a value by itself, or None (never)."""
    backend = region.actual_backend
    arguments = getattr(backend, "set_arguments", {})  # memcached backends
    expiry = (
        arguments.get("expire")  # pymemcache
        or arguments.get("time")  # pylibmc, python-memcached, python-binary-memcached
        or getattr(backend, "redis_expiration_time", None)
        or getattr(backend, "valkey_expiration_time", None)
    )
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
        self._lock = forks.new_lock()
        forks.after_fork_in_child(self, RegionRegistry._after_fork_in_child)

    def _after_fork_in_child(self) -> None:
        # Connections inherited from the parent: of every region bound to a
        # name and every region a function was given (once per backend).
        regions = [*self._regions.values(), *(store.region for store in self._stores.values())]
        for backend in {id(r.actual_backend): r.actual_backend for r in regions}.values():
            traits.reset_after_fork(backend)

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
