"""dogpile's pymemcache backend, without hashing keys when there is one server.

pymemcache's ``HashClient`` (the client dogpile's ``dogpile.cache.pymemcache``
backend always builds) picks a server for every key with rendezvous hashing,
computing a pure-Python murmur3 per key and server: about a third of a
memcached hit's time, spent even when there is only one server to pick.
:class:`PyMemcacheBackend` gives the ``HashClient`` a hasher that skips that
work with one live server and hashes exactly as pymemcache does otherwise, so
processes of a fleet keep agreeing on which server holds a key.

Regions that dogpile_warm configures for ``dogpile.cache.pymemcache`` use it
(registered with dogpile as ``dogpile_warm.pymemcache``); everything else about
the backend, its arguments and its distributed lock is dogpile's.
"""

from __future__ import annotations

from typing import Any

from dogpile.cache.backends.memcached import PyMemcacheBackend as _DogpilePyMemcacheBackend
from pymemcache.client.hash import HashClient
from pymemcache.client.rendezvous import RendezvousHash

__all__ = ["BACKEND_NAME", "PyMemcacheBackend"]

BACKEND_NAME = "dogpile_warm.pymemcache"


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
