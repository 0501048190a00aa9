"""Starting, stopping and carrying across a fork an engine's background scheduler.

:class:`SchedulerControl` holds the one scheduler an engine runs (and an
idle one for ``run_scheduled_cycle()`` while none runs). In a forked child
the parent's scheduler thread does not exist: the control forgets it first,
then, once every other part has been reset (see :mod:`dogpile_warm._core.forks`),
starts a copy with the same settings, unless told not to.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from .._core import forks
from ..errors import WarmError
from ..reports import CycleReport, SchedulerFigures
from .scheduler import Scheduler

__all__ = ["SchedulerControl"]

log = logging.getLogger(__name__)


class SchedulerControl:
    """The scheduler of one engine: ``new_scheduler(**settings)`` builds one (thread-safe)."""

    def __init__(self, new_scheduler: Callable[..., Scheduler]) -> None:
        self._new_scheduler = new_scheduler
        self._lock = forks.new_lock()
        self._scheduler: Scheduler | None = None
        self._idle: Scheduler | None = None
        self._forked: Scheduler | None = None
        self.closed = False
        forks.after_fork_in_child(self, SchedulerControl._forget_threads_after_fork)
        forks.after_fork_in_child(self, SchedulerControl._restart_after_fork, restart=True)

    @property
    def running(self) -> bool:
        scheduler = self._scheduler
        return scheduler is not None and scheduler.running

    def start(self, before_start: Callable[[], None], **settings: object) -> None:
        """Start a scheduler with ``settings`` unless one runs; ``before_start()`` runs
        first, under the lock, only when one is started."""
        scheduler = self._new_scheduler(**settings)  # bad settings raise here
        with self._lock:
            if self.closed:
                raise WarmError("the engine is closed")
            if self._scheduler is not None and self._scheduler.running:
                return
            before_start()
            self._scheduler = scheduler
            scheduler.start()

    def stop(self, timeout: float) -> None:
        with self._lock:
            scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None:
            scheduler.stop(timeout)

    def close(self) -> None:
        self.stop(5)
        with self._lock:
            self.closed = True

    def run_cycle(self) -> CycleReport:
        """One cycle now, in this thread, with the running scheduler's settings (or the
        defaults)."""
        scheduler = self._scheduler
        if scheduler is None:
            with self._lock:
                scheduler = self._idle
                if scheduler is None:
                    scheduler = self._idle = self._new_scheduler()
        return scheduler.run_cycle()

    def figures(self) -> SchedulerFigures | None:
        scheduler = self._scheduler
        return scheduler.figures() if scheduler is not None else None

    def _forget_threads_after_fork(self) -> None:
        # The child has only the forking thread: the parent's scheduler thread
        # and pool do not exist here.
        scheduler, self._scheduler = self._scheduler, None
        self._idle = None
        if (
            scheduler is not None
            and scheduler.started
            and scheduler.restart_after_fork
            and not self.closed
        ):
            self._forked = scheduler

    def _restart_after_fork(self) -> None:
        # A scheduler that ran in the parent runs again here, with the same
        # settings, so that every gunicorn worker keeps warming (a fleet still
        # runs each cycle once, through the claim).
        scheduler, self._forked = self._forked, None
        if scheduler is not None:
            self._scheduler = scheduler.copy()
            self._scheduler.start()
            log.info("restarted the warming scheduler in forked process %d", os.getpid())
