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

from blinker import Namespace

__all__ = ["cache_hit", "cache_miss", "invalidated", "refreshed", "warm_failed", "warmed"]

_signals = Namespace()

cache_hit = _signals.signal("dogpile_warm.cache_hit", doc="A call answered from the cache.")
cache_miss = _signals.signal("dogpile_warm.cache_miss", doc="A call that ran the function.")
refreshed = _signals.signal("dogpile_warm.refreshed", doc="A background refresh-ahead stored.")
warmed = _signals.signal("dogpile_warm.warmed", doc="A warming computed and stored a value.")
warm_failed = _signals.signal("dogpile_warm.warm_failed", doc="A warming or refresh failed.")
invalidated = _signals.signal("dogpile_warm.invalidated", doc="Tags were invalidated.")
