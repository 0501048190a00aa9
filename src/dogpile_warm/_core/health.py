"""How one region's backend is doing: failures counted by kind, logged once per episode,
and the circuit breaker that lets callers skip a backend that does not answer.

The store reports every backend failure here, classified by
:meth:`CacheStore.failed <dogpile_warm._core.store.CacheStore.failed>`:

*unavailable* (refused, reset or timed out; or a caller's call spent more
than its budget on round trips, see :func:`call_budget`)
    Opens the breaker. While it is open, callers skip the backend and compute
    their values as if there were no cache; every ``retry_after`` seconds one
    caller (alone) is let through as the probe, whose success closes the
    breaker and whose failure keeps it open. A probe that reports nothing for
    ``probe_timeout`` seconds (a client without timeouts, hung) is replaced.
    An outage is one *episode*: one warning when it starts, one when it ends
    (the first success ``quiet`` seconds after the last failure), however many
    threads, calls or servers fail in between.
*refused* (too large, cannot be serialized)
    The backend answered; the caller still gets its value. Logged once per
    owner (the function whose value it was).
*unreadable* (cannot be deserialized, not dogpile_warm's)
    Reads as a miss. Logged once per episode of such reads (an episode ends
    after ``quiet_unreadable`` seconds without one).

Thread-safe. ``open`` and ``in_outage`` are read without the lock on every call.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator

from ..reports import BackendFigures
from . import forks

__all__ = [
    "CALL_BUDGET",
    "BackendHealth",
    "backend_figures",
    "call_budget",
    "overspent",
    "round_trip_budget",
    "spend",
]

log = logging.getLogger(__name__)


# Owners whose refused value was logged, per region; beyond this the oldest
# are forgotten (and may be logged again).
_MAX_REFUSED_OWNERS = 1000

# Seconds of round trips one caller's miss may spend on a backend (a read, the
# lock, tag versions, the write, the unlock: about six of them) before the
# backend counts as unavailable. A server that answers each request just under
# the client timeout is as useless to a cache as one that does not answer; one
# slow answer alone (a large value, a pause of this process) is not. With the
# miss's first read and the round trip that overspends, a miss on a slow
# server costs at most about this plus two client timeouts' worth of answers.
CALL_BUDGET = 0.75

# Seconds of round trips left to the call under way in this thread or task,
# in a list so that spending needs no set(); None outside a call (the hit path
# reads it directly, see CacheStore.read).
round_trip_budget: contextvars.ContextVar[list[float] | None] = contextvars.ContextVar(
    "dogpile_warm_round_trip_budget", default=None
)


@contextlib.contextmanager
def call_budget(seconds: float = CALL_BUDGET) -> Iterator[None]:
    """Give the round trips made in this block ``seconds`` in all (see :func:`spend`)."""
    token = round_trip_budget.set([seconds])
    try:
        yield
    finally:
        round_trip_budget.reset(token)


def spend(seconds: float) -> bool:
    """Charge one round trip to the current call; True the first time it overspends."""
    budget = round_trip_budget.get()
    if budget is None or budget[0] < 0:
        return False
    budget[0] -= seconds
    return budget[0] < 0


def overspent() -> bool:
    """Whether the current call has spent its budget: it makes no more round trips
    (even if another thread's probe closes the breaker meanwhile)."""
    budget = round_trip_budget.get()
    return budget is not None and budget[0] < 0


class BackendHealth:
    """The failure counts, log episodes and circuit breaker of one region's backend."""

    def __init__(
        self,
        name: str,
        *,
        retry_after: float = 1.0,
        quiet: float = 2.0,
        probe_timeout: float = 5.0,
        quiet_unreadable: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.retry_after = retry_after
        self.quiet = quiet
        self.probe_timeout = probe_timeout
        self.quiet_unreadable = quiet_unreadable
        self.clock = clock
        self.open = False  # the breaker: callers skip the backend
        self.in_outage = False  # inside an outage episode (logged, its end not yet)
        self.unavailable = 0
        self.refused = 0
        self.unreadable = 0
        self.skipped = 0  # operations not tried because the breaker was open
        self._last_failure = -math.inf
        self._probe_at = 0.0
        self._probe_since: float | None = None
        self._last_unreadable = -math.inf
        self._refused_owners: dict[str, None] = {}
        self._lock = forks.new_lock()
        forks.after_fork_in_child(self, BackendHealth._after_fork_in_child)

    def _after_fork_in_child(self) -> None:
        # A probe in flight in the parent does not exist here: the child may
        # probe at once rather than wait out probe_timeout.
        self._probe_since = None
        self._probe_at = 0.0

    @property
    def errors(self) -> int:
        """Failures of every kind so far."""
        return self.unavailable + self.refused + self.unreadable

    # -- the breaker --------------------------------------------------------
    def allows(self) -> bool:
        """Whether a backend operation may go ahead now.

        Always while the breaker is closed; while it is open, only for the one
        probe. A refusal is counted in ``skipped``.
        """
        if not self.open:
            return True
        now = self.clock()
        with self._lock:
            if not self.open:
                return True
            probing = self._probe_since is not None and now - self._probe_since < self.probe_timeout
            if now >= self._probe_at and not probing:
                self._probe_since = now
                self._probe_at = now + self.retry_after
                return True
            self.skipped += 1
        return False

    def succeeded(self, started: float) -> None:
        """The backend answered an operation begun at ``started`` (this health's clock).

        Only an operation begun after the last failure says the backend is
        back (the probe's): answers to ones sent before it, still arriving,
        say nothing new. Cheap while all is well: two attribute reads.
        """
        if self.open or self.in_outage:
            self._answered(started)

    def _answered(self, started: float) -> None:
        now = self.clock()
        ended = False
        with self._lock:
            if self.open:
                if started < self._last_failure:
                    return  # sent before the failure: says nothing about the backend now
                self.open = False
                self._probe_since = None
            if self.in_outage and now - self._last_failure >= self.quiet:
                self.in_outage = False
                ended = True
        if ended:
            log.warning("cache backend of region %r answers again", self.name)

    # -- failures -------------------------------------------------------------
    def failed_unavailable(self, exc: BaseException, key: str, operation: str) -> None:
        """The backend did not answer ``operation`` on ``key``: open the breaker."""
        now = self.clock()
        with self._lock:
            self.unavailable += 1
            self.open = True
            self._probe_since = None
            self._probe_at = now + self.retry_after
            self._last_failure = now
            started = not self.in_outage
            self.in_outage = True
        if started:
            log.warning(
                "cache backend of region %r is unavailable (%s of key %r: %s: %s); "
                "computing without the cache, trying it again every %g s",
                self.name,
                operation,
                key,
                type(exc).__name__,
                exc,
                self.retry_after,
            )

    def failed_refused(self, exc: BaseException, key: str, owner: str) -> None:
        """The backend would not store the value of ``owner`` under ``key``."""
        with self._lock:
            self.refused += 1
            first = owner not in self._refused_owners
            if first:
                self._refused_owners[owner] = None
                if len(self._refused_owners) > _MAX_REFUSED_OWNERS:
                    del self._refused_owners[next(iter(self._refused_owners))]
        if first:
            log.warning(
                "cache backend of region %r refused a value of %s (key %r: %s: %s); "
                "callers get their values uncached",
                self.name,
                owner,
                key,
                type(exc).__name__,
                exc,
            )

    def failed_unreadable(self, reason: str, key: str) -> None:
        """A value under ``key`` could not be read back; it counts as a miss."""
        now = self.clock()
        with self._lock:
            self.unreadable += 1
            started = now - self._last_unreadable >= self.quiet_unreadable
            self._last_unreadable = now
        if started:
            log.warning(
                "cache backend of region %r returned an unreadable value under %r (%s); "
                "treated as a miss (further ones are counted, logged again after %g s "
                "without any)",
                self.name,
                key,
                reason,
                self.quiet_unreadable,
            )

    def figures(self) -> dict[str, int | bool]:
        """The counters, and whether the breaker is open now."""
        with self._lock:
            return {
                "unavailable": self.unavailable,
                "refused": self.refused,
                "unreadable": self.unreadable,
                "skipped": self.skipped,
                "open": self.open,
            }


def backend_figures(healths: Iterable[BackendHealth]) -> BackendFigures:
    """The backend failures of an engine's regions, summed over ``healths``: every
    failure, then by kind; and the regions whose breaker is open now."""
    figures = [(h.name, h.figures()) for h in healths]
    unavailable = sum(int(f["unavailable"]) for _, f in figures)
    refused = sum(int(f["refused"]) for _, f in figures)
    unreadable = sum(int(f["unreadable"]) for _, f in figures)
    return {
        "backend_errors": unavailable + refused + unreadable,
        "backend_unavailable": unavailable,
        "values_refused": refused,
        "values_unreadable": unreadable,
        "backend_skipped": sum(int(f["skipped"]) for _, f in figures),
        "backends_down": sorted(name for name, f in figures if f["open"]),
    }
