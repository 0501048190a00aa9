"""What a fleet of processes sharing a backend decides through it: who runs a unit of work.

A *claim* is a key set only if absent, with an expiry of its own (memcached
``add``, Redis ``SET NX PX``): the process that stores it runs the unit (a
scheduler cycle, a user's login preload) and the others skip it until it
expires. A claim the backend cannot answer is not won: the node holding it
may be down for this process only (one of several memcached servers), and
every process would then run the unit; a backend down for all stores
nothing warmed anyway.
"""

from __future__ import annotations

from collections.abc import Iterable

from .._backends import traits
from .._core.store import CacheStore

__all__ = ["claim", "fleet_store", "forget"]


def fleet_store(stores: Iterable[CacheStore]) -> CacheStore | None:
    """The first of ``stores`` a fleet shares claims through (memcached or Redis with a
    distributed lock), or None: this process is on its own."""
    for store in stores:
        backend = store.region.actual_backend
        if traits.can_claim(backend) and getattr(backend, "distributed_lock", False):
            return store
    return None


def claim(store: CacheStore, name: str, seconds: float) -> bool:
    """Whether this process won the claim ``name`` for ``seconds`` (see the module)."""
    key, backend = store.backend_key(name), store.region.actual_backend
    return store.attempt("claim", name, lambda: traits.claim(backend, key, seconds)) is True


def forget(store: CacheStore, name: str) -> None:
    """Give the claim ``name`` back (its unit did nothing: the next try may run it)."""
    key, backend = store.backend_key(name), store.region.actual_backend
    store.attempt("claim", name, lambda: backend.delete(key))
