"""The shapes of what the engine reports: plain dicts, typed for checkers and readers.

Every report is a new dict the caller owns (a snapshot, never a live view).
``docs/contract.md`` says what each field means.
"""

from __future__ import annotations

from typing import Any, TypedDict

__all__ = [
    "AccessCounts",
    "BackendFigures",
    "CycleReport",
    "Performance",
    "ResultRow",
    "ScheduleChange",
    "ScheduleReport",
    "SchedulerFigures",
    "SkippedItem",
    "SkippedTask",
    "SnapshotSaved",
    "SnapshotWarmReport",
    "Stats",
    "TaskDetails",
    "UserWarmReport",
    "WarmReport",
]


class AccessCounts(TypedDict):
    """Reads of an engine's functions in this process (part of :class:`Stats`)."""

    hits: int
    misses: int
    hit_ratio: float
    stale_served: int


class ResultRow(TypedDict):
    """One warmed key of a warm run."""

    task_id: str
    key: str
    success: bool
    duration_ms: float
    error: str | None


class SkippedTask(TypedDict):
    """A task a warm run could not warm outside a call, and why."""

    task_id: str
    reason: str


class WarmReport(TypedDict):
    """What a warm run did: ``warm_critical_data``, ``warm_tasks``, ``warm_hot_keys``.

    ``skipped`` counts the tasks (or, for hot keys and snapshots, the keys) left out;
    ``skipped_tasks`` names the tasks among them, with the reason.
    """

    succeeded: int
    failed: int
    skipped: int
    total_duration_ms: float
    results: list[ResultRow]
    skipped_tasks: list[SkippedTask]


class SkippedItem(TypedDict):
    """A snapshot key that was not saved or not warmed, and why."""

    key: str
    task_id: str
    reason: str


class SnapshotWarmReport(WarmReport):
    """``warm_from_snapshot``: a warm run, and what the snapshot held."""

    found: bool
    saved_at: float | None
    skipped_items: list[SkippedItem]


class SnapshotSaved(TypedDict):
    """``save_hot_set``: what went into the snapshot."""

    saved: int
    skipped: list[SkippedItem]
    truncated: int
    bytes: int
    stored: bool
    key: str


class UserWarmReport(TypedDict):
    """``warm_user_data``: one user's preload."""

    user_id: Any
    skipped: bool
    keys_warmed: list[str]
    failed: list[str]
    duration_ms: float


class ScheduleChange(TypedDict):
    """One task whose interval the interval policy changed."""

    task_id: str
    frequency: float
    interval_minutes: float
    previous_interval_minutes: float


class ScheduleReport(TypedDict):
    """``optimize_schedules``."""

    tasks_optimized: int
    schedules_adjusted: list[ScheduleChange]


class TaskDetails(TypedDict):
    """One task in ``get_stats()["task_details"]``."""

    task_id: str
    name: str
    priority: int
    tags: list[str]
    critical: bool
    runs: int
    failures: int
    avg_duration_ms: float
    last_run: float | None
    next_run: float | None
    interval_minutes: float
    consecutive_failures: int


class SchedulerFigures(TypedDict):
    """``get_stats()["scheduler"]`` while a scheduler exists."""

    cycles: int
    cycles_skipped: int
    cycle_errors: int
    keys_prewarmed: int
    last_cycle: float | None
    check_every: float


class CycleReport(TypedDict):
    """``run_scheduled_cycle``: what one scheduler cycle did."""

    tasks_warmed: list[str]
    keys_warmed: int
    keys_prewarmed: list[str]
    keys_prewarm_scheduled: list[str]


class BackendFigures(TypedDict):
    """Backend failures of an engine's regions, by kind, and the regions being skipped
    (part of :class:`Stats`)."""

    backend_errors: int
    backend_unavailable: int
    values_refused: int
    values_unreadable: int
    backend_skipped: int
    backends_down: list[str]


class Stats(AccessCounts, BackendFigures):
    """``get_stats``: tasks, reads and backend health of one engine, in this process."""

    tasks: int
    critical_tasks: int
    running: bool
    task_details: list[TaskDetails]
    scheduler: SchedulerFigures | None


class Performance(TypedDict):
    """``get_performance``: warm-up and refresh figures, and the efficiency score."""

    total_warmings: int
    successful: int
    failed: int
    avg_duration_ms: float
    fastest_ms: float
    slowest_ms: float
    p95_ms: float
    efficiency_score: float | None
    refreshes: int  # background refreshes stored
    wasted_refreshes: int  # refreshed values replaced, invalidated or expired unread
    wasted_refresh_share: float | None  # of the refreshed values whose fate is known
