"""``@warmable``: a function becomes a cached, self-refreshing, warmable value.

:func:`warmable` validates its arguments, builds the function's
:class:`~dogpile_warm._cached.cached.CachedFunction` (which holds the cache logic) and
registers its task; what it returns, the proxy users call, is
:mod:`dogpile_warm.wrappers`'. What type checkers see of it is in
:mod:`dogpile_warm.signatures`.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

from dogpile.cache import CacheRegion

from ._cached.refresh import POLICIES
from ._cached.settings import FunctionSettings, WarmArgs
from ._core.keys import KeyBy
from ._core.loops import is_async_function
from ._core.regions import check_backend_expiry, warn_if_lock_never_expires
from ._core.tags import normalize_tags
from ._core.validation import check_positive_number, check_priority, check_refresh_ahead, check_ttl
from .default import get_warming_engine
from .engine import CacheWarmingEngine
from .signatures import BoundWarmable, Decorator, UnboundWarmable
from .task import CRITICAL_PRIORITY
from .wrappers import AsyncWarmableFunction, WarmableFunction

__all__ = [
    "AsyncWarmableFunction",
    "BoundWarmable",
    "UnboundWarmable",
    "WarmableFunction",
    "warmable",
]

log = logging.getLogger(__name__)


def warmable(
    *,
    priority: int = 50,
    ttl: float = 3600,
    tags: Iterable[str] | str = (),
    region: CacheRegion | str | None = None,
    critical: bool | None = None,
    name: str | None = None,
    namespace: str | None = None,
    user_arg: str | None = None,
    warm_args: WarmArgs | Callable[[], WarmArgs] | None = None,
    refresh_ahead: float | None = 0.8,
    engine: CacheWarmingEngine | None = None,
    refresh_policy: str = "window",
    xfetch_beta: float = 1.0,
    should_cache_fn: Callable[[Any], bool] | None = None,
    key_by: KeyBy | None = None,
    stale_if_error: float | None = None,
) -> Decorator:
    """Cache a function on a dogpile.cache region and register it as a warming task.

    Besides the arguments of the contract (docs/contract.md): ``refresh_policy`` is ``"window"`` (refresh
    past ``refresh_ahead * ttl``) or ``"xfetch"`` (probabilistic early refresh
    scaled by the measured recompute time and ``xfetch_beta``; see
    :mod:`dogpile_warm._cached.refresh`); ``should_cache_fn(value)`` returning False
    keeps a computed value out of the cache, as in dogpile; ``key_by``
    (``{parameter: function or None}``) keys an argument by ``function(value)``
    or leaves it out of the key (see :mod:`dogpile_warm._core.keys`);
    ``stale_if_error`` (seconds, default None: off) lets a call whose
    recompute of a value past its ttl raised return that value instead, up
    to that long past the ttl (counted in ``stale_served``, signalled as
    ``served_stale``).

    Bad arguments raise ``TypeError``/``ValueError`` here, at decoration,
    naming the argument and the value.
    """
    check_priority(priority)
    ttl = check_ttl(ttl)
    refresh_ahead = check_refresh_ahead(refresh_ahead)
    tag_set = normalize_tags(tags)
    if region is not None and not isinstance(region, CacheRegion | str):
        raise TypeError(f"region must be a CacheRegion, a region name or None, got {region!r}")
    if critical is not None and not isinstance(critical, bool):
        raise TypeError(f"critical must be True, False or None, got {critical!r}")
    for label, text in (("name", name), ("namespace", namespace), ("user_arg", user_arg)):
        if text is not None and (not isinstance(text, str) or not text):
            raise TypeError(f"{label} must be a non-empty string or None, got {text!r}")
    if warm_args is not None and not callable(warm_args):
        if isinstance(warm_args, str | bytes) or not isinstance(warm_args, Iterable):
            raise TypeError(f"warm_args must be an iterable or a callable, got {warm_args!r}")
        warm_args = tuple(warm_args)  # a generator would be used up by the first warming
        for item in warm_args:
            if not isinstance(item, tuple | Mapping):
                raise TypeError(f"warm_args must hold tuples or dicts, got {item!r}")
    if refresh_policy not in POLICIES:
        raise ValueError(f"refresh_policy must be one of {POLICIES}, got {refresh_policy!r}")
    xfetch_beta = check_positive_number("xfetch_beta", xfetch_beta)
    if stale_if_error is not None:
        stale_if_error = check_positive_number("stale_if_error", stale_if_error, " of seconds")
    if should_cache_fn is not None and not callable(should_cache_fn):
        raise TypeError(f"should_cache_fn must be callable or None, got {should_cache_fn!r}")
    if isinstance(region, CacheRegion):
        check_backend_expiry(region, ttl, "this function")
        warn_if_lock_never_expires(region)
    is_critical = priority >= CRITICAL_PRIORITY if critical is None else critical

    def decorate(fn: Any) -> Any:
        plain = fn.__func__ if isinstance(fn, staticmethod | classmethod) else fn
        if not callable(plain):
            raise TypeError(f"@warmable needs a function, got {fn!r}")
        if inspect.isasyncgenfunction(plain):
            # Its generator, cached, would be iterated once and then be empty.
            raise TypeError(f"@warmable cannot cache an async generator function, got {fn!r}")
        try:
            parameters = inspect.signature(plain).parameters
        except (TypeError, ValueError) as exc:
            raise TypeError(f"@warmable cannot read the signature of {fn!r}: {exc}") from None
        if user_arg is not None and user_arg not in parameters:
            raise ValueError(
                f"user_arg {user_arg!r} is not a parameter of {_qualname(plain)}"
                f" (parameters: {', '.join(parameters) or 'none'})"
            )
        task_name = name or _qualname(plain)
        if namespace is not None:
            task_name = f"{task_name}|{namespace}"
        settings = FunctionSettings(
            name=task_name,
            ttl=ttl,
            tags=tag_set,
            priority=priority,
            region=region,
            refresh_ahead=refresh_ahead,
            refresh_policy=refresh_policy,
            xfetch_beta=xfetch_beta,
            user_arg=user_arg,
            warm_args=warm_args,
            should_cache_fn=should_cache_fn,
            key_by=key_by,
            stale_if_error=stale_if_error,
        )
        owner = engine if engine is not None else get_warming_engine()
        kind = AsyncWarmableFunction if is_async_function(plain) else WarmableFunction
        wrapper: WarmableFunction[..., Any] = kind(fn, plain, settings, owner)
        cached = wrapper._self_cached
        owner.registry.register(cached.task, is_critical, source=cached, replace=True)
        return wrapper

    return cast(Decorator, decorate)


def _qualname(fn: Any) -> str:
    return f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', repr(fn))}"
