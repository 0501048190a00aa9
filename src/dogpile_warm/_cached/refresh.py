"""When to refresh a value ahead of its expiry, and how to back off when refreshing fails.

Where refreshes run is :mod:`dogpile_warm._cached.refresh_runner`.

Two policies, chosen per function with ``@warmable(refresh_policy=...)``:

``"window"`` (default)
    A value may be refreshed from ``refresh_ahead * ttl`` of its life on (the
    refresh window); the read that refreshes it is the last one expected
    before the latest point that still leaves time for the recompute. That
    point is the ttl less a *lead*: 1.5 times what the value's computation
    took (the next may take longer), ``SLACK`` for the refresh thread to start,
    and ``READS_AHEAD`` mean gaps between reads of the key as this process's
    usage tracker has seen them (with reads at random, one lands in that
    stretch with probability ``1 - exp(-READS_AHEAD)``). A key read many times
    a second is refreshed close to its ttl, once per life, not at
    ``refresh_ahead * ttl``; a key read rarely, or not tracked, is refreshed
    by its first read in the window, as a fixed line would. The point is
    decided once per value (:class:`WindowPolicy`), so later reads compare a
    time with it. The refresh a read starts there waits for the latest safe
    moment (:func:`latest_start`) in the refresh pool's timer: a value lives
    as close to its ttl as its recompute allows.

``"xfetch"``
    Probabilistic early expiration (Vattani, Chierichetti and Lowenstein,
    "Optimal Probabilistic Cache Stampede Prevention", VLDB 2015). A read at
    time ``now`` refreshes when ``now - cost * beta * ln(U) >= created + ttl``
    with ``U`` uniform in (0, 1] and ``cost`` the value's measured recompute
    time. Keys that are cheap to recompute refresh close to their ttl, costly
    ones earlier, and readers of one key spread their refresh decisions
    instead of all crossing a fixed line together. ``beta > 1`` favours
    earlier refreshes. ``refresh_ahead`` plays no part beyond ``None``
    turning refresh off: when recomputes are cheap, a value lives nearly to
    its ttl, and a read that comes after the ttl recomputes in the caller.

Either way a value past ``ttl`` is never served: the caller recomputes.
"""

from __future__ import annotations

import enum
import math
import random
import time
from collections import OrderedDict
from collections.abc import Callable

from .._core import forks
from .settings import FunctionSettings

__all__ = [
    "DUE",
    "FRESH",
    "Freshness",
    "RefreshBackoff",
    "WindowPolicy",
    "XFetchPolicy",
    "keeps_real_time",
    "latest_start",
    "make_policy",
    "wait_for_latest_start",
    "xfetch_due",
]

POLICIES = ("window", "xfetch")

# The window policy's lead (see the module docstring): mean gaps between reads,
# and seconds for a refresh to get under way (the key's lock, read and write;
# how late threads get to run is learned: see RefreshRunner.lateness).
# benchmarks/skewed_load.py weighs the recomputes a longer lead costs against
# the waits it saves.
READS_AHEAD = 1.0
SLACK = 0.005
# Keys whose refresh point is remembered, per function: past that, it starts over.
_MAX_POINTS = 10_000


class Freshness(enum.Enum):
    """What a read may do with a value within its ttl (past it: nothing, it recomputes)."""

    FRESH = "fresh"  # serve it as it is
    DUE = "due"  # serve it, and refresh it in the background


FRESH = Freshness.FRESH
DUE = Freshness.DUE


def xfetch_due(age: float, ttl: float, cost: float, beta: float, rand: float | None = None) -> bool:
    """Whether XFetch refreshes a value ``age`` seconds old, computed in ``cost`` s."""
    u = random.random() if rand is None else rand
    return age - cost * beta * math.log(max(u, 1e-12)) >= ttl


def keeps_real_time(clock: Callable[[], float]) -> bool:
    """Whether a timer may wait for ``clock``'s time: any clock but one with
    ``real_time = False`` (such as ``testing.FakeClock``)."""
    return getattr(clock, "real_time", True) is not False


def wait_for_latest_start(
    created: float, ttl: float, cost: float, now: float, lateness: float
) -> float:
    """Seconds from ``now`` until a recompute of this value should start: its
    :func:`latest_start`, brought forward by ``lateness`` (see
    :meth:`~dogpile_warm._cached.refresh_runner.RefreshRunner.lateness`); 0 if
    that moment has passed."""
    return max(0.0, latest_start(created, ttl, cost) - lateness - now)


class WindowPolicy:
    """The ``"window"`` policy of one function (see the module docstring); thread-safe.

    ``gap_of(key)`` is the mean time between reads of ``key`` (None if not
    known). ``points`` maps a key to ``(created, refresh at)`` for the value
    last asked about: the read path compares a time with it and asks
    :meth:`due` only when it has no point for the value it holds.
    """

    def __init__(
        self,
        ttl: float,
        refresh_ahead: float,
        gap_of: Callable[[str], float | None],
        defers: bool = True,
        lateness: Callable[[], float] = float,
    ) -> None:
        self.ttl = ttl
        self.fresh_for = ttl * refresh_ahead
        self.gap_of = gap_of
        self.defers = defers
        self.lateness = lateness  # see RefreshRunner.lateness
        self.points: dict[str, tuple[float, float]] = {}

    def due(self, key: str, created: float, cost: float, now: float) -> bool:
        """Whether a read at ``now`` of ``key``'s value created at ``created`` refreshes it."""
        point = self.points.get(key)
        if point is None or point[0] != created:
            point = (created, self.refresh_point(key, created, cost))
            points = self.points
            if len(points) >= _MAX_POINTS:
                points.clear()
            points[key] = point
        return now >= point[1]

    def refresh_point(self, key: str, created: float, cost: float) -> float:
        """The engine time from which a read of this value refreshes it."""
        earliest = created + self.fresh_for
        gap = self.gap_of(key)
        if gap is None:
            return earliest
        latest = latest_start(created, self.ttl, cost)
        if self.defers:  # lateness is real time: on a clock that keeps it
            latest -= self.lateness()
        return max(earliest, latest - READS_AHEAD * gap)

    def refresh_delay(self, created: float, cost: float, now: float) -> float:
        """Seconds a refresh found due at ``now`` waits before it starts: until the latest
        safe moment (see :func:`latest_start`), when the engine's clock keeps real time."""
        if not self.defers:
            return 0.0
        return wait_for_latest_start(created, self.ttl, cost, now, self.lateness())


def latest_start(created: float, ttl: float, cost: float) -> float:
    """The engine time by which a recompute of a value must start to be stored before the
    value's ttl: 1.5 times what its computation took (the next may take longer), and
    SLACK."""
    return created + ttl - (1.5 * cost + SLACK)


class XFetchPolicy:
    """The ``"xfetch"`` policy of one function (see the module docstring)."""

    fresh_for = None  # every read past the memory shortcut asks: the decision is random

    def __init__(self, ttl: float, beta: float) -> None:
        self.ttl = ttl
        self.beta = beta

    def due(self, key: str, created: float, cost: float, now: float) -> bool:
        return xfetch_due(now - created, self.ttl, cost, self.beta)

    def refresh_delay(self, created: float, cost: float, now: float) -> float:
        return 0.0  # XFetch's decision is its timing


def make_policy(
    name: str | None,
    settings: FunctionSettings,
    gap_of: Callable[[str], float | None],
    clock: Callable[[], float],
    lateness: Callable[[], float] = float,
) -> WindowPolicy | XFetchPolicy | None:
    """The refresh policy ``name`` (None: refresh-ahead is off) for a function whose
    engine runs on ``clock``: refreshes wait for their time only on a clock that keeps
    real time (one with ``real_time = False``, such as ``testing.FakeClock``, does not)."""
    if name == "window":
        return WindowPolicy(
            settings.ttl, settings.refresh_ahead or 0.0, gap_of, keeps_real_time(clock), lateness
        )
    if name == "xfetch":
        return XFetchPolicy(settings.ttl, settings.xfetch_beta)
    return None


class RefreshBackoff:
    """Per-key exponential backoff after failed background refreshes (thread-safe, bounded).

    After ``n`` consecutive failures a key is not refreshed in the background
    for ``min(base * 2**(n-1), cap)`` seconds; reads keep getting the cached
    value while it is within ttl, and a read past ttl recomputes in the caller
    as always. Remembers at most ``max_keys`` keys, forgetting the oldest.
    ``clock`` (seconds) is the engine's, as for every other refresh decision.
    """

    def __init__(
        self,
        base: float = 1.0,
        cap: float = 60.0,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base = base
        self.cap = cap
        self.max_keys = max_keys
        self.clock = clock
        self._failures: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._lock = forks.new_lock()

    def allows(self, key: str, now: float | None = None) -> bool:
        if not self._failures:  # the common case: nothing is failing
            return True
        with self._lock:
            state = self._failures.get(key)
        return state is None or (self.clock() if now is None else now) >= state[1]

    def failed(self, key: str, now: float | None = None) -> float:
        """Record a failure; return the seconds until the next background attempt."""
        now = self.clock() if now is None else now
        with self._lock:
            count = self._failures.pop(key, (0, 0.0))[0] + 1
            delay: float = min(self.base * 2.0 ** (count - 1), self.cap)
            self._failures[key] = (count, now + delay)
            while len(self._failures) > self.max_keys:
                self._failures.popitem(last=False)
        return delay

    def succeeded(self, key: str) -> None:
        if self._failures:
            with self._lock:
                self._failures.pop(key, None)
