"""Prometheus metrics for an engine: ``pip install dogpile_warm[prometheus]``.

:class:`PrometheusMetrics` listens to :mod:`dogpile_warm.signals` and counts
hits, misses, warm-ups, failures, refreshes and invalidations per task, with
duration histograms; at scrape time it adds gauges read from the engine's
``get_stats()`` and ``get_performance()``::

    from prometheus_client import start_http_server
    from dogpile_warm.contrib.prometheus import PrometheusMetrics

    metrics = PrometheusMetrics().connect()  # default engine, default registry
    start_http_server(9100)

Only this module imports ``prometheus_client``; importing ``dogpile_warm``
never does.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any, Generic, TypeVar

try:
    from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
    from prometheus_client.metrics import MetricWrapperBase
    from prometheus_client.registry import Collector
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "dogpile_warm.contrib.prometheus needs prometheus-client: pip install 'dogpile_warm[prometheus]'"
    ) from exc

from .. import signals
from .._core import forks
from .._core.validation import check_positive_int
from ..default import get_warming_engine
from ..engine import CacheWarmingEngine
from ..task import WarmingTask
from ..wrappers import WarmableFunction
from ._prometheus_collector import OVERFLOW_LABEL, EngineCollector, LabelCap

__all__ = ["OVERFLOW_LABEL", "WARM_CACHE_LABEL", "PrometheusMetrics"]

WARM_CACHE_LABEL = "warm_cache"
"""The ``task`` label of values warmed with ``engine.warm_cache``."""

M = TypeVar("M", bound=MetricWrapperBase)


class _Labelled(Generic[M]):
    """A metric with one label, and its children cached by label value.

    ``labels()`` takes the metric's lock on every call; the receivers run in
    the callers' threads on the hit path, so they look children up here first.
    """

    def __init__(self, metric: M) -> None:
        self.metric = metric
        self._children: dict[str, M] = {}

    def __call__(self, label: str) -> M:
        child = self._children.get(label)
        if child is None:
            child = self._children[label] = self.metric.labels(label)
        return child


class PrometheusMetrics:
    """Prometheus counters, histograms and gauges for one engine's caching and warming.

    ``engine`` is the engine whose functions and tasks are counted (None: the
    process default engine at the time of construction); events from other
    engines are ignored. ``registry`` is where the metrics appear on
    :meth:`connect` (None: ``prometheus_client.REGISTRY``). Metric names start
    with ``namespace`` (two instances on one registry need two namespaces).

    From the signals (``{task}`` is the task id; ``"warm_cache"`` for
    ``engine.warm_cache`` values):

    - ``<ns>_hits_total{task}``, ``<ns>_misses_total{task}``
    - ``<ns>_miss_duration_seconds{task}``: histogram of the caller's compute time on a miss
    - ``<ns>_warmings_total{task}``, ``<ns>_warm_duration_seconds{task}``: successful warm-ups
    - ``<ns>_warm_failures_total{task}``: failed warm-ups and background refreshes
    - ``<ns>_refreshes_total{task}``, ``<ns>_refresh_duration_seconds{task}``: refresh-ahead
    - ``<ns>_invalidations_total``: ``invalidate_by_tags`` calls;
      ``<ns>_invalidated_tags_total{tag}``: per tag

    Read from the engine at each scrape: ``<ns>_efficiency_score`` (absent
    until known), ``<ns>_hit_ratio``, ``<ns>_tasks``, ``<ns>_critical_tasks``,
    ``<ns>_running``, ``<ns>_backend_errors_total``,
    ``<ns>_backend_failures_total{kind}``, ``<ns>_backend_skipped_total``,
    ``<ns>_backends_down``, and per task
    ``<ns>_task_runs_total``, ``<ns>_task_failures_total``,
    ``<ns>_task_interval_seconds``.

    Label sets stay bounded however many keys are seen: nothing is labelled
    by key. The first ``max_tasks`` task ids (default 1000) get their own
    label and every later one shares ``task="other"``; likewise the first
    ``max_tags`` tags (default 100). With the default buckets, each task
    label costs at most about 70 series (including ``_created`` ones).

    The receivers run synchronously in the thread that sends the signal (on
    the hit path, too) and only bump counters. Thread-safe.
    """

    def __init__(
        self,
        engine: CacheWarmingEngine | None = None,
        registry: CollectorRegistry | None = None,
        namespace: str = "dogpile_warm",
        *,
        max_tasks: int = 1000,
        max_tags: int = 100,
        buckets: Sequence[float] = Histogram.DEFAULT_BUCKETS,
    ) -> None:
        if engine is not None and not isinstance(engine, CacheWarmingEngine):
            raise TypeError(f"engine must be a CacheWarmingEngine or None, got {engine!r}")
        if registry is not None and not isinstance(registry, CollectorRegistry):
            raise TypeError(f"registry must be a prometheus CollectorRegistry, got {registry!r}")
        if not isinstance(namespace, str):
            raise TypeError(f"namespace must be a string, got {namespace!r}")
        self.engine = engine if engine is not None else get_warming_engine()
        self.registry = registry if registry is not None else REGISTRY
        self._task_label = LabelCap(check_positive_int("max_tasks", max_tasks))
        self._tag_label = LabelCap(check_positive_int("max_tags", max_tags))
        self._lock = forks.new_lock()
        self._connected = False

        def counter(name: str, doc: str, labels: Sequence[str] = ("task",)) -> Counter:
            # registry=None: nothing is registered until connect().
            return Counter(name, doc, labels, namespace=namespace, registry=None)

        def histogram(name: str, doc: str) -> Histogram:
            return Histogram(
                name, doc, ["task"], namespace=namespace, registry=None, buckets=buckets
            )

        self._hits = _Labelled(counter("hits", "Calls answered from the cache."))
        self._misses = _Labelled(counter("misses", "Calls in which the caller ran the function."))
        self._miss_seconds = _Labelled(
            histogram("miss_duration_seconds", "Time the caller spent computing on a miss.")
        )
        self._warmings = _Labelled(counter("warmings", "Keys warmed and stored."))
        self._warm_seconds = _Labelled(
            histogram("warm_duration_seconds", "Time to compute and store a warmed key.")
        )
        self._warm_failures = _Labelled(
            counter("warm_failures", "Failed warm-ups and background refreshes.")
        )
        self._refreshes = _Labelled(counter("refreshes", "Background refresh-ahead stores."))
        self._refresh_seconds = _Labelled(
            histogram("refresh_duration_seconds", "Compute time of a background refresh.")
        )
        self._invalidations = counter("invalidations", "invalidate_by_tags calls.", ())
        self._invalidated_tags = _Labelled(
            counter("invalidated_tags", "Invalidations per tag.", ("tag",))
        )
        self._collectors: list[Collector] = [
            self._hits.metric,
            self._misses.metric,
            self._miss_seconds.metric,
            self._warmings.metric,
            self._warm_seconds.metric,
            self._warm_failures.metric,
            self._refreshes.metric,
            self._refresh_seconds.metric,
            self._invalidations,
            self._invalidated_tags.metric,
            EngineCollector(self.engine, f"{namespace}_" if namespace else "", self._task_label),
        ]
        self._receivers = (
            (signals.cache_hit, self._on_hit),
            (signals.cache_miss, self._on_miss),
            (signals.refreshed, self._on_refreshed),
            (signals.warmed, self._on_warmed),
            (signals.warm_failed, self._on_warm_failed),
            (signals.invalidated, self._on_invalidated),
        )

    # -- installing --------------------------------------------------------------
    @property
    def connected(self) -> bool:
        """True between :meth:`connect` and :meth:`disconnect`."""
        return self._connected

    def connect(self) -> PrometheusMetrics:
        """Register the metrics on the registry and start counting; return self.

        Idempotent. Raises ``ValueError`` (prometheus' ``DuplicateTimeseries``)
        when the registry already has metrics of these names, and then leaves
        nothing registered or connected.
        """
        with self._lock:
            if self._connected:
                return self
            registered: list[Collector] = []
            try:
                for collector in self._collectors:
                    self.registry.register(collector)
                    registered.append(collector)
            except Exception:
                for collector in registered:
                    self.registry.unregister(collector)
                raise
            for signal, receiver in self._receivers:
                # Strong references: the registry holds the metrics, not this
                # object, so a weak receiver would stop counting silently once
                # the caller dropped its reference. disconnect() removes them.
                signal.connect(receiver, weak=False)
            self._connected = True
        return self

    def disconnect(self) -> None:
        """Stop counting and remove the metrics from the registry. Idempotent.

        The counts are kept: a later :meth:`connect` carries on from them.
        """
        with self._lock:
            if not self._connected:
                return
            for signal, receiver in self._receivers:
                signal.disconnect(receiver)
            for collector in self._collectors:
                self.registry.unregister(collector)
            self._connected = False

    def __enter__(self) -> PrometheusMetrics:
        return self.connect()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.disconnect()

    # -- whose event is it -----------------------------------------------------------
    def _function_label(self, sender: Any) -> str | None:
        """The task label of a decorated function of our engine, else None."""
        if not isinstance(sender, WarmableFunction) or sender.engine is not self.engine:
            return None
        return self._task_label(sender.task.task_id)

    def _warm_label(self, sender: Any) -> str | None:
        """The task label of a warming of our engine (a task, or the engine itself), else None."""
        engine = self.engine
        if sender is engine:
            return WARM_CACHE_LABEL
        if not isinstance(sender, WarmingTask):
            return None
        if engine.get_task(sender.task_id) is not sender:
            return None
        return self._task_label(sender.task_id)

    # -- receivers (run in the sender's thread: keep them cheap) -------------------------
    def _on_hit(self, sender: Any, **_: Any) -> None:
        label = self._function_label(sender)
        if label is not None:
            self._hits(label).inc()

    def _on_miss(self, sender: Any, *, duration_ms: float = 0.0, **_: Any) -> None:
        label = self._function_label(sender)
        if label is not None:
            self._misses(label).inc()
            self._miss_seconds(label).observe(duration_ms / 1000.0)

    def _on_refreshed(self, sender: Any, *, duration_ms: float = 0.0, **_: Any) -> None:
        label = self._function_label(sender)
        if label is not None:
            self._refreshes(label).inc()
            self._refresh_seconds(label).observe(duration_ms / 1000.0)

    def _on_warmed(self, sender: Any, *, duration_ms: float = 0.0, **_: Any) -> None:
        label = self._warm_label(sender)
        if label is not None:
            self._warmings(label).inc()
            self._warm_seconds(label).observe(duration_ms / 1000.0)

    def _on_warm_failed(self, sender: Any, **_: Any) -> None:
        label = self._warm_label(sender)
        if label is not None:
            self._warm_failures(label).inc()

    def _on_invalidated(self, sender: Any, *, tags: Iterable[str] = (), **_: Any) -> None:
        if sender is not self.engine:
            return
        self._invalidations.inc()
        for tag in tags:
            self._invalidated_tags(self._tag_label(tag)).inc()
