"""What dogpile_warm must know about particular dogpile backends, kept in one place.

The store talks to every region through dogpile's API. What that API cannot
express is done here, per backend family, looked up by duck type so that
nothing here imports a client library:

- :func:`classify`: whether an exception means the backend is unavailable,
  refused a value, or returned one that cannot be read;
- :func:`persist`: lift the backend expiry the region sets on every value, for
  tag versions (they must live as long as the backend keeps them);
- :func:`claim`: set-if-absent with an expiry of its own, for the scheduler's
  one-cycle-per-fleet claim;
- :func:`renewer`: how to extend the lease of a held distributed lock;
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
from collections.abc import Callable, Iterable
from typing import Any, Literal

from .errors import BackendUnavailable

__all__ = [
    "Kind",
    "claim",
    "classify",
    "endless_lock_setting",
    "is_unavailable",
    "persist",
    "renewer",
    "reset_after_fork",
]

log = logging.getLogger(__name__)

Kind = Literal["unavailable", "refused", "unreadable"]

# Exception classes, by (module, name), that mean "the server did not answer".
# OSError covers refused and reset connections and socket timeouts of every
# client built on the socket module.
_UNAVAILABLE = frozenset(
    {
        ("redis.exceptions", "ConnectionError"),  # also BusyLoading, MaxConnections
        ("redis.exceptions", "TimeoutError"),
        ("pymemcache.exceptions", "MemcacheUnexpectedCloseError"),
        ("pylibmc", "ConnectionError"),
        ("pylibmc", "ServerDown"),
        ("pylibmc", "ServerDead"),
        ("pylibmc", "SocketCreateError"),
        ("pylibmc", "ReadError"),
        ("pylibmc", "WriteError"),
    }
)


def classify(exc: BaseException, operation: Literal["read", "write", "other"]) -> Kind:
    """What a backend exception means.

    Connection-level errors are *unavailable* whatever the operation. Any
    other failure of a read is *unreadable* (the server answered with
    something that cannot be deserialized), of a write *refused* (a value
    too large or that cannot be serialized), of anything else (locks, tag
    versions) *unavailable*.
    """
    if is_unavailable(exc):
        return "unavailable"
    if operation == "read":
        return "unreadable"
    if operation == "write":
        return "refused"
    return "unavailable"


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
    return getattr(backend, "writer_client", None)


def persist(backend: Any, keys: Iterable[str]) -> None:
    """Remove the backend expiry from ``keys`` (already mangled), where the backend has one.

    memcached: ``touch`` with expiry 0; Redis: ``PERSIST``. Other backends
    set no expiry of their own through dogpile, or cannot lift it.
    """
    keys = list(keys)
    if not keys:
        return
    if getattr(backend, "set_arguments", {}).get("expire"):
        client = _memcached_client(backend)
        touch = getattr(client, "touch", None)
        if touch is not None:
            for key in keys:
                touch(key, 0)
        return
    if getattr(backend, "redis_expiration_time", 0):
        client = _redis_client(backend)
        if client is not None:
            pipe = client.pipeline(transaction=False)
            for key in keys:
                pipe.persist(key)
            pipe.execute()


def claim(backend: Any, key: str, seconds: float) -> bool | None:
    """Store ``key`` unless it exists, expiring after ``seconds``: True if this call stored it.

    None when the backend has no such operation (the caller decides).
    """
    client = _memcached_client(backend)
    if client is not None:
        # memcached's clock ticks once a second: an expiry of n lasts n-1 to n seconds.
        return bool(client.add(key, b"1", math.ceil(seconds) + 1))
    client = _redis_client(backend)
    if client is not None:
        return bool(client.set(key, b"1", nx=True, px=max(1, int(seconds * 1000))))
    return None


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
    False once the lock is no longer this holder's.
    """
    timeout = getattr(mutex, "timeout", None)
    renew = getattr(mutex, "renew", None)  # dogpile_warm.memcached.MemcachedLock
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
    if hasattr(backend, "writer_client") and timeout is None:
        return "lock_timeout"  # Redis: None means never
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
