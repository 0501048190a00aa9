"""The engine's awaitable warm methods, for code running in an event loop.

Each runs its sync twin (:meth:`CacheWarmingEngine.warm_critical_data
<dogpile_warm.engine.CacheWarmingEngine.warm_critical_data>` and the others)
in a thread of its own with the awaiting loop as its home loop (see
:func:`~dogpile_warm._core.loops.in_thread`): the loop goes on while keys
are computed and stored, ``async def`` functions compute on that loop (so
they may use its clients), and the report is the sync method's.
"""

from __future__ import annotations

from typing import Any, Protocol

from .._core.loops import in_thread
from ..reports import UserWarmReport, WarmReport
from .runs import OnResult

__all__ = ["AwaitedWarming"]


class _Warms(Protocol):
    """The sync warm methods an :class:`AwaitedWarming` awaits."""

    def warm_critical_data(self) -> WarmReport: ...
    def warm_tasks(
        self,
        tags: Any = None,
        *,
        critical_only: bool = False,
        on_result: OnResult | None = None,
    ) -> WarmReport: ...
    def warm_user_data(
        self, user_id: Any, force: bool = False, preload_forms: bool = True
    ) -> UserWarmReport: ...
    def warm_hot_keys(self, top_n: int = 100) -> WarmReport: ...


class AwaitedWarming:
    """The ``awarm_*`` methods of the engine; each takes its sync twin's arguments."""

    async def awarm_critical_data(self: _Warms) -> WarmReport:
        """:meth:`warm_critical_data`, awaited."""
        return await in_thread(self.warm_critical_data)

    async def awarm_tasks(
        self: _Warms,
        tags: Any = None,
        *,
        critical_only: bool = False,
        on_result: OnResult | None = None,
    ) -> WarmReport:
        """:meth:`warm_tasks`, awaited (``on_result`` is called from a worker thread)."""

        def warm() -> WarmReport:
            return self.warm_tasks(tags, critical_only=critical_only, on_result=on_result)

        return await in_thread(warm)

    async def awarm_user_data(
        self: _Warms, user_id: Any, force: bool = False, preload_forms: bool = True
    ) -> UserWarmReport:
        """:meth:`warm_user_data`, awaited."""
        return await in_thread(self.warm_user_data, user_id, force, preload_forms)

    async def awarm_hot_keys(self: _Warms, top_n: int = 100) -> WarmReport:
        """:meth:`warm_hot_keys`, awaited."""
        return await in_thread(self.warm_hot_keys, top_n)
