"""Configuration the dogpile way: one flat dict (an ini file's section, a Django or
Pyramid settings dict) under one prefix, as ``CacheRegion.configure_from_config`` takes.

Keys, after the prefix (``dogpile_warm.`` by default); string values are coerced as
dogpile coerces them (``"true"``, ``"3"``, ``"1.5"``):

- ``region.<name>.backend``, ``region.<name>.expiration_time``,
  ``region.<name>.arguments.<argument>``: a region, configured through
  :meth:`~dogpile_warm.engine.CacheWarmingEngine.configure_region` (its
  defaults: timeouts, leased locks), with ``region.<name>.signing_key``,
  ``.serializer`` and ``.key_mangler`` (a dotted path to a function) too;
- ``engine.user_preload_window``: seconds;
- ``scheduler.start`` (true: start the scheduler), ``scheduler.interval_minutes``,
  ``scheduler.check_every``, ``scheduler.max_keys_per_cycle``,
  ``scheduler.enable_pattern_warming``, ``scheduler.enable_critical_warming``.

Any other key under the prefix is an error naming it: a typo must not pass unnoticed.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dogpile.util import coerce_string_conf

from ._core.validation import (
    check_non_negative_number,
    check_positive_int,
    check_positive_number,
)

if TYPE_CHECKING:
    from .engine import CacheWarmingEngine

__all__ = ["DEFAULT_PREFIX", "configure_from_config"]

DEFAULT_PREFIX = "dogpile_warm."

_REGION_SETTINGS = {"backend", "expiration_time", "signing_key", "serializer", "key_mangler"}
_SCHEDULER_SETTINGS = {
    "start",
    "interval_minutes",
    "check_every",
    "max_keys_per_cycle",
    "enable_pattern_warming",
    "enable_critical_warming",
}


def configure_from_config(
    engine: CacheWarmingEngine, config: Mapping[str, Any], prefix: str = DEFAULT_PREFIX
) -> list[str]:
    """Configure ``engine`` from the keys of ``config`` under ``prefix`` (see the module);
    return the names of the regions configured.

    Every setting is checked before anything is configured: an unknown key, a region
    without a backend, a value of the wrong kind (a boolean that is not true/false,
    yes/no, on/off or 1/0; a number out of range; a key mangler that cannot be
    imported) raises ``ValueError`` naming it, and leaves the engine as it was.
    """
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a mapping of settings, got {config!r}")
    raw = {key[len(prefix) :]: value for key, value in config.items() if key.startswith(prefix)}
    settings = coerce_string_conf(raw)
    regions: dict[str, dict[str, Any]] = {}
    scheduler: dict[str, Any] = {}
    preload_window = None
    for key, value in settings.items():
        part, _, rest = key.partition(".")
        name = f"{prefix}{key}"
        if part == "region" and "." in rest:
            region_name, _, setting = rest.partition(".")
            region = regions.setdefault(region_name, {"arguments": {}})
            if setting.startswith("arguments."):
                region["arguments"][setting[len("arguments.") :]] = value
                continue
            if setting in _REGION_SETTINGS:
                # A signing key stays the text it was written as ("12345..." is no number).
                region[setting] = raw[key] if setting == "signing_key" else value
                continue
        elif part == "scheduler" and rest in _SCHEDULER_SETTINGS:
            scheduler[rest] = _flag(name, value) if rest in _FLAGS else value
            continue
        elif key == "engine.user_preload_window":
            preload_window = check_non_negative_number(name, value, " of seconds")
            continue
        raise ValueError(f"unknown dogpile_warm setting {name!r} (= {value!r})")
    for region_name, region in regions.items():
        if "backend" not in region:
            raise ValueError(f"region {region_name!r} needs {prefix}region.{region_name}.backend")
        if region.get("expiration_time") is not None:
            check_positive_number(
                f"{prefix}region.{region_name}.expiration_time", region["expiration_time"]
            )
        if "key_mangler" in region:
            region["key_mangler"] = _imported(
                f"{prefix}region.{region_name}.key_mangler", region["key_mangler"]
            )
    start = scheduler.pop("start", False)
    if scheduler and not start:
        raise ValueError(
            f"{prefix}scheduler.{sorted(scheduler)[0]} is set but {prefix}scheduler.start "
            "is not true: the scheduler would not use it"
        )
    _check_scheduler(prefix, scheduler)
    if preload_window is not None:
        engine.users.set_window(preload_window)
    for region_name, region in regions.items():
        extra = {k: region[k] for k in ("signing_key", "serializer", "key_mangler") if k in region}
        engine.configure_region(
            region_name,
            region["backend"],
            region.get("expiration_time"),
            region["arguments"],
            **extra,
        )
    if start:
        engine.start(**scheduler)
    return list(regions)


_FLAGS = {"start", "enable_pattern_warming", "enable_critical_warming"}
_TRUE = {True, "true", "yes", "on", "1"}
_FALSE = {False, "false", "no", "off", "0"}


def _flag(name: str, value: Any) -> bool:
    """A boolean setting: true/false, yes/no, on/off or 1/0 (any case)."""
    text = value.lower() if isinstance(value, str) else value
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{name} must be true or false (yes/no, on/off, 1/0), got {value!r}")


def _check_scheduler(prefix: str, scheduler: dict[str, Any]) -> None:
    """The scheduler's numbers, checked as ``start`` checks them, before anything runs."""
    for setting in ("interval_minutes", "check_every"):
        if setting in scheduler:
            check_positive_number(f"{prefix}scheduler.{setting}", scheduler[setting])
    if "max_keys_per_cycle" in scheduler:
        check_positive_int(f"{prefix}scheduler.max_keys_per_cycle", scheduler["max_keys_per_cycle"])


def _imported(name: str, path: Any) -> Any:
    """The object a dotted path (``package.module.name``) names; a callable as it is."""
    if callable(path):
        return path
    if not isinstance(path, str) or "." not in path:
        raise ValueError(f"{name} must be a dotted path to a function, got {path!r}")
    module, _, attribute = path.rpartition(".")
    try:
        found = getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"{name}: cannot import {path!r}: {exc}") from None
    if not callable(found):
        raise ValueError(f"{name}: {path!r} is not a function, got {found!r}")
    return found
