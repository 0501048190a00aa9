"""The warming engine: tasks, regions, warming runs, per-user preloading, tags, stats."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from dogpile.cache import CacheRegion, make_region
from dogpile.cache.api import CacheMutex

from . import signals
from ._cached.cached import CachedFunction
from ._cached.refresh import RefreshRunner
from ._core import forks
from ._core.batch import KeyResult, WriteBatch
from ._core.locks import lease_keeper
from ._core.regions import MEMORY_BACKEND, RegionRegistry, build_region
from ._core.store import CacheStore, Entry
from ._core.tags import normalize_tags
from ._core.validation import check_key, check_positive_int, check_positive_number, check_ttl
from ._usage.stats import TaskRecord
from ._usage.tracker import UsagePatternTracker
from ._usage.usage import Usage
from ._warming.runs import WarmJob, bind_job, report_jobs, row, run_jobs
from ._warming.scheduler import Scheduler
from ._warming.users import UserPreloads
from .errors import BackendError, WarmError, describe_error
from .task import WarmingTask

__all__ = ["CacheWarmingEngine"]

log = logging.getLogger(__name__)

# Background refreshes queued or running at once; more are dropped (the value
# they would refresh is still served, within its ttl).
_MAX_PENDING_REFRESHES = 1000


class CacheWarmingEngine:
    """Owns warming tasks and the regions they use, and runs warmings.

    ``region`` is the default region (an embedded memory region when None).
    ``max_workers`` bounds how many warmings run at once; ``clock`` (epoch
    seconds) drives the user preload window, schedules and the figures —
    never a value's age, which is always dogpile's ``time.time()``.
    Thread-safe. Creating an engine starts no thread; background refresh
    starts a small pool on first use, which :meth:`close` shuts down.
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
        self._users = UserPreloads(user_preload_window)
        if not callable(clock):
            raise TypeError(f"clock must be a callable returning seconds, got {clock!r}")
        self.clock = clock
        self._lock = forks.new_rlock()
        self._regions = RegionRegistry(region if region is not None else self._memory_region())
        self._tasks: dict[str, TaskRecord] = {}
        self._usage = Usage(history_size, clock)
        self._refresher = RefreshRunner(min(4, max_workers), _MAX_PENDING_REFRESHES)
        self._closed = False
        self._scheduler: Scheduler | None = None
        self._idle_scheduler: Scheduler | None = None  # for run_scheduled_cycle() when stopped
        # In a forked child: first forget the parent's threads, then, once every
        # other part has been reset, run the scheduler again (see forks).
        self._forked_scheduler: Scheduler | None = None
        forks.after_fork_in_child(self, CacheWarmingEngine._forget_threads_after_fork)
        forks.after_fork_in_child(
            self, CacheWarmingEngine._restart_scheduler_after_fork, restart=True
        )

    @property
    def user_preload_window(self) -> float:
        """Seconds (engine clock) within which a user's second warming is skipped."""
        return self._users.window

    # -- regions -----------------------------------------------------------------
    @property
    def region(self) -> CacheRegion:
        """The engine's default region."""
        return self._regions.get("default")

    def _memory_region(self) -> CacheRegion:
        return make_region(
            name="default", async_creation_runner=self.async_creation_runner
        ).configure(MEMORY_BACKEND)

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
        region = build_region(
            name,
            backend,
            expiration_time=expiration_time,
            arguments=arguments,
            async_creation_runner=self.async_creation_runner,
            **region_kwargs,
        )
        self.add_region(name, region)
        return region

    def add_region(self, name: str, region: CacheRegion) -> None:
        """Make an already configured ``region`` available as ``name``."""
        self._regions.add(name, region)

    def get_region(self, name: str = "default") -> CacheRegion:
        """The region configured as ``name``; :class:`UnknownRegionError` if none is."""
        return self._regions.get(name)

    def _store_for(self, region: CacheRegion | str | None) -> CacheStore:
        return self._regions.store_for(region)

    # -- tasks -------------------------------------------------------------------
    def register_task(self, task: WarmingTask, is_critical: bool = False) -> WarmingTask:
        """Register ``task``; ``ValueError`` if its ``task_id`` is taken."""
        if not isinstance(task, WarmingTask):
            raise TypeError(f"register_task needs a WarmingTask, got {task!r}")
        self._register(task, bool(is_critical), source=None, replace=False)
        return task

    def _register(
        self,
        task: WarmingTask,
        critical: bool,
        *,
        source: CachedFunction | None,
        replace: bool,
    ) -> None:
        with self._lock:
            if not replace and task.task_id in self._tasks:
                raise ValueError(f"a task with task_id {task.task_id!r} is already registered")
            record = TaskRecord(task, critical, source)
            record.next_run = self.clock() + task.interval_minutes * 60
            self._tasks[task.task_id] = record

    def get_task(self, task_id: str) -> WarmingTask | None:
        """The task registered as ``task_id``, or None."""
        record = self._tasks.get(task_id)
        return record.task if record is not None else None

    def unregister_task(self, task_id: str) -> bool:
        """Forget the task ``task_id``; True if there was one."""
        with self._lock:
            return self._tasks.pop(task_id, None) is not None

    def _records(self) -> list[TaskRecord]:
        """Registered tasks, highest priority first (registration order among equals)."""
        with self._lock:
            records = list(self._tasks.values())
        return sorted(records, key=lambda r: -r.task.priority)

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
        result = self._warm_value(
            self._store_for(None), key, compute_fn, check_ttl(ttl), normalize_tags(tags), None
        )
        return result.success

    def get_cached(self, key: str, region: CacheRegion | str | None = None) -> Any:
        """The value stored under ``key`` (by :meth:`warm_cache` or a decorated
        function's ``key_for``), or ``NO_VALUE`` if missing, past its ttl or
        carrying an invalidated tag."""
        check_key(key)
        return self._store_for(region).fresh_value(key)

    def _warm_value(
        self,
        store: CacheStore,
        key: str,
        compute_fn: Callable[[], Any],
        ttl: float,
        tags: frozenset[str],
        record: TaskRecord | None,
        batch: WriteBatch | None = None,
    ) -> KeyResult:
        """Warm a plain key (``warm_cache`` or a registered task): compute, store, report.

        With ``batch`` the entry is stored with the batch, which completes the result.
        """
        t0 = time.perf_counter()
        task = record.task if record else None
        result = KeyResult(key, False, 0.0, None, final=False)

        def complete(error: BaseException | None) -> None:
            result.complete(error is None, describe_error(error))
            self._record_warm(task, result, error, record, ttl, tags)

        owner = task.task_id if task is not None else key
        if store.health.open:  # nothing could be stored: nothing is computed
            complete(store.skipped(key, "warm"))
            return result
        versions = store.tag_versions(tags)
        try:
            entry = Entry(
                compute_fn(), time.time(), ttl, () if isinstance(versions, Exception) else versions
            )
        except Exception as exc:
            result.duration_ms = (time.perf_counter() - t0) * 1000.0
            complete(exc)
            return result
        result.duration_ms = (time.perf_counter() - t0) * 1000.0
        if isinstance(versions, Exception):
            complete(versions)
        elif batch is not None:
            batch.put(store, key, entry, complete, owner)
        else:
            complete(store.write(key, entry, owner))
        return result

    def _record_warm(
        self,
        task: WarmingTask | None,
        result: KeyResult,
        error: BaseException | None,
        record: TaskRecord | None = None,
        ttl: float | None = None,
        tags: frozenset[str] | None = None,
    ) -> None:
        """Count, signal and log one warmed key. ``task`` None means a ``warm_cache`` value."""
        self._drain()  # reads before this warming count against the value it replaces
        if record is None and task is not None:
            record = self._tasks.get(task.task_id)
        if record is not None:
            record.record_run(result.success, result.duration_ms, self.clock())
        self._usage.figures.warmed(
            result.key,
            result.success,
            result.duration_ms,
            ttl if ttl is not None else (task.ttl if task else 3600.0),
            tags if tags is not None else (task.tags if task else frozenset()),
        )
        sender: Any = task if task is not None else self
        if result.success:
            if signals.warmed.receivers:
                signals.warmed.send(sender, key=result.key, duration_ms=result.duration_ms)
            return
        # A backend failure is the store's to log (once per outage), not every key's.
        (log.debug if isinstance(error, BackendError) else log.warning)(
            "warming %r failed: %s", result.key, result.error
        )
        if signals.warm_failed.receivers:
            signals.warm_failed.send(sender, key=result.key, error=error)

    def _jobs_for(self, record: TaskRecord) -> list[WarmJob] | None:
        """The keys a warming of ``record`` computes, as jobs; None when it cannot be warmed."""
        source = record.source
        if source is None:
            store = self._store_for(record.task.region)
            task = record.task
            return [
                lambda batch: self._warm_value(
                    store, task.cache_key, task.compute_fn, task.ttl, task.tags, record, batch
                )
            ]
        if source.user_arg is not None:
            return None  # warmed per user by warm_user_data
        calls = source.calls_to_warm()
        if calls is None:
            return None
        fn = source.fn
        return [
            bind_job(source, fn, args, kwargs, source.key_for(args, kwargs))
            for args, kwargs in calls
        ]

    def warm_critical_data(self) -> dict[str, Any]:
        """Warm every critical task now, highest priority first.

        At most ``max_workers`` keys compute at once. A failing task is
        reported, signalled and logged; it never stops the others and never
        replaces a previously cached value. A task warming cannot call is
        counted in ``"skipped"`` and listed in ``"skipped_tasks"``
        (``[{"task_id", "reason"}]``).
        """
        return self._warm_records([r for r in self._records() if r.critical])

    def warm_tasks(
        self,
        tags: Iterable[str] | str | None = None,
        *,
        critical_only: bool = False,
        on_result: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Warm registered tasks now, highest priority first; same shape as :meth:`warm_critical_data`.

        ``tags`` keeps the tasks carrying at least one of them (all tasks when
        None); ``critical_only`` keeps the critical ones. Per-user functions are
        skipped (they are warmed by :meth:`warm_user_data`). ``on_result`` is
        called with each result row as it completes, from a worker thread.
        """
        wanted = normalize_tags(tags) if tags is not None else None
        records = [
            r
            for r in self._records()
            if (not critical_only or r.critical) and (wanted is None or r.task.tags & wanted)
        ]
        return self._warm_records(records, on_result)

    def _warm_records(
        self,
        records: list[TaskRecord],
        on_result: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        t0 = time.perf_counter()
        jobs: list[tuple[TaskRecord, WarmJob]] = []
        skipped: list[dict[str, str]] = []
        results: list[dict[str, Any]] = []
        for record in records:
            try:
                task_jobs = self._jobs_for(record)
            except Exception as exc:  # e.g. a warm_args callable that raised
                log.warning("cannot list the keys of task %r: %s", record.task.task_id, exc)
                results.append(
                    row(record, KeyResult(record.task.task_id, False, 0.0, describe_error(exc)))
                )
                continue
            if task_jobs is None:
                skipped.append({"task_id": record.task.task_id, "reason": _skip_reason(record)})
                continue
            jobs.extend((record, job) for job in task_jobs)
        if on_result is not None:
            for failed in results:
                on_result(failed)
        report = report_jobs(jobs, results, len(skipped), t0, self.max_workers, on_result)
        report["skipped_tasks"] = skipped
        return report

    def warm_user_data(
        self, user_id: Any, force: bool = False, preload_forms: bool = True
    ) -> dict[str, Any]:
        """Warm every ``user_arg`` function for ``user_id`` (on login, say).

        Skipped (``"skipped": True``) when the user was warmed within
        ``user_preload_window`` seconds of the engine's clock, unless
        ``force``. ``preload_forms=False`` leaves out functions tagged "forms".
        """
        if user_id is None:
            raise ValueError("user_id must not be None")
        now = self.clock()
        if not self._users.claim(user_id, now, force):
            return _user_result(user_id, True, [], [], 0.0)
        t0 = time.perf_counter()
        jobs: list[WarmJob] = []
        for record in self._records():
            source = record.source
            if source is None or source.user_arg is None or source.keys.skips_first:
                continue
            if not preload_forms and "forms" in record.task.tags:
                continue
            kwargs = {source.user_arg: user_id}
            jobs.append(bind_job(source, source.fn, (), kwargs, source.key_for((), kwargs)))
        outcomes = run_jobs(jobs, self.max_workers)
        warmed = [r.key for r in outcomes if r.success]
        failed = [r.key for r in outcomes if not r.success]
        if failed and not warmed:  # nothing was warmed: let the next login try again
            self._users.release(user_id, now)
        return _user_result(user_id, False, warmed, failed, (time.perf_counter() - t0) * 1000.0)

    # -- invalidation --------------------------------------------------------------
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
        for store in self._stores_in_use():
            store.bump_tags(tag_set)  # raises WarmError when not recorded
        self._drain()
        self._usage.figures.invalidated(tag_set)
        if signals.invalidated.receivers:
            signals.invalidated.send(self, tags=tag_set)
        return len(tag_set)

    def _stores_in_use(self) -> list[CacheStore]:
        with self._lock:
            named = [r.task.region for r in self._tasks.values() if r.task.region is not None]
        return self._regions.stores_in_use(named)

    # -- refresh-ahead ---------------------------------------------------------------
    def async_creation_runner(
        self, cache: CacheRegion, key: str, creator: Callable[[], Any], mutex: CacheMutex
    ) -> None:
        """dogpile's ``async_creation_runner`` hook, set on regions the engine configures.

        Runs ``creator`` in the engine's refresh pool, stores its value with
        ``cache.set`` and always releases ``mutex``.
        """
        self._refresher.run(lambda: cache.set(key, creator()), mutex)

    def _record_refresh(
        self, cached: CachedFunction, key: str, duration_ms: float, stored: bool
    ) -> None:
        self._drain()
        record = self._tasks.get(cached.task.task_id)
        if record is not None:
            record.record_run(stored, duration_ms, self.clock())
        self._usage.figures.warmed(key, stored, duration_ms, cached.ttl, cached.tags)

    def _refresh_failed(
        self, cached: CachedFunction, key: str, error: Exception, retry_in: float
    ) -> None:
        self._drain()
        record = self._tasks.get(cached.task.task_id)
        if record is not None:
            record.record_run(False, 0.0, self.clock())
        self._usage.figures.warmed(key, False, 0.0, cached.ttl, cached.tags)
        log.warning(
            "background refresh of %r failed: %s; serving the cached value, next "
            "background attempt in %.3g s",
            key,
            describe_error(error),
            retry_in,
        )
        if signals.warm_failed.receivers:
            signals.warm_failed.send(cached.task, key=key, error=error)

    # -- figures ---------------------------------------------------------------------
    @property
    def usage_tracker(self) -> UsagePatternTracker:
        """The tracker fed by every hit and miss of this engine's functions (engine clock)."""
        return self._usage.tracker

    def _drain(self) -> None:
        self._usage.drain()

    def warm_hot_keys(self, top_n: int = 100) -> dict[str, Any]:
        """Recompute and store the ``top_n`` hottest keys now, with their remembered arguments.

        Same shape as :meth:`warm_critical_data`; keys whose arguments are not
        remembered (or that need an instance) count as skipped.
        """
        check_positive_int("top_n", top_n)
        t0 = time.perf_counter()
        jobs: list[tuple[TaskRecord, WarmJob]] = []
        skipped = 0
        for key, _count in self._usage.tracker.get_hot_keys(top_n):
            call = self._usage.calls.get(key)
            record = self._tasks.get(call[0].task.task_id) if call else None
            if call is None or record is None or call[0].keys.skips_first:
                skipped += 1
                continue
            cached, args, kwargs = call
            jobs.append((record, bind_job(cached, cached.fn, args, kwargs, key)))
        return report_jobs(jobs, [], skipped, t0, self.max_workers)

    def save_hot_set(
        self, top_n: int = 1000, region: CacheRegion | str | None = None
    ) -> dict[str, Any]:
        """Save the hottest keys with their arguments into the backend, for a cold start.

        See :func:`dogpile_warm._warming.snapshot.save_hot_set` for the details and the result.
        """
        from ._warming.snapshot import save_hot_set  # snapshot builds on the engine

        return save_hot_set(self, top_n, region)

    def warm_from_snapshot(
        self,
        region: CacheRegion | str | None = None,
        rate_limit: float | None = None,
        top_n: int | None = None,
        on_result: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Warm the keys of the saved hot set now, hottest first, at most ``rate_limit`` a second.

        Same shape as :meth:`warm_critical_data`; see
        :func:`dogpile_warm._warming.snapshot.warm_from_snapshot`.
        """
        from ._warming.snapshot import warm_from_snapshot

        return warm_from_snapshot(self, region, rate_limit, top_n, on_result)

    def optimize_schedules(self) -> dict[str, Any]:
        """Set each task's interval from its accesses per minute over the last hour.

        > 1 per minute: 15 minutes; > 0.5: 30; > 0.1: 60; otherwise 120.
        """
        adjusted = []
        records = self._records()
        now = self.clock()
        for record in records:
            task = record.task
            frequency = self._usage.task_frequency(task.task_id, 60)
            interval = _interval_for(frequency)
            if interval != task.interval_minutes:
                adjusted.append(
                    {
                        "task_id": task.task_id,
                        "frequency": frequency,
                        "interval_minutes": interval,
                        "previous_interval_minutes": task.interval_minutes,
                    }
                )
                task.interval_minutes = interval
                record.next_run = (record.last_run or now) + interval * 60
        return {"tasks_optimized": len(records), "schedules_adjusted": adjusted}

    def get_performance(self) -> dict[str, Any]:
        """Warm-up and refresh figures, with the efficiency score (see DESIGN.md)."""
        self._drain()
        return self._usage.figures.snapshot()

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

        Gives every registered task ``interval_minutes`` as its interval (with
        pattern warming on, :meth:`optimize_schedules` then adapts them to how
        often each task is read). Critical tasks never warmed are warmed in
        the first cycle. Cycles run every ``check_every`` seconds and warm at
        most ``max_keys_per_cycle`` keys; :mod:`dogpile_warm._warming.scheduler` says
        what a cycle does. Calling it while running changes nothing: stop
        first to change the settings.

        A process forked while it runs (a gunicorn worker of a ``--preload``
        master) runs one of its own with the same settings, unless
        ``restart_after_fork`` is False (say, for a multiprocessing pool of
        workers that should not warm anything).
        """
        check_positive_number("interval_minutes", interval_minutes, " of minutes")
        for name, flag in (
            ("enable_pattern_warming", enable_pattern_warming),
            ("enable_critical_warming", enable_critical_warming),
            ("restart_after_fork", restart_after_fork),
        ):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be True or False, got {flag!r}")
        scheduler = Scheduler(
            self,
            pattern_warming=bool(enable_pattern_warming),
            critical_warming=bool(enable_critical_warming),
            check_every=check_every,
            max_keys_per_cycle=max_keys_per_cycle,
            restart_after_fork=bool(restart_after_fork),
        )
        with self._lock:
            if self._closed:
                raise WarmError("the engine is closed")
            if self._scheduler is not None and self._scheduler.running:
                return
            now = self.clock()
            for record in self._tasks.values():
                record.task.interval_minutes = interval_minutes
                record.next_run = (record.last_run or now) + interval_minutes * 60
            self._scheduler = scheduler
            scheduler.start()

    def stop(self, timeout: float = 5) -> None:
        """Stop the background scheduler, waiting up to ``timeout`` seconds. Idempotent.

        Keys not yet started are cancelled. A computation under way cannot be
        interrupted: if one outlasts ``timeout``, a warning is logged and its
        thread ends when it returns.
        """
        with self._lock:
            scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None:
            scheduler.stop(timeout)

    @property
    def running(self) -> bool:
        """Whether the background scheduler is running."""
        scheduler = self._scheduler
        return scheduler is not None and scheduler.running

    def run_scheduled_cycle(self) -> dict[str, Any]:
        """Run one scheduler cycle now in this thread, with the settings of :meth:`start`
        (or the defaults when not started); see :mod:`dogpile_warm._warming.scheduler`."""
        scheduler = self._scheduler
        if scheduler is None:
            with self._lock:
                scheduler = self._idle_scheduler
                if scheduler is None:
                    scheduler = self._idle_scheduler = Scheduler(self)
        return scheduler.run_cycle()

    def _forget_threads_after_fork(self) -> None:
        # The child has only the forking thread: the parent's scheduler thread
        # and pool do not exist here.
        scheduler, self._scheduler = self._scheduler, None
        self._idle_scheduler = None
        started = scheduler is not None and scheduler.started
        if started and scheduler.restart_after_fork and not self._closed:  # type: ignore[union-attr]
            self._forked_scheduler = scheduler

    def _restart_scheduler_after_fork(self) -> None:
        # A scheduler that ran in the parent runs again here, with the same
        # settings, so that every gunicorn worker keeps warming (a fleet still
        # runs each cycle once, through the claim).
        scheduler, self._forked_scheduler = self._forked_scheduler, None
        if scheduler is not None:
            self._scheduler = scheduler.copy()
            self._scheduler.start()
            log.info("restarted the warming scheduler in forked process %d", os.getpid())

    def get_stats(self) -> dict[str, Any]:
        """A snapshot of tasks, hits and misses (see DESIGN.md for the fields)."""
        self._drain()
        records = self._records()
        stores = self._regions.stores()
        health = [(s.health.name, s.health.figures()) for s in stores]
        return {
            "tasks": len(records),
            "critical_tasks": sum(1 for r in records if r.critical),
            "running": self.running,
            **self._usage.counters.snapshot(),
            # Every backend failure; then by kind (see dogpile_warm._core.health).
            "backend_errors": sum(
                h["unavailable"] + h["refused"] + h["unreadable"] for _, h in health
            ),
            "backend_unavailable": sum(h["unavailable"] for _, h in health),
            "values_refused": sum(h["refused"] for _, h in health),
            "values_unreadable": sum(h["unreadable"] for _, h in health),
            "backend_skipped": sum(h["skipped"] for _, h in health),
            "backends_down": sorted(name for name, h in health if h["open"]),
            "task_details": [r.details() for r in records],
            "scheduler": scheduler.figures() if (scheduler := self._scheduler) else None,
        }

    def close(self) -> None:
        """Stop the scheduler and the refresh pool (waiting for refreshes under way), and
        release the locks its regions still owe the backend (see
        :meth:`LeaseKeeper.settle <dogpile_warm._core.locks.LeaseKeeper.settle>`). Idempotent."""
        self.stop()
        with self._lock:
            self._closed = True
        self._refresher.close()
        lease_keeper().settle(self._regions.stores())


def _skip_reason(record: TaskRecord) -> str:
    """Why :meth:`CacheWarmingEngine._jobs_for` has no jobs for ``record``'s task."""
    from ._warming.snapshot import _unwarmable  # the reasons a snapshot gives, worded once

    reason = _unwarmable(record)
    if reason is not None:
        return reason
    assert record.source is not None  # _unwarmable explains tasks without one
    try:
        record.source.keys.bind((), {})
    except TypeError as exc:
        return f"needs arguments and has no warm_args: {exc}"
    return "warming cannot call it"


def _interval_for(accesses_per_minute: float) -> int:
    if accesses_per_minute > 1:
        return 15
    if accesses_per_minute > 0.5:
        return 30
    if accesses_per_minute > 0.1:
        return 60
    return 120


def _user_result(
    user_id: Any, skipped: bool, warmed: list[str], failed: list[str], duration_ms: float
) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "skipped": skipped,
        "keys_warmed": warmed,
        "failed": failed,
        "duration_ms": duration_ms,
    }
