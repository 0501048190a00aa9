"""What ``@warmable`` was told about one function, checked: :class:`FunctionSettings`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from dogpile.cache import CacheRegion

from .._core.keys import KeyBy

__all__ = ["FunctionSettings", "WarmArgs"]

WarmArgs = Iterable[tuple[Any, ...] | Mapping[str, Any]]


@dataclass(frozen=True)
class FunctionSettings:
    """What ``@warmable`` was told about one function, checked (see :func:`warmable`)."""

    name: str
    ttl: float
    tags: frozenset[str]
    priority: int = 50
    region: CacheRegion | str | None = None
    refresh_ahead: float | None = 0.8
    refresh_policy: str = "window"
    xfetch_beta: float = 1.0
    user_arg: str | None = None
    warm_args: WarmArgs | Callable[[], WarmArgs] | None = None
    should_cache_fn: Callable[[Any], bool] | None = None
    key_by: KeyBy | None = None
    stale_if_error: float | None = None
