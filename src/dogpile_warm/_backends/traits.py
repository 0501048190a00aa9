"""What dogpile_warm must know about particular dogpile backends, kept in one place.

The store talks to every region through dogpile's API. What that API cannot
express is done here, per backend family, looked up by duck type so that
nothing here imports a client library:

- :func:`is_unavailable`: whether an exception means the backend did not
  answer (the store decides what any other failure means);
- :func:`is_remote`: whether round trips to it cross a network;
- :func:`never_blocks`: whether an event loop may call it itself;
- :func:`direct_reader`, :func:`cluster_client`: how to read Sentinel and
  Cluster backends where dogpile's own reads would not do;
- :func:`persist`: lift the backend expiry the region sets on every value, for
  tag versions (they must live as long as the backend keeps them);
- :func:`claim` / :func:`can_claim` / :func:`claim_holder`: set-if-absent
  with an expiry of its own, for the claims a fleet shares (see
  :mod:`dogpile_warm._warming.fleet`);
- :func:`renewer`, :func:`releaser`, :func:`lock_never_expires`: how to extend
  the lease of a held distributed lock, release it from another thread, and
  tell whether one held by someone else will ever expire;
- :func:`endless_lock_setting`: the setting that makes a distributed lock
  never expire, if the backend's has none;
- :func:`reset_after_fork`: drop client connections a child inherited.
"""

from __future__ import annotations

# socket.getaddrinfo() encodes host names with the idna codec, imported on
# first use. A worker thread's first connection would then import it while
# holding the import lock; a process forked at that moment never gets it
# back (a gunicorn worker hanging at start-up). Imported here, by the thread
# that imports dogpile_warm, never by ours.
import encodings.idna  # noqa: F401
import logging
import math
import types
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from dogpile.cache.backends.memory import MemoryBackend
from dogpile.cache.backends.null import NullBackend

from ..errors import BackendUnavailable

__all__ = [
    "can_claim",
    "claim",
    "claim_holder",
    "cluster_client",
    "direct_reader",
    "endless_lock_setting",
    "is_remote",
    "is_unavailable",
    "lock_never_expires",
    "never_blocks",
    "own_functions",
    "persist",
    "releaser",
    "renewer",
    "reset_after_fork",
]

log = logging.getLogger(__name__)

# Exception classes, by (module, name), that mean "the server did not answer".
# OSError covers refused and reset connections and socket timeouts of every
# client built on the socket module.
_UNAVAILABLE = frozenset(
    {
        ("redis.exceptions", "ConnectionError"),  # also BusyLoading, MaxConnections
        ("redis.exceptions", "TimeoutError"),
        ("valkey.exceptions", "ConnectionError"),
        ("valkey.exceptions", "TimeoutError"),
        ("pymemcache.exceptions", "MemcacheUnexpectedCloseError"),
        ("pylibmc", "ConnectionError"),
        ("pylibmc", "ServerDown"),
        ("pylibmc", "ServerDead"),
        ("pylibmc", "SocketCreateError"),
        ("pylibmc", "ReadError"),
        ("pylibmc", "WriteError"),
    }
)


def own_functions(cls: type, names: Sequence[str], library: str) -> tuple[Any, ...] | None:
    """``cls``'s attributes ``names`` if each is a plain function of ``library`` (the
    client library's own: neither overridden by a subclass nor wrapped, as tracing
    wraps a client's commands); else None.

    dogpile_warm's own reads of one key stand in for a client's command only
    where that command is the library's (``memcached_get``, ``redis_get``).
    """
    functions = tuple(getattr(cls, name, None) for name in names)
    for function in functions:
        if (
            type(function) is not types.FunctionType
            or function.__module__.partition(".")[0] != library
            or hasattr(function, "__wrapped__")
        ):
            return None
    return functions


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means the server did not answer (refused, reset, timed out)."""
    if isinstance(exc, OSError | BackendUnavailable):
        return True
    for cls in type(exc).__mro__:
        if (cls.__module__, cls.__qualname__) in _UNAVAILABLE:
            return True
    # pymemcache's HashClient raises its base class when no server is left.
    return type(exc).__module__ == "pymemcache.exceptions" and type(exc).__name__ == "MemcacheError"


def _is_memcached(backend: Any) -> bool:
    # On the class: on the instance, _clients is a memoized property that connects.
    return hasattr(type(backend), "_clients") and hasattr(backend, "set_arguments")


def _memcached_client(backend: Any) -> Any:
    """The calling thread's client of a dogpile memcached backend, or None."""
    return backend.client if _is_memcached(backend) else None


def _redis_client(backend: Any) -> Any:
    """The client of a dogpile Redis or Valkey backend, or None."""
    return getattr(backend, "writer_client", None)


def is_remote(backend: Any) -> bool:
    """Whether ``backend`` is a server reached over a network (memcached, Redis, Valkey)."""
    return _is_memcached(backend) or _redis_client(backend) is not None


def direct_reader(backend: Any) -> Any:
    """What dogpile_warm reads a Redis-protocol backend with instead of dogpile's reader,
    where that one would not do; None where it does. Has ``get(key)`` and ``mget(keys)``.

    - Sentinel (reads go to a replica): the primary's client, so that a
      replica's lag never undoes an invalidation;
    - Cluster (``MGET`` needs one hash slot): the client, with ``mget`` split
      by slot (redis-py's ``mget_nonatomic``).
    """
    writer = _redis_client(backend)
    if writer is None:
        return None
    if cluster_client(backend) is not None:
        return _ClusterReader(writer)
    if getattr(backend, "reader_client", writer) is writer:
        return None
    return writer


def cluster_client(backend: Any) -> Any:
    """The client of a dogpile Redis or Valkey Cluster backend, or None."""
    client = _redis_client(backend)
    return client if hasattr(client, "mget_nonatomic") else None


class _ClusterReader:
    """A cluster client whose ``mget`` may span hash slots."""

    __slots__ = ("get", "mget")

    def __init__(self, client: Any) -> None:
        self.get = client.get
        self.mget = client.mget_nonatomic


def never_blocks(backend: Any) -> bool:
    """Whether every call of ``backend`` returns at once: dogpile's in-process memory
    and null backends, whose calls an event loop may make itself. Any other
    (a network, a file, a lock file) is called off the loop."""
    return isinstance(backend, MemoryBackend | NullBackend)


def _memcached_expiry(backend: Any) -> Any:
    # pymemcache's backend passes the expiry as "expire", the others as "time".
    arguments = getattr(backend, "set_arguments", {})
    return arguments.get("expire") or arguments.get("time")


def persist(backend: Any, keys: Iterable[str]) -> None:
    """Remove the backend expiry from ``keys`` (already mangled), where the backend has one.

    memcached: ``touch`` with expiry 0 (every client but python-binary-memcached's
    has it); Redis and Valkey: ``PERSIST``. Other backends set no expiry of
    their own through dogpile.
    """
    keys = list(keys)
    if not keys:
        return
    if _is_memcached(backend) and _memcached_expiry(backend):
        # python-binary-memcached has no touch: its tag versions keep the expiry.
        touch = getattr(_memcached_client(backend), "touch", None)
        if touch is not None:
            for key in keys:
                touch(key, 0)
        return
    if getattr(backend, "redis_expiration_time", 0) or getattr(
        backend, "valkey_expiration_time", 0
    ):
        pipe = _redis_client(backend).pipeline(transaction=False)
        for key in keys:
            pipe.persist(key)
        pipe.execute()


def can_claim(backend: Any) -> bool:
    """Whether :func:`claim` works on ``backend``."""
    return is_remote(backend)


def claim(backend: Any, key: str, seconds: float, value: bytes = b"1") -> bool | None:
    """Store ``value`` under ``key`` unless it exists, expiring after ``seconds``: True if
    this call stored it.

    None when the backend has no such operation (the caller decides).
    """
    client = _memcached_client(backend)
    if client is not None:
        return bool(client.add(key, value, _claim_expiry(seconds)))
    client = _redis_client(backend)
    if client is not None:
        return bool(client.set(key, value, nx=True, px=max(1, int(seconds * 1000))))
    return None


def extend_claim(backend: Any, key: str, seconds: float, value: bytes) -> bool | None:
    """Make the claim under ``key``, which held ``value`` a moment ago, expire ``seconds``
    from now: True if it did, False if the claim is gone (or, on Redis, another's).

    None when the backend has no such operation (python-binary-memcached has no
    ``touch``). memcached's ``touch`` does not look at the value: a claim that lapsed
    and was taken since the caller read it is extended for its new holder.
    """
    client = _memcached_client(backend)
    if client is not None:
        touch = getattr(client, "touch", None)
        return None if touch is None else bool(touch(key, _claim_expiry(seconds)))
    client = _redis_client(backend)
    if client is not None:
        millis = max(1, int(seconds * 1000))
        return bool(client.eval(_REDIS_RENEW, 1, key, value, millis))
    return None


def _claim_expiry(seconds: float) -> int:
    # memcached's clock ticks once a second: an expiry of n lasts n-1 to n seconds;
    # over 30 days it would be read as a date (in 1970: gone at once).
    return min(math.ceil(seconds) + 1, 30 * 24 * 3600)


def claim_holder(backend: Any, key: str) -> bytes | None:
    """The value a :func:`claim` stored under ``key`` (None: none, or no such operation)."""
    client = _memcached_client(backend) or _redis_client(backend)
    if client is None:
        return None
    value = client.get(key)
    return value if isinstance(value, bytes) else None


# Extends a Redis lock's expiry only if the caller still owns it (its token).
_REDIS_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""


def renewer(mutex: Any) -> tuple[Callable[[], bool], float] | None:
    """``(renew, lease_seconds)`` for a held distributed ``mutex``, or None if it has no lease.

    Called by the thread that acquired it (a thread-local Redis lock keeps
    its token there); ``renew()`` may then run in any thread and returns
    False once the lock is gone or, where the lock knows its owner
    (dogpile_warm's memcached lock, Redis), another's. dogpile's own memcached
    lock does not: renewing it after it expired extends whoever holds it now.
    """
    timeout = getattr(mutex, "timeout", None)
    renew = getattr(mutex, "renew", None)  # dogpile_warm._backends.memcached.MemcachedLock
    if renew is not None and timeout:
        return renew, float(timeout)
    if hasattr(mutex, "client_fn") and timeout:  # dogpile's MemcachedLock
        client_fn, key, timeout = mutex.client_fn, mutex.key, int(mutex.timeout)
        if not hasattr(client_fn(), "touch"):
            return None  # python-binary-memcached: the lock just expires
        # memcached's clock ticks once a second: an expiry of n lasts n-1 to n seconds.
        return (lambda: bool(client_fn().touch(key, timeout))), max(0.5, float(timeout) - 1)
    lock = getattr(mutex, "mutex", None)  # dogpile's Redis lock wrapper
    if lock is not None and getattr(lock, "timeout", None) and hasattr(lock, "local"):
        token = lock.local.token
        if token is None:
            return None
        script = lock.redis.register_script(_REDIS_RENEW)
        name, millis = lock.name, int(lock.timeout * 1000)
        return (lambda: bool(script(keys=[name], args=[token, millis]))), float(lock.timeout)
    return None


def releaser(mutex: Any) -> Callable[[], Any] | None:
    """A way to release a held distributed ``mutex`` from another thread, or None.

    Called by the thread that acquired it (see :func:`renewer`).
    """
    lock = getattr(mutex, "mutex", None)  # dogpile's Redis / Valkey lock wrapper
    if lock is not None and hasattr(lock, "local") and hasattr(lock, "do_release"):
        token = lock.local.token
        return None if token is None else (lambda: lock.do_release(token))
    if hasattr(mutex, "renew") or hasattr(mutex, "client_fn"):  # memcached: any thread
        return mutex.release  # type: ignore[no-any-return]
    return None


def lock_never_expires(mutex: Any) -> bool | None:
    """Whether the lock ``mutex`` names, held by anyone, has no expiry; None if unknown.

    False when it is not held (any more) or expires: its holder is alive and
    renewing it, or dead and about to lose it.
    """
    seconds_left = getattr(
        mutex, "seconds_left", None
    )  # dogpile_warm._backends.memcached.MemcachedLock
    if seconds_left is not None:
        return bool(seconds_left() == -1)
    lock = getattr(mutex, "mutex", None)  # dogpile's Redis / Valkey lock wrapper
    if lock is not None and hasattr(lock, "redis") and hasattr(lock, "name"):
        return bool(lock.redis.pttl(lock.name) == -1)
    return None


def endless_lock_setting(backend: Any) -> str | None:
    """The argument to set when ``backend`` has a distributed lock that never expires, else None.

    A process killed while holding such a lock blocks its key until someone
    deletes the lock by hand.
    """
    if not getattr(backend, "distributed_lock", False):
        return None
    timeout = getattr(backend, "lock_timeout", None)
    if _is_memcached(backend) and not timeout:
        return "lock_timeout"  # memcached: 0 means never
    if _redis_client(backend) is not None and timeout is None:
        return "lock_timeout"  # Redis, Valkey: None means never
    return None


def reset_after_fork(backend: Any) -> None:
    """In a forked child: forget the client connections inherited from the parent.

    dogpile's memcached backends keep a client per thread; the child's only
    thread would otherwise share its parent's socket. The pymemcache client's
    copy of it is closed (closing a descriptor copy leaves the parent's
    connection alone); other clients are dropped without a word to the
    server, since some say goodbye on close. redis-py notices a fork by
    itself.
    """
    pool = backend.__dict__.pop("_clients", None)
    client = getattr(pool, "memcached", None) if pool is not None else None
    if client is not None and type(client).__module__.startswith("pymemcache"):
        client.close()
