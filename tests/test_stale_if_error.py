"""``@warmable(stale_if_error=seconds)``: a failed recompute serves the old value a while."""

from __future__ import annotations

import time
from typing import Any

import pytest

import dogpile_warm
from dogpile_warm import signals, warmable
from dogpile_warm.testing import FakeClock, captured_signals

TTL = 0.3


def wall_clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """A settable clock over time.time, which ages are measured with (memory backend)."""
    wall = FakeClock(time.time())
    monkeypatch.setattr(time, "time", wall)
    return wall


class Flaky:
    """A computation that fails while ``failing`` is set."""

    def __init__(self) -> None:
        self.failing = False
        self.calls = 0

    def __call__(self, x: int) -> int:
        self.calls += 1
        if self.failing:
            raise ConnectionError("database down")
        return x * 10 + self.calls


def test_a_failed_recompute_serves_the_old_value_counted_and_signalled(backend: str) -> None:
    flaky = Flaky()

    @warmable(ttl=TTL, refresh_ahead=None, stale_if_error=1.0)
    def lookup(x: int) -> int:
        return flaky(x)

    first = lookup(1)
    time.sleep(TTL + 0.05)  # real time: the ttl passes on a real server too
    flaky.failing = True
    with captured_signals() as log:
        assert lookup(1) == first  # past its ttl, the database down: the old value
    [served] = log.named("served_stale")
    assert served.kwargs["key"] == lookup.key_for(1)
    assert TTL < served.kwargs["age"] < TTL + 1.0
    assert isinstance(served.kwargs["error"], ConnectionError)
    assert dogpile_warm.get_warming_stats()["stale_served"] == 1
    flaky.failing = False
    assert lookup(1) != first  # the next call recomputes and stores a fresh value


def test_past_ttl_plus_stale_if_error_the_error_reaches_the_caller(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wall = wall_clock(monkeypatch)
    flaky = Flaky()

    @warmable(ttl=TTL, refresh_ahead=None, stale_if_error=0.2)
    def lookup(x: int) -> int:
        return flaky(x)

    lookup(1)
    flaky.failing = True
    wall.advance(TTL + 0.25)
    with pytest.raises(ConnectionError):
        lookup(1)
    assert dogpile_warm.get_warming_stats()["stale_served"] == 0


def test_off_by_default_ttl_is_a_promise(monkeypatch: pytest.MonkeyPatch) -> None:
    wall = wall_clock(monkeypatch)
    flaky = Flaky()

    @warmable(ttl=TTL, refresh_ahead=None)
    def lookup(x: int) -> int:
        return flaky(x)

    lookup(1)
    flaky.failing = True
    wall.advance(TTL + 0.05)
    with pytest.raises(ConnectionError):
        lookup(1)


def test_a_first_computation_that_fails_has_nothing_to_serve() -> None:
    flaky = Flaky()
    flaky.failing = True

    @warmable(ttl=TTL, stale_if_error=10)
    def lookup(x: int) -> int:
        return flaky(x)

    with pytest.raises(ConnectionError):
        lookup(1)


@pytest.mark.parametrize(
    ("value", "error"),
    [(0, ValueError), (-1, ValueError), (float("inf"), TypeError), ("5", TypeError)],
)
def test_bad_stale_if_error_is_refused(value: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="stale_if_error"):
        warmable(stale_if_error=value)


def test_the_signal_exists() -> None:
    assert signals.served_stale.name == "dogpile_warm.served_stale"
