"""A backend's health: failures by kind, log episodes, and the circuit breaker, on a fake clock."""

from __future__ import annotations

import logging
import pickle

import pytest
from dogpile.cache import make_region
from pymemcache.exceptions import (
    MemcacheError,
    MemcacheServerError,
    MemcacheUnexpectedCloseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from dogpile_warm._core.health import BackendHealth, call_budget, overspent, spend
from dogpile_warm._core.store import CacheStore
from dogpile_warm.errors import BackendError, BackendUnavailable, ValueRefused, ValueUnreadable
from dogpile_warm.testing import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=100.0)


@pytest.fixture
def health(clock: FakeClock) -> BackendHealth:
    return BackendHealth("r", retry_after=1.0, quiet=2.0, probe_timeout=5.0, clock=clock)


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "dogpile_warm._core.health"]


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(),
        ConnectionResetError(),
        TimeoutError("timed out"),
        MemcacheUnexpectedCloseError(),
        MemcacheError("All servers seem to be down right now"),
        RedisConnectionError("refused"),
        RedisTimeoutError("timed out"),
    ],
)
def test_connection_errors_mean_unavailable_whatever_the_operation(exc: Exception) -> None:
    """Refused, reset, closed and timed-out connections are outages on reads and writes."""
    assert isinstance(failed(exc, "read"), BackendUnavailable)
    assert isinstance(failed(exc, "write"), BackendUnavailable)


@pytest.mark.parametrize(
    ("exc", "operation", "kind"),
    [
        (pickle.UnpicklingError("bad"), "read", ValueUnreadable),
        (EOFError(), "read", ValueUnreadable),
        (MemcacheServerError("object too large for cache"), "write", ValueRefused),
        (TypeError("cannot pickle '_thread.lock' object"), "write", ValueRefused),
        (ResponseError("OOM"), "write", ValueRefused),
        (RuntimeError("?"), "delete", BackendUnavailable),
    ],
)
def test_other_errors_mean_unreadable_on_reads_and_refused_on_writes(
    exc: Exception, operation: str, kind: type[BackendError]
) -> None:
    """What the server answered with is about the value, not the backend's health."""
    assert type(failed(exc, operation)) is kind


def failed(exc: Exception, operation: str) -> BackendError:
    """What the store makes of ``exc`` raised by ``operation`` (its one failure policy)."""
    return CacheStore(make_region().configure("dogpile.cache.memory")).failed(exc, "k", operation)


def test_the_breaker_opens_on_a_failure_and_lets_one_probe_through_after_retry_after(
    health: BackendHealth, clock: FakeClock
) -> None:
    """Closed: everything goes; open: nothing but one probe per retry_after seconds."""
    assert health.allows()
    health.failed_unavailable(ConnectionRefusedError(), "k", "read")
    assert health.open
    assert not health.allows() and not health.allows()
    clock.advance(1.0)
    assert health.allows()  # the probe
    assert not health.allows()  # only one at a time
    assert health.skipped == 3


def test_a_successful_probe_closes_the_breaker(health: BackendHealth, clock: FakeClock) -> None:
    """The probe's success lets every caller use the backend again."""
    health.failed_unavailable(ConnectionRefusedError(), "k", "read")
    clock.advance(1.0)
    assert health.allows()
    health.succeeded(clock())
    assert not health.open and health.allows() and health.allows()


def test_an_answer_to_an_operation_sent_before_the_failure_does_not_close_it(
    health: BackendHealth, clock: FakeClock
) -> None:
    """Answers still arriving for operations begun before the breaker opened say nothing
    about the backend now (a slow server answers them late): only a later one closes it."""
    sent = clock()
    clock.advance(0.3)
    health.failed_unavailable(TimeoutError(), "k", "read")
    clock.advance(0.2)
    health.succeeded(sent)
    assert health.open
    clock.advance(1.0)
    assert health.allows()  # the probe
    health.succeeded(clock())
    assert not health.open


def test_a_failed_probe_keeps_it_open_for_another_retry_after(
    health: BackendHealth, clock: FakeClock
) -> None:
    """A probe that fails waits a full retry_after before the next."""
    health.failed_unavailable(ConnectionRefusedError(), "k", "read")
    clock.advance(1.0)
    assert health.allows()
    clock.advance(0.5)
    health.failed_unavailable(TimeoutError(), "k", "read")
    clock.advance(0.9)
    assert not health.allows()
    clock.advance(0.1)
    assert health.allows()


def test_a_probe_that_never_reports_is_replaced_after_probe_timeout(
    health: BackendHealth, clock: FakeClock
) -> None:
    """A hung probe (a client without timeouts) does not keep the backend skipped forever."""
    health.failed_unavailable(ConnectionRefusedError(), "k", "read")
    clock.advance(1.0)
    assert health.allows()
    clock.advance(4.9)
    assert not health.allows()
    clock.advance(0.1)
    assert health.allows()


def test_an_outage_logs_once_at_its_start_and_once_quiet_seconds_after_its_last_failure(
    health: BackendHealth, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Failures and successes interleaved within ``quiet`` are one episode: two lines."""
    caplog.set_level(logging.WARNING, logger="dogpile_warm")
    for _ in range(10):  # a flapping backend: one server of several, say
        health.failed_unavailable(ConnectionRefusedError(), "k", "read")
        clock.advance(0.5)
        health.succeeded(clock())
        clock.advance(0.5)
    assert warnings(caplog) == [warnings(caplog)[0]]
    assert "is unavailable" in warnings(caplog)[0] and "'k'" in warnings(caplog)[0]
    clock.advance(1.0)  # 2 s since the last failure
    health.succeeded(clock())
    health.succeeded(clock())
    assert len(warnings(caplog)) == 2 and "answers again" in warnings(caplog)[1]
    assert health.unavailable == 10 and not health.in_outage


def test_a_refused_value_is_logged_once_per_owner_and_opens_nothing(
    health: BackendHealth, caplog: pytest.LogCaptureFixture
) -> None:
    """A value too large for the backend is the value's problem, not an outage."""
    caplog.set_level(logging.WARNING, logger="dogpile_warm")
    for _ in range(5):
        health.failed_refused(MemcacheServerError("object too large"), "k1", "mod:f")
        health.failed_refused(MemcacheServerError("object too large"), "k2", "mod:g")
    assert health.refused == 10 and not health.open and health.errors == 10
    assert len(warnings(caplog)) == 2
    assert "mod:f" in warnings(caplog)[0] and "object too large" in warnings(caplog)[0]


def test_unreadable_values_log_once_per_episode(
    health: BackendHealth, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A burst of unreadable values is one line; another after a quiet minute is another."""
    caplog.set_level(logging.WARNING, logger="dogpile_warm")
    for _ in range(5):
        health.failed_unreadable("cannot unpickle", "k")
        clock.advance(10)
    clock.advance(60)
    health.failed_unreadable("cannot unpickle", "k")
    assert health.unreadable == 6 and not health.open
    assert len(warnings(caplog)) == 2


def test_a_call_budget_is_spent_by_round_trips_and_overspent_once() -> None:
    """Inside call_budget(), round trips are charged; the one that overspends says so once,
    and the call counts as overspent from then on; outside, nothing is charged."""
    assert spend(10.0) is False and overspent() is False
    with call_budget(0.75):
        assert spend(0.4) is False
        assert not overspent()
        assert spend(0.4) is True
        assert overspent()
        assert spend(0.4) is False  # already over: not reported again
    assert overspent() is False


def test_a_lock_lost_on_release_is_no_backend_failure() -> None:
    """Releasing a lock whose lease ran out (Redis' LockNotOwnedError) is reported as
    LockLost, not counted, and opens nothing."""
    from redis.exceptions import LockNotOwnedError

    from dogpile_warm.errors import LockLost

    store = CacheStore(make_region().configure("dogpile.cache.memory"))
    error = store.failed(LockNotOwnedError("no longer owned"), "k", "unlock")
    assert isinstance(error, LockLost)
    assert store.health.errors == 0 and not store.health.open
    error = store.failed(ConnectionResetError(), "k", "unlock")
    assert store.health.unavailable == 1 and store.health.open
