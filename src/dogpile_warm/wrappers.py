"""The proxies ``@warmable`` returns: what users call, bind as methods and warm with.

:class:`WarmableFunction` (for an ``async def``, :class:`AsyncWarmableFunction`)
is a wrapt proxy keeping the function's signature, docstring and method
binding; its attributes (``key_for``, ``get``, ``warm``, their awaitable
twins...) delegate to the function's
:class:`~dogpile_warm._cached.cached.CachedFunction`. What type checkers see
of them is in :mod:`dogpile_warm.signatures`.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable, Coroutine
from typing import (
    TYPE_CHECKING,
    Any,
    Generic,
    ParamSpec,
    TypeVar,
    overload,
)

import wrapt
from dogpile.cache.api import NoValue

from ._binding import Binding
from ._cached.awaited import AwaitedReads
from ._cached.cached import CachedFunction
from ._cached.reader import make_async_reader, make_reader
from ._cached.settings import FunctionSettings
from ._core.loops import in_thread
from .engine import CacheWarmingEngine
from .signatures import (
    BoundAsyncWarmable,
    BoundWarmable,
    ClassFirst,
    SelfFirst,
    UnboundAsyncWarmable,
    UnboundWarmable,
)
from .task import WarmingTask

__all__ = ["AsyncWarmableFunction", "WarmableFunction"]

P = ParamSpec("P")
P2 = ParamSpec("P2")
R = TypeVar("R")
R2 = TypeVar("R2")
S = TypeVar("S")


class _BoundWarmableFunction(wrapt.BoundFunctionWrapper):  # type: ignore[type-arg]
    """A warmable method looked up on a class or an instance.

    Same attributes as the function; ``refresh``, ``warm`` and their awaitable
    twins call the bound method, so ``obj.method.warm(x)`` computes with ``obj``.
    """

    def __getattr__(self, name: str) -> Any:
        if name in _SHARED_ATTRIBUTES:
            shared = getattr(self._self_parent, name)
            first = self._first() if name in _TAKE_CALL_ARGUMENTS else ()
            if not first:
                return shared
            if name in ("set", "aset"):  # the value comes before the call's arguments
                return lambda value, *args, **kwargs: shared(value, *first, *args, **kwargs)
            return functools.partial(shared, *first)
        return getattr(self.__wrapped__, name)

    def _first(self) -> tuple[Any, ...]:
        """The instance (or class) this binding passes to a method whose first parameter
        is kept in its key (see CachedFunction.first_argument); else nothing."""
        cached: CachedFunction = self._self_parent._self_cached
        bound: Any = self.__wrapped__
        return cached.first_argument(bound, getattr(bound, "__self__", None))

    def _compute(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, str]:
        cached: CachedFunction = self._self_parent._self_cached
        bound = self.__wrapped__
        return lambda: bound(*args, **kwargs), cached.key_for((*self._first(), *args), kwargs)

    def refresh(self, *args: Any, **kwargs: Any) -> Any:
        return self._self_parent._self_cached.refresh(*self._compute(args, kwargs))

    def warm(self, *args: Any, **kwargs: Any) -> bool:
        return bool(self._self_parent._self_cached.warm_key(*self._compute(args, kwargs)).success)

    async def arefresh(self, *args: Any, **kwargs: Any) -> Any:
        return await in_thread(self.refresh, *args, **kwargs)

    async def awarm(self, *args: Any, **kwargs: Any) -> bool:
        return await in_thread(self.warm, *args, **kwargs)


class WarmableFunction(Binding, wrapt.FunctionWrapper, Generic[P, R]):  # type: ignore[type-arg]
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
        cached.read = self._read_path(cached, engine, binds=False)
        # A plain function (or a staticmethod's) called directly, the common case,
        # goes straight to its read path, skipping wrapt's generic call and its
        # search for a __self__ the function cannot have.
        direct = _is_plain_function(wrapped) or isinstance(wrapped, staticmethod)
        self._self_call = functools.partial(cached.read, plain) if direct else self._wrapt_call
        # How __get__ binds: "static" (not at all), "class" (a classmethod's class),
        # "self" (an instance, or a class that @classmethod above hands over), or
        # None: wrapt's binding (a first parameter named neither self nor cls, a
        # method looked up on its class, any other descriptor).
        binds = _binding_kind(wrapped, cached)
        # What Binding binds without asking _bind_slowly (see _binding.py): a
        # method's read path, and whether it binds a class; () for a staticmethod.
        self._self_fast_binding: tuple[Any, bool] | tuple[()] | None = (
            () if binds == "static" else None
        )
        if binds in ("self", "class"):
            method_read: Any = self._read_path(cached, engine, binds=True)
            method_read.proxy = self  # for _binding.bound_attribute
            self._self_fast_binding = (method_read, binds == "class")

    def _read_path(self, cached: CachedFunction, engine: CacheWarmingEngine, binds: bool) -> Any:
        """A read path of ``cached`` (see :mod:`dogpile_warm._cached.reader`)."""
        return make_reader(cached, binds)

    if TYPE_CHECKING:
        # What type checkers see: the function's own signature, and for a method
        # looked up on an instance, the method without ``self``.
        def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...

        # wrapt's stubs type binding for any method; ours keeps the function's own types:
        # a classmethod's function (cls first: type checkers hand @warmable the function
        # under @classmethod), a method on its class or an instance (its first
        # parameter takes the instance), anything else (a staticmethod's function) as it
        # is. The self types are protocols on ``original``, which mypy and pyright both
        # match strictly.
        @overload  # type: ignore[override]
        def __get__(
            self: ClassFirst[P2, R2], instance: Any, owner: type[Any] | None = None
        ) -> BoundWarmable[P2, R2]: ...
        @overload
        def __get__(
            self: SelfFirst[S, P2, R2], instance: None, owner: type[S]
        ) -> UnboundWarmable[P2, R2]: ...
        @overload
        def __get__(
            self: SelfFirst[S, P2, R2], instance: S, owner: type[S] | None = None
        ) -> BoundWarmable[P2, R2]: ...
        @overload
        def __get__(self, instance: Any, owner: type[Any] | None = None) -> BoundWarmable[P, R]: ...
        def __get__(self, instance: Any, owner: type[Any] | None = None) -> Any: ...

    # At run time, calling the proxy (``_self_call``) and binding it are Binding's,
    # in C where the extension was built (see _binding.py).

    def _bind_slowly(self, instance: Any, owner: type[Any] | None) -> Any:
        """What Binding hands every lookup it does not bind itself: wrapt's binding (a
        method looked up on its class, a first parameter named neither self nor cls,
        any other descriptor)."""
        return wrapt.FunctionWrapper.__get__(self, instance, owner)

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

    # -- awaitable twins, named as Django's cache API names them --------------------
    # Backend calls leave the loop (unless the backend never blocks); computing
    # ones run in a thread of their own, an async def's coroutine on this loop.
    async def aget(self, *args: P.args, **kwargs: P.kwargs) -> R | NoValue:
        """:meth:`get`, awaited."""
        cached = self._self_cached
        value: R | NoValue = await self._self_engine.offloop.call(
            cached.store().blocking, cached.get, args, kwargs
        )
        return value

    async def aset(self, value: Any, *args: Any, **kwargs: Any) -> None:
        """:meth:`set`, awaited."""
        cached = self._self_cached
        await self._self_engine.offloop.call(
            cached.store().blocking, cached.set, value, args, kwargs
        )

    async def ainvalidate(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """:meth:`invalidate`, awaited."""
        cached = self._self_cached
        await self._self_engine.offloop.call(
            cached.store().blocking, cached.invalidate, args, kwargs
        )

    async def arefresh(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """:meth:`refresh`, awaited."""
        return await in_thread(self.refresh, *args, **kwargs)

    async def awarm(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """:meth:`warm`, awaited."""
        return await in_thread(self.warm, *args, **kwargs)


class AsyncWarmableFunction(WarmableFunction[P, R]):
    """What ``@warmable`` returns for an ``async def``: ``await f(x)`` is the cached value.

    ``inspect.iscoroutinefunction(f)`` is true. Reads go through
    :mod:`dogpile_warm._cached.awaited`; the attributes are
    :class:`WarmableFunction`'s, and the sync ones that compute (``refresh``,
    ``warm``) run the coroutine with ``asyncio.run`` when called outside a loop.
    """

    _self_reads: AwaitedReads | None = None

    def _read_path(self, cached: CachedFunction, engine: CacheWarmingEngine, binds: bool) -> Any:
        reads = self._self_reads
        if reads is None:
            reads = self._self_reads = AwaitedReads(
                cached, engine.offloop, engine.refresher.max_pending
            )
        return make_async_reader(cached, reads, binds)

    if TYPE_CHECKING:
        # A WarmableFunction at runtime (one class for signal senders and
        # isinstance checks), whose calls return awaitables of R.
        def __call__(  # type: ignore[override]
            self, *args: P.args, **kwargs: P.kwargs
        ) -> Coroutine[Any, Any, R]: ...

        @property
        def original(self) -> Callable[P, Coroutine[Any, Any, R]]: ...  # type: ignore[override]

        @overload  # type: ignore[override]
        def __get__(
            self: ClassFirst[P2, Coroutine[Any, Any, R2]],
            instance: Any,
            owner: type[Any] | None = None,
        ) -> BoundAsyncWarmable[P2, R2]: ...
        @overload
        def __get__(
            self: SelfFirst[S, P2, Coroutine[Any, Any, R2]], instance: None, owner: type[S]
        ) -> UnboundAsyncWarmable[P2, R2]: ...
        @overload
        def __get__(
            self: SelfFirst[S, P2, Coroutine[Any, Any, R2]],
            instance: S,
            owner: type[S] | None = None,
        ) -> BoundAsyncWarmable[P2, R2]: ...
        @overload
        def __get__(
            self, instance: Any, owner: type[Any] | None = None
        ) -> BoundAsyncWarmable[P, R]: ...
        def __get__(self, instance: Any, owner: type[Any] | None = None) -> Any: ...


_TAKE_CALL_ARGUMENTS = frozenset(
    ("key_for", "get", "set", "invalidate", "aget", "aset", "ainvalidate")
)
_SHARED_ATTRIBUTES = _TAKE_CALL_ARGUMENTS | {"task", "original"}


def _binding_kind(wrapped: object, cached: CachedFunction) -> str | None:
    """How the proxy of ``wrapped`` binds when looked up (see WarmableFunction.__init__)."""
    if isinstance(wrapped, staticmethod):
        return "static"
    if isinstance(wrapped, classmethod) and cached.keys.skips_first:
        return "class"
    if _is_plain_function(wrapped) and cached.keys.skips_first:
        return "self"
    return None


def _is_plain_function(fn: object) -> bool:
    """Whether ``fn`` is a function called as it is: not a staticmethod, classmethod or
    bound method (those need wrapt's binding to reach the right object)."""
    return isinstance(fn, types.FunctionType)
