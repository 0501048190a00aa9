"""The parts of :mod:`dogpile_warm.contrib.prometheus` read at scrape time: the engine's
figures as metric families, and the cap on label values."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from .._core import forks
from ..engine import CacheWarmingEngine

__all__ = ["OVERFLOW_LABEL", "EngineCollector", "LabelCap"]

OVERFLOW_LABEL = "other"
"""The label shared by every task (or tag) beyond the cap."""


# Label of dogpile_warm_backend_failures_total -> its get_stats() field.
_FAILURE_KINDS = (
    ("unavailable", "backend_unavailable"),
    ("refused", "values_refused"),
    ("unreadable", "values_unreadable"),
)


class LabelCap:
    """Hands out at most ``limit`` distinct label values; later values get ``OVERFLOW_LABEL``.

    Values beyond the cap are not remembered, so memory stays bounded too.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._seen: dict[str, str] = {}
        self._lock = forks.new_lock()

    def __call__(self, value: str) -> str:
        label = self._seen.get(value)
        if label is not None:
            return label
        if len(self._seen) >= self.limit:
            return OVERFLOW_LABEL
        with self._lock:
            if value not in self._seen and len(self._seen) < self.limit:
                self._seen[value] = value
            return self._seen.get(value, OVERFLOW_LABEL)


class EngineCollector:
    """The figures read from the engine at scrape time (a prometheus custom collector)."""

    def __init__(self, engine: CacheWarmingEngine, prefix: str, task_label: LabelCap) -> None:
        self.engine = engine
        self.prefix = prefix
        self.task_label = task_label

    def describe(self) -> Iterator[Metric]:
        # Lets the registry check names without calling the engine at registration.
        return self._families(None, None)

    def collect(self) -> Iterator[Metric]:
        return self._families(self.engine.get_stats(), self.engine.get_performance())

    def _families(
        self, stats: Mapping[str, Any] | None, performance: Mapping[str, Any] | None
    ) -> Iterator[Metric]:
        """The metric families, filled from ``stats`` and ``performance`` when given."""
        p = self.prefix
        efficiency = GaugeMetricFamily(
            f"{p}efficiency_score",
            "Share (0-100) of warmed values read before they were replaced, "
            "invalidated or expired; absent until one's fate is known.",
        )
        hit_ratio = GaugeMetricFamily(
            f"{p}hit_ratio", "Hits / (hits + misses) of the engine's functions."
        )
        tasks = GaugeMetricFamily(f"{p}tasks", "Registered warming tasks.")
        critical = GaugeMetricFamily(f"{p}critical_tasks", "Registered critical tasks.")
        running = GaugeMetricFamily(f"{p}running", "1 while the background scheduler runs.")
        backend_errors = CounterMetricFamily(f"{p}backend_errors", "Failed backend operations.")
        backend_failures = CounterMetricFamily(
            f"{p}backend_failures",
            "Failed backend operations by kind: unavailable, refused (a value it would "
            "not store), unreadable (a value that cannot be read back).",
            labels=["kind"],
        )
        backend_skipped = CounterMetricFamily(
            f"{p}backend_skipped",
            "Backend operations skipped while a region's circuit breaker was open.",
        )
        backends_down = GaugeMetricFamily(
            f"{p}backends_down", "Regions whose backend is being skipped (breaker open)."
        )
        runs = CounterMetricFamily(
            f"{p}task_runs", "Warmings and refreshes per task.", labels=["task"]
        )
        failures = CounterMetricFamily(
            f"{p}task_failures", "Failed runs per task.", labels=["task"]
        )
        interval = GaugeMetricFamily(
            f"{p}task_interval_seconds", "Scheduled warming interval.", labels=["task"]
        )
        if stats is not None and performance is not None:
            score = performance.get("efficiency_score")
            if score is not None:
                efficiency.add_metric([], float(score))
            hit_ratio.add_metric([], float(stats["hit_ratio"]))
            tasks.add_metric([], float(stats["tasks"]))
            critical.add_metric([], float(stats["critical_tasks"]))
            running.add_metric([], 1.0 if stats["running"] else 0.0)
            backend_errors.add_metric([], float(stats.get("backend_errors", 0)))
            for kind, field in _FAILURE_KINDS:
                backend_failures.add_metric([kind], float(stats.get(field, 0)))
            backend_skipped.add_metric([], float(stats.get("backend_skipped", 0)))
            backends_down.add_metric([], float(len(stats.get("backends_down", ()))))
            # Tasks beyond the label cap are summed under "other", where an
            # interval means nothing and is left out.
            per_label: dict[str, tuple[float, float, float]] = {}
            for row in stats["task_details"]:
                label = self.task_label(row["task_id"])
                total_runs, total_failures, _ = per_label.get(label, (0.0, 0.0, 0.0))
                per_label[label] = (
                    total_runs + row["runs"],
                    total_failures + row["failures"],
                    float(row["interval_minutes"]) * 60.0,
                )
            for label, (task_runs, task_failures, seconds) in per_label.items():
                runs.add_metric([label], task_runs)
                failures.add_metric([label], task_failures)
                if label != OVERFLOW_LABEL:
                    interval.add_metric([label], seconds)
        families = (efficiency, hit_ratio, tasks, critical, running, backend_errors)
        return iter(
            (*families, backend_failures, backend_skipped, backends_down, runs, failures, interval)
        )
