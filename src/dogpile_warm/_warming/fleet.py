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
from ..errors import BackendError
from ..reports import ResultRow

__all__ = [
    "UNDECIDED",
    "WARMED_ELSEWHERE",
    "Held",
    "claim",
    "claim_unit",
    "fleet_store",
    "forget",
    "is_shared",
    "key_claim",
    "process_token",
    "task_claim",
]

WARMED_ELSEWHERE = "warmed by another process of the fleet within its interval"
UNDECIDED = "not warmed: the fleet's backend could not say whether another process warms it"


def is_shared(store: CacheStore) -> bool:
    """Whether ``store``'s values are the fleet's (memcached or Redis with a distributed
    lock), so that one process's warming serves every process."""
    backend = store.region.actual_backend
    return traits.can_claim(backend) and bool(getattr(backend, "distributed_lock", False))


def fleet_store(stores: Iterable[CacheStore]) -> CacheStore | None:
    """Where a unit of work touching ``stores`` is claimed: the first of them when every
    one is shared (see :func:`is_shared`); None when any lives in this process only (every
    process must then do the unit itself) or there are none."""
    found = None
    for store in stores:
        if not is_shared(store):
            return None
        found = found or store
    return found


def claim(store: CacheStore, name: str, seconds: float) -> bool:
    """Whether this process won the claim ``name`` for ``seconds`` (see the module)."""
    return _claim(store, name, seconds, b"1") is True


def claim_unit(store: CacheStore, name: str, seconds: float) -> str | None:
    """Claim the unit of warming ``name`` for ``seconds``: None when this process warms
    it (it won the claim, or holds it from an earlier warming of its own), else why
    not (:data:`WARMED_ELSEWHERE`, or :data:`UNDECIDED`: the backend did not answer)."""
    token = process_token()
    won = _claim(store, name, seconds, token)
    if won is None:
        return UNDECIDED
    if won:
        return None
    key, backend = store.backend_key(name), store.region.actual_backend
    holder = store.attempt("claim", name, lambda: traits.claim_holder(backend, key))
    if isinstance(holder, BackendError):
        return UNDECIDED
    if holder != token:
        return WARMED_ELSEWHERE
    # This process's own, from an earlier warming: it stands for this one now, for the
    # whole of ``seconds``. Left as it was, it would lapse early and let another process
    # warm the unit again right after this one.
    store.attempt("claim", name, lambda: traits.extend_claim(backend, key, seconds, token))
    return None


def key_claim(key: str) -> str:
    """The name of the claim on warming ``key``."""
    return f"dogpile_warm:warmkey:{key}"


def task_claim(task_id: str) -> str:
    """The name of the claim on warming the task ``task_id``."""
    return f"dogpile_warm:warm:{task_id}"


def _claim(store: CacheStore, name: str, seconds: float, value: bytes) -> bool | None:
    """True if this call stored the claim, False if it exists, None if undecided."""
    key, backend = store.backend_key(name), store.region.actual_backend
    won = store.attempt("claim", name, lambda: traits.claim(backend, key, seconds, value))
    return won if isinstance(won, bool) else None


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
    """Give back the claim ``name``, if this process holds it (its unit stored nothing:
    the next try, in any process, may run it)."""
    key, backend = store.backend_key(name), store.region.actual_backend
    holder = store.attempt("claim", name, lambda: traits.claim_holder(backend, key))
    if holder in (b"1", process_token()):  # a login's or cycle's, or this process's own
        store.attempt("claim", name, lambda: backend.delete(key))


class Held:
    """The claims one warm run holds, by unit (a task id or a key), so that those whose
    unit stored nothing are given back when the run is over."""

    def __init__(self) -> None:
        self._claims: dict[str, tuple[CacheStore, str]] = {}

    def hold(self, unit: str, store: CacheStore, name: str) -> None:
        self._claims[unit] = (store, name)

    def key(self, store: CacheStore, key: str, ttl: float) -> str | None:
        """Claim warming ``key`` (stored in ``store``, living ``ttl`` seconds) when the
        fleet shares ``store``, for 80% of its ttl: None to warm it, else why not."""
        if not is_shared(store):
            return None  # its value lives in this process: this process warms it
        reason = claim_unit(store, key_claim(key), 0.8 * ttl)
        if reason is None:
            self.hold(key, store, key_claim(key))
        return reason

    def give_back(self, rows: Iterable[ResultRow]) -> None:
        """Forget the claims whose unit has no successful row among ``rows``."""
        stored = {row["key"] for row in rows if row["success"]}
        stored |= {row["task_id"] for row in rows if row["success"]}
        for unit, (store, name) in self._claims.items():
            if unit not in stored:
                forget(store, name)
