"""Helpers for testing code that uses dogpile_warm.

- :class:`FakeClock`: a settable clock for ``CacheWarmingEngine(clock=...)``.
- :func:`isolated_engine`: a fresh default engine for the duration of a block.
- :func:`captured_signals`: record what dogpile_warm's signals send.
- :func:`wait_until`: poll a condition until it holds, failing after a timeout.

Example (pytest)::

    @pytest.fixture(autouse=True)
    def warm_engine():
        with isolated_engine() as engine:
            yield engine
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from blinker import Signal

from . import signals as _signals
from .default import set_warming_engine
from .engine import CacheWarmingEngine

__all__ = ["CapturedSignal", "FakeClock", "captured_signals", "isolated_engine", "wait_until"]

T = TypeVar("T")

# Read once: a test that patches time.monotonic or time.sleep (a fake clock) does not
# change how long wait_until really waits.
_monotonic = time.monotonic
_sleep = time.sleep


class FakeClock:
    """A clock that only moves when told to: ``clock()`` returns ``clock.now``.

    ``real_time`` is False: an engine on it starts a refresh as soon as a read
    finds the value due, since no timer could wait for this clock's time.
    """

    real_time = False

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


def wait_until(
    condition: Callable[[], T | None],
    timeout: float = 5.0,
    interval: float = 0.01,
    message: str | Callable[[], str] = "",
) -> T:
    """Call ``condition()`` every ``interval`` seconds until it returns a truthy value,
    and return that value (never None: a condition typed ``X | None`` gives an ``X``).

    After ``timeout`` seconds (of real time, whatever the test did to ``time``) it raises
    ``AssertionError`` naming what it waited for: ``message``, or the result of calling
    it (so that output gathered at that moment, a server's log, can be shown), or else
    the condition's name. The last try comes after the deadline has passed.
    """
    deadline = _monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if _monotonic() >= deadline:
            break
        _sleep(interval)
    what = message() if callable(message) else message
    if not what:
        what = getattr(condition, "__qualname__", None) or repr(condition)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
