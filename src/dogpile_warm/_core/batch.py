"""Warm runs store their values in batches: one ``set_multi`` per region per batch.

Warming a thousand keys one ``set`` at a time costs a thousand round trips
to memcached or Redis, plus two more per key for dogpile's lock. A warm run
(``warm_critical_data``, ``warm_tasks``, ``warm_user_data``,
``warm_hot_keys``, a scheduled cycle, a snapshot warm-up) computes without
the per-key lock and hands each computed entry to a :class:`WriteBatch`,
which stores them ``size`` at a time. A caller that misses one of those keys
while it is being warmed computes it too, as it would with no warming at
all; refresh-ahead and reads keep their one-recompute-per-key lock.

A warmed key counts as warmed (result, signal, figures) only once its batch
is stored: :class:`KeyResult` objects are completed by the batch, and
:meth:`WriteBatch.flush` completes every one still waiting.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from . import forks

if TYPE_CHECKING:
    from .store import CacheStore, Entry

__all__ = ["BATCH_SIZE", "KeyResult", "WriteBatch"]

Done = Callable[[BaseException | None], None]


class KeyResult:
    """The outcome of warming one key (a row of ``warm_critical_data()["results"]``).

    While its batch waits, ``success`` is False and ``final`` is False;
    callbacks given to :meth:`when_final` run once the outcome is known.
    """

    __slots__ = ("_waiting", "duration_ms", "error", "final", "key", "success")

    def __init__(
        self, key: str, success: bool, duration_ms: float, error: str | None, final: bool = True
    ) -> None:
        self.key = key
        self.success = success
        self.duration_ms = duration_ms
        self.error = error
        self.final = final
        self._waiting: list[Callable[[KeyResult], None]] = []

    def when_final(self, callback: Callable[[KeyResult], None]) -> None:
        """Call ``callback(self)`` now if the outcome is known, else once it is."""
        if self.final:
            callback(self)
        else:
            self._waiting.append(callback)

    def complete(self, success: bool, error: str | None) -> None:
        self.success, self.error, self.final = success, error, True
        waiting, self._waiting = self._waiting, []
        for callback in waiting:
            callback(self)


# Entries per write. A write builds its command (pickling every entry) in one
# stretch that holds the GIL, just as its worker's computation ended, when
# other workers' computations end too: they wait until it is done. On
# memcached, 20 small entries hold it 0.13 ms, 64 held it 0.40 ms; with 32
# workers warming 1,000 keys of 5 ms each, a computation's 5 ms sleep then
# lasted 5.3-5.6 ms rather than 5.1, and the warming took 175-181 ms rather
# than 169-172 (benchmarks/warm_throughput.py). With 8 or 12 workers the two
# sizes warm alike; the cost is more round trips, one per 20 keys.
BATCH_SIZE = 20


class WriteBatch:
    """Computed entries waiting to be stored, grouped by region (thread-safe)."""

    def __init__(self, size: int = BATCH_SIZE) -> None:
        self.size = size
        # id(store) -> (store, {key: entry}, [done callbacks], owners)
        self._pending: dict[int, tuple[CacheStore, dict[str, Entry], list[Done], set[str]]] = {}
        self._lock = forks.new_lock()

    def put(self, store: CacheStore, key: str, entry: Entry, done: Done, owner: str) -> None:
        """Queue ``entry`` under ``key`` (a value of ``owner``); ``done(error)`` runs once it
        is stored (or not)."""
        with self._lock:
            batch = self._pending.get(id(store))
            if batch is None:
                batch = self._pending[id(store)] = (store, {}, [], set())
            batch[1][key] = entry
            batch[2].append(done)
            batch[3].add(owner)
            full = len(batch[2]) >= self.size
            if full:
                del self._pending[id(store)]
        if full:
            _write(*batch)

    def flush(self) -> None:
        """Store everything still waiting."""
        with self._lock:
            batches, self._pending = list(self._pending.values()), {}
        for batch in batches:
            _write(*batch)


def _write(
    store: CacheStore, entries: dict[str, Entry], done: list[Done], owners: set[str]
) -> None:
    error = store.write_many(entries, ", ".join(sorted(owners)))
    for callback in done:
        callback(error)
