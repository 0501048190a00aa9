"""Warm runs on Celery workers (the ``celery`` extra).

An application hands its warm runs to a fleet of Celery workers instead of
one process's threads::

    from celery import Celery
    from dogpile_warm.celery import CeleryWarming

    app = Celery("shop", broker="redis://...", backend="redis://...")
    warming = CeleryWarming(app)  # registers the task "dogpile_warm.warm_keys" on app

    report = warming.warm_critical_data()  # in any process of the application

Workers run ``celery -A shop worker``: they import the application's module,
so the same ``@warmable`` functions and tasks are registered there, and each
key is computed and stored through them, under the key's lock (one
computation per key across the fleet, where the region has a distributed
lock). A job is a task id, the call's arguments as text in the region's own
serializer (read back, they must give the same key), and the key. The caller
waits for the results and returns them in the shape of
``CacheWarmingEngine.warm_critical_data``'s report; they also count in its
own figures and signals (``warmed``, ``warm_failed``).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterable
from typing import Any

from celery import Celery, group

from ._core.batch import KeyResult
from ._core.tags import normalize_tags
from ._core.validation import check_positive_int, check_positive_number
from ._warming.call_codec import codec_of, decode_call, encode_call
from ._warming.planner import calls_to_warm
from ._warming.registry import TaskRecord
from .default import get_warming_engine
from .engine import CacheWarmingEngine
from .errors import WarmError, describe_error
from .reports import ResultRow, SkippedTask, WarmReport

__all__ = ["TASK_NAME", "CeleryWarming"]

TASK_NAME = "dogpile_warm.warm_keys"

Job = tuple[str, str, str]  # (task id, the call's arguments as text, key)

_IN_PROCESS = (
    "not sent to the workers: its region keeps values in each process's memory, where "
    "a worker's would never reach this process"
)


class CeleryWarming:
    """Warm runs of an engine's tasks, computed by ``app``'s Celery workers.

    ``engine``: the engine whose tasks are warmed, in the caller and in the
    workers alike (None: the process's default engine). Keys go to the
    workers ``batch_size`` at a time, on ``queue`` (None: Celery's default);
    a warm run waits at most ``timeout`` seconds for them. Registers the task
    :data:`TASK_NAME` on ``app`` (one ``CeleryWarming`` per app).
    """

    def __init__(
        self,
        app: Celery,
        *,
        engine: CacheWarmingEngine | None = None,
        batch_size: int = 50,
        timeout: float = 600.0,
        queue: str | None = None,
    ) -> None:
        if engine is not None and not isinstance(engine, CacheWarmingEngine):
            raise TypeError(f"engine must be a CacheWarmingEngine or None, got {engine!r}")
        self.app = app
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.timeout = check_positive_number("timeout", timeout, " of seconds")
        self.queue = queue
        self._engine = engine

        def warm_keys(jobs: list[list[str]]) -> list[dict[str, Any]]:
            return self.warm_keys(jobs)

        self.task = app.task(name=TASK_NAME)(warm_keys)

    @property
    def engine(self) -> CacheWarmingEngine:
        return self._engine if self._engine is not None else get_warming_engine()

    # -- in the caller ---------------------------------------------------------------
    def warm_critical_data(self) -> WarmReport:
        """Every critical task's keys, computed by the workers; the warm report."""
        return self.warm_records([r for r in self.engine.registry.records() if r.critical])

    def warm_tasks(
        self, tags: Iterable[str] | str | None = None, *, critical_only: bool = False
    ) -> WarmReport:
        """As ``CacheWarmingEngine.warm_tasks``, computed by the workers."""
        wanted = normalize_tags(tags) if tags is not None else None
        return self.warm_records(
            [
                r
                for r in self.engine.registry.records()
                if (not critical_only or r.critical) and (wanted is None or r.task.tags & wanted)
            ]
        )

    def warm_records(self, records: list[TaskRecord]) -> WarmReport:
        """Send ``records``' keys to the workers, wait for them, and report every key."""
        t0 = time.perf_counter()
        jobs, rows, skipped = self._plan(records)
        batches = [jobs[i : i + self.batch_size] for i in range(0, len(jobs), self.batch_size)]
        if batches:
            signatures = [self.task.s(batch) for batch in batches]
            options = {"queue": self.queue} if self.queue else {}
            pending = group(signatures).apply_async(**options)
            deadline = time.monotonic() + self.timeout
            for batch, result in zip(batches, pending.results, strict=True):
                try:
                    answer = result.get(
                        timeout=max(0.001, deadline - time.monotonic()), propagate=False
                    )
                except Exception as exc:  # this batch timed out, or the backend failed
                    result.revoke()  # not started yet: never; under way: it may still store
                    answer = exc
                rows.extend(self._rows(batch, answer))
        self._count(rows)
        succeeded = sum(1 for r in rows if r["success"])
        return {
            "succeeded": succeeded,
            "failed": len(rows) - succeeded,
            "skipped": len(skipped),
            "total_duration_ms": (time.perf_counter() - t0) * 1000.0,
            "results": rows,
            "skipped_tasks": skipped,
        }

    def _plan(
        self, records: list[TaskRecord]
    ) -> tuple[list[Job], list[ResultRow], list[SkippedTask]]:
        """The jobs for ``records``, the rows of keys that cannot be sent, the skipped tasks."""
        jobs: list[Job] = []
        rows: list[ResultRow] = []
        skipped: list[SkippedTask] = []
        for record in records:
            task_id, source = record.task.task_id, record.source
            if source is None:
                region = self.engine.regions.store_for(record.task.region)
                if region.blocking:
                    jobs.append((task_id, "", record.task.cache_key))
                else:
                    rows.append(_row(task_id, record.task.cache_key, False, 0.0, _IN_PROCESS))
                continue
            try:
                calls = calls_to_warm(source)
            except Exception as exc:  # a warm_args callable that raised
                rows.append(_row(task_id, task_id, False, 0.0, describe_error(exc)))
                continue
            if isinstance(calls, str):
                skipped.append({"task_id": task_id, "reason": calls})
                continue
            store = source.store()
            if not store.blocking:  # dogpile's memory backend: each process has its own
                rows.extend(
                    _row(task_id, source.key_for(args, kwargs), False, 0.0, _IN_PROCESS)
                    for args, kwargs in calls
                )
                continue
            codec = codec_of(store.region)
            for args, kwargs in calls:
                key = source.key_for(args, kwargs)
                encoded, reason = encode_call(codec, source, args, kwargs, key)
                if encoded is None:
                    rows.append(
                        _row(task_id, key, False, 0.0, f"not sent to the workers: {reason}")
                    )
                else:
                    jobs.append((task_id, encoded, key))
        return jobs, rows, skipped

    def _rows(self, batch: list[Job], result: Any) -> list[ResultRow]:
        """A batch's rows from its workers' answer (a failure of the batch fails each key)."""
        if isinstance(result, list) and len(result) == len(batch):
            return [_row(**row) for row in result]
        error = describe_error(result) if isinstance(result, BaseException) else repr(result)
        return [
            _row(task_id, key, False, 0.0, f"worker failed: {error}") for task_id, _, key in batch
        ]

    def _count(self, rows: list[ResultRow]) -> None:
        """Report the workers' results in this process's figures and signals, as a warm
        run here would."""
        engine = self.engine
        for row in rows:
            record = engine.registry.get(row["task_id"])
            if record is None:
                continue
            result = KeyResult(row["key"], row["success"], row["duration_ms"], row["error"])
            error = None if row["success"] else WarmError(row["error"] or "failed")
            task = record.task
            engine.outcomes.warmed(task, result, error, task.ttl, task.tags)

    # -- in a worker -----------------------------------------------------------------
    def warm_keys(self, jobs: list[list[str]]) -> list[dict[str, Any]]:
        """The Celery task: compute and store each job's key; one row per job, in order."""
        engine = self.engine
        return [
            dict(self._warm_one(engine, task_id, encoded, key)) for task_id, encoded, key in jobs
        ]

    def _warm_one(
        self, engine: CacheWarmingEngine, task_id: str, encoded: str, key: str
    ) -> ResultRow:
        record = engine.registry.get(task_id)
        if record is None:
            return _row(
                task_id,
                key,
                False,
                0.0,
                f"task {task_id!r} is not registered in this worker: does the worker import "
                "the application's module?",
            )
        source = record.source
        if source is None:
            jobs = engine.planner.jobs_for(record)
            assert not isinstance(jobs, str)  # a plain task always has its one key
            result = jobs[0](None)
            return _row(task_id, result.key, result.success, result.duration_ms, result.error)
        loads = codec_of(source.store().region)[1]
        call, reason = decode_call(loads, base64.b64decode(encoded), source, key)
        if call is None:
            return _row(task_id, key, False, 0.0, reason)
        args, kwargs = call
        fn = source.fn
        result = source.warm_key(lambda: fn(*args, **kwargs), key)
        return _row(task_id, key, result.success, result.duration_ms, result.error)


def _row(task_id: str, key: str, success: bool, duration_ms: float, error: str | None) -> ResultRow:
    return {
        "task_id": task_id,
        "key": key,
        "success": success,
        "duration_ms": duration_ms,
        "error": error,
    }
