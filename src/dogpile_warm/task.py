"""The warming task: what to compute, where to store it, and how much it matters."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dogpile.cache import CacheRegion

from ._core.tags import normalize_tags
from ._core.validation import check_positive_number, check_priority, check_ttl

__all__ = ["CRITICAL_PRIORITY", "WarmingTask", "priority_level"]

CRITICAL_PRIORITY = 100


def priority_level(priority: int) -> str:
    """Name the level of ``priority``: critical (100+), important (50-99),
    nice to have (10-49) or background (below 10)."""
    if priority >= CRITICAL_PRIORITY:
        return "critical"
    if priority >= 50:
        return "important"
    if priority >= 10:
        return "nice to have"
    return "background"


@dataclass(eq=False)
class WarmingTask:
    """One unit of warming: ``compute_fn()`` stored under ``cache_key`` for ``ttl`` seconds.

    ``task_id`` is unique per engine. ``region`` is a ``CacheRegion``, a
    region name configured with :func:`dogpile_warm.configure`, or None for
    the engine's default region. Tasks made by ``@warmable`` warm their
    function's keys instead of ``cache_key`` (which then names the function).
    Tasks compare by identity: two tasks are never "equal" by value.
    """

    task_id: str
    name: str
    cache_key: str
    compute_fn: Callable[[], Any]
    ttl: float = 3600
    priority: int = 50
    tags: frozenset[str] = field(default_factory=frozenset)
    interval_minutes: float = 60
    region: CacheRegion | str | None = None

    def __post_init__(self) -> None:
        for attr in ("task_id", "name", "cache_key"):
            value = getattr(self, attr)
            if not isinstance(value, str) or not value:
                raise TypeError(f"WarmingTask {attr} must be a non-empty string, got {value!r}")
        if not callable(self.compute_fn):
            raise TypeError(f"WarmingTask compute_fn must be callable, got {self.compute_fn!r}")
        check_ttl(self.ttl)
        check_priority(self.priority)
        self.tags = normalize_tags(self.tags)
        check_positive_number("interval_minutes", self.interval_minutes, " of minutes")
        if self.region is not None and not isinstance(self.region, CacheRegion | str):
            raise TypeError(
                f"region must be a CacheRegion, a region name or None, got {self.region!r}"
            )

    @property
    def level(self) -> str:
        """The priority level's name (see :func:`priority_level`)."""
        return priority_level(self.priority)
