"""Bad arguments are refused where they are given, with a message naming the
argument and the value, never accepted to fail later with an unrelated traceback."""

from __future__ import annotations

import datetime
import math
from collections.abc import Callable
from typing import Any

import pytest

import dogpile_warm
from dogpile_warm import CacheWarmingEngine, UsagePatternTracker, WarmingTask, warmable

# The lines marked type: ignore[arg-type] pass a value of the wrong type on purpose.
CASES: list[tuple[str, Callable[[CacheWarmingEngine], Any], type[Exception], str]] = [
    ("start(check_every=inf)", lambda e: e.start(check_every=math.inf), TypeError, "check_every.*inf"),
    ("start(interval_minutes=nan)", lambda e: e.start(interval_minutes=math.nan), TypeError, "interval_minutes.*nan"),
    ("configure(expiration_time=-1)", lambda e: e.configure_region("r", expiration_time=-1), ValueError, "expiration_time.*-1"),
    ("configure(expiration_time=inf)", lambda e: e.configure_region("r", expiration_time=math.inf), TypeError, "expiration_time.*inf"),
    ("configure(expiration_time='60')", lambda e: e.configure_region("r", expiration_time="60"), TypeError, "expiration_time.*'60'"),  # type: ignore[arg-type]
    ("configure(arguments=5)", lambda e: e.configure_region("r", arguments=5), TypeError, "arguments.*5"),  # type: ignore[arg-type]
    ("configure(pymemcache, arguments={})", lambda e: e.configure_region("r", "dogpile.cache.pymemcache", arguments={}), ValueError, "url.*arguments=\\{\\}"),
    ("configure(pylibmc, arguments=None)", lambda e: e.configure_region("r", "dogpile.cache.pylibmc"), ValueError, "url.*arguments=None"),
    ("warmable(tags=5)", lambda e: warmable(tags=5), TypeError, "tags.*5"),  # type: ignore[arg-type]
    ("warmable(tags=b'x')", lambda e: warmable(tags=b"x"), TypeError, "tags.*b'x'"),  # type: ignore[arg-type]
    ("start(enable_pattern_warming='no')", lambda e: e.start(enable_pattern_warming="no"), TypeError, "enable_pattern_warming.*'no'"),  # type: ignore[arg-type]
    ("configure(signing_key=bytearray)", lambda e: e.configure_region("r", "dogpile.cache.redis", signing_key=bytearray(b"short")), ValueError, "at least 16 bytes.*5"),
    ("warmable(ttl=inf)", lambda e: warmable(ttl=math.inf), TypeError, "ttl.*inf"),
    ("warmable(xfetch_beta=inf)", lambda e: warmable(xfetch_beta=math.inf), TypeError, "xfetch_beta.*inf"),
    ("invalidate_by_tags(5)", lambda e: e.invalidate_by_tags(5), TypeError, "tags.*5"),  # type: ignore[arg-type]
    ("warm_cache(tags=5)", lambda e: e.warm_cache("k", int, tags=5), TypeError, "tags.*5"),  # type: ignore[arg-type]
    ("get_cached(5)", lambda e: e.get_cached(5), TypeError, "key.*5"),  # type: ignore[arg-type]
    ("WarmingTask(interval_minutes=inf)", lambda e: WarmingTask("a", "a", "a", int, interval_minutes=math.inf), TypeError, "interval_minutes.*inf"),
    ("warm_from_snapshot(rate_limit=inf)", lambda e: e.warm_from_snapshot(rate_limit=math.inf), TypeError, "rate_limit.*inf"),
    ("CacheWarmingEngine(user_preload_window=nan)", lambda e: CacheWarmingEngine(user_preload_window=math.nan), TypeError, "user_preload_window.*nan"),
    ("UsagePatternTracker(max_keys='10')", lambda e: UsagePatternTracker(max_keys="10"), TypeError, "max_keys.*'10'"),  # type: ignore[arg-type]
    ("get_access_frequency(window_minutes=nan)", lambda e: e.usage_tracker.get_access_frequency("k", math.nan), TypeError, "window_minutes.*nan"),
    ("save_hot_set(top_n=1.5)", lambda e: e.save_hot_set(top_n=1.5), TypeError, "top_n.*1.5"),  # type: ignore[arg-type]
]  # fmt: skip


@pytest.mark.parametrize(
    ("call", "error", "mentions"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_a_bad_argument_is_refused_naming_it_and_its_value(
    engine: CacheWarmingEngine,
    call: Callable[[CacheWarmingEngine], Any],
    error: type[Exception],
    mentions: str,
) -> None:
    with pytest.raises(error, match=mentions):
        call(engine)


def test_a_timedelta_expiration_time_still_works_as_in_dogpile(engine: CacheWarmingEngine) -> None:
    # configure_region is annotated float | None, but takes dogpile's timedelta as well.
    ninety = datetime.timedelta(seconds=90)
    region = engine.configure_region("r", expiration_time=ninety)  # type: ignore[arg-type]
    assert region.expiration_time == 90


def test_module_level_configure_checks_the_same(engine: CacheWarmingEngine) -> None:
    with pytest.raises(ValueError, match="expiration_time must be positive"):
        dogpile_warm.configure("r", expiration_time=0)
