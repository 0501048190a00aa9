"""What a type checker sees of a decorated function; nothing here runs.

``@warmable(...)`` is a :class:`Decorator`: given a function it gives a
:class:`~dogpile_warm.decorator.WarmableFunction` with the function's own
parameters and return type, given an ``async def`` an
:class:`~dogpile_warm.decorator.AsyncWarmableFunction` whose calls return
awaitables of the same value. A method looked up on an instance is a
:class:`BoundWarmable` (or :class:`BoundAsyncWarmable`): the method without
``self``; looked up on its class, an :class:`UnboundWarmable`.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, Protocol, TypeVar, overload

from dogpile.cache.api import NoValue

if TYPE_CHECKING:
    from .task import WarmingTask
    from .wrappers import AsyncWarmableFunction, WarmableFunction

__all__ = [
    "BoundAsyncWarmable",
    "BoundWarmable",
    "ClassFirst",
    "Decorator",
    "SelfFirst",
    "UnboundAsyncWarmable",
    "UnboundWarmable",
]

P = ParamSpec("P")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)
S_contra = TypeVar("S_contra", contravariant=True)


class _Companions(Protocol[P, R_co]):
    """The attributes every view has, taking the function's arguments (without self)."""

    @property
    def task(self) -> WarmingTask: ...
    def key_for(self, *args: P.args, **kwargs: P.kwargs) -> str: ...
    def get(self, *args: P.args, **kwargs: P.kwargs) -> R_co | NoValue: ...
    def set(self, value: Any, *args: Any, **kwargs: Any) -> None: ...
    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> None: ...
    async def aget(self, *args: P.args, **kwargs: P.kwargs) -> R_co | NoValue: ...
    async def aset(self, value: Any, *args: Any, **kwargs: Any) -> None: ...
    async def ainvalidate(self, *args: P.args, **kwargs: P.kwargs) -> None: ...


class UnboundWarmable(_Companions[P, R_co], Protocol[P, R_co]):
    """A warmable method looked up on its class: called with the instance first."""

    def __call__(self, instance: Any, /, *args: P.args, **kwargs: P.kwargs) -> R_co: ...


class UnboundAsyncWarmable(_Companions[P, R_co], Protocol[P, R_co]):
    """An ``async def`` method looked up on its class: called with the instance first."""

    def __call__(
        self, instance: Any, /, *args: P.args, **kwargs: P.kwargs
    ) -> Coroutine[Any, Any, R_co]: ...


class _BoundCompanions(_Companions[P, R_co], Protocol[P, R_co]):
    """What a bound view adds: computing with the bound method."""

    def refresh(self, *args: P.args, **kwargs: P.kwargs) -> R_co: ...
    def warm(self, *args: P.args, **kwargs: P.kwargs) -> bool: ...
    async def arefresh(self, *args: P.args, **kwargs: P.kwargs) -> R_co: ...
    async def awarm(self, *args: P.args, **kwargs: P.kwargs) -> bool: ...


class BoundWarmable(_BoundCompanions[P, R_co], Protocol[P, R_co]):
    """A warmable method looked up on an instance (or a classmethod or staticmethod
    looked up anywhere): the function without ``self`` or ``cls``."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co: ...


class BoundAsyncWarmable(_BoundCompanions[P, R_co], Protocol[P, R_co]):
    """:class:`BoundWarmable` for an ``async def``: calls return awaitables."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R_co]: ...


class ClassFirst(Protocol[P, R_co]):
    """A decorated function whose first parameter is a class: a classmethod's."""

    @property
    def original(self) -> Callable[Concatenate[type[Any], P], R_co]: ...


class SelfFirst(Protocol[S_contra, P, R_co]):
    """A decorated function whose first parameter takes an ``S_contra``: a method's."""

    @property
    def original(self) -> Callable[Concatenate[S_contra, P], R_co]: ...


class Decorator(Protocol):
    """What ``warmable(...)`` returns, by what it is given.

    Under ``@warmable``, type checkers hand the decorator a ``@classmethod``'s
    or ``@staticmethod``'s function itself; the proxy's ``__get__`` tells them
    from methods by their first parameter (:class:`ClassFirst`,
    :class:`SelfFirst`), so each binds as it does at run time.
    """

    # An async def first: it is a callable too.
    @overload
    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, R]], /
    ) -> AsyncWarmableFunction[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> WarmableFunction[P, R]: ...
