"""A snapshot item's call arguments as text, through the region's own serializer.

Each item's arguments are serialized on their own (pickle, JSON, signed or
not: see :mod:`dogpile_warm._core.signing`), so one item whose arguments
cannot be serialized, or read back in another process, is skipped without
losing the others; and an item is kept only if its arguments, read back,
give the key they were saved under.
"""

from __future__ import annotations

import base64
import pickle
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import describe_error

if TYPE_CHECKING:
    from dogpile.cache import CacheRegion

    from .._cached.cached import CachedFunction

__all__ = ["Dumps", "Loads", "codec_of", "decode_call", "encode_call"]

Dumps = Callable[[Any], bytes]
Loads = Callable[[bytes], Any]


def codec_of(region: CacheRegion) -> tuple[Dumps, Loads]:
    """How the region turns values into bytes and back: its own serializer (JSON, signed),
    else pickle (the memory backend, memcached's client)."""
    if region.serializer is not None and region.deserializer is not None:
        return region.serializer, region.deserializer
    return _pickle_dumps, pickle.loads


def _pickle_dumps(value: Any) -> bytes:
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def encode_call(
    codec: tuple[Dumps, Loads],
    source: CachedFunction,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    key: str,
) -> tuple[str, None] | tuple[None, str]:
    """A call's arguments as text (the region's serializer, base64), or why they cannot be
    saved: not serializable, or not the same arguments once read back (a JSON region
    turns a tuple into a list, which makes another key)."""
    dumps, loads = codec
    try:
        data = dumps([list(args), kwargs])
    except Exception as exc:  # PicklingError, TypeError, AttributeError, ...
        return None, f"arguments cannot be serialized: {describe_error(exc)}"
    back, reason = decode_call(loads, data, source, key)
    if back is None:
        return None, reason
    return base64.b64encode(data).decode("ascii"), None


def decode_call(
    loads: Loads, data: bytes, source: CachedFunction, key: str
) -> tuple[tuple[tuple[Any, ...], dict[str, Any]] | None, str]:
    """The arguments in ``data``, if they give back ``key``; else None and why not."""
    try:
        args, kwargs = loads(data)
        args, kwargs = tuple(args), dict(kwargs)
    except Exception as exc:  # a class this process cannot import, say
        return None, f"arguments cannot be read back: {describe_error(exc)}"
    try:
        again = source.key_for(args, kwargs)
    except TypeError as exc:
        return None, f"arguments no longer fit the function: {exc}"
    if again != key:
        return None, (
            f"arguments read back make another key ({again!r}): the region's serializer "
            "does not keep them as they were"
        )
    return (args, kwargs), ""
