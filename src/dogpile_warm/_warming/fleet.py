"""What a fleet of processes sharing a backend decides through it: who runs a unit of work.

A *claim* is a key set only if absent, with an expiry of its own (memcached
``add``, Redis ``SET NX PX``): the process that stores it runs the unit (a
scheduler cycle, a user's login preload, a critical task's warming, a key of
a hot-key or snapshot warm-up) and the others skip it until it expires. A claim the backend cannot answer is not won: the node holding it
may be down for this process only (one of several memcached servers), and
every process would then run the unit; a backend down for all stores
nothing warmed anyway.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable

from .._backends import traits
from .._core.store import CacheStore

__all__ = ["claim", "claim_key", "fleet_store", "forget", "process_token"]


def fleet_store(stores: Iterable[CacheStore]) -> CacheStore | None:
    """The first of ``stores`` a fleet shares claims through (memcached or Redis with a
    distributed lock), or None: this process is on its own."""
    for store in stores:
        backend = store.region.actual_backend
        if traits.can_claim(backend) and getattr(backend, "distributed_lock", False):
            return store
    return None


def claim(
    store: CacheStore,
    name: str,
    seconds: float,
    *,
    mine_again: bool = False,
    undecided: bool = False,
) -> bool:
    """Whether this process won the claim ``name`` for ``seconds`` (see the module).

    ``mine_again``: a claim this very process holds counts as won too (its own
    second warm run may run; another process's may not). ``undecided``: the
    answer when the backend cannot be asked (False but for a unit a caller
    asked for explicitly, whose report then says what the backend did).
    """
    key, backend = store.backend_key(name), store.region.actual_backend
    value = process_token() if mine_again else b"1"
    won = store.attempt("claim", name, lambda: traits.claim(backend, key, seconds, value))
    if won is True:
        return True
    if won is not False:
        return undecided
    if not mine_again:
        return False
    holder = store.attempt("claim", name, lambda: traits.claim_holder(backend, key))
    return holder == value


def claim_key(store: CacheStore | None, key: str, ttl: float) -> bool:
    """Whether this process warms ``key`` (a value living ``ttl`` seconds) in a warm-up a
    caller asked for: always on its own (``store`` None); in a fleet, unless another
    process claimed it within 80% of its ttl. A claim that cannot be made lets it go
    ahead: the warm-up's report says what the backend did."""
    if store is None:
        return True
    name = f"dogpile_warm:warmkey:{key}"
    return claim(store, name, 0.8 * ttl, mine_again=True, undecided=True)


_token: tuple[int, bytes] | None = None


def process_token() -> bytes:
    """What this process's claims hold: its host, pid and a random part (a forked child
    gets its own)."""
    global _token
    pid = os.getpid()
    if _token is None or _token[0] != pid:
        _token = (pid, f"{socket.gethostname()}:{pid}:{os.urandom(4).hex()}".encode())
    return _token[1]


def forget(store: CacheStore, name: str) -> None:
    """Give the claim ``name`` back (its unit did nothing: the next try may run it)."""
    key, backend = store.backend_key(name), store.region.actual_backend
    store.attempt("claim", name, lambda: backend.delete(key))
