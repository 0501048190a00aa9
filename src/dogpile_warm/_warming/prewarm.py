"""Pattern warming: the hot keys worth recomputing before their value expires.

Among the hottest keys whose arguments were remembered from real calls, a
key is warmed when its value would expire (or is missing) before the next
cycle has warmed it, with the time its last computation took to spare, and
it is expected to be read within the new value's life (a mean gap between
its reads shorter than the ttl: a refresh is worth it only for a key read
before its ttl). Keys read several times per refresh window are left to
refresh-ahead: one of their reads lands in the window and refreshes them,
close to the ttl (see :class:`~dogpile_warm._cached.refresh.WindowPolicy`),
without anyone waiting. Keys gone quiet (no read for two mean gaps) are not
warmed. The warming takes the key's lock without waiting: a key already
being recomputed, in any process, is left alone. With a clock that keeps
real time, a warming waits in the refresh pool's timer for the latest safe
moment (:func:`~dogpile_warm._cached.refresh.latest_start`), as a refresh
does, so the value it replaces lives as long as it can. A key warmed here is
not warmed again for half its ttl.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, NamedTuple

from .._cached.refresh import SLACK, keeps_real_time, wait_for_latest_start
from .._cached.refresh_runner import RefreshRunner
from .._core.batch import KeyResult
from .._core.store import CacheStore, Entry

if TYPE_CHECKING:
    from .._cached.cached import CachedFunction
    from .._usage.usage import Usage
    from .registry import TaskRegistry

__all__ = ["PatternWarmer"]

# Keys remembered as recently warmed / as seen with a creation time.
_MAX_REMEMBERED_KEYS = 100_000
# Keys read at least this many times per refresh window (on average) are left to
# refresh-ahead: with reads at random, every read missing the window happens
# about exp(-3), 5%, of the time; benchmarks/skewed_load.py weighs the recomputes
# this costs against the waits it saves.
_READS_PER_WINDOW = 3
# Keys read fewer times than this per ttl (on average) are left to expire: keeping
# them warm would cost a computation per life that no read may use.
_READS_PER_LIFE = 1
# A key warmed here is not warmed again before this share of its ttl has passed.
_REWARM_AFTER = 0.5
# Candidates looked at per key of budget: most hot keys are not due.
_CANDIDATES_PER_SLOT = 4

Job = Callable[[], KeyResult | None]
Needed = Callable[[Entry | None], bool]


class Planned(NamedTuple):
    """A key to warm: its job, run now or ``delay`` seconds from now by ``refresher``
    (where ``pending`` is what a refresh-ahead of the same value is known by)."""

    key: str
    job: Job
    delay: float
    refresher: RefreshRunner
    pending: Hashable


class PatternWarmer:
    """Plans the pattern warming of one engine's scheduler; ``clock`` is the engine's."""

    def __init__(self, usage: Usage, registry: TaskRegistry, clock: Callable[[], float]) -> None:
        self.usage = usage
        self.registry = registry
        self.clock = clock
        # key -> engine time of the last warming of it here
        self._warmed_at: OrderedDict[str, float] = OrderedDict()
        # key -> creation time last seen: a value only gets newer, so the
        # backend need not be asked again until this one is due.
        self._created: OrderedDict[str, float] = OrderedDict()

    def plan(self, budget: int, horizon: float) -> list[Planned]:
        """The hot keys to warm, hottest first (at most ``budget`` of them are run), with
        their jobs: those whose value would expire, or is gone, before the next cycle
        ends (``horizon`` seconds), each with the seconds its warming should wait for
        the latest safe moment (0 on a clock that does not keep real time)."""
        tracker = self.usage.tracker
        now = self.clock()
        defers = keeps_real_time(self.clock)
        by_store: dict[int, tuple[CacheStore, list[tuple[str, CachedFunction, Job, Needed]]]] = {}
        considered = 0
        for key, _count in tracker.get_hot_keys(budget * _CANDIDATES_PER_SLOT):
            call = self.usage.calls.get(key)
            if call is None:
                continue
            cached, args, kwargs = call
            if cached.keys.skips_first or cached.task.task_id not in self.registry:
                continue  # a method needs its instance; an unregistered task is gone
            gap = tracker.last_and_gap(key)
            if gap is None:
                continue
            last, mean_gap = gap
            if now > last + 2 * mean_gap + horizon:
                continue  # gone cold
            if cached.refresh_policy == "window" and mean_gap * _READS_PER_WINDOW < (
                cached.ttl - (cached.fresh_for or 0.0)
            ):
                # Read several times per refresh window: a read lands in the window
                # and refreshes the value in the background, and nobody waits.
                continue
            if mean_gap * _READS_PER_LIFE > cached.ttl:
                continue  # too few reads per life to be worth a computation ahead of them
            if not self._may_warm(key, cached, now + horizon):
                continue
            fn = cached.fn
            needed = _needed(self.clock, cached.ttl, horizon)
            job: Job = _prewarm_job(cached, fn, args, kwargs, key, needed)
            store = cached.store()
            by_store.setdefault(id(store), (store, []))[1].append((key, cached, job, needed))
            considered += 1
            if considered >= budget * _CANDIDATES_PER_SLOT:
                break
        planned: list[Planned] = []
        for store, items in by_store.values():
            entries = store.peek_many([key for key, _, _, _ in items])
            if entries is None:  # the backend does not answer: nothing to plan with
                continue
            for (key, cached, job, needed), entry in zip(items, entries, strict=True):
                delay = 0.0
                if entry is not None:
                    _remember(self._created, key, entry.created)
                    if defers:  # as a refresh waits (WindowPolicy.refresh_delay)
                        lateness = cached.refresher.lateness()
                        delay = wait_for_latest_start(
                            entry.created, cached.ttl, entry.cost, now, lateness
                        )
                if needed(entry):
                    planned.append(Planned(key, job, delay, cached.refresher, (store, key)))
        return planned

    def warmed(self, key: str) -> None:
        """``key`` was warmed just now: not again within its refresh window."""
        _remember(self._warmed_at, key, self.clock())

    def _may_warm(self, key: str, cached: CachedFunction, at: float) -> bool:
        """False when the key was warmed within half its ttl or is known not to
        need it by ``at``."""
        warmed = self._warmed_at.get(key)
        if warmed is not None and self.clock() - warmed < cached.ttl * _REWARM_AFTER:
            return False
        created = self._created.get(key)
        return created is None or at + SLACK >= created + cached.ttl


def _remember(memory: OrderedDict[str, float], key: str, value: float) -> None:
    memory[key] = value
    memory.move_to_end(key)
    while len(memory) > _MAX_REMEMBERED_KEYS:
        memory.popitem(last=False)


def _needed(clock: Callable[[], float], ttl: float, horizon: float) -> Needed:
    """Whether a value expires (or is gone) before the scheduler's next cycle has warmed
    it: its recompute, timed as the last one, must end by then."""

    def needed(entry: Entry | None) -> bool:
        return entry is None or clock() + horizon + entry.cost + SLACK >= entry.created + ttl

    return needed


def _prewarm_job(
    cached: CachedFunction,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    key: str,
    needed: Needed,
) -> Job:
    return lambda: cached.computation.prewarm(
        cached.store(), key, lambda: fn(*args, **kwargs), needed
    )
