"""The figures the engine keeps: hit and miss counts, and what warming bought.

All mutation happens under one lock per object; the figures are read as
snapshots (plain dicts), never as live structures.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Callable

from .._core import forks
from ..reports import AccessCounts, Performance

__all__ = ["AccessCounters", "WarmingFigures"]


class AccessCounters:
    """Hits and misses of every decorated function of an engine (thread-safe)."""

    def __init__(self) -> None:
        self.hits = 0
        self.misses = 0
        self.stale_served = 0  # values past their ttl returned after a failed recompute
        self._lock = forks.new_lock()

    def served_stale(self) -> None:
        with self._lock:
            self.stale_served += 1

    def snapshot(self) -> AccessCounts:
        """``hits``, ``misses``, ``hit_ratio`` and ``stale_served``, as of now."""
        with self._lock:
            hits, misses, stale = self.hits, self.misses, self.stale_served
        total = hits + misses
        return {
            "hits": hits,
            "misses": misses,
            "hit_ratio": hits / total if total else 0.0,
            "stale_served": stale,
        }

    def add(self, hits: int, misses: int) -> None:
        with self._lock:
            self.hits += hits
            self.misses += misses


class WarmingFigures:
    """Durations and outcomes of warm-ups and background refreshes, and their usefulness.

    The efficiency score is the share of warmed values that served at least
    one read (in this process) before they were replaced, invalidated or
    expired, among the warmed values whose fate is known. The same is kept
    for background refreshes alone: a refreshed value no read used is a
    wasted refresh. Values still waiting for a read are followed up to
    ``max_pending`` at once; beyond that the oldest is dropped from the
    figures, not counted either way. Thread-safe; ``clock`` is the engine's.
    """

    def __init__(
        self, history_size: int, clock: Callable[[], float], max_pending: int = 100_000
    ) -> None:
        self.clock = clock
        self.max_pending = max_pending
        self._durations: deque[float] = deque(maxlen=history_size)
        self._total = self._successful = self._failed = 0
        self._useful = self._wasted = 0
        self._refreshes = self._wasted_refreshes = self._read_refreshes = 0
        # key -> (expires at on the engine clock, tags, a refresh?) for warmed values not
        # yet read
        self._unread: OrderedDict[str, tuple[float, frozenset[str], bool]] = OrderedDict()
        self._lock = forks.new_lock()

    def warmed(
        self,
        key: str,
        success: bool,
        duration_ms: float,
        ttl: float,
        tags: frozenset[str],
        refresh: bool = False,
    ) -> None:
        """One warming (``refresh``: a background refresh) of ``key``, stored if ``success``."""
        now = self.clock()
        with self._lock:
            self._total += 1
            self._durations.append(duration_ms)
            if not success:
                self._failed += 1
                return
            self._successful += 1
            self._refreshes += refresh
            replaced = self._unread.pop(key, None)
            if replaced is not None:
                self._lost(replaced)  # replaced before anyone read it
            self._unread[key] = (now + ttl, tags, refresh)
            if len(self._unread) > self.max_pending:
                self._unread.popitem(last=False)

    def _lost(self, state: tuple[float, frozenset[str], bool]) -> None:
        # Called with the lock held: a warmed value went unread.
        self._wasted += 1
        self._wasted_refreshes += state[2]

    def accessed(self, key: str, hit: bool, when: float | None = None) -> None:
        """A read of ``key`` (at ``when``, default now): a hit makes a warmed value useful;
        a miss means it was lost."""
        if not self._unread or key not in self._unread:
            return
        with self._lock:
            state = self._unread.pop(key, None)
            if state is None:
                return
            if hit and (self.clock() if when is None else when) <= state[0]:
                self._useful += 1
                self._read_refreshes += state[2]
            else:
                self._lost(state)

    def invalidated(self, tags: frozenset[str]) -> None:
        with self._lock:
            lost = [key for key, (_, key_tags, _) in self._unread.items() if key_tags & tags]
            for key in lost:
                self._lost(self._unread.pop(key))

    def _expire(self) -> None:
        now = self.clock()
        expired = [key for key, (expires, _, _) in self._unread.items() if expires < now]
        for key in expired:
            self._lost(self._unread.pop(key))

    def snapshot(self) -> Performance:
        with self._lock:
            self._expire()
            durations = sorted(self._durations)
            total, successful, failed = self._total, self._successful, self._failed
            useful, known = self._useful, self._useful + self._wasted
            refreshes, wasted_refreshes = self._refreshes, self._wasted_refreshes
            refreshes_known = wasted_refreshes + self._read_refreshes
        return {
            "total_warmings": total,
            "successful": successful,
            "failed": failed,
            "avg_duration_ms": sum(durations) / len(durations) if durations else 0.0,
            "fastest_ms": durations[0] if durations else 0.0,
            "slowest_ms": durations[-1] if durations else 0.0,
            "p95_ms": durations[max(0, math.ceil(0.95 * len(durations)) - 1)] if durations else 0.0,
            "efficiency_score": 100.0 * useful / known if known else None,
            "refreshes": refreshes,
            "wasted_refreshes": wasted_refreshes,
            "wasted_refresh_share": (
                wasted_refreshes / refreshes_known if refreshes_known else None
            ),
        }
