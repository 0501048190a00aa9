"""How a warm run goes: keys as jobs, run in order on worker threads, stored in batches.

A *job* warms one key: called with a :class:`~dogpile_warm._core.batch.WriteBatch`
it computes the value and hands it to the batch; its
:class:`~dogpile_warm._core.batch.KeyResult` completes once the batch is stored.
:func:`run_jobs` runs jobs highest priority first (in the order given), at
most ``max_workers`` at once, and :func:`report_jobs` turns their results
into the rows every warm method returns.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._core.batch import KeyResult, WriteBatch
from .._core.loops import loop_running_here
from ..errors import describe_error
from ..reports import ResultRow, SkippedTask, WarmReport

if TYPE_CHECKING:
    from .._cached.cached import CachedFunction
    from .registry import TaskRecord

__all__ = ["OnResult", "WarmJob", "bind_job", "report_jobs", "report_row", "row", "run_jobs"]

log = logging.getLogger(__name__)

# A warming of one key; given a WriteBatch, it stores its value with the batch.
WarmJob = Callable[[WriteBatch | None], KeyResult]
OnResult = Callable[[ResultRow], None]


def bind_job(
    source: CachedFunction,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    key: str,
) -> WarmJob:
    """The job that warms ``key`` of a decorated function by calling ``fn(*args, **kwargs)``."""
    return lambda batch: source.warm_key(lambda: fn(*args, **kwargs), key, batch)


def run_jobs(jobs: list[WarmJob], max_workers: int) -> list[KeyResult]:
    """Run ``jobs`` in order, at most ``max_workers`` at once; results in job order.

    Values are stored in batches (see :mod:`dogpile_warm._core.batch`); every
    result is final when this returns. Workers take the next job from one
    shared iterator (``next`` on it is atomic), so jobs start in order
    without a Future, a queue or a lock per job: with thousands of short
    warmings that bookkeeping would cost more than the warming. The workers
    are joined before this returns.
    """
    if not jobs:
        return []
    batch = WriteBatch()
    workers = min(max_workers, len(jobs))
    results: list[KeyResult | None] = [None] * len(jobs)
    order = iter(range(len(jobs)))

    def work() -> None:
        for i in order:
            results[i] = _run_job(jobs[i], batch)

    # In a thread running an event loop, a job computing an async def's value
    # cannot wait for it there: even a single job then gets a thread.
    if workers == 1 and loop_running_here() is None:
        work()
    else:
        # Each worker in a copy of the caller's context: a home loop set by an
        # awaited warm run reaches the computations (see _core.loops).
        threads = [
            threading.Thread(
                target=contextvars.copy_context().run,
                args=(work,),
                name=f"dogpile_warm-warm-{n}",
                daemon=True,
            )
            for n in range(workers)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    batch.flush()
    return [r for r in results if r is not None]


def report_jobs(
    jobs: list[tuple[TaskRecord, WarmJob]],
    rows: list[ResultRow],
    skipped: int,
    t0: float,
    max_workers: int,
    on_result: OnResult | None = None,
    *,
    skipped_tasks: list[SkippedTask] | None = None,
) -> WarmReport:
    """Run ``jobs`` and report them, after the ``rows`` already known, in the warm shape.

    ``{"succeeded", "failed", "skipped", "total_duration_ms", "results"}``;
    ``on_result`` gets each row once its key is stored (or failed).
    """
    if on_result is not None:
        jobs = [(record, _reporting(record, job, on_result)) for record, job in jobs]
    outcomes = run_jobs([job for _, job in jobs], max_workers)
    rows.extend(row(record, result) for (record, _), result in zip(jobs, outcomes, strict=True))
    succeeded = sum(1 for r in rows if r["success"])
    return {
        "succeeded": succeeded,
        "failed": len(rows) - succeeded,
        "skipped": skipped,
        "total_duration_ms": (time.perf_counter() - t0) * 1000.0,
        "results": rows,
        "skipped_tasks": skipped_tasks or [],
    }


def row(record: TaskRecord, result: KeyResult) -> ResultRow:
    """One entry of a warm report's ``results``."""
    return {
        "task_id": record.task.task_id,
        "key": result.key,
        "success": result.success,
        "duration_ms": result.duration_ms,
        "error": result.error,
    }


def _run_job(job: WarmJob, batch: WriteBatch | None) -> KeyResult:
    try:
        return job(batch)
    except Exception as exc:  # jobs report their own failures; this is a bug's safety net
        log.exception("warming job failed")
        return KeyResult("?", False, 0.0, describe_error(exc))


def report_row(on_result: OnResult, result_row: ResultRow) -> None:
    """Hand ``result_row`` to ``on_result``; a callback that raises is logged, never raised
    (a progress display must not fail a warming)."""
    try:
        on_result(result_row)
    except Exception:
        log.exception("on_result callback failed")


def _reporting(record: TaskRecord, job: WarmJob, on_result: OnResult) -> WarmJob:
    def report(result: KeyResult) -> None:
        report_row(on_result, row(record, result))

    def run(batch: WriteBatch | None) -> KeyResult:
        result = job(batch)
        result.when_final(report)  # when its batch is stored
        return result

    return run
