"""Blinker signals sent by dogpile_warm.

Connect with the usual blinker API, e.g. ``cache_hit.connect(receiver)`` or
``cache_hit.connect(receiver, sender=my_cached_function)``.

============== ========================= =======================================
signal         sender                    keyword arguments
============== ========================= =======================================
cache_hit      the decorated function    ``key``, ``age`` (seconds)
cache_miss     the decorated function    ``key``, ``duration_ms``
refreshed      the decorated function    ``key``, ``duration_ms``
warmed         the WarmingTask (engine)  ``key``, ``duration_ms``
warm_failed    the WarmingTask (engine)  ``key``, ``error`` (the exception)
invalidated    the engine                ``tags``
============== ========================= =======================================

Every call through a decorated function sends exactly one of ``cache_hit`` or
``cache_miss``. Senders check ``signal.receivers`` before sending, so a signal
nobody listens to costs one attribute test.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from inspect import iscoroutinefunction
from typing import Any

from blinker import ANY, NamedSignal

__all__ = [
    "cache_hit",
    "cache_miss",
    "invalidated",
    "refreshed",
    "served_stale",
    "warm_failed",
    "warmed",
]

# Senders remembered per signal; the memory starts over beyond this.
_MAX_SENDERS = 1024

_Ref = Callable[[], Any]


class _RememberingSignal(NamedSignal):
    """A blinker signal that remembers, per sender, which receivers a send calls.

    blinker works the receivers out on every send: ``make_id(sender)``, set
    unions and a coroutine check, each ``isinstance`` going through the proxy
    when the sender is a wrapt proxy; ``benchmarks/hit_path.py`` measures a
    hit with one receiver. ``cache_hit`` is sent on every hit, so the answer
    is kept until a receiver connects or disconnects. Receivers are held as weak references: one connected weakly
    that has died makes the next send ask blinker again (which cleans up);
    one connected strongly stays alive through blinker's own reference.
    Muted signals, ``_async_wrapper`` and coroutine receivers go through
    blinker's ``send`` unchanged.
    """

    def __init__(self, name: str, doc: str | None = None) -> None:
        super().__init__(name, doc)
        # id(sender) -> (sender, receiver references), or None: always ask blinker
        self._plans: dict[int, tuple[Any, list[_Ref] | None]] = {}

    def connect(self, receiver: Any, sender: Any = ANY, weak: bool = True) -> Any:
        try:
            return super().connect(receiver, sender, weak)
        finally:
            self._plans = {}

    def disconnect(self, receiver: Any, sender: Any = ANY) -> None:
        try:
            super().disconnect(receiver, sender)
        finally:
            self._plans = {}

    def send(
        self, sender: Any = None, /, *, _async_wrapper: Any = None, **kwargs: Any
    ) -> list[tuple[Callable[..., Any], Any]]:
        if _async_wrapper is not None or self.is_muted:
            return super().send(sender, _async_wrapper=_async_wrapper, **kwargs)
        plans = self._plans
        plan = plans.get(id(sender))
        if plan is None or plan[0] is not sender:
            plan = self._plan(sender)
        refs = plan[1]
        if refs is None:
            return super().send(sender, **kwargs)
        receivers = [ref() for ref in refs]
        if None in receivers:  # a weak receiver died since
            self._plans = {}
            return super().send(sender, **kwargs)
        return [(receiver, receiver(sender, **kwargs)) for receiver in receivers]

    def _plan(self, sender: Any) -> tuple[Any, list[_Ref] | None]:
        receivers = list(self.receivers_for(sender))
        refs: list[_Ref] | None = None
        if not any(iscoroutinefunction(r) for r in receivers):
            refs = [_reference(r) for r in receivers]
        plans = self._plans
        if len(plans) >= _MAX_SENDERS:
            plans = self._plans = {}
        plan = plans[id(sender)] = (sender, refs)
        return plan


def _reference(receiver: Any) -> _Ref:
    try:
        if hasattr(receiver, "__self__") and hasattr(receiver, "__func__"):
            return weakref.WeakMethod(receiver)
        return weakref.ref(receiver)
    except TypeError:  # cannot be weakly referenced: blinker holds it strongly anyway
        return lambda: receiver


cache_hit = _RememberingSignal("dogpile_warm.cache_hit", "A call answered from the cache.")
cache_miss = _RememberingSignal("dogpile_warm.cache_miss", "A call that ran the function.")
refreshed = _RememberingSignal("dogpile_warm.refreshed", "A background refresh-ahead stored.")
warmed = _RememberingSignal("dogpile_warm.warmed", "A warming computed and stored a value.")
warm_failed = _RememberingSignal("dogpile_warm.warm_failed", "A warming or refresh failed.")
invalidated = _RememberingSignal("dogpile_warm.invalidated", "Tags were invalidated.")
served_stale = _RememberingSignal(
    "dogpile_warm.served_stale", "A recompute failed; the value past its ttl was returned."
)
