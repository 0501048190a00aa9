"""The first step of every call of a decorated function: its key, and the memory shortcut.

:func:`make_reader` builds, once per function, the closure its calls run:
``read(fn, /, *args, **kwargs)`` returns the call's cached value, computing
it with ``fn(*args, **kwargs)`` when needed. A plain function's proxy calls
it directly (see :class:`~dogpile_warm.decorator.WarmableFunction`); methods
reach it through wrapt's binding.

It is a closure because every cached call runs it: what never changes is
bound once here rather than looked up per call, and the two steps that would
otherwise be calls of their own are written out in place, each marked. On
dogpile's memory backend a verified entry not yet due for refresh is the
answer (see :mod:`dogpile_warm._core.memory_index`); everything else goes to
:meth:`CachedFunction.read_through <dogpile_warm._cached.cached.CachedFunction.read_through>`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import signals
from .._core.keys import MEMO_TYPES
from .._usage.usage import DRAIN_AT, QUEUE_CAP

if TYPE_CHECKING:
    from .cached import CachedFunction

__all__ = ["Reader", "make_reader"]

Reader = Callable[..., Any]  # read(fn, /, *args, **kwargs)


def make_reader(cached: CachedFunction) -> Reader:
    """Build the read path of ``cached``'s calls (see the module docstring)."""
    memo, build_key = cached.keys.memo, cached.keys.key
    usage = cached.usage
    queued_hits, wall_clock, clock = usage.queued_hits, usage.wall_clock, usage.clock
    fresh_for = cached.fresh_for or 0.0  # only read where _memory is set, so not None
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
        memory = cached._memory
        if memory is not None:
            entry = memory.get(key)
            if entry is not None:
                now = time.time()
                age = now - entry.created
                if age <= fresh_for:
                    # A hit: Usage.hit, then CachedFunction._report's signal.
                    queued_hits.append((cached, key, now if wall_clock else clock()))
                    if cache_hit.receivers:
                        cache_hit.send(cached.sender, key=key, age=age)
                    return entry.value
        return cached.read_through(key, fn, args, kwargs)

    return read
