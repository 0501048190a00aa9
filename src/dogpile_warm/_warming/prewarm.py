"""Pattern warming: the hot keys worth recomputing before their predicted next read.

Among the hottest keys whose arguments were remembered from real calls, a
key is warmed when its next read is expected (see
:meth:`UsagePatternTracker.predict_next_access
<dogpile_warm._usage.tracker.UsagePatternTracker.predict_next_access>`) before
the next cycle ends and its value would by then be inside its refresh window
(``refresh_ahead * ttl`` old; ttl without refresh-ahead) or is missing. Keys
read several times per refresh window are left to refresh-ahead: one of
their reads lands in the window and refreshes them without anyone waiting.
The warming takes the key's lock without waiting: a key already being
recomputed, in any process, is left alone. A key warmed here is not warmed
again for the length of its refresh window.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

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
# Candidates looked at per key of budget: most hot keys are not due.
_CANDIDATES_PER_SLOT = 4

Job = Callable[[], KeyResult | None]


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

    def plan(self, budget: int, horizon: float) -> list[tuple[str, Job]]:
        """The hot keys to warm now, hottest first (at most ``budget`` of them are run),
        with their jobs: those whose next read is expected within ``horizon`` seconds
        and would find the value due for refresh, or gone."""
        tracker = self.usage.tracker
        now = self.clock()
        by_store: dict[int, tuple[CacheStore, list[tuple[str, CachedFunction, Job]]]] = {}
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
            if last + mean_gap > now + horizon or now > last + 2 * mean_gap + horizon:
                continue  # not expected before the next cycle, or gone cold
            if cached.refresh_policy == "window" and mean_gap * _READS_PER_WINDOW < (
                cached.ttl - (cached.fresh_for or 0.0)
            ):
                # Read several times per refresh window: a read lands in the window
                # and refreshes the value in the background, and nobody waits.
                continue
            threshold = cached.ttl * (cached.refresh_ahead or 1.0)
            if not self._may_warm(key, cached, now + horizon, threshold):
                continue
            fn = cached.fn
            needed = _needed(self.clock, threshold, horizon)
            job: Job = _prewarm_job(cached, fn, args, kwargs, key, needed)
            store = cached.store()
            by_store.setdefault(id(store), (store, []))[1].append((key, cached, job))
            considered += 1
            if considered >= budget * _CANDIDATES_PER_SLOT:
                break
        planned: list[tuple[str, Job]] = []
        for store, items in by_store.values():
            entries = store.peek_many([key for key, _, _ in items])
            if entries is None:  # the backend does not answer: nothing to plan with
                continue
            for (key, cached, job), entry in zip(items, entries, strict=True):
                threshold = cached.ttl * (cached.refresh_ahead or 1.0)
                if entry is not None:
                    _remember(self._created, key, entry.created)
                    if now + horizon + entry.cost - entry.created < threshold:
                        continue
                planned.append((key, job))
        return planned

    def warmed(self, key: str) -> None:
        """``key`` was warmed just now: not again within its refresh window."""
        _remember(self._warmed_at, key, self.clock())

    def _may_warm(self, key: str, cached: CachedFunction, at: float, threshold: float) -> bool:
        """False when the key was warmed within its refresh window or is known not to be due."""
        warmed = self._warmed_at.get(key)
        window = cached.ttl * (1.0 - (cached.refresh_ahead or 0.8))
        if warmed is not None and self.clock() - warmed < window:
            return False
        created = self._created.get(key)
        return created is None or at - created >= threshold


def _remember(memory: OrderedDict[str, float], key: str, value: float) -> None:
    memory[key] = value
    memory.move_to_end(key)
    while len(memory) > _MAX_REMEMBERED_KEYS:
        memory.popitem(last=False)


def _needed(
    clock: Callable[[], float], threshold: float, horizon: float
) -> Callable[[Entry | None], bool]:
    def needed(entry: Entry | None) -> bool:
        return entry is None or clock() + horizon + entry.cost - entry.created >= threshold

    return needed


def _prewarm_job(
    cached: CachedFunction,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    key: str,
    needed: Callable[[Entry | None], bool],
) -> Job:
    return lambda: cached.computation.prewarm(
        cached.store(), key, lambda: fn(*args, **kwargs), needed
    )
