"""``@warmable``: a function becomes a cached, self-refreshing, warmable value.

:func:`warmable` validates its arguments, builds the function's
:class:`~dogpile_warm._cached.cached.CachedFunction` (which holds the cache logic) and
registers its task; :class:`WarmableFunction` is the wrapt proxy users call,
keeping the function's signature, docstring and method binding.
"""

from __future__ import annotations

import functools
import inspect
import logging
import operator
import types
from collections.abc import Callable, Iterable, Mapping
from typing import (
    TYPE_CHECKING,
    Any,
    Concatenate,
    Generic,
    ParamSpec,
    Protocol,
    Self,
    TypeVar,
    overload,
)

import wrapt
from dogpile.cache import CacheRegion
from dogpile.cache.api import NoValue

from ._cached.cached import CachedFunction
from ._cached.refresh import POLICIES
from ._cached.settings import FunctionSettings, WarmArgs
from ._core.keys import KeyBy
from ._core.regions import check_backend_expiry, warn_if_lock_never_expires
from ._core.tags import normalize_tags
from ._core.validation import check_positive_number, check_priority, check_refresh_ahead, check_ttl
from .default import get_warming_engine
from .engine import CacheWarmingEngine
from .task import CRITICAL_PRIORITY, WarmingTask

__all__ = ["BoundWarmable", "UnboundWarmable", "WarmableFunction", "warmable"]

log = logging.getLogger(__name__)

P = ParamSpec("P")
P2 = ParamSpec("P2")
R = TypeVar("R")
R2 = TypeVar("R2")
R_co = TypeVar("R_co", covariant=True)
S = TypeVar("S")


class UnboundWarmable(Protocol[P, R_co]):
    """What a type checker sees of a warmable method looked up on its class: called with
    the instance first; its attributes take the method's arguments without it."""

    def __call__(self, instance: Any, /, *args: P.args, **kwargs: P.kwargs) -> R_co: ...
    def key_for(self, *args: P.args, **kwargs: P.kwargs) -> str: ...
    def get(self, *args: P.args, **kwargs: P.kwargs) -> R_co | NoValue: ...
    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> None: ...


class BoundWarmable(Protocol[P, R_co]):
    """What a type checker sees of a warmable method looked up on an instance: the
    method without ``self``, and its attributes taking the same arguments."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co: ...
    def key_for(self, *args: P.args, **kwargs: P.kwargs) -> str: ...
    def get(self, *args: P.args, **kwargs: P.kwargs) -> R_co | NoValue: ...
    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> None: ...
    def refresh(self, *args: P.args, **kwargs: P.kwargs) -> R_co: ...
    def warm(self, *args: P.args, **kwargs: P.kwargs) -> bool: ...


class _BoundWarmableFunction(wrapt.BoundFunctionWrapper):  # type: ignore[type-arg]
    """A warmable method looked up on a class or an instance.

    Same attributes as the function; ``refresh`` and ``warm`` call the bound
    method, so ``obj.method.warm(x)`` computes with ``obj``.
    """

    def __getattr__(self, name: str) -> Any:
        if name in _SHARED_ATTRIBUTES:
            return getattr(self._self_parent, name)
        return getattr(self.__wrapped__, name)

    def refresh(self, *args: Any, **kwargs: Any) -> Any:
        cached: CachedFunction = self._self_parent._self_cached
        bound = self.__wrapped__
        return cached.refresh(lambda: bound(*args, **kwargs), cached.key_for(args, kwargs))

    def warm(self, *args: Any, **kwargs: Any) -> bool:
        cached: CachedFunction = self._self_parent._self_cached
        bound = self.__wrapped__
        return cached.warm_key(lambda: bound(*args, **kwargs), cached.key_for(args, kwargs)).success


class WarmableFunction(wrapt.FunctionWrapper, Generic[P, R]):  # type: ignore[type-arg]
    """What ``@warmable`` returns: the function, cached, with warming attributes.

    Calling it returns the cached value (see :func:`warmable`). Attributes:
    ``task``, ``original``, ``key_for``, ``get``, ``set``, ``invalidate``,
    ``refresh`` and ``warm``; they take the function's own arguments
    (without ``self``/``cls``).
    """

    __bound_function_wrapper__ = _BoundWarmableFunction

    # wrapt's proxy defines __getattr__ (to reach the wrapped function), which
    # makes Python route every attribute read of a subclass through a slow
    # generic hook unless __getattribute__ is object's own: the hook then reads
    # the instance directly and falls back to __getattr__, exactly what wrapt's
    # own lookup does (benchmarks/hit_path.py measures the difference).
    __getattribute__ = object.__getattribute__

    def __init__(
        self,
        wrapped: Callable[P, R],
        plain: Callable[..., R],
        settings: FunctionSettings,
        engine: CacheWarmingEngine,
    ) -> None:
        cached = CachedFunction(
            plain,
            settings,
            usage=engine.usage,
            outcomes=engine.outcomes,
            regions=engine.regions,
            refresher=engine.refresher,
            clock=engine.clock,
            sender=self,
        )
        super().__init__(wrapped, cached)
        self._self_cached = cached
        self._self_engine = engine
        # A plain function called directly, the common case, goes straight to
        # its read path, skipping wrapt's generic call and its search for a
        # __self__ the function cannot have. Bound as a method, it is reached
        # through __get__ and _BoundWarmableFunction instead.
        self._self_call = (
            functools.partial(cached.read, plain)
            if is_plain_function(wrapped)
            else self._wrapt_call
        )

    if TYPE_CHECKING:
        # What type checkers see: the function's own signature, and for a method
        # looked up on an instance, the method without ``self``.
        def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...

        # wrapt's stubs type binding for any method; ours keeps the function's own types.
        @overload  # type: ignore[override]
        def __get__(
            self: WarmableFunction[Concatenate[S, P2], R2],
            instance: None,
            owner: type[Any] | None = None,
        ) -> UnboundWarmable[P2, R2]: ...
        @overload
        def __get__(self, instance: None, owner: type[Any] | None = None) -> Self: ...
        @overload
        def __get__(
            self: WarmableFunction[Concatenate[S, P2], R2],
            instance: S,
            owner: type[Any] | None = None,
        ) -> BoundWarmable[P2, R2]: ...
        def __get__(self, instance: Any, owner: type[Any] | None = None) -> Any: ...

    else:
        # Calling the proxy calls ``_self_call`` itself: ``__call__`` is a property
        # handing it out, so no frame of ours (and no attribute lookup in one)
        # stands between a caller and the read path.
        __call__ = property(operator.attrgetter("_self_call"))

    def _wrapt_call(self, *args: Any, **kwargs: Any) -> Any:
        return wrapt.FunctionWrapper.__call__(self, *args, **kwargs)

    @property
    def engine(self) -> CacheWarmingEngine:
        """The engine this function is registered on."""
        return self._self_engine

    @property
    def direct(self) -> bool:
        """Whether a call goes straight to the read path (a plain function) rather than
        through wrapt's binding (a method, classmethod or staticmethod)."""
        return self._self_call != self._wrapt_call

    @property
    def task(self) -> WarmingTask:
        return self._self_cached.task

    @property
    def original(self) -> Callable[P, R]:
        return self.__wrapped__

    def key_for(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The cache key of a call with these arguments (before key mangling)."""
        return self._self_cached.key_for(args, kwargs)

    def get(self, *args: P.args, **kwargs: P.kwargs) -> R | NoValue:
        """The cached value for these arguments, or ``NO_VALUE``; never computes."""
        value: R | NoValue = self._self_cached.get(args, kwargs)
        return value

    def set(self, value: Any, *args: Any, **kwargs: Any) -> None:
        """Store ``value`` as the result of a call with these arguments."""
        self._self_cached.set(value, args, kwargs)

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """Remove the cached value for these arguments."""
        self._self_cached.invalidate(args, kwargs)

    def refresh(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Recompute now under the key's lock, store and return the value."""
        cached = self._self_cached
        fn = cached.fn
        value: R = cached.refresh(lambda: fn(*args, **kwargs), cached.key_for(args, kwargs))
        return value

    def warm(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Compute and store now; True on success. Failures are signalled, never raised."""
        cached = self._self_cached
        fn = cached.fn
        return cached.warm_key(lambda: fn(*args, **kwargs), cached.key_for(args, kwargs)).success


_SHARED_ATTRIBUTES = frozenset(("task", "original", "key_for", "get", "set", "invalidate"))


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
) -> Callable[[Callable[P, R]], WarmableFunction[P, R]]:
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

    def decorate(fn: Callable[P, R]) -> WarmableFunction[P, R]:
        plain = fn.__func__ if isinstance(fn, staticmethod | classmethod) else fn
        if not callable(plain):
            raise TypeError(f"@warmable needs a function, got {fn!r}")
        if inspect.iscoroutinefunction(plain) or inspect.isasyncgenfunction(plain):
            # Cached, its coroutine object would be awaited once and then fail.
            raise TypeError(f"@warmable cannot cache an async function yet, got {fn!r}")
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
        wrapper: WarmableFunction[P, R] = WarmableFunction(fn, plain, settings, owner)
        cached = wrapper._self_cached
        owner.registry.register(cached.task, is_critical, source=cached, replace=True)
        return wrapper

    return decorate


def is_plain_function(fn: object) -> bool:
    """Whether ``fn`` is a function called as it is: not a staticmethod, classmethod or
    bound method (those need wrapt's binding to reach the right object)."""
    return isinstance(fn, types.FunctionType)


def _qualname(fn: Any) -> str:
    return f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', repr(fn))}"
