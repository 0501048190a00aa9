"""The figures the engine keeps: hit and miss counts, and per-task run records.

All mutation happens under one lock per object; the figures are read as
snapshots (plain dicts), never as live structures.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .decorator import CachedFunction
    from .task import WarmingTask

__all__ = ["AccessCounters", "TaskRecord"]


class AccessCounters:
    """Hits and misses of every decorated function of an engine (thread-safe)."""

    def __init__(self) -> None:
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()

    def record(self, hit: bool) -> None:
        with self._lock:
            if hit:
                self.hits += 1
            else:
                self.misses += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            hits, misses = self.hits, self.misses
        total = hits + misses
        return {"hits": hits, "misses": misses, "hit_ratio": hits / total if total else 0.0}

    def reset(self) -> None:
        with self._lock:
            self.hits = self.misses = 0


@dataclass(eq=False)
class TaskRecord:
    """A registered task with what the engine has seen of it."""

    task: WarmingTask
    critical: bool
    source: CachedFunction | None = None  # set for tasks made by @warmable
    runs: int = 0
    failures: int = 0
    total_duration_ms: float = 0.0
    last_run: float | None = None
    next_run: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record_run(self, success: bool, duration_ms: float, now: float) -> None:
        with self._lock:
            self.runs += 1
            if not success:
                self.failures += 1
            self.total_duration_ms += duration_ms
            self.last_run = now

    def details(self) -> dict[str, Any]:
        task = self.task
        with self._lock:
            runs, failures, total = self.runs, self.failures, self.total_duration_ms
            last_run, next_run = self.last_run, self.next_run
        return {
            "task_id": task.task_id,
            "name": task.name,
            "priority": task.priority,
            "tags": sorted(task.tags),
            "critical": self.critical,
            "runs": runs,
            "failures": failures,
            "avg_duration_ms": total / runs if runs else 0.0,
            "last_run": last_run,
            "next_run": next_run,
            "interval_minutes": task.interval_minutes,
        }
