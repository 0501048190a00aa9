"""What every warming and background refresh did: counted, signalled and logged here.

One place decides what an outcome costs the figures: the task's record
(runs, failures), the warming figures behind the efficiency score, the
``warmed`` / ``warm_failed`` signals and the log line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import signals
from ..errors import BackendError, describe_error

if TYPE_CHECKING:
    from .._core.batch import KeyResult
    from .._usage.usage import Usage
    from ..task import WarmingTask
    from .registry import TaskRegistry

__all__ = ["Outcomes"]

log = logging.getLogger(__name__)


class Outcomes:
    """Records the outcomes of one engine's warmings (thread-safe).

    ``sender`` is what signals about a value with no task (``warm_cache``)
    are sent as: the engine.
    """

    def __init__(
        self, registry: TaskRegistry, usage: Usage, clock: Callable[[], float], sender: Any
    ) -> None:
        self._registry = registry
        self._usage = usage
        self._clock = clock
        self._sender = sender

    def warmed(
        self,
        task: WarmingTask | None,
        result: KeyResult,
        error: BaseException | None,
        ttl: float,
        tags: frozenset[str],
    ) -> None:
        """One warmed key, final (stored, or failed with ``error``). ``task`` None: a
        ``warm_cache`` value."""
        self._count(task, result.key, result.success, result.duration_ms, ttl, tags)
        sender = task if task is not None else self._sender
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

    def refreshed(
        self,
        task: WarmingTask,
        key: str,
        duration_ms: float,
        stored: bool,
        ttl: float,
        tags: frozenset[str],
    ) -> None:
        """One background refresh that computed a value (``stored`` or not)."""
        self._count(task, key, stored, duration_ms, ttl, tags, refresh=True)

    def refresh_failed(
        self,
        task: WarmingTask,
        key: str,
        error: Exception,
        retry_in: float,
        ttl: float,
        tags: frozenset[str],
    ) -> None:
        """One background refresh whose computation raised ``error``."""
        self._count(task, key, False, 0.0, ttl, tags)
        log.warning(
            "background refresh of %r failed: %s; serving the cached value, next "
            "background attempt in %.3g s",
            key,
            describe_error(error),
            retry_in,
        )
        if signals.warm_failed.receivers:
            signals.warm_failed.send(task, key=key, error=error)

    def _count(
        self,
        task: WarmingTask | None,
        key: str,
        success: bool,
        duration_ms: float,
        ttl: float,
        tags: frozenset[str],
        refresh: bool = False,
    ) -> None:
        usage = self._usage
        usage.drain()  # reads before this warming count against the value it replaces
        record = self._registry.get(task.task_id) if task is not None else None
        if record is not None:
            record.record_run(success, duration_ms, self._clock())
        usage.figures.warmed(key, success, duration_ms, ttl, tags, refresh)
