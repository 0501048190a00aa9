"""What dogpile_warm stores under a key, and how it looks in a backend.

An :class:`Entry` is the value, when its computation started (the engine's
clock), its ttl, the versions of its tags read before the computation
started (see :mod:`dogpile_warm._core.tags`) and what the computation cost.
"""

from __future__ import annotations

import enum
import math
from typing import Any, Final, NamedTuple

from dogpile.cache.api import NO_VALUE
from dogpile.cache.region import value_version

from ..errors import ValueUnreadable
from .tags import TagVersions

__all__ = [
    "ENTRY_METADATA",
    "FORMAT",
    "UNAVAILABLE",
    "Entry",
    "Unavailable",
    "decode",
    "in_stored_form",
    "stored",
    "well_formed",
]


class Entry(NamedTuple):
    """What dogpile_warm stores under a key (pickled by the backend)."""

    value: Any
    created: float  # epoch seconds (the engine's clock) when the computation started
    ttl: float
    tags: TagVersions  # ((tag, version), ...) sorted by tag
    cost: float = 0.0  # seconds the computation took (XFetch uses it)


class Unavailable(enum.Enum):
    """What :meth:`CacheStore.read` returns when the backend did not answer or was skipped."""

    UNAVAILABLE = "UNAVAILABLE"


UNAVAILABLE: Final = Unavailable.UNAVAILABLE

# How an Entry is kept in a backend that serializes: a plain tuple behind a
# format marker. Pickling a NamedTuple names its class, and every unpickling
# then looks the class up through the import system, on every read that is
# not a memory hit. The key the entry was stored under comes second: a read checks
# it, so a value copied under another key (signed, in a signed region) is
# refused there rather than served as another call's value. dogpile's memory
# backend keeps the Entry itself: one object per key, shared with the memory
# index.
FORMAT = "dogpile_warm/2"
OLD_FORMAT = "dogpile_warm/1"  # an entry without its key: read as a plain miss

# What dogpile keeps beside each value: when it was stored, and its format
# version. Where dogpile_warm keeps an entry without dogpile's own (the Entry
# itself in the memory backend, the plain tuple on memcached), this stands in:
# entries carry their own times, and "ct" 0 makes dogpile's own reads of such a
# key (region.get) see it as expired, never as a fresh value.
ENTRY_METADATA: Final = {"ct": 0.0, "v": value_version}


def stored(key: str, entry: Entry) -> tuple[Any, ...]:
    """``entry`` as it is stored under ``key`` in a backend that serializes."""
    return (FORMAT, key, *entry)


def in_stored_form(value: Any) -> bool:
    """Whether ``value`` has the shape :func:`stored` gives an entry (a 7-tuple behind
    the format marker), whatever it holds: only a string is compared with the marker,
    as a user's tuple may hold anything (a numpy array's comparison raises)."""
    return type(value) is tuple and len(value) == 7 and type(value[0]) is str and value[0] == FORMAT


def well_formed(fields: tuple[Any, ...]) -> bool:
    """Whether ``fields`` (an entry's: value, created, ttl, tags, cost) have the types
    an Entry's have: numbers for the times (created and cost finite, ttl not NaN: a
    snapshot's is infinite), tags a tuple of (tag, version) string pairs. What a
    backend hands back may have been crafted or corrupted."""
    _, created, ttl, tags, cost = fields
    return (
        type(created) in _NUMBERS
        and type(ttl) in _NUMBERS
        and type(cost) in _NUMBERS
        and math.isfinite(created)
        and ttl == ttl
        and math.isfinite(cost)
        and type(tags) is tuple
        and all(
            type(pair) is tuple and len(pair) == 2 and type(pair[0]) is type(pair[1]) is str
            for pair in tags
        )
    )


_NUMBERS = (float, int)
_MALFORMED = "an entry whose fields are not an entry's (a time not a finite number, odd tags)"


def decode(found: Any, key: str) -> Entry | str | None:
    """The Entry stored under ``key`` as ``found``; None for nothing (or an entry of the
    old format, recomputed without counting); else why ``found`` cannot be read."""
    if type(found) is Entry:  # dogpile's memory backend: the object we stored
        return found
    if in_stored_form(found) and found[1] == key:
        # found[2:] is every field in order: made as the tuple it is, without
        # the NamedTuple's Python-level __new__ (on every read but a memory hit).
        fields = found[2:]
        return tuple.__new__(Entry, fields) if well_formed(fields) else _MALFORMED
    if found is NO_VALUE:
        return None
    if type(found) is list and len(found) == 7 and found[0] == FORMAT and found[1] == key:
        # A region serializing to JSON hands tuples back as lists.
        _, _, value, created, ttl, tags, cost = found
        if type(tags) is not list or not all(type(pair) is list for pair in tags):
            return _MALFORMED
        fields = (value, created, ttl, tuple(tuple(pair) for pair in tags), cost)
        return tuple.__new__(Entry, fields) if well_formed(fields) else _MALFORMED
    if isinstance(found, tuple | list) and len(found) == 6 and found[0] == OLD_FORMAT:
        return None
    if isinstance(found, tuple | list) and len(found) == 7 and found[0] == FORMAT:
        # Only a string is shown: str() of what a crafted value holds there (lists
        # nested 100,000 deep, tuples sharing each other) can raise or take forever.
        under = found[1]
        shown = repr(under[:80]) if type(under) is str else f"a {type(under).__name__}"
        return f"an entry stored under another key ({shown})"
    if isinstance(found, ValueUnreadable):
        return str(found)
    return f"not a dogpile_warm entry but a {type(found).__name__}"
