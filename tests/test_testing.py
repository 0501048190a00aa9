"""dogpile_warm.testing's helpers do what they promise to the tests that use them."""

from __future__ import annotations

import time

import pytest

from dogpile_warm.testing import wait_until


def test_wait_until_returns_the_first_truthy_value() -> None:
    """The condition is polled until it returns something truthy, which is returned."""
    answers = iter([0, None, "", ["ready"]])
    assert wait_until(lambda: next(answers), interval=0.001) == ["ready"]


def test_wait_until_fails_naming_what_it_waited_for() -> None:
    """On timeout it raises AssertionError with the message, or the condition's name."""

    def server_is_up() -> bool:
        return False

    with pytest.raises(AssertionError, match=r"0\.05 s waiting for the refresh"):
        wait_until(lambda: False, timeout=0.05, message="the refresh")
    with pytest.raises(AssertionError, match=r"waiting for .*server_is_up"):
        wait_until(server_is_up, timeout=0.05)
    with pytest.raises(AssertionError, match="waiting for the log: empty"):
        wait_until(lambda: False, timeout=0.05, message=lambda: "the log: empty")


def test_wait_until_waits_real_time_under_a_patched_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """A test that freezes time.monotonic and time.sleep still gets its timeout."""
    monkeypatch.setattr(time, "monotonic", lambda: 0.0)
    monkeypatch.setattr(time, "sleep", lambda seconds: None)
    with pytest.raises(AssertionError):
        wait_until(lambda: False, timeout=0.05)
