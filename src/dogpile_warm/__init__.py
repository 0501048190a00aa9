"""dogpile_warm: cache warming for dogpile.cache.

Decorate expensive functions with :func:`warmable`; warm critical and
per-user data through the engine; listen to :mod:`dogpile_warm.signals`.
Importing the package creates no engine, thread or connection.
"""

from ._usage.tracker import UsagePatternTracker
from .decorator import AsyncWarmableFunction, WarmableFunction, warmable
from .default import (
    awarm_critical_data,
    awarm_hot_keys,
    awarm_tasks,
    awarm_user_data,
    awarm_user_data_optimized,
    configure,
    configure_from_config,
    get_cached,
    get_region,
    get_warming_engine,
    get_warming_performance,
    get_warming_stats,
    invalidate_by_tags,
    optimize_warming_schedules,
    register_critical_task,
    register_warming_task,
    set_warming_engine,
    start_cache_warming,
    stop_cache_warming,
    warm_cache,
    warm_critical_data,
    warm_user_data_optimized,
)
from .engine import CacheWarmingEngine
from .errors import (
    BackendError,
    BackendUnavailable,
    ReentrantCallError,
    UnknownRegionError,
    ValueRefused,
    ValueUnreadable,
    WarmError,
)
from .task import WarmingTask

__all__ = [
    "AsyncWarmableFunction",
    "BackendError",
    "BackendUnavailable",
    "CacheWarmingEngine",
    "ReentrantCallError",
    "UnknownRegionError",
    "UsagePatternTracker",
    "ValueRefused",
    "ValueUnreadable",
    "WarmError",
    "WarmableFunction",
    "WarmingTask",
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
    "warmable",
]

__version__ = "0.1.0"
