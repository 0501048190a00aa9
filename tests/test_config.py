"""configure_from_config: dogpile_warm's regions, engine and scheduler from one flat
settings dict under one prefix, as dogpile.cache's own ``configure_from_config``."""

from __future__ import annotations

import configparser
import textwrap
from typing import Any

import pytest

import dogpile_warm
from dogpile_warm import CacheWarmingEngine, warmable
from dogpile_warm._core.regions import CLIENT_TIMEOUT, LOCK_LEASE
from tests import servers


def shout(key: str) -> str:
    """A key mangler named by a dotted path in the settings."""
    return key.upper()


@pytest.mark.memcached
def test_an_ini_section_configures_a_memcached_region_with_the_defaults(
    engine: CacheWarmingEngine,
    memcached_server: servers.Server,
    client_closer: servers.ClientCloser,
) -> None:
    """An ini file's section, strings only, configures the region with configure's
    defaults (timeouts, a leased lock), its own arguments and a key mangler by path, the
    preload window, and the region caches."""
    memcached_server.flush()
    parser = configparser.ConfigParser()
    parser.read_string(
        textwrap.dedent(
            f"""
            [app:main]
            dogpile_warm.region.default.backend = dogpile.cache.pymemcache
            dogpile_warm.region.default.expiration_time = 600
            dogpile_warm.region.default.arguments.url = {memcached_server.url}
            dogpile_warm.region.default.arguments.distributed_lock = true
            dogpile_warm.region.default.key_mangler = tests.test_config.shout
            dogpile_warm.engine.user_preload_window = 30
            other.setting = ignored
            """
        )
    )
    assert dogpile_warm.configure_from_config(dict(parser["app:main"])) == ["default"]
    region = client_closer.watch(engine.region)
    backend: Any = region.actual_backend
    assert backend.distributed_lock is True and backend.lock_timeout == LOCK_LEASE
    assert region.key_mangler is shout and engine.user_preload_window == 30
    assert region.expiration_time == 600

    @warmable(ttl=60)
    def double(x: int) -> int:
        return 2 * x

    assert double(2) == 4 and double.get(2) == 4


def test_a_settings_dict_configures_regions_and_starts_the_scheduler(
    engine: CacheWarmingEngine,
) -> None:
    """Typed values work as strings do; a second region is configured by name; the
    scheduler starts with the given settings."""
    names = dogpile_warm.configure_from_config(
        {
            "cache.region.default.backend": "dogpile.cache.memory",
            "cache.region.local.backend": "dogpile.cache.memory",
            "cache.region.local.expiration_time": 120,
            "cache.scheduler.start": "true",
            "cache.scheduler.check_every": "0.5",
            "cache.scheduler.enable_pattern_warming": "false",
        },
        prefix="cache.",
    )
    try:
        assert sorted(names) == ["default", "local"]
        assert engine.get_region("local").expiration_time == 120
        assert engine.running
    finally:
        engine.stop()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"dogpile_warm.region.default.bakend": "dogpile.cache.memory"}, "bakend"),
        ({"dogpile_warm.region.x.arguments.url": "h:1"}, "dogpile_warm.region.x.backend"),
        ({"dogpile_warm.scheduler.every": "1"}, "scheduler.every"),
        ({"dogpile_warm.engine.max_workers": "4"}, "engine.max_workers"),
    ],
)
def test_an_unknown_or_incomplete_setting_is_refused_naming_it(
    engine: CacheWarmingEngine, settings: dict[str, str], message: str
) -> None:
    """A misspelt or unsupported key, or a region without a backend, raises ValueError
    naming it, and nothing is configured."""
    with pytest.raises(ValueError, match=message):
        dogpile_warm.configure_from_config(settings)
    with pytest.raises(dogpile_warm.UnknownRegionError):
        engine.get_region("x")


def test_a_bad_value_is_refused_naming_it(engine: CacheWarmingEngine) -> None:
    """A value configure would refuse is refused the same way, naming it."""
    with pytest.raises(ValueError, match="-5"):
        dogpile_warm.configure_from_config({"dogpile_warm.engine.user_preload_window": "-5"})
    with pytest.raises(TypeError, match="mapping"):
        dogpile_warm.configure_from_config(["not", "a", "mapping"])  # type: ignore[arg-type]


def test_timeouts_given_in_the_settings_win_over_the_defaults(
    engine: CacheWarmingEngine,
) -> None:
    """A backend argument in the settings replaces configure's default for it."""
    dogpile_warm.configure_from_config(
        {
            "dogpile_warm.region.default.backend": "dogpile.cache.pymemcache",
            "dogpile_warm.region.default.arguments.url": "127.0.0.1:1",
            "dogpile_warm.region.default.arguments.timeout": "2.5",
        }
    )
    backend: Any = engine.region.actual_backend
    assert backend.timeout == 2.5 and backend.connect_timeout == CLIENT_TIMEOUT


@pytest.mark.parametrize("word", ["no", "off", "false", "0", "No"])
def test_a_false_word_keeps_the_scheduler_stopped(engine: CacheWarmingEngine, word: str) -> None:
    """scheduler.start = no/off/false/0 does not start it (a word is not a yes)."""
    dogpile_warm.configure_from_config({"dogpile_warm.scheduler.start": word})
    assert not engine.running


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"dogpile_warm.scheduler.start": "maybe"}, "scheduler.start must be true or false"),
        ({"dogpile_warm.scheduler.interval_minutes": "5"}, "scheduler.start is not true"),
        (
            {
                "dogpile_warm.region.a.backend": "dogpile.cache.memory",
                "dogpile_warm.region.b.backend": "dogpile.cache.memory",
                "dogpile_warm.region.b.key_mangler": "no_such_module.fn",
            },
            "cannot import",
        ),
        (
            {
                "dogpile_warm.region.a.backend": "dogpile.cache.memory",
                "dogpile_warm.engine.user_preload_window": "60",
                "dogpile_warm.scheduler.start": "true",
                "dogpile_warm.scheduler.check_every": "0",
            },
            "check_every must be positive",
        ),
    ],
)
def test_a_bad_setting_anywhere_leaves_the_engine_as_it_was(
    engine: CacheWarmingEngine, settings: dict[str, str], message: str
) -> None:
    """Every setting is checked before any is applied: no region, window or scheduler
    change survives a refusal."""
    with pytest.raises(ValueError, match=message):
        dogpile_warm.configure_from_config(settings)
    with pytest.raises(dogpile_warm.UnknownRegionError):
        engine.get_region("a")
    assert engine.user_preload_window == 300 and not engine.running


def test_a_signing_key_of_digits_stays_text(engine: CacheWarmingEngine) -> None:
    """An ini file's signing key made of digits is used as the text it is, not a number."""
    key = "1234567890123456789012"
    dogpile_warm.configure_from_config(
        {
            "dogpile_warm.region.signed.backend": "dogpile.cache.memory_pickle",
            "dogpile_warm.region.signed.signing_key": key,
        }
    )
    assert engine.get_region("signed").serializer is not None
