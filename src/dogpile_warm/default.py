"""The process-wide default engine and the module-level functions that use it.

The default engine is created on first use, never at import.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from dogpile.cache import CacheRegion

from . import _config
from ._core import forks
from ._warming.runs import OnResult
from .engine import CacheWarmingEngine
from .reports import Performance, ScheduleReport, Stats, UserWarmReport, WarmReport
from .task import WarmingTask

__all__ = [
    "awarm_critical_data",
    "awarm_hot_keys",
    "awarm_tasks",
    "awarm_user_data",
    "awarm_user_data_optimized",
    "configure",
    "configure_from_config",
    "get_cached",
    "get_region",
    "get_warming_engine",
    "get_warming_performance",
    "get_warming_stats",
    "invalidate_by_tags",
    "optimize_warming_schedules",
    "register_critical_task",
    "register_warming_task",
    "set_warming_engine",
    "start_cache_warming",
    "stop_cache_warming",
    "warm_cache",
    "warm_critical_data",
    "warm_user_data_optimized",
]

_default: CacheWarmingEngine | None = None
_default_lock = forks.new_lock()


def get_warming_engine() -> CacheWarmingEngine:
    """The process's default engine, created on first call."""
    global _default
    engine = _default
    if engine is None:
        with _default_lock:
            if _default is None:
                _default = CacheWarmingEngine()
            engine = _default
    return engine


def set_warming_engine(engine: CacheWarmingEngine | None) -> CacheWarmingEngine | None:
    """Replace the default engine (None: a new one on next use); return the previous one.

    Functions decorated earlier stay with the engine they were registered on.
    """
    global _default
    if engine is not None and not isinstance(engine, CacheWarmingEngine):
        raise TypeError(f"engine must be a CacheWarmingEngine or None, got {engine!r}")
    with _default_lock:
        previous, _default = _default, engine
    return previous


def configure(
    name: str = "default",
    backend: str = "dogpile.cache.memory",
    expiration_time: float | None = None,
    arguments: Mapping[str, Any] | None = None,
    **region_kwargs: Any,
) -> CacheRegion:
    """Configure the default engine's region ``name`` (see ``CacheWarmingEngine.configure_region``)."""
    return get_warming_engine().configure_region(
        name, backend, expiration_time, arguments, **region_kwargs
    )


def configure_from_config(
    config: Mapping[str, Any],
    prefix: str = _config.DEFAULT_PREFIX,
    *,
    engine: CacheWarmingEngine | None = None,
) -> list[str]:
    """Configure regions, the engine and the scheduler from a flat settings dict (an ini
    section, a framework's settings), as dogpile's ``configure_from_config``; keys are
    in docs/contract.md. Returns the names of the regions configured."""
    return _config.configure_from_config(engine or get_warming_engine(), config, prefix)


def get_region(name: str = "default") -> CacheRegion:
    return get_warming_engine().get_region(name)


def get_cached(key: str, region: CacheRegion | str | None = None) -> Any:
    return get_warming_engine().get_cached(key, region)


def register_warming_task(task: WarmingTask) -> WarmingTask:
    return get_warming_engine().register_task(task)


def register_critical_task(task: WarmingTask) -> WarmingTask:
    return get_warming_engine().register_task(task, is_critical=True)


def warm_cache(
    key: str, compute_fn: Callable[[], Any], ttl: float = 3600, tags: Iterable[str] | None = None
) -> bool:
    return get_warming_engine().warm_cache(key, compute_fn, ttl, tags)


def warm_critical_data() -> WarmReport:
    return get_warming_engine().warm_critical_data()


def warm_user_data_optimized(
    user_id: Any, force: bool = False, preload_forms: bool = True
) -> UserWarmReport:
    return get_warming_engine().warm_user_data(user_id, force, preload_forms)


async def awarm_critical_data() -> WarmReport:
    return await get_warming_engine().awarm_critical_data()


async def awarm_tasks(
    tags: Iterable[str] | str | None = None,
    *,
    critical_only: bool = False,
    on_result: OnResult | None = None,
) -> WarmReport:
    return await get_warming_engine().awarm_tasks(
        tags, critical_only=critical_only, on_result=on_result
    )


async def awarm_user_data(
    user_id: Any, force: bool = False, preload_forms: bool = True
) -> UserWarmReport:
    return await get_warming_engine().awarm_user_data(user_id, force, preload_forms)


async def awarm_user_data_optimized(
    user_id: Any, force: bool = False, preload_forms: bool = True
) -> UserWarmReport:
    return await get_warming_engine().awarm_user_data(user_id, force, preload_forms)


async def awarm_hot_keys(top_n: int = 100) -> WarmReport:
    return await get_warming_engine().awarm_hot_keys(top_n)


def invalidate_by_tags(tags: Iterable[str] | str) -> int:
    return get_warming_engine().invalidate_by_tags(tags)


def get_warming_stats() -> Stats:
    return get_warming_engine().get_stats()


def get_warming_performance() -> Performance:
    return get_warming_engine().get_performance()


def optimize_warming_schedules() -> ScheduleReport:
    return get_warming_engine().optimize_schedules()


def start_cache_warming(
    interval_minutes: float = 60,
    enable_pattern_warming: bool = True,
    enable_critical_warming: bool = True,
    **options: Any,
) -> None:
    """Start the default engine's background scheduler (see ``CacheWarmingEngine.start``)."""
    get_warming_engine().start(
        interval_minutes, enable_pattern_warming, enable_critical_warming, **options
    )


def stop_cache_warming(timeout: float = 5) -> None:
    """Stop the default engine's background scheduler, if it was ever created."""
    engine = _default
    if engine is not None:
        engine.stop(timeout)
