"""Helpers for testing code that uses dogpile_warm.

- :class:`FakeClock`: a settable clock for ``CacheWarmingEngine(clock=...)``.
- :func:`isolated_engine`: a fresh default engine for the duration of a block.
- :func:`captured_signals`: record what dogpile_warm's signals send.

Example (pytest)::

    @pytest.fixture(autouse=True)
    def warm_engine():
        with isolated_engine() as engine:
            yield engine
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from blinker import Signal

from . import signals as _signals
from .default import set_warming_engine
from .engine import CacheWarmingEngine

__all__ = ["CapturedSignal", "FakeClock", "captured_signals", "isolated_engine"]


class FakeClock:
    """A clock that only moves when told to: ``clock()`` returns ``clock.now``."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = float(start)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        """Move forward by ``seconds`` and return the new time."""
        self.now += seconds
        return self.now


@contextmanager
def isolated_engine(**engine_kwargs: Any) -> Iterator[CacheWarmingEngine]:
    """Install a new default engine (built with ``engine_kwargs``) for the block.

    Functions decorated inside the block register on it. The previous default
    comes back afterwards and the isolated engine is closed.
    """
    engine = CacheWarmingEngine(**engine_kwargs)
    previous = set_warming_engine(engine)
    try:
        yield engine
    finally:
        set_warming_engine(previous)
        engine.close()


@dataclass(frozen=True)
class CapturedSignal:
    """One send: which signal, who sent it and its keyword arguments."""

    signal: str
    sender: Any
    kwargs: dict[str, Any] = field(default_factory=dict)


class SignalLog(list[CapturedSignal]):
    """The sends seen by :func:`captured_signals`, in order (thread-safe appends)."""

    def named(self, name: str) -> list[CapturedSignal]:
        """The sends of the signal called ``name`` (e.g. ``"cache_hit"``)."""
        return [c for c in self if c.signal == name]


_ALL = (
    "cache_hit",
    "cache_miss",
    "refreshed",
    "warmed",
    "warm_failed",
    "invalidated",
    "served_stale",
)


@contextmanager
def captured_signals(*names: str) -> Iterator[SignalLog]:
    """Record the sends of the named signals (all of dogpile_warm's by default)."""
    log = SignalLog()
    lock = threading.Lock()
    connected: list[tuple[Signal, Any]] = []
    for name in names or _ALL:
        signal: Signal = getattr(_signals, name, None)  # type: ignore[assignment]
        if not isinstance(signal, Signal):
            raise ValueError(f"no dogpile_warm signal named {name!r}; known: {', '.join(_ALL)}")

        def receiver(sender: Any, _name: str = name, **kwargs: Any) -> None:
            with lock:
                log.append(CapturedSignal(_name, sender, kwargs))

        signal.connect(receiver, weak=False)
        connected.append((signal, receiver))
    try:
        yield log
    finally:
        for signal, receiver in connected:
            signal.disconnect(receiver)
