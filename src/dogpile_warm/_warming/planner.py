"""From tasks to warm jobs: the one way every kind of task becomes keys to compute.

A plain :class:`~dogpile_warm.task.WarmingTask` warms its ``cache_key``; a
``@warmable`` function warms one key per argument set (none for a function
that needs arguments and has no ``warm_args``); a per-user function warms one
key per user, on login; a hot key warms with the arguments remembered from a
real call. Each job computes and stores through the function's (or task's)
:class:`~dogpile_warm._cached.computation.Computation`, and
:mod:`dogpile_warm._warming.runs` runs the jobs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .._cached.computation import Computation
from .._core.batch import KeyResult
from .._core.regions import RegionRegistry
from .._core.store import CacheStore
from ..errors import describe_error
from ..reports import ScheduleReport, SkippedTask, WarmReport
from . import fleet
from .runs import OnResult, WarmJob, bind_job, report_jobs, report_row, row, run_jobs

if TYPE_CHECKING:
    from .._cached.cached import CachedFunction
    from .._usage.usage import Usage
    from ..task import WarmingTask
    from .outcomes import Outcomes
    from .registry import TaskRecord, TaskRegistry

__all__ = ["METHOD", "PER_USER", "WARMED_ELSEWHERE", "WarmingPlanner", "calls_to_warm"]

log = logging.getLogger(__name__)

Call = tuple[tuple[Any, ...], dict[str, Any]]


class WarmingPlanner:
    """Plans and runs the warm runs of one engine; at most ``max_workers`` keys at once."""

    def __init__(
        self,
        registry: TaskRegistry,
        regions: RegionRegistry,
        usage: Usage,
        outcomes: Outcomes,
        clock: Callable[[], float],
        max_workers: int,
    ) -> None:
        self.registry = registry
        self.max_workers = max_workers
        self._regions = regions
        self._usage = usage
        self._outcomes = outcomes
        self._clock = clock

    def stores_in_use(self) -> list[CacheStore]:
        """The stores of the default region and of every region a task names."""
        return self._regions.stores_in_use(self.registry.regions())

    def per_user_stores(self) -> list[CacheStore]:
        """The stores of the functions a login warms."""
        return [
            r.source.store()
            for r in self.registry.records()
            if r.source is not None and r.source.user_arg is not None
        ]

    def adapt_intervals(self) -> ScheduleReport:
        """Set each task's interval from its reads per minute over the last hour."""
        task_frequency = self._usage.task_frequency
        return self.registry.adapt_intervals(lambda task_id: task_frequency(task_id, 60))

    def computation(
        self, name: str, ttl: float, tags: frozenset[str], task: WarmingTask | None
    ) -> Computation:
        """How a plain task's (or a ``warm_cache`` value's) key is computed and stored: it
        owns no key (see :class:`Computation`)."""
        return Computation(name, ttl, tags, self._clock, self._outcomes, task, owns_key=False)

    def jobs_for(self, record: TaskRecord) -> list[WarmJob] | str:
        """The keys a warming of ``record`` computes, as jobs; or, when it cannot be warmed
        outside a call (per-user functions, methods, functions needing arguments), why."""
        source = record.source
        if source is None:
            task = record.task
            store = self._regions.store_for(task.region)
            computation = self.computation(task.task_id, task.ttl, task.tags, task)
            key, compute = task.cache_key, task.compute_fn
            return [lambda batch: computation.warm(store, key, compute, batch)]
        calls = calls_to_warm(source)
        if isinstance(calls, str):
            return calls
        return [
            bind_job(source, source.fn, args, kwargs, source.key_for(args, kwargs))
            for args, kwargs in calls
        ]

    def claim_warming(self, record: TaskRecord) -> str | None:
        """None when this process warms ``record`` now: always on its own; in a fleet,
        unless another process did within the task's interval or the claim cannot be
        made (the reason is returned; see :mod:`.fleet`)."""
        held = self._claim_of(record)
        return None if held is None else self._claim(record, held)

    def unclaim(self, record: TaskRecord) -> None:
        """Give back this process's claim on warming ``record`` (its warming stored nothing)."""
        held = self._claim_of(record)
        if held is not None:
            fleet.forget(*held)

    def _claim_of(self, record: TaskRecord) -> tuple[CacheStore, str] | None:
        """Where, and under what name, ``record``'s warming is claimed: in the region its
        values live in, when the fleet shares it; None when they live in this process
        (this process warms them)."""
        source = record.source
        store = (
            source.store() if source is not None else self._regions.store_for(record.task.region)
        )
        return (store, fleet.task_claim(record.task.task_id)) if fleet.is_shared(store) else None

    def _claim(self, record: TaskRecord, held: tuple[CacheStore, str]) -> str | None:
        # Less than the interval: the claimant's own next scheduled run (jitter
        # included) finds the claim gone, and warms again in time.
        seconds = _FLEET_SHARE * record.interval_minutes * 60
        return fleet.claim_unit(*held, seconds)

    def warm_records(
        self, records: list[TaskRecord], on_result: OnResult | None = None, *, claim: bool = False
    ) -> WarmReport:
        """Warm ``records``' keys now, in order, and report them (see :func:`report_jobs`);
        with ``claim``, each record once per fleet and interval (:meth:`claim_warming`)."""
        t0 = time.perf_counter()
        jobs: list[tuple[TaskRecord, WarmJob]] = []
        skipped: list[SkippedTask] = []
        failed = []
        claims = fleet.Held()
        for record in records:
            held = self._claim_of(record) if claim else None
            if held is not None:
                reason = self._claim(record, held)
                if reason is not None:
                    skipped.append({"task_id": record.task.task_id, "reason": reason})
                    continue
                claims.hold(record.task.task_id, *held)
            try:
                task_jobs = self.jobs_for(record)
            except Exception as exc:  # e.g. a warm_args callable that raised
                log.warning("cannot list the keys of task %r: %s", record.task.task_id, exc)
                failed.append(
                    row(record, KeyResult(record.task.task_id, False, 0.0, describe_error(exc)))
                )
                continue
            if isinstance(task_jobs, str):
                skipped.append({"task_id": record.task.task_id, "reason": task_jobs})
                continue
            jobs.extend((record, job) for job in task_jobs)
        if on_result is not None:
            for failure in failed:
                report_row(on_result, failure)
        report = report_jobs(
            jobs, failed, len(skipped), t0, self.max_workers, on_result, skipped_tasks=skipped
        )
        claims.give_back(report["results"])  # a task that stored nothing: unclaimed
        return report

    def warm_user(self, user_id: Any, preload_forms: bool) -> list[KeyResult]:
        """Warm every per-user function for ``user_id`` now (``preload_forms=False``: not
        those tagged "forms"); the final result of each key."""
        jobs: list[WarmJob] = []
        for record in self.registry.records():
            source = record.source
            if source is None or source.user_arg is None or source.keys.skips_first:
                continue
            if not preload_forms and "forms" in record.task.tags:
                continue
            kwargs = {source.user_arg: user_id}
            jobs.append(bind_job(source, source.fn, (), kwargs, source.key_for((), kwargs)))
        return run_jobs(jobs, self.max_workers)

    def warm_hot_keys(self, top_n: int) -> WarmReport:
        """Recompute the ``top_n`` hottest keys with their remembered arguments; keys whose
        arguments are not remembered, that need an instance, or that another process of
        the fleet warmed within 80% of their ttl, count as skipped."""
        t0 = time.perf_counter()
        jobs: list[tuple[TaskRecord, WarmJob]] = []
        skipped = 0
        claims = fleet.Held()
        for key, _count in self._usage.tracker.get_hot_keys(top_n):
            call = self._usage.calls.get(key)
            record = self.registry.get(call[0].task.task_id) if call else None
            if call is None or record is None or call[0].keys.skips_first:
                skipped += 1
                continue
            if claims.key(call[0].store(), key, record.task.ttl):
                skipped += 1  # another process of the fleet warmed it, or may have
                continue
            cached, args, kwargs = call
            jobs.append((record, bind_job(cached, cached.fn, args, kwargs, key)))
        report = report_jobs(jobs, [], skipped, t0, self.max_workers)
        claims.give_back(report["results"])  # a key that was not stored: unclaimed
        return report


PER_USER = "per-user function: warm_user_data warms it on login"
WARMED_ELSEWHERE = fleet.WARMED_ELSEWHERE
# The share of a task's interval during which one process's warming stands for the fleet's.
_FLEET_SHARE = 0.8
METHOD = "method: warming has no instance to call it on"


def calls_to_warm(source: CachedFunction) -> list[Call] | str:
    """The argument sets warming computes for ``source``, or why warming cannot call it
    (a per-user function waits for its user; a method needs an instance; required
    arguments need ``warm_args``)."""
    if source.user_arg is not None:
        return PER_USER
    if source.keys.skips_first:
        return METHOD
    warm_args = source.warm_args
    if warm_args is None:
        try:
            source.keys.bind((), {})
        except TypeError as exc:
            return f"needs arguments and has no warm_args: {exc}"
        return [((), {})]
    spec = warm_args() if callable(warm_args) else warm_args
    return [_as_call(item, source.name) for item in spec]


def _as_call(item: Any, name: str) -> Call:
    if isinstance(item, Mapping):
        return (), dict(item)
    if isinstance(item, tuple):
        return item, {}
    raise TypeError(f"warm_args of {name} must hold tuples or dicts, got {item!r}")
