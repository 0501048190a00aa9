"""dogpile's pymemcache backend, without the server-picking work when there is one server.

pymemcache's ``HashClient`` (the client dogpile's ``dogpile.cache.pymemcache``
backend always builds) picks a server for every key with rendezvous hashing,
computing a pure-Python murmur3 per key and server, then runs the command
through its failure bookkeeping, even when there is only one server to pick.
:class:`PyMemcacheBackend`

- gives the ``HashClient`` a hasher that skips the hashing with one live
  server and hashes exactly as pymemcache does otherwise, so processes of a
  fleet keep agreeing on which server holds a key;
- reads (``get``, ``get_multi``) straight from the server's own client while
  it is the one live server. A read that fails there is run again through
  the ``HashClient``, which sees the failure and does its usual bookkeeping
  (marks the server failed or dead, raises); writes and locks always go
  through the ``HashClient``;
- unless the region's arguments name a ``serde``, uses :data:`pickle_serde`:
  pymemcache's own, writing the same bytes and flags, but unpickling with
  ``pickle.loads`` rather than an ``Unpickler`` over a ``BytesIO`` (about
  2 us a read on this project's benchmark machine).

Regions that dogpile_warm configures for ``dogpile.cache.pymemcache`` use it
(registered with dogpile as ``dogpile_warm.pymemcache``); everything else about
the backend, its arguments and its distributed lock is dogpile's.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Iterable, Mapping
from typing import Any

from dogpile.cache.api import NO_VALUE
from dogpile.cache.backends.memcached import PyMemcacheBackend as _DogpilePyMemcacheBackend
from pymemcache.client.hash import HashClient
from pymemcache.client.rendezvous import RendezvousHash
from pymemcache.serde import FLAG_PICKLE, PickleSerde

__all__ = ["BACKEND_NAME", "PyMemcacheBackend", "pickle_serde"]

BACKEND_NAME = "dogpile_warm.pymemcache"

log = logging.getLogger(__name__)


class _LoadsPickleSerde(PickleSerde):  # type: ignore[misc]
    """pymemcache's pickle serde, unpickling pickled values with ``pickle.loads``."""

    def deserialize(self, key: Any, value: bytes, flags: int) -> Any:
        if flags != FLAG_PICKLE:
            return super().deserialize(key, value, flags)
        try:
            return pickle.loads(value)
        except Exception:
            # As pymemcache does: an unreadable value reads as a miss.
            log.info("cannot unpickle the value of %r", key, exc_info=True)
            return None


pickle_serde = _LoadsPickleSerde()


# pymemcache and dogpile's backends are untyped (Any): subclassing them is the point.
class OneServerRendezvousHash(RendezvousHash):  # type: ignore[misc]
    """pymemcache's rendezvous hashing, answering at once when one server is alive."""

    def get_node(self, key: str) -> Any:
        nodes = self.nodes
        if len(nodes) <= 1:
            return nodes[0] if nodes else None
        return super().get_node(key)


class PyMemcacheBackend(_DogpilePyMemcacheBackend):
    """``dogpile.cache.pymemcache`` with :class:`OneServerRendezvousHash` in its client."""

    def __init__(self, arguments: Mapping[str, Any]) -> None:
        super().__init__(arguments)
        if "serde" not in arguments:
            self.serde = pickle_serde

    def _create_client(self) -> Any:
        client = super()._create_client()
        # With enable_retry_client the HashClient is wrapped in a RetryingClient.
        hashing = getattr(client, "_client", client)
        if isinstance(hashing, HashClient) and type(hashing.hasher) is RendezvousHash:
            hasher = OneServerRendezvousHash(seed=hashing.hasher.seed)
            for node in hashing.hasher.nodes:
                hasher.add_node(node)
            hashing.hasher = hasher
        return client

    def get(self, key: str) -> Any:
        value = _read(self.client, "get", key)
        return NO_VALUE if value is None else value

    def get_multi(self, keys: Iterable[str]) -> list[Any]:
        keys = list(keys)
        values = _read(self.client, "get_multi", keys)
        return [NO_VALUE if values.get(key) is None else values[key] for key in keys]


def _read(client: Any, command: str, arg: Any) -> Any:
    """``client.<command>(arg)``, on the one live server's own client when there is one."""
    if isinstance(client, HashClient) and len(client.clients) == 1:
        nodes = client.hasher.nodes
        if len(nodes) == 1:
            try:
                return getattr(client.clients[nodes[0]], command)(arg)
            except OSError:
                pass  # again through the HashClient, so that it records the failure
    return getattr(client, command)(arg)
