"""The first step of every call of a decorated function: its key, and the memory shortcut.

:func:`make_reader` builds, once per function, the closure its calls run:
``read(fn, /, *args, **kwargs)`` returns the call's cached value, computing
it with ``fn(*args, **kwargs)`` when needed. A plain function's proxy calls
it directly (see :class:`~dogpile_warm.decorator.WarmableFunction`); methods
reach it through their own read path (``binds``), bound to their instance.

It is a closure because every cached call runs it: what never changes is
bound once here rather than looked up per call, and the two steps that would
otherwise be calls of their own are written out in place, each marked. On
dogpile's memory backend a verified entry not yet due for refresh is the
answer (see :mod:`dogpile_warm._core.memory_index`); everything else goes to
:meth:`CachedFunction.read_through <dogpile_warm._cached.cached.CachedFunction.read_through>`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from types import MethodType
from typing import TYPE_CHECKING, Any

from .. import signals
from .._core.entry import FORMAT
from .._core.keys import MEMO_TYPES
from .._core.store import UNAVAILABLE
from .._usage.usage import DRAIN_AT, QUEUE_CAP
from .refresh import WindowPolicy

if TYPE_CHECKING:
    from .awaited import AwaitedReads
    from .cached import CachedFunction

__all__ = ["Reader", "make_async_reader", "make_reader"]

_INF = math.inf

Reader = Callable[..., Any]  # read(fn, /, *args, **kwargs)


def make_reader(cached: CachedFunction, binds: bool = False) -> Reader:
    """Build the read path of ``cached``'s calls (see the module docstring).

    ``binds``: the read path of a method, ``read(obj, /, *args, **kwargs)``,
    which computes with ``cached.fn`` bound to ``obj`` (an instance, or a
    classmethod's class); its key is made of ``args`` and ``kwargs`` alone.
    """
    memo, build_key = cached.keys.memo, cached.keys.key
    method = cached.fn
    usage = cached.usage
    queued_hits, clock = usage.queued_hits, cached.clock
    # Only read where memory_entries or direct_store is set, so not None.
    fresh_for = cached.fresh_for or 0.0
    remembered = usage.calls
    ttl, points = cached.ttl, refresh_points(cached)
    cache_hit = signals.cache_hit

    def read(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        # Queued hits are applied here, before any freshness check, so that
        # applying them never delays a checked value's return (see usage.DRAIN_AT).
        waiting = len(queued_hits)
        if waiting >= DRAIN_AT:
            usage.drain(wait=waiting >= QUEUE_CAP)
        # The key: KeyBuilder.memo, looked up under its rule.
        key = None
        if not kwargs:
            try:
                key = memo.get(args)
            except TypeError:  # an unhashable argument: never memoised
                key = None
            if key is not None:
                for arg in args:
                    if type(arg) not in MEMO_TYPES:
                        key = None
                        break
        if key is None:
            key = build_key(args, kwargs)
        memory = cached.memory_entries
        if memory is not None:
            entry = memory.get(key)
            if entry is not None:
                now = clock()
                age = now - entry.created
                if age <= fresh_for or (
                    # In the refresh window, before the point decided for this value.
                    age <= ttl
                    and (point := points.get(key)) is not None
                    and point[0] == entry.created
                    and now < point[1]
                ):
                    # A hit, written out: what Usage.hit and the slow path's cache_hit do
                    # (tests/test_read_path.py checks that the two agree).
                    queued_hits.append((cached, key, now))
                    if cache_hit.receivers:
                        cache_hit.send(cached.sender, key=key, age=age)
                    return entry.value
        if binds:
            fn = MethodType(method, fn)
        store = cached.direct_store
        if store is None:
            return cached.read_through(key, fn, args, kwargs)
        # A backend without a memory index (memcached, Redis): the read, and a hit
        # younger than fresh_for, written out: what read_through() does for it
        # (tests/test_read_path.py checks that the two agree), without building
        # an Entry for a value about to be returned.
        found = store.fetch(key)
        if found is UNAVAILABLE:
            return cached.read_entry(key, fn, args, kwargs, store, UNAVAILABLE)
        stored = found[0]  # (FORMAT, key, value, created, ttl, tags, cost): see _core.entry
        if (
            type(stored) is tuple
            and len(stored) == 7
            and stored[0] == FORMAT
            and stored[1] == key
            and type(stored[5]) is tuple
            and not stored[5]
            # The fields _core.entry.well_formed checks (other numbers than floats
            # take the way that calls it): a crafted value is never served here.
            and type(stored[3]) is type(stored[4]) is type(stored[6]) is float
            and stored[4] == stored[4]
            and -_INF < stored[6] < _INF
        ):
            now = clock()
            age = now - stored[3]
            if -_INF < age <= fresh_for:  # nor was it made at an infinite or NaN time
                if key not in remembered:
                    usage.remember_call(cached, key, args, kwargs)
                queued_hits.append((cached, key, now))
                if cache_hit.receivers:
                    cache_hit.send(cached.sender, key=key, age=age)
                return stored[2]
        return cached.read_entry(key, fn, args, kwargs, store, store.entry_of(key, found))

    return read


def refresh_points(cached: CachedFunction) -> dict[str, tuple[float, float]]:
    """The refresh points the window policy decided (see :class:`WindowPolicy`), else
    an empty dict: no point, so past ``fresh_for`` the read path asks the policy."""
    policy = cached.policy
    return policy.points if isinstance(policy, WindowPolicy) else {}


def make_async_reader(cached: CachedFunction, reads: AwaitedReads, binds: bool = False) -> Reader:
    """Build the read path of an ``async def``'s calls: ``read(fn, /, *args, **kwargs)``
    returns a coroutine, and a memory hit returns without suspending; past the
    shortcut, ``reads`` (see :mod:`dogpile_warm._cached.awaited`).

    The body is :func:`make_reader`'s, written out again in an ``async def``
    (tests/test_async.py checks that the two agree).
    """
    memo, build_key = cached.keys.memo, cached.keys.key
    method = cached.fn
    usage = cached.usage
    queued_hits, clock = usage.queued_hits, cached.clock
    fresh_for = cached.fresh_for or 0.0
    ttl, points = cached.ttl, refresh_points(cached)
    cache_hit = signals.cache_hit
    read_through = reads.read_through

    async def read(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        waiting = len(queued_hits)
        if waiting >= DRAIN_AT:
            usage.drain(wait=waiting >= QUEUE_CAP)
        key = None
        if not kwargs:
            try:
                key = memo.get(args)
            except TypeError:
                key = None
            if key is not None:
                for arg in args:
                    if type(arg) not in MEMO_TYPES:
                        key = None
                        break
        if key is None:
            key = build_key(args, kwargs)
        memory = cached.memory_entries
        if memory is not None:
            entry = memory.get(key)
            if entry is not None:
                now = clock()
                age = now - entry.created
                if age <= fresh_for or (
                    age <= ttl
                    and (point := points.get(key)) is not None
                    and point[0] == entry.created
                    and now < point[1]
                ):
                    queued_hits.append((cached, key, now))
                    if cache_hit.receivers:
                        cache_hit.send(cached.sender, key=key, age=age)
                    return entry.value
        if binds:
            fn = MethodType(method, fn)
        return await read_through(key, fn, args, kwargs)

    return read
