"""Sends keep blinker's meaning while remembering receivers per sender."""

from __future__ import annotations

import gc
from typing import Any

import pytest

from dogpile_warm import signals, warmable


@pytest.fixture
def hot() -> Any:
    @warmable(ttl=3600)
    def hot(x: int) -> int:
        return x

    hot(0)  # stored: every later hot(0) is a hit
    return hot


def test_a_receiver_connected_after_sends_gets_the_next_ones(hot: Any) -> None:
    """Connecting clears what the signal remembered about the sender."""
    got: list[str] = []
    hot(0)  # remembered: nobody to call

    def receiver(sender: object, **kw: Any) -> None:
        got.append(kw["key"])

    signals.cache_hit.connect(receiver, sender=hot)
    try:
        hot(0)
    finally:
        signals.cache_hit.disconnect(receiver)
    hot(0)
    assert got == [hot.key_for(0)]


def test_a_receiver_for_another_sender_or_any_sender(hot: Any) -> None:
    """Sender-specific receivers hear their sender only; ANY receivers hear all."""

    @warmable(ttl=3600)
    def other(x: int) -> int:
        return x

    other(0)
    mine: list[object] = []
    every: list[object] = []

    def for_other(sender: object, **kw: Any) -> None:
        mine.append(sender)

    def for_any(sender: object, **kw: Any) -> None:
        every.append(sender)

    signals.cache_hit.connect(for_other, sender=other)
    signals.cache_hit.connect(for_any)
    try:
        hot(0), other(0), hot(0)
    finally:
        signals.cache_hit.disconnect(for_other)
        signals.cache_hit.disconnect(for_any)
    assert mine == [other]
    assert every == [hot, other, hot]


def test_a_weak_receiver_that_died_is_not_called(hot: Any) -> None:
    """A weakly connected receiver stops receiving once garbage-collected."""
    got: list[int] = []

    class Listener:
        def on_hit(self, sender: object, **kw: Any) -> None:
            got.append(1)

    listener = Listener()
    signals.cache_hit.connect(listener.on_hit, sender=hot)
    hot(0)
    del listener
    gc.collect()
    hot(0)
    assert got == [1]
    assert not signals.cache_hit.receivers


def test_a_strong_receiver_without_weak_references_keeps_receiving(hot: Any) -> None:
    """weak=False receivers that cannot be weakly referenced are called every time."""
    got: list[int] = []

    class Slotted:
        __slots__ = ()

        def __call__(self, sender: object, **kw: Any) -> None:
            got.append(1)

    receiver = Slotted()
    signals.cache_hit.connect(receiver, sender=hot, weak=False)
    try:
        hot(0), hot(0)
    finally:
        signals.cache_hit.disconnect(receiver)
    assert got == [1, 1]


def test_muted_signals_call_nobody(hot: Any) -> None:
    """blinker's muted() still silences the signal."""
    got: list[int] = []

    def receiver(sender: object, **kw: Any) -> None:
        got.append(1)

    signals.cache_hit.connect(receiver, sender=hot)
    try:
        hot(0)
        with signals.cache_hit.muted():
            hot(0)
        hot(0)
    finally:
        signals.cache_hit.disconnect(receiver)
    assert got == [1, 1]


def test_send_returns_what_blinker_returns(hot: Any) -> None:
    """send() returns (receiver, result) pairs, as blinker's does."""

    def receiver(sender: object, **kw: Any) -> str:
        return "seen"

    signals.cache_hit.connect(receiver, sender=hot)
    try:
        assert signals.cache_hit.send(hot, key="k", age=0.0) == [(receiver, "seen")]
        assert signals.cache_hit.send(hot, key="k", age=0.0) == [(receiver, "seen")]
    finally:
        signals.cache_hit.disconnect(receiver)


def test_a_coroutine_receiver_fails_as_in_blinker(hot: Any) -> None:
    """Sending to a coroutine receiver without _async_wrapper raises blinker's error."""

    async def receiver(sender: object, **kw: Any) -> None:
        return None

    signals.warmed.connect(receiver)
    try:
        with pytest.raises(RuntimeError, match="coroutine"):
            signals.warmed.send(hot.task, key="k", duration_ms=1.0)
    finally:
        signals.warmed.disconnect(receiver)
