"""Tag versions: the scheme that makes ``invalidate_by_tags`` strict and fleet-wide.

Each tag has a version, a random token stored in the backend under
``dogpile_warm:tag:<tag>``. An entry records the versions of its tags as they
were *before* its computation started; invalidating a tag stores a new token.
A read compares the entry's versions with the current ones, fetched in the
same round trip as the value, so once ``invalidate_by_tags`` has returned, no
process sharing the backend reads an entry stored before it. A version missing
from the backend (evicted) never matches, so eviction errs towards recomputing.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from .keys import safe_key

__all__ = ["TagVersions", "normalize_tags", "tag_key"]

TagVersions = tuple[tuple[str, str], ...]

_PREFIX = "dogpile_warm:tag:"


@functools.lru_cache(maxsize=4096)
def tag_key(tag: str) -> str:
    """The backend key (already safe) under which ``tag``'s version lives."""
    return safe_key(_PREFIX + tag)


def normalize_tags(tags: Iterable[str] | str | None, *, argument: str = "tags") -> frozenset[str]:
    """Return ``tags`` as a frozenset of non-empty strings; ``TypeError`` naming a bad one."""
    if tags is None:
        return frozenset()
    if isinstance(tags, str):
        # A lone string is almost always meant as one tag, not its characters.
        tags = (tags,)
    elif isinstance(tags, bytes | bytearray) or not isinstance(tags, Iterable):
        raise TypeError(f"{argument} must be a string or an iterable of strings, got {tags!r}")
    result = set()
    for tag in tags:
        if not isinstance(tag, str) or not tag:
            raise TypeError(f"{argument} must be non-empty strings, got {tag!r}")
        result.add(tag)
    return frozenset(result)
