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
    return the names of the regions configured. ``ValueError`` names an unknown key or a
    region without a backend, before anything is configured."""
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a mapping of settings, got {config!r}")
    settings = coerce_string_conf(
        {key[len(prefix) :]: value for key, value in config.items() if key.startswith(prefix)}
    )
    regions: dict[str, dict[str, Any]] = {}
    scheduler: dict[str, Any] = {}
    preload_window = None
    for key, value in settings.items():
        part, _, rest = key.partition(".")
        if part == "region" and "." in rest:
            name, _, setting = rest.partition(".")
            region = regions.setdefault(name, {"arguments": {}})
            if setting.startswith("arguments."):
                region["arguments"][setting[len("arguments.") :]] = value
                continue
            if setting in _REGION_SETTINGS:
                region[setting] = value
                continue
        elif part == "scheduler" and rest in _SCHEDULER_SETTINGS:
            scheduler[rest] = value
            continue
        elif key == "engine.user_preload_window":
            preload_window = value
            continue
        raise ValueError(f"unknown dogpile_warm setting {prefix}{key!r} (= {value!r})")
    for name, region in regions.items():
        if "backend" not in region:
            raise ValueError(f"region {name!r} needs {prefix}region.{name}.backend")
    if preload_window is not None:
        engine.users.set_window(preload_window)
    for name, region in regions.items():
        extra: dict[str, Any] = {k: region[k] for k in ("signing_key", "serializer") if k in region}
        if "key_mangler" in region:
            extra["key_mangler"] = _imported(region["key_mangler"])
        engine.configure_region(
            name, region["backend"], region.get("expiration_time"), region["arguments"], **extra
        )
    if scheduler.pop("start", False):
        engine.start(**scheduler)
    return list(regions)


def _imported(path: Any) -> Any:
    """The object a dotted path (``package.module.name``) names; a callable as it is."""
    if callable(path):
        return path
    if not isinstance(path, str) or "." not in path:
        raise ValueError(f"key_mangler must be a dotted path to a function, got {path!r}")
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)
