"""dogpile's pymemcache backend, made to fail fast, recover alone and lock with an owner.

Regions that dogpile_warm configures for ``dogpile.cache.pymemcache`` use
:class:`PyMemcacheBackend` (registered with dogpile as
``dogpile_warm.pymemcache``). Everything about its arguments is dogpile's,
plus:

- ``connect_timeout`` and ``timeout`` (seconds), handed to every pymemcache
  client: dogpile passes none, and a client without them waits for a hung
  server forever;
- with one server, commands go straight to that server's own client, without
  the ``HashClient``'s per-key hashing and failure bookkeeping (with more, the
  ``HashClient`` picks the server exactly as pymemcache does, so processes of
  a fleet agree on where keys live);
- a command whose connection the server closed (a restarted server, a
  connection idle through an outage) is sent once more, on a new connection;
  a timeout or a refused connection is not retried: the caller's store
  counts it and skips the backend for a while (see
  :mod:`dogpile_warm._core.health`);
- the distributed lock (:class:`MemcachedLock`) stores an owner token, so
  only its holder releases it or renews its lease;
- unless the region's arguments name a ``serde``, :data:`pickle_serde`:
  pymemcache's own, writing the same bytes and flags, unpickling with
  ``pickle.loads``, and reading a value that does not unpickle as a
  :class:`~dogpile_warm.errors.ValueUnreadable` payload (a miss to dogpile,
  counted by dogpile_warm) rather than as a silent miss. dogpile_warm's
  entries are the exception: see :data:`FLAG_ENTRY`.
"""

from __future__ import annotations

import os
import pickle
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from dogpile.cache.api import NO_VALUE, CachedValue, CacheMutex
from dogpile.cache.backends.memcached import PyMemcacheBackend as _DogpilePyMemcacheBackend
from pymemcache.client.hash import HashClient
from pymemcache.client.rendezvous import RendezvousHash
from pymemcache.exceptions import MemcacheUnexpectedCloseError
from pymemcache.serde import DEFAULT_PICKLE_VERSION, FLAG_PICKLE, PickleSerde

from .._core.entry import ENTRY_METADATA, in_stored_form
from ..errors import ValueUnreadable
from . import memcached_get

__all__ = [
    "BACKEND_NAME",
    "FLAG_ENTRY",
    "MemcachedLock",
    "PyMemcacheBackend",
    "bytes_serde",
    "pickle_serde",
]

BACKEND_NAME = "dogpile_warm.pymemcache"

# The server closed a connection this client had open: worth one more try.
_CLOSED = (ConnectionResetError, BrokenPipeError, MemcacheUnexpectedCloseError)

# The flags of a dogpile_warm entry, stored as the plain tuple it is without
# dogpile's CachedValue around it: unpickling a CachedValue looks its class up
# through the import system and runs its Python __new__, on every hit
# (benchmarks/memcached_hit.py). pymemcache's own serde reads the FLAG_PICKLE bit, so
# another pymemcache client unpickles it (to the tuple, which it does not take
# for a value dogpile stored).
FLAG_ENTRY = FLAG_PICKLE | 1 << 8


class _LoadsPickleSerde(PickleSerde):  # type: ignore[misc]
    """pymemcache's pickle serde, pickling dogpile's values with ``pickle.dumps`` and
    unpickling with ``pickle.loads``; unreadable values say so."""

    def __init__(self, pickle_version: int = DEFAULT_PICKLE_VERSION) -> None:
        super().__init__(pickle_version)
        self.pickle_version = pickle_version

    def serialize(self, key: Any, value: Any) -> tuple[bytes, int]:
        if type(value) is CachedValue:
            if in_stored_form(value.payload):
                return pickle.dumps(value.payload, self.pickle_version), FLAG_ENTRY
            # What dogpile stores: the bytes and flags pymemcache's serializer writes,
            # without the Pickler and BytesIO it makes for every value.
            return pickle.dumps(value, self.pickle_version), FLAG_PICKLE
        serialized: tuple[bytes, int] = super().serialize(key, value)
        return serialized

    def deserialize(self, key: Any, value: bytes, flags: int) -> Any:
        try:
            if flags == FLAG_ENTRY:  # what dogpile's region reads, made in C
                return tuple.__new__(CachedValue, (pickle.loads(value), ENTRY_METADATA))
            if flags != FLAG_PICKLE:
                return super().deserialize(key, value, flags)
            return pickle.loads(value)
        except Exception as exc:
            # A payload dogpile reads as a miss (its version matches nothing),
            # and dogpile_warm's store counts as unreadable.
            reason = ValueUnreadable(f"cannot deserialize: {type(exc).__name__}: {exc}")
            return CachedValue(reason, {"ct": 0.0, "v": -1})


pickle_serde = _LoadsPickleSerde()


class _BytesSerde:
    """Bytes in, bytes out; nothing is ever unpickled, whatever an item's flags say.

    For regions whose values the region's serializer turns into bytes (signed
    ones): an item some other client stored with pymemcache's pickle flags
    reads as empty bytes, which no signature or deserializer accepts.
    """

    def serialize(self, key: Any, value: Any) -> tuple[bytes, int]:
        if not isinstance(value, bytes):
            raise TypeError(f"this region stores bytes only, got a {type(value).__name__}")
        return value, 0

    def deserialize(self, key: Any, value: bytes, flags: int) -> bytes:
        return value if flags == 0 else b""


bytes_serde = _BytesSerde()


def _client_get(client: Any, key: str) -> Any:
    """``client.get(key)``, as the backend's ``get`` calls its reader."""
    return client.get(key)


# pymemcache and dogpile's backends are untyped (Any): subclassing them is the point.
class OneServerRendezvousHash(RendezvousHash):  # type: ignore[misc]
    """pymemcache's rendezvous hashing, answering at once when one server is alive."""

    def get_node(self, key: str) -> Any:
        nodes = self.nodes
        if len(nodes) <= 1:
            return nodes[0] if nodes else None
        return super().get_node(key)


class PyMemcacheBackend(_DogpilePyMemcacheBackend):
    """``dogpile.cache.pymemcache`` with timeouts, one retry on a closed connection,
    an owner-token lock and :data:`pickle_serde` (see the module docstring)."""

    def __init__(self, arguments: Mapping[str, Any]) -> None:
        super().__init__(arguments)
        if "serde" not in arguments:
            self.serde = pickle_serde
        self.connect_timeout: float | None = arguments.get("connect_timeout")
        self.timeout: float | None = arguments.get("timeout")

    def _create_client(self) -> Any:
        client = super()._create_client()
        # With enable_retry_client the HashClient is wrapped in a RetryingClient.
        hashing = getattr(client, "_client", client)
        if isinstance(hashing, HashClient):
            timeouts = {"connect_timeout": self.connect_timeout, "timeout": self.timeout}
            hashing.default_kwargs.update(timeouts)  # for servers it adds back later
            for server_client in hashing.clients.values():  # not connected yet
                server_client.connect_timeout = self.connect_timeout
                server_client.timeout = self.timeout
            if type(hashing.hasher) is RendezvousHash:
                hasher = OneServerRendezvousHash(seed=hashing.hasher.seed)
                for node in hashing.hasher.nodes:
                    hasher.add_node(node)
                hashing.hasher = hasher
        return client

    def _server_client(self) -> Any:
        """The one server's own client when there is one server, else the client."""
        client = self.client
        if type(client) is HashClient:
            clients = client.clients
            if len(clients) == 1:
                for server_client in clients.values():
                    return server_client
        return client

    def _run(self, command: str, *args: Any) -> Any:
        """``client.<command>(*args)``: on :meth:`_server_client`, and once more on a new
        connection if the server closed this one."""
        client = self._server_client()
        try:
            return getattr(client, command)(*args)
        except _CLOSED:
            return getattr(client, command)(*args)  # pymemcache reconnects after closing

    def get(self, key: str) -> Any:
        # _run("get", key), written out: a hit on memcached comes through here, and
        # on one server's own client it is memcached_get's (see that module).
        client = self._server_client()
        read = memcached_get.get if memcached_get.speaks(client, key) else _client_get
        try:
            value = read(client, key)
        except _CLOSED:
            value = read(client, key)
        return NO_VALUE if value is None else value

    def get_multi(self, keys: Iterable[str]) -> list[Any]:
        keys = list(keys)
        values = self._run("get_many", keys)
        return [NO_VALUE if values.get(key) is None else values[key] for key in keys]

    def set(self, key: str, value: Any) -> None:
        self._run("set", key, value, self.set_arguments.get("expire", 0))

    def set_multi(self, mapping: Mapping[str, Any]) -> None:
        self._run("set_many", dict(mapping), self.set_arguments.get("expire", 0))

    def delete(self, key: str) -> None:
        self._run("delete", key)

    def delete_multi(self, keys: Iterable[str]) -> None:
        self._run("delete_many", list(keys))

    def get_mutex(self, key: str) -> MemcachedLock | None:
        if not self.distributed_lock:
            return None
        return MemcachedLock(self, key, timeout=self.lock_timeout)

    def seconds_left(self, key: str) -> int | None:
        """Seconds until memcached expires ``key``: -1 never, None if it is not there."""
        client = self.client
        hashing = getattr(client, "_client", client)
        if isinstance(hashing, HashClient):
            node = hashing.hasher.get_node(key)
            if node is None:
                return None
            hashing = hashing.clients[node]
        reply = hashing.raw_command(f"mg {key} t", "\r\n")  # memcached's meta get
        if not reply.startswith(b"HD"):
            return None
        return int(reply.split()[1][1:])


class MemcachedLock(CacheMutex):
    """A distributed lock in memcached whose value is its holder's token.

    ``acquire`` stores the token with ``add``, expiring no sooner than
    ``timeout`` seconds later (never when 0: memcached's clock ticks once a
    second, so the expiry given is one more) and, when waiting, tries again
    after short sleeps that grow to 0.2 s. Only the holder releases it (a lock whose expiry
    passed and that another process now holds stays theirs), and
    :meth:`renew` pushes its expiry back while the holder is still computing.
    """

    def __init__(self, backend: PyMemcacheBackend, key: str, timeout: int) -> None:
        self.backend = backend
        self.key = "_lock" + key  # dogpile's MemcachedLock's key
        self.timeout = int(timeout)
        self._expire = self.timeout + 1 if self.timeout else 0
        self._token: bytes | None = None
        # One acquire at a time per lock object, as dogpile's. A plain lock: the
        # object lives for one call, and no thread holds it across a round trip
        # that a fork could interrupt for long.
        self._mutex = threading.Lock()

    def acquire(self, wait: bool = True) -> bool:
        token = os.urandom(8).hex().encode()
        delay = 0.005
        while True:
            with self._mutex:
                if self.backend._run("add", self.key, token, self._expire):
                    self._token = token
                    return True
            if not wait:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    def release(self) -> None:
        token = self._token
        if token is None:
            return
        held, _ = self.backend._run("gets", self.key)
        if held == token:
            self.backend._run("delete", self.key)
        # Only now: a release that raised (the server did not answer) can be retried.
        self._token = None

    def renew(self) -> bool:
        """Extend the lock's expiry to ``timeout`` from now; False if it is no longer ours."""
        token = self._token
        if token is None:
            return False
        held, cas = self.backend._run("gets", self.key)
        if held != token:
            return False
        return bool(self.backend._run("cas", self.key, token, cas, self._expire))

    def seconds_left(self) -> int | None:
        """Seconds until the lock expires, whoever holds it: -1 never, None if not held."""
        return self.backend.seconds_left(self.key)

    def locked(self) -> bool:
        return self.backend._run("get", self.key) is not None
