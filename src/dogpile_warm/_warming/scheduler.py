"""The background scheduler: one daemon thread that keeps an engine's cache warm.

Every ``check_every`` seconds the thread runs one *cycle*:

1. Due tasks. A critical task is due at once if it was never warmed, then
   every ``interval_minutes`` of its own; other tasks are due on their
   interval only with pattern warming on and only if they were read during
   that interval (warming nobody reads only lowers the efficiency score).
2. Pattern warming (:mod:`dogpile_warm._warming.prewarm`): the hot keys whose
   next read is expected before the next cycle ends and would find their
   value due for refresh, or gone.
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
and the others skip it, so a dead process is simply never the claimant; a
claim the backend cannot answer is not won.
Each process ranks keys by its own reads.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import random
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from .._core import forks
from .._core.batch import KeyResult, WriteBatch
from .._core.validation import check_positive_int, check_positive_number
from ..reports import CycleReport, SchedulerFigures
from . import fleet
from .prewarm import PatternWarmer

if TYPE_CHECKING:
    from .._usage.usage import Usage
    from .planner import WarmingPlanner
    from .registry import TaskRecord

__all__ = ["Scheduler"]

log = logging.getLogger(__name__)

# A task whose warming failed is retried after this long, doubling up to its interval.
_RETRY_BASE = 30.0

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
        self._figures_lock = forks.new_lock()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._pattern = PatternWarmer(usage, planner.registry, clock)

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
        _load_the_resolver()
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
        """Whether this process runs ``cycle``: always, unless a fleet shares a distributed
        lock (see :mod:`dogpile_warm._warming.fleet`). The claim outlives the cycle's
        period (processes try it within the first fifth of it)."""
        store = fleet.fleet_store(self.planner.stores_in_use())
        if store is None:
            return True
        name = f"dogpile_warm:cycle:{self.check_every:g}:{cycle}"
        return fleet.claim(store, name, max(1.0, 2 * self.check_every))

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
            # Claimed only once it is sure to run in this cycle.
            unclaimed = planner.claim_warming(record)
            if unclaimed is not None:  # another process warmed it, or the backend is out
                if unclaimed == fleet.WARMED_ELSEWHERE:
                    record.warmed_elsewhere(now)
                self._reschedule(record, now, failed=unclaimed != fleet.WARMED_ELSEWHERE)
                continue
            due.append((record, len(task_jobs)))
            jobs.extend(functools.partial(job, batch) for job in task_jobs)
        outcomes = self._run(jobs)
        batch.flush()  # completes the results
        start = 0
        for record, count in due:
            results = outcomes[start : start + count]
            start += count
            failed = all(r is None or not r.success for r in results) if results else False
            if failed:
                planner.unclaim(record)  # nothing stored: another process may try
            self._reschedule(record, now, failed)
        prewarmed: list[str] = []
        scheduled: list[str] = []
        if self.pattern_warming:
            prewarmed, scheduled = self._prewarm(max(0, budget - len(jobs)))
            planner.adapt_intervals()
        self.cycles += 1
        with self._figures_lock:
            self.keys_prewarmed += len(prewarmed)
        self.last_cycle = now
        return {
            "tasks_warmed": [record.task.task_id for record, _ in due],
            "keys_warmed": len(jobs),
            "keys_prewarmed": prewarmed,
            "keys_prewarm_scheduled": scheduled,
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
    def _prewarm(self, budget: int) -> tuple[list[str], list[str]]:
        """Warm the hot keys whose value would expire before the next cycle, or is gone:
        the keys warmed now, and those handed to the refresh timer for a later moment."""
        if budget <= 0:
            return [], []
        # Until the next cycle has warmed: it starts within 1.2 periods (jitter).
        planned = self._pattern.plan(budget, horizon=1.25 * self.check_every)[:budget]
        now = [plan for plan in planned if plan.delay <= 0]
        later = []
        for plan in planned:
            if plan.delay > 0 and plan.refresher.submit(
                plan.pending, functools.partial(self._prewarm_later, plan.key, plan.job), plan.delay
            ):
                self._pattern.warmed(plan.key)  # planned: not again in the cycles till then
                later.append(plan.key)
        warmed = []
        for plan, result in zip(now, self._run([plan.job for plan in now]), strict=True):
            if result is not None and result.success:
                self._pattern.warmed(plan.key)
                warmed.append(plan.key)
        return warmed, later

    def _prewarm_later(self, key: str, job: Job) -> None:
        """A pattern warming whose time came, in a refresh thread."""
        result = job()
        if result is not None and result.success:
            self._pattern.warmed(key)
            with self._figures_lock:
                self.keys_prewarmed += 1


def _load_the_resolver() -> None:
    """Resolve a name once in the calling thread, before the scheduler's thread makes the
    process's first connection: the C library loads its resolver modules on first use,
    under locks that a process forked meanwhile (a gunicorn worker) would inherit held,
    and then hang in its own first lookup."""
    with contextlib.suppress(OSError):  # no resolver at all: nothing to hang on
        socket.getaddrinfo("localhost", None)
