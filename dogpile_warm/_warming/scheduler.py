"""The background scheduler: one daemon thread that keeps an engine's cache warm.

Every ``check_every`` seconds the thread runs one *cycle*:

1. Due tasks. A critical task is due at once if it was never warmed, then
   every ``interval_minutes`` of its own; other tasks are due on their
   interval only with pattern warming on and only if they were read during
   that interval (warming nobody reads only lowers the efficiency score).
2. Pattern warming. Among the hottest keys whose arguments were remembered
   from real calls, a key is warmed when its next read is expected (see
   :meth:`UsagePatternTracker.predict_next_access`) before the next cycle
   ends, and its value would by then be inside its refresh window
   (``refresh_ahead * ttl`` old; ttl without refresh-ahead) or is missing.
   Keys read several times per refresh window are left to refresh-ahead: one
   of their reads lands in the window and refreshes them in the background
   without anyone waiting, so warming them too would only recompute them
   more often.
   The warming takes the key's dogpile mutex without waiting: a key already
   being recomputed (by a caller or a refresh, in any process) is left alone.
3. With pattern warming, the interval policy
   (:meth:`~dogpile_warm._warming.registry.TaskRegistry.adapt_intervals`).

Resource limits: at most ``max_keys_per_cycle`` keys per cycle (due tasks
first, highest priority first, then the hottest keys); a key the scheduler
warmed is not warmed again for the length of its refresh window; a task
whose warming failed is retried after 30 s, doubling up to its interval;
intervals carry ``jitter`` (±10%) and each cycle starts at a random point in
the first fifth of its period, so a fleet does not spike together.

Fleet: when a region in use has a distributed lock (memcached, Redis), each
cycle is claimed through it, with a key per cycle that expires with the
region's ``lock_timeout``; the process that gets the claim runs the cycle
and the others skip it, so a dead process is simply never the claimant.
Each process ranks keys by its own reads.
"""

from __future__ import annotations

import functools
import logging
import math
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from .._core import forks
from .._core.batch import KeyResult, WriteBatch
from .._core.store import CacheStore, Entry
from .._core.validation import check_positive_int, check_positive_number
from ..reports import CycleReport, SchedulerFigures

if TYPE_CHECKING:
    from .._cached.cached import CachedFunction
    from .._usage.usage import Usage
    from .planner import WarmingPlanner
    from .registry import TaskRecord

__all__ = ["Scheduler"]

log = logging.getLogger(__name__)

# A task whose warming failed is retried after this long, doubling up to its interval.
_RETRY_BASE = 30.0
# Keys remembered as recently warmed / as seen with a creation time.
_MAX_REMEMBERED_KEYS = 100_000
# Keys read at least this many times per refresh window (on average) are left to
# refresh-ahead: with reads at random, every read missing the window happens
# about exp(-3), 5%, of the time. Measured on benchmarks/skewed_load.py: 4 cost
# 1.66x dogpile's recomputes for 5 waits in 33k calls; 1 cost 1.40x for 143; 3
# costs 1.53x for 12-18.
_READS_PER_WINDOW = 3
# Candidates looked at per key of budget: most hot keys are not due.
_CANDIDATES_PER_SLOT = 4

Job = Callable[[], KeyResult | None]


class Scheduler:
    """Runs an engine's warming cycles in one daemon thread plus a worker pool.

    ``planner`` knows the tasks and how to warm them, ``usage`` which keys
    are read, ``clock`` is the engine's. Created and driven by the engine's
    ``start`` / ``stop``. :meth:`run_cycle` runs one cycle in the calling
    thread (no claim), which is how tests drive it on a fake clock.
    """

    def __init__(
        self,
        planner: WarmingPlanner,
        usage: Usage,
        clock: Callable[[], float],
        *,
        pattern_warming: bool = True,
        critical_warming: bool = True,
        check_every: float = 1.0,
        max_keys_per_cycle: int = 100,
        jitter: float = 0.1,
        rng: random.Random | None = None,
        restart_after_fork: bool = True,
    ) -> None:
        self.planner = planner
        self.usage = usage
        self.clock = clock
        self.restart_after_fork = restart_after_fork
        self.pattern_warming = pattern_warming
        self.critical_warming = critical_warming
        self.check_every = check_positive_number("check_every", check_every, " of seconds")
        self.max_keys_per_cycle = check_positive_int("max_keys_per_cycle", max_keys_per_cycle)
        self.jitter = jitter
        self.rng = rng or random.Random()
        self.cycles = 0
        self.cycles_skipped = 0  # claimed by another process of the fleet
        self.cycle_errors = 0
        self.keys_prewarmed = 0
        self.last_cycle: float | None = None
        self._stop = threading.Event()
        self._cycle_lock = forks.new_lock()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        # key -> time.monotonic() of the scheduler's last warming of it
        self._warmed_at: OrderedDict[str, float] = OrderedDict()
        # key -> creation time (engine clock) last seen: a value only gets newer,
        # so the backend need not be asked again until this one is due.
        self._created: OrderedDict[str, float] = OrderedDict()

    def figures(self) -> SchedulerFigures:
        """What ``get_stats()["scheduler"]`` shows."""
        return {
            "cycles": self.cycles,
            "cycles_skipped": self.cycles_skipped,
            "cycle_errors": self.cycle_errors,
            "keys_prewarmed": self.keys_prewarmed,
            "last_cycle": self.last_cycle,
            "check_every": self.check_every,
        }

    def copy(self) -> Scheduler:
        """A new, stopped scheduler with the same settings (for a forked child)."""
        return Scheduler(
            self.planner,
            self.usage,
            self.clock,
            pattern_warming=self.pattern_warming,
            critical_warming=self.critical_warming,
            check_every=self.check_every,
            max_keys_per_cycle=self.max_keys_per_cycle,
            jitter=self.jitter,
            restart_after_fork=self.restart_after_fork,
        )

    # -- the thread ----------------------------------------------------------------
    @property
    def started(self) -> bool:
        """Whether :meth:`start` was called and :meth:`stop` was not (true in a forked
        child of a running scheduler, whose thread does not exist there)."""
        return self._thread is not None and not self._stop.is_set()

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive() and not self._stop.is_set()

    def start(self) -> None:
        self._pool = ThreadPoolExecutor(
            self.planner.max_workers, thread_name_prefix="dogpile_warm-scheduler-pool"
        )
        self._thread = threading.Thread(
            target=self._loop, name="dogpile_warm-scheduler", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float) -> bool:
        """Ask the thread to stop and wait up to ``timeout`` s; True when it has ended.

        Keys not yet started are cancelled; a computation under way cannot be
        interrupted, so the thread ends when it returns.
        """
        self._stop.set()
        pool, thread = self._pool, self._thread
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout)
        if thread.is_alive():
            log.warning(
                "the warming scheduler did not stop within %.3g s: a computation is "
                "still running; its thread ends when it returns",
                timeout,
            )
            return False
        return True

    def _loop(self) -> None:
        period = self.check_every
        next_at = time.time()  # the first cycle runs at once: warm before anyone asks
        try:
            while not self._stop.wait(max(0.0, next_at - time.time())):
                cycle = math.floor(time.time() / period)
                try:
                    if self._claim(cycle):
                        self.run_cycle()
                    else:
                        self.cycles_skipped += 1
                except Exception:
                    # Never let one bad cycle (a dead backend, a bug) end the thread.
                    self.cycle_errors += 1
                    log.exception("warming cycle failed")
                next_at = (cycle + 1 + self.rng.uniform(0.0, 0.2)) * period
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)

    def _claim(self, cycle: int) -> bool:
        """Whether this process runs ``cycle``: always, unless a fleet shares a distributed lock.

        The claim outlives the cycle's period (processes try it within the
        first fifth of it). A claim the backend cannot answer counts as won:
        warming here beats warming nowhere (see CacheStore.claim).
        """
        store = self._fleet_store()
        if store is None:
            return True
        name = f"dogpile_warm:cycle:{self.check_every:g}:{cycle}"
        return store.claim(name, max(1.0, 2 * self.check_every))

    def _fleet_store(self) -> CacheStore | None:
        """A store shared by a fleet (a distributed lock on memcached or Redis), if any."""
        for store in self.planner.stores_in_use():
            if store.can_claim and getattr(store.region.actual_backend, "distributed_lock", False):
                return store
        return None

    # -- one cycle ---------------------------------------------------------------------
    def run_cycle(self) -> CycleReport:
        """Run one cycle now, in this thread; return what it did.

        ``{"tasks_warmed": [task_id, ...], "keys_warmed": n, "keys_prewarmed": [key, ...]}``.
        Cycles never overlap: one asked for while the thread runs one waits for it.
        """
        with self._cycle_lock:
            return self._run_cycle()

    def _run_cycle(self) -> CycleReport:
        planner = self.planner
        now = self.clock()
        budget = self.max_keys_per_cycle
        due: list[tuple[TaskRecord, int]] = []
        jobs: list[Job] = []
        batch = WriteBatch()
        for record in planner.registry.records():
            if not self._due(record, now):
                continue
            try:
                task_jobs = planner.jobs_for(record)
            except Exception as exc:
                log.warning("cannot list the keys of task %r: %s", record.task.task_id, exc)
                self._reschedule(record, now, failed=True)
                continue
            if isinstance(task_jobs, str):  # e.g. per-user: warmed on login, not on a schedule
                self._reschedule(record, now, failed=False)
                continue
            if jobs and len(jobs) + len(task_jobs) > budget:
                break  # stays due; the next cycle takes it first
            due.append((record, len(task_jobs)))
            jobs.extend(functools.partial(job, batch) for job in task_jobs)
        outcomes = self._run(jobs)
        batch.flush()  # completes the results
        start = 0
        for record, count in due:
            results = outcomes[start : start + count]
            start += count
            failed = all(r is None or not r.success for r in results) if results else False
            self._reschedule(record, now, failed)
        prewarmed: list[str] = []
        if self.pattern_warming:
            prewarmed = self._prewarm(max(0, budget - len(jobs)))
            planner.adapt_intervals()
        self.cycles += 1
        self.keys_prewarmed += len(prewarmed)
        self.last_cycle = now
        return {
            "tasks_warmed": [record.task.task_id for record, _ in due],
            "keys_warmed": len(jobs),
            "keys_prewarmed": prewarmed,
        }

    def _due(self, record: TaskRecord, now: float) -> bool:
        if record.critical:
            if not self.critical_warming:
                return False
            if record.last_run is None:
                return True
        elif not self.pattern_warming or record.source is None:
            return False
        if record.next_run is not None and record.next_run > now:
            return False
        if record.critical:
            return True
        interval = record.interval_minutes
        return self.usage.task_frequency(record.task.task_id, interval) > 0

    def _reschedule(self, record: TaskRecord, now: float, failed: bool) -> None:
        interval = record.interval_minutes * 60.0
        if failed:
            record.consecutive_failures += 1
            delay = min(interval, _RETRY_BASE * 2.0 ** (record.consecutive_failures - 1))
        else:
            record.consecutive_failures = 0
            delay = interval * (1.0 + self.rng.uniform(-self.jitter, self.jitter))
        record.next_run = now + delay

    def _run(self, jobs: list[Job]) -> list[KeyResult | None]:
        """Run ``jobs`` on the pool (or here, without one); cancelled jobs give None."""
        pool = self._pool
        if pool is None or len(jobs) <= 1:
            return [None if self._stop.is_set() else job() for job in jobs]
        futures: list[Future[KeyResult | None]] = []
        try:
            for job in jobs:
                futures.append(pool.submit(job))
        except RuntimeError:  # the pool shut down: we are stopping
            pass
        results: list[KeyResult | None] = []
        for future in futures:
            try:
                results.append(future.result())
            except CancelledError:
                results.append(None)
        return results + [None] * (len(jobs) - len(futures))

    # -- pattern warming ---------------------------------------------------------------
    def _prewarm(self, budget: int) -> list[str]:
        """Warm the hot keys whose predicted next read would find them due or gone."""
        if budget <= 0:
            return []
        tracker = self.usage.tracker
        now = self.clock()
        # Until the next cycle has warmed: it starts within 1.2 periods (jitter),
        # and each value's own recompute time is added where it is known.
        horizon = 1.25 * self.check_every
        by_store: dict[int, tuple[CacheStore, list[tuple[str, CachedFunction, Job]]]] = {}
        considered = 0
        for key, _count in tracker.get_hot_keys(budget * _CANDIDATES_PER_SLOT):
            call = self.usage.calls.get(key)
            if call is None:
                continue
            cached, args, kwargs = call
            if cached.keys.skips_first or cached.task.task_id not in self.planner.registry:
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
        keys: list[str] = []
        jobs: list[Job] = []
        for store, items in by_store.values():
            entries = store.peek_many([key for key, _, _ in items])
            if entries is None:  # the backend does not answer: nothing to plan with
                continue
            for (key, cached, job), entry in zip(items, entries, strict=True):
                threshold = cached.ttl * (cached.refresh_ahead or 1.0)
                if entry is not None:
                    self._remember(self._created, key, entry.created)
                    if now + horizon + entry.cost - entry.created < threshold:
                        continue
                keys.append(key)
                jobs.append(job)
        warmed = []
        for key, result in zip(keys[:budget], self._run(jobs[:budget]), strict=True):
            if result is not None and result.success:
                self._remember(self._warmed_at, key, time.monotonic())
                warmed.append(key)
        return warmed

    def _may_warm(self, key: str, cached: CachedFunction, at: float, threshold: float) -> bool:
        """False when the key was warmed within its refresh window or is known not to be due."""
        warmed = self._warmed_at.get(key)
        window = cached.ttl * (1.0 - (cached.refresh_ahead or 0.8))
        if warmed is not None and time.monotonic() - warmed < window:
            return False
        created = self._created.get(key)
        return created is None or at - created >= threshold

    @staticmethod
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
    return lambda: cached.prewarm(lambda: fn(*args, **kwargs), key, needed)
