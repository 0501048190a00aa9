"""Argument checks shared by the decorator, tasks and the engine.

Each raises ``TypeError`` for a value of the wrong type and ``ValueError`` for
one out of range, with a message naming the argument and the value.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = [
    "check_bool",
    "check_key",
    "check_non_negative_number",
    "check_positive_int",
    "check_positive_number",
    "check_priority",
    "check_refresh_ahead",
    "check_ttl",
]


def _is_number(value: Any) -> bool:
    """A real, finite number (never a bool): infinity and NaN make timers that never fire."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_priority(priority: Any) -> int:
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise TypeError(f"priority must be an integer, got {priority!r}")
    return priority


def check_ttl(ttl: Any) -> float:
    if not _is_number(ttl):
        raise TypeError(f"ttl must be a finite number of seconds, got {ttl!r}")
    if not ttl > 0:
        raise ValueError(f"ttl must be greater than 0 seconds, got {ttl!r}")
    return float(ttl)


def check_refresh_ahead(refresh_ahead: Any) -> float | None:
    if refresh_ahead is None:
        return None
    if not _is_number(refresh_ahead):
        raise TypeError(f"refresh_ahead must be a number in (0, 1) or None, got {refresh_ahead!r}")
    if not 0 < refresh_ahead < 1:
        raise ValueError(
            f"refresh_ahead must be between 0 and 1 (exclusive), got {refresh_ahead!r}"
        )
    return float(refresh_ahead)


def check_positive_int(name: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value!r}")
    return value


def check_positive_number(name: str, value: Any, unit: str = "") -> float:
    if not _is_number(value):
        raise TypeError(f"{name} must be a finite number{unit}, got {value!r}")
    if not value > 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return float(value)


def check_non_negative_number(name: str, value: Any, unit: str = "") -> float:
    if not _is_number(value):
        raise TypeError(f"{name} must be a finite number{unit}, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return float(value)


def check_key(key: Any) -> str:
    if not isinstance(key, str) or not key:
        raise TypeError(f"key must be a non-empty string, got {key!r}")
    return key


def check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value
