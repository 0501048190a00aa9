"""The warming engine: one object over the parts that cache, warm and count.

:class:`CacheWarmingEngine` owns the parts and wires them once, in its
constructor; none of them knows the engine. Regions are
:class:`~dogpile_warm._core.regions.RegionRegistry`'s, tasks
:class:`~dogpile_warm._warming.registry.TaskRegistry`'s, turning tasks into
keys and running them :class:`~dogpile_warm._warming.planner.WarmingPlanner`'s,
what reads teach :class:`~dogpile_warm._usage.usage.Usage`'s, what warmings
did :class:`~dogpile_warm._warming.outcomes.Outcomes`', and the background
thread :class:`~dogpile_warm._warming.control.SchedulerControl`'s.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from dogpile.cache import CacheRegion, make_region
from dogpile.cache.api import CacheMutex

from . import signals
from ._cached.refresh_runner import RefreshRunner
from ._core.health import backend_figures
from ._core.leases import lease_keeper
from ._core.loops import OffLoop
from ._core.regions import MEMORY_BACKEND, RegionRegistry, build_region
from ._core.tags import normalize_tags
from ._core.validation import (
    check_bool,
    check_key,
    check_positive_int,
    check_positive_number,
    check_ttl,
)
from ._usage.tracker import UsagePatternTracker
from ._usage.usage import Usage
from ._warming import snapshot
from ._warming.awaited import AwaitedWarming
from ._warming.control import SchedulerControl
from ._warming.outcomes import Outcomes
from ._warming.planner import WarmingPlanner
from ._warming.registry import TaskRegistry
from ._warming.runs import OnResult
from ._warming.scheduler import Scheduler
from ._warming.users import UserPreloads
from .reports import (
    CycleReport,
    Performance,
    ScheduleReport,
    SnapshotSaved,
    SnapshotWarmReport,
    Stats,
    UserWarmReport,
    WarmReport,
)
from .task import WarmingTask

__all__ = ["CacheWarmingEngine"]

# Background refreshes queued or running at once; more are dropped (the value
# they would refresh is still served, within its ttl).
_MAX_PENDING_REFRESHES = 1000


class CacheWarmingEngine(AwaitedWarming):
    """Owns warming tasks and the regions they use, and runs warmings.

    ``region`` is the default region (an embedded memory region when None).
    ``max_workers`` bounds how many warmings run at once. ``clock`` (epoch
    seconds) is the one clock of every age and ttl decision, the user preload
    window, schedules and figures: tests pass a
    :class:`~dogpile_warm.testing.FakeClock` and advance it. Thread-safe.
    Creating an engine starts no thread: background refreshes and awaited
    reads' backend calls start pools on first use, which :meth:`close` shuts
    down. In an event loop, await the ``awarm_*`` twins of the warm methods.
    """

    def __init__(
        self,
        region: CacheRegion | None = None,
        *,
        max_workers: int = 8,
        history_size: int = 1000,
        user_preload_window: float = 300,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.max_workers = check_positive_int("max_workers", max_workers)
        self.history_size = check_positive_int("history_size", history_size)
        if not callable(clock):
            raise TypeError(f"clock must be a callable returning seconds, got {clock!r}")
        self.clock = clock
        self.refresher = RefreshRunner(min(4, max_workers), _MAX_PENDING_REFRESHES)
        self.offloop = OffLoop()  # the backend calls of awaited reads
        if region is None:
            region = make_region(name="default", async_creation_runner=self.async_creation_runner)
            region.configure(MEMORY_BACKEND)
        self.regions = RegionRegistry(region)
        self.registry = TaskRegistry(clock)
        self.usage = Usage(history_size, clock)
        self.outcomes = Outcomes(self.registry, self.usage, clock, sender=self)
        self.planner = WarmingPlanner(
            self.registry, self.regions, self.usage, self.outcomes, clock, max_workers
        )
        self.users = UserPreloads(user_preload_window, stores=self.planner.per_user_stores)
        self._scheduler = SchedulerControl(self._new_scheduler)

    def _new_scheduler(self, **settings: Any) -> Scheduler:
        return Scheduler(self.planner, self.usage, self.clock, **settings)

    @property
    def user_preload_window(self) -> float:
        """Seconds (engine clock) within which a user's second warming is skipped."""
        return self.users.window

    # -- regions -----------------------------------------------------------------
    @property
    def region(self) -> CacheRegion:
        """The engine's default region."""
        return self.regions.get("default")

    def configure_region(
        self,
        name: str = "default",
        backend: str = MEMORY_BACKEND,
        expiration_time: float | None = None,
        arguments: Mapping[str, Any] | None = None,
        **region_kwargs: Any,
    ) -> CacheRegion:
        """Configure (or replace) the region called ``name`` and return it."""
        if not isinstance(name, str) or not name:
            raise TypeError(f"region name must be a non-empty string, got {name!r}")
        runner = self.async_creation_runner
        region = build_region(
            name, backend, expiration_time=expiration_time, arguments=arguments,
            async_creation_runner=runner, **region_kwargs,
        )  # fmt: skip
        self.add_region(name, region)
        return region

    def add_region(self, name: str, region: CacheRegion) -> None:
        """Make an already configured ``region`` available as ``name``."""
        self.regions.add(name, region)

    def get_region(self, name: str = "default") -> CacheRegion:
        """The region configured as ``name``; :class:`UnknownRegionError` if none is."""
        return self.regions.get(name)

    # -- tasks -------------------------------------------------------------------
    def register_task(self, task: WarmingTask, is_critical: bool = False) -> WarmingTask:
        """Register ``task``; ``ValueError`` if its ``task_id`` is taken."""
        if not isinstance(task, WarmingTask):
            raise TypeError(f"register_task needs a WarmingTask, got {task!r}")
        self.registry.register(task, bool(is_critical))
        return task

    def get_task(self, task_id: str) -> WarmingTask | None:
        """The task registered as ``task_id``, or None."""
        record = self.registry.get(task_id)
        return record.task if record is not None else None

    def unregister_task(self, task_id: str) -> bool:
        """Forget the task ``task_id``; True if there was one."""
        return self.registry.unregister(task_id)

    # -- warming -----------------------------------------------------------------
    def warm_cache(
        self,
        key: str,
        compute_fn: Callable[[], Any],
        ttl: float = 3600,
        tags: Iterable[str] | None = None,
    ) -> bool:
        """Compute ``compute_fn()`` and store it under ``key`` in the default region.

        True when stored. A failure is signalled (``warm_failed``, sender the
        engine), logged and counted, never raised, and leaves the previous
        value in place. Read it back with :meth:`get_cached`.
        """
        check_key(key)
        if not callable(compute_fn):
            raise TypeError(f"compute_fn must be callable, got {compute_fn!r}")
        computation = self.planner.computation(key, check_ttl(ttl), normalize_tags(tags), None)
        return computation.warm(self.regions.store_for(None), key, compute_fn).success

    def get_cached(self, key: str, region: CacheRegion | str | None = None) -> Any:
        """The value stored under ``key`` (by :meth:`warm_cache` or a decorated
        function's ``key_for``), or ``NO_VALUE`` if missing, past its ttl or
        carrying an invalidated tag."""
        check_key(key)
        return self.regions.store_for(region).fresh_value(key, self.clock())

    def warm_critical_data(self) -> WarmReport:
        """Warm every critical task now, highest priority first (in a fleet, each task
        once per interval: see docs/contract.md).

        At most ``max_workers`` keys compute at once. A failing task is
        reported, signalled and logged; it never stops the others and never
        replaces a previously cached value.
        """
        critical = [r for r in self.registry.records() if r.critical]
        return self.planner.warm_records(critical, claim=True)

    def warm_tasks(
        self,
        tags: Iterable[str] | str | None = None,
        *,
        critical_only: bool = False,
        on_result: OnResult | None = None,
    ) -> WarmReport:
        """Warm registered tasks now, highest priority first; same shape as :meth:`warm_critical_data`.

        ``tags`` keeps the tasks carrying at least one of them (all tasks when
        None); ``critical_only`` keeps the critical ones. Per-user functions are
        skipped (they are warmed by :meth:`warm_user_data`). ``on_result`` is
        called with each result row as it completes, from a worker thread.
        """
        wanted = normalize_tags(tags) if tags is not None else None
        records = [
            r
            for r in self.registry.records()
            if (not critical_only or r.critical) and (wanted is None or r.task.tags & wanted)
        ]
        return self.planner.warm_records(records, on_result)

    def warm_user_data(
        self, user_id: Any, force: bool = False, preload_forms: bool = True
    ) -> UserWarmReport:
        """Warm every ``user_arg`` function for ``user_id`` (on login, say).

        Skipped (``"skipped": True``) when the user was warmed within
        ``user_preload_window`` seconds of the engine's clock, unless
        ``force``. ``preload_forms=False`` leaves out functions tagged "forms".
        """
        if user_id is None:
            raise ValueError("user_id must not be None")
        warm = functools.partial(self.planner.warm_user, user_id, preload_forms)
        return self.users.preload(user_id, self.clock(), force, warm)

    def warm_hot_keys(self, top_n: int = 100) -> WarmReport:
        """Recompute and store the ``top_n`` hottest keys now, with their remembered arguments.

        Same shape as :meth:`warm_critical_data`; keys whose arguments are not
        remembered (or that need an instance) count as skipped.
        """
        return self.planner.warm_hot_keys(check_positive_int("top_n", top_n))

    def save_hot_set(
        self,
        top_n: int = 1000,
        region: CacheRegion | str | None = None,
        *,
        max_bytes: int = snapshot.MAX_SNAPSHOT_BYTES,
    ) -> SnapshotSaved:
        """Save the hottest keys with their arguments into ``region``, for a cold start.

        At most ``top_n`` keys and ``max_bytes`` serialized; see docs/contract.md.
        """
        store = self.regions.store_for(region)
        return snapshot.save_hot_set(
            self.registry, self.usage, store, self.clock(), top_n, max_bytes=max_bytes
        )

    def warm_from_snapshot(
        self,
        region: CacheRegion | str | None = None,
        rate_limit: float | None = None,
        top_n: int | None = None,
        on_result: OnResult | None = None,
    ) -> SnapshotWarmReport:
        """Warm the keys of the saved hot set now, hottest first, at most ``rate_limit`` a second.

        Same shape as :meth:`warm_critical_data`, plus what the snapshot held; see
        docs/contract.md.
        """
        store = self.regions.store_for(region)
        return snapshot.warm_from_snapshot(
            self.registry, store, self.max_workers, rate_limit, top_n, on_result
        )

    # -- invalidation and refresh-ahead -------------------------------------------
    def invalidate_by_tags(self, tags: Iterable[str] | str) -> int:
        """Invalidate every value carrying one of ``tags``, in every region the engine uses.

        Strict and fleet-wide: once this returns, no process sharing a backend
        reads a value with one of these tags stored before the call. Raises
        :class:`WarmError` if a backend could not record the invalidation.
        Returns the number of tags invalidated.
        """
        tag_set = normalize_tags(tags)
        if not tag_set:
            return 0
        for store in self.planner.stores_in_use():
            store.tags.bump(tag_set)  # raises WarmError when not recorded
        self.usage.drain()
        self.usage.figures.invalidated(tag_set)
        if signals.invalidated.receivers:
            signals.invalidated.send(self, tags=tag_set)
        return len(tag_set)

    def async_creation_runner(
        self, cache: CacheRegion, key: str, creator: Callable[[], Any], mutex: CacheMutex
    ) -> None:
        """dogpile's ``async_creation_runner`` hook, set on regions the engine configures:
        ``cache.set(key, creator())`` in the refresh pool, then ``mutex`` released."""
        self.refresher.run(lambda: cache.set(key, creator()), mutex)

    # -- figures -------------------------------------------------------------------
    @property
    def usage_tracker(self) -> UsagePatternTracker:
        """The tracker fed by every hit and miss of this engine's functions (engine clock)."""
        return self.usage.tracker

    def optimize_schedules(self) -> ScheduleReport:
        """Set each task's interval from its reads per minute over the last hour.

        > 1 per minute: 15 minutes; > 0.5: 30; > 0.1: 60; otherwise 120.
        """
        return self.planner.adapt_intervals()

    def get_performance(self) -> Performance:
        """Warm-up and refresh figures, with the efficiency score (see docs/contract.md)."""
        self.usage.drain()
        return self.usage.figures.snapshot()

    def get_stats(self) -> Stats:
        """A snapshot of tasks, hits, misses and backend health (see docs/contract.md)."""
        self.usage.drain()
        records = self.registry.records()
        return {
            "tasks": len(records),
            "critical_tasks": sum(1 for r in records if r.critical),
            "running": self.running,
            **self.usage.counters.snapshot(),
            **backend_figures(store.health for store in self.regions.stores()),
            "task_details": [r.details() for r in records],
            "scheduler": self._scheduler.figures(),
        }

    # -- the background scheduler ----------------------------------------------------
    def start(
        self,
        interval_minutes: float = 60,
        enable_pattern_warming: bool = True,
        enable_critical_warming: bool = True,
        *,
        check_every: float = 1.0,
        max_keys_per_cycle: int = 100,
        restart_after_fork: bool = True,
    ) -> None:
        """Start the background scheduler (one daemon thread plus a worker pool). Idempotent.

        Gives every task ``interval_minutes`` as its interval (pattern warming
        then adapts them to reads); never-warmed critical tasks are warmed in
        the first cycle. A cycle runs every ``check_every`` seconds and warms at
        most ``max_keys_per_cycle`` keys (:mod:`dogpile_warm._warming.scheduler`).
        While running, a second call changes nothing. A forked process (a
        gunicorn worker of a ``--preload`` master) runs its own, unless
        ``restart_after_fork`` is False.
        """
        check_positive_number("interval_minutes", interval_minutes, " of minutes")
        self._scheduler.start(
            lambda: self.registry.set_intervals(interval_minutes),
            pattern_warming=check_bool("enable_pattern_warming", enable_pattern_warming),
            critical_warming=check_bool("enable_critical_warming", enable_critical_warming),
            check_every=check_every,
            max_keys_per_cycle=max_keys_per_cycle,
            restart_after_fork=check_bool("restart_after_fork", restart_after_fork),
        )

    def stop(self, timeout: float = 5) -> None:
        """Stop the background scheduler, waiting up to ``timeout`` seconds. Idempotent.

        Keys not yet started are cancelled. A computation under way cannot be
        interrupted: if one outlasts ``timeout``, a warning is logged and its
        thread ends when it returns.
        """
        self._scheduler.stop(timeout)

    @property
    def running(self) -> bool:
        """Whether the background scheduler is running."""
        return self._scheduler.running

    def run_scheduled_cycle(self) -> CycleReport:
        """Run one scheduler cycle now in this thread, with the settings of :meth:`start`
        (or the defaults when not started); see :mod:`dogpile_warm._warming.scheduler`."""
        return self._scheduler.run_cycle()

    def close(self) -> None:
        """Stop the scheduler and the refresh pool (waiting for refreshes under way), and
        release the locks its regions still owe the backend (see
        :meth:`LeaseKeeper.settle <dogpile_warm._core.locks.LeaseKeeper.settle>`). Idempotent."""
        self._scheduler.close()
        self.refresher.close()
        self.offloop.close()
        lease_keeper().settle(self.regions.stores())
