"""Usage patterns: which keys are hot, how often they are read, and when next.

:class:`UsagePatternTracker` keeps, per key, an access count and the last
``history_size`` access times, for at most ``max_keys`` keys. Past that bound
it forgets the least-read fifth of its keys at once (amortised O(1) per
access) and lets newcomers start from the highest count it forgot, as in
Space-Saving (Metwally, Agrawal and El Abbadi, 2005): a key that is truly hot
cannot be pushed out by a flood of one-off keys, and a count is never lower
than the key's real count since it was admitted.

Each key's access times are kept in ascending order (an access recorded
with an earlier timestamp than the last is inserted in place), so a
frequency is a binary search, cheap enough to ask every scheduler cycle.

Prediction model: the next access of a key is expected one mean
inter-arrival time after its last access, the mean taken over its recorded
history (at least two accesses needed). It is honest about what it is: a
renewal-process estimate, good for keys read at a steady rate, poor for
bursty ones.
"""

from __future__ import annotations

import heapq
import time
from bisect import bisect_left, insort
from collections.abc import Callable, Iterable
from itertools import compress, islice
from operator import attrgetter

from .._core import forks
from .._core.validation import check_positive_int, check_positive_number

__all__ = ["UsagePatternTracker"]


def _insert_in_order(times: list[float], when: float, history_size: int) -> None:
    """Insert ``when`` into ascending ``times``, unless older than the ``history_size`` kept."""
    if len(times) >= history_size and when <= times[-history_size]:
        return  # older than everything kept
    insort(times, when)
    _trim(times, history_size)


def _trim(times: list[float], history_size: int) -> None:
    """Drop the oldest times once there are an eighth more than ``history_size``.

    In bulk, so that a key read on every access costs one memmove per
    ``history_size / 8`` accesses; questions look at the last
    ``history_size`` only. A list, not a ``deque(maxlen=...)``: an empty
    deque is many times an empty list's size, and most keys are read a few
    times.
    """
    if len(times) > history_size + (history_size >> 3):
        del times[: len(times) - history_size]


def _count(item: tuple[str, int]) -> int:
    return item[1]


_count_of = attrgetter("count")
_new_usage = object.__new__


class _KeyUsage:
    __slots__ = ("count", "times")

    def __init__(self, count: int) -> None:
        self.count = count
        self.times: list[float] = []  # ascending; the last history_size count


class UsagePatternTracker:
    """Records accesses to keys and answers questions about them (thread-safe).

    ``clock`` gives epoch seconds; ``timestamp=`` on :meth:`record_access`
    overrides it for one access. Memory is bounded by ``history_size``
    timestamps per key and ``max_keys`` keys, however many keys are seen.
    """

    def __init__(
        self,
        history_size: int = 1000,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        check_positive_int("history_size", history_size)
        check_positive_int("max_keys", max_keys)
        if not callable(clock):
            raise TypeError(f"clock must be callable, got {clock!r}")
        self.history_size = history_size
        self._trim_at = history_size + (history_size >> 3)  # see _trim
        self.max_keys = max_keys
        self.clock = clock
        self._keys: dict[str, _KeyUsage] = {}
        self._floor = 0  # highest count forgotten so far (Space-Saving's error bound)
        self._lock = forks.new_lock()
        # Set by an owner that queues accesses: called before every question.
        self.pending: Callable[[], None] | None = None

    def record_access(self, key: str, timestamp: float | None = None) -> None:
        """Record one access of ``key`` at ``timestamp`` (default: now)."""
        when = self.clock() if timestamp is None else timestamp
        # acquire/release rather than ``with``: cheaper on this per-access path
        # (benchmarks/tracker_cost.py).
        lock = self._lock
        lock.acquire()
        try:
            usage = self._keys.get(key) or self._admit(key)
            usage.count += 1
            times = usage.times
            if times and when < times[-1]:
                _insert_in_order(times, when, self.history_size)
            else:
                times.append(when)
                if len(times) > self._trim_at:
                    _trim(times, self.history_size)
        finally:
            lock.release()

    def record_grouped(self, accesses: Iterable[tuple[str, list[float]]]) -> None:
        """Record ``(key, [timestamps...])`` groups, each key's times in order, under one lock."""
        with self._lock:
            for key, times in accesses:
                usage = self._keys.get(key) or self._admit(key)
                usage.count += len(times)
                kept = usage.times
                times.sort()  # threads may queue their accesses a little out of order
                if kept and times[0] < kept[-1]:
                    for when in times:
                        _insert_in_order(kept, when, self.history_size)
                else:
                    kept.extend(times)
                    _trim(kept, self.history_size)

    def _admit(self, key: str) -> _KeyUsage:
        # Called with the lock held, for a key not tracked yet.
        if len(self._keys) >= self.max_keys:
            self._forget_coldest()
        # Made without calling __init__: a flood of new keys makes many of them.
        usage = self._keys[key] = _new_usage(_KeyUsage)
        usage.count = self._floor
        usage.times = []
        return usage

    def _flush(self) -> None:
        """Apply accesses the owner has queued (the engine batches them off the hit path)."""
        pending = self.pending
        if pending is not None:
            pending()

    def _forget_coldest(self) -> None:
        # Called with the lock held. Dropping a fifth at once keeps this off
        # the per-access path; every pass over the keys is a C-level one
        # (counts sorted as plain ints, keys picked by compress), so a flood
        # of new keys costs little per key (benchmarks/tracker_cost.py).
        keys = self._keys
        drop = max(1, self.max_keys // 5)
        counts = list(map(_count_of, keys.values()))
        cutoff = sorted(counts)[drop - 1]
        colder = list(compress(keys, map(cutoff.__gt__, counts)))
        tied = compress(keys, map(cutoff.__eq__, counts))
        for key in [*colder, *islice(tied, drop - len(colder))]:
            del keys[key]
        self._floor = max(self._floor, cutoff)

    def get_hot_keys(self, top_n: int = 10) -> list[tuple[str, int]]:
        """The ``top_n`` most read keys as ``(key, count)``, hottest first."""
        self._flush()
        if top_n <= 0:
            return []
        with self._lock:
            counts = [(key, usage.count) for key, usage in self._keys.items()]
        # Stable on ties (first seen first), like a full sort, but O(n log top_n).
        return heapq.nlargest(top_n, counts, key=_count)

    def get_access_frequency(self, key: str, window_minutes: float = 60) -> float:
        """Accesses per minute of ``key`` in the last ``window_minutes`` (0.0 if unknown).

        Counts only recorded timestamps, so a key read more than
        ``history_size`` times in the window is under-counted to that bound.
        """
        check_positive_number("window_minutes", window_minutes, " of minutes")
        self._flush()
        since = self.clock() - window_minutes * 60
        with self._lock:
            usage = self._keys.get(key)
            if usage is None:
                return 0.0
            times = usage.times
            oldest = max(0, len(times) - self.history_size)
            recent = len(times) - bisect_left(times, since, oldest)  # times are kept in order
        return recent / window_minutes

    def predict_next_access(self, key: str) -> float | None:
        """Epoch seconds of the expected next access, or None with fewer than two accesses."""
        known = self.last_and_gap(key)
        return None if known is None else known[0] + known[1]

    def last_and_gap(self, key: str) -> tuple[float, float] | None:
        """The last access and the mean gap between accesses, or None with fewer than two."""
        self._flush()
        with self._lock:
            usage = self._keys.get(key)
            if usage is None or len(usage.times) < 2:
                return None
            times = usage.times
            n = min(len(times), self.history_size)
            first, last = times[-n], times[-1]
        return last, (last - first) / (n - 1)

    def known_keys(self) -> int:
        """How many keys are tracked right now (at most ``max_keys``)."""
        self._flush()
        with self._lock:
            return len(self._keys)

    def clear(self) -> None:
        """Forget everything."""
        self._flush()
        with self._lock:
            self._keys.clear()
            self._floor = 0
