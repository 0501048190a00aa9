"""Signed values: what a shared backend hands back is checked before it is read.

Anyone who can write to a memcached or Redis server can store bytes under a
key, and pickle runs code while it reads bytes. With
``configure(..., signing_key=...)`` every value and tag version a region
writes is serialized, then signed with HMAC-SHA256; a read checks the
signature first and only then deserializes. Bytes without a valid signature
are never unpickled: they read as a miss, counted as unreadable
(``values_unreadable``) and logged once per outage-like episode.

Key rotation: ``signing_key`` may be a list, newest first. The first key
signs; every key is accepted on reads. Deploy the new key in front of the old
one everywhere, wait one ttl, then drop the old one.

The format of a signed payload is ``b"dws1" + HMAC-SHA256(key, data) + data``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import pickle
from collections.abc import Callable, Sequence
from typing import Any

from dogpile.cache.api import CantDeserializeException

__all__ = [
    "MIN_KEY_BYTES",
    "SERIALIZERS",
    "BadSignature",
    "Signer",
    "json_dumps",
    "json_loads",
    "make_serializer",
]

_MAGIC = b"dws1"
_DIGEST = 32  # bytes of an HMAC-SHA256
MIN_KEY_BYTES = 16

Dumps = Callable[[Any], bytes]
Loads = Callable[[bytes], Any]


class BadSignature(CantDeserializeException):
    """Bytes from the backend that were not signed with one of our keys.

    A ``CantDeserializeException``: dogpile's own reads (a user's
    ``cache_on_arguments`` on the same region) treat it as a miss too, when
    the bytes are in dogpile's format (``<json metadata>|<payload>``); other
    bytes make dogpile's own metadata parsing raise first (never run code).
    """


def _key_bytes(key: Any) -> bytes:
    raw = key.encode("utf-8") if isinstance(key, str) else key
    if isinstance(raw, bytearray | memoryview):
        raw = bytes(raw)
    if not isinstance(raw, bytes):
        raise TypeError(f"signing_key must be bytes, a string or a list of them, got {key!r}")
    if len(raw) < MIN_KEY_BYTES:
        raise ValueError(
            f"signing_key must be at least {MIN_KEY_BYTES} bytes (use secrets.token_bytes(32)), "
            f"got one of {len(raw)}"
        )
    return raw


class Signer:
    """Signs with the first of ``keys`` and accepts any of them (see the module docstring)."""

    def __init__(self, keys: bytes | str | Sequence[bytes | str]) -> None:
        listed = [keys] if isinstance(keys, bytes | bytearray | memoryview | str) else keys
        if not isinstance(listed, Sequence) or not listed:
            raise TypeError(f"signing_key must be bytes, a string or a list of them, got {keys!r}")
        self._keys = [_key_bytes(key) for key in listed]

    def sign(self, data: bytes) -> bytes:
        mac = hmac.new(self._keys[0], data, hashlib.sha256).digest()
        return b"".join((_MAGIC, mac, data))

    def verify(self, signed: Any) -> bytes:
        """The data ``signed`` carries; :class:`BadSignature` unless one of our keys signed it."""
        if not isinstance(signed, bytes | bytearray | memoryview):
            raise BadSignature(f"not signed bytes but a {type(signed).__name__}")
        signed = bytes(signed)
        if not signed.startswith(_MAGIC) or len(signed) < len(_MAGIC) + _DIGEST:
            raise BadSignature("unsigned bytes")
        mac: bytes = signed[len(_MAGIC) : len(_MAGIC) + _DIGEST]
        data: bytes = signed[len(_MAGIC) + _DIGEST :]
        for key in self._keys:
            if hmac.compare_digest(mac, hmac.new(key, data, hashlib.sha256).digest()):
                return data
        raise BadSignature("bad signature (another key, or altered bytes)")


def json_dumps(value: Any) -> bytes:
    """JSON, refusing what would come back as something else: a dict key that is not a
    string (JSON makes ``{1: "a"}`` into ``{"1": "a"}``) and anything ``json`` cannot
    encode (``TypeError``). Tuples come back as lists; NaN and infinity as Python
    writes them (entries carry an infinite ttl)."""
    _check_json_keys(value)
    return json.dumps(value, separators=(",", ":"), allow_nan=True).encode("utf-8")


def _check_json_keys(value: Any) -> None:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key in item:
                if not isinstance(key, str):
                    raise TypeError(
                        f"JSON keeps dict keys as strings only; {key!r} would come back "
                        f"as {json.dumps(key)!r}"
                    )
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)


def json_loads(data: bytes) -> Any:
    return json.loads(data)


def _pickle_dumps(value: Any) -> bytes:
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


# The serializers ``configure(serializer=...)`` knows by name.
SERIALIZERS: dict[str, tuple[Dumps, Loads]] = {
    "pickle": (_pickle_dumps, pickle.loads),
    "json": (json_dumps, json_loads),
}


def make_serializer(
    serializer: str | tuple[Dumps, Loads] | None, signing_key: Any
) -> tuple[Dumps, Loads] | None:
    """The region's ``(serializer, deserializer)``: the named or given pair, signed when
    there is a ``signing_key``; None when neither is asked for (dogpile's own default)."""
    if serializer is None and signing_key is None:
        return None
    pair = _serializer_pair(serializer if serializer is not None else "pickle")
    if signing_key is None:
        return pair
    dumps, loads = pair
    signer = Signer(signing_key)

    def signed_dumps(value: Any) -> bytes:
        return signer.sign(dumps(value))

    def signed_loads(data: bytes) -> Any:
        return loads(signer.verify(data))

    return signed_dumps, signed_loads


def _serializer_pair(serializer: Any) -> tuple[Dumps, Loads]:
    if isinstance(serializer, str):
        try:
            return SERIALIZERS[serializer]
        except KeyError:
            raise ValueError(
                f"serializer must be one of {sorted(SERIALIZERS)} or a (dumps, loads) pair, "
                f"got {serializer!r}"
            ) from None
    if (
        isinstance(serializer, tuple)
        and len(serializer) == 2
        and all(callable(part) for part in serializer)
    ):
        dumps, loads = serializer
        _probe(dumps, loads)
        return _checked_dumps(dumps), loads
    raise TypeError(
        f"serializer must be one of {sorted(SERIALIZERS)} or a (dumps, loads) pair of "
        f"functions to and from bytes, got {serializer!r}"
    )


# What a region stores: an entry (format marker, key, value, created, ttl, tag
# versions, cost), as dogpile_warm._core.store writes it.
_SAMPLE = ["dogpile_warm/2", "k", {"id": 1}, 1.5, 60.0, [["tag", "0123abcd"]], 0.01]


def _probe(dumps: Dumps, loads: Loads) -> None:
    """Refuse, at configure, a pair that cannot store a plain entry (rather than let
    every write fail later)."""
    try:
        data = dumps(_SAMPLE)
        if not isinstance(data, bytes):
            raise TypeError(f"it returned a {type(data).__name__}, not bytes")
        loads(data)
    except Exception as exc:
        raise TypeError(
            f"serializer {dumps!r} / deserializer {loads!r} cannot store a value: {exc} "
            f"(json.dumps returns a str: use serializer='json')"
        ) from exc


def _checked_dumps(dumps: Dumps) -> Dumps:
    """``dumps`` that refuses to hand the backend anything but bytes (``json.dumps``
    returns a str: the write is refused and counted, naming the cause)."""

    def checked(value: Any) -> bytes:
        data = dumps(value)
        if not isinstance(data, bytes):
            raise TypeError(
                f"the region's serializer returned a {type(data).__name__}, not bytes "
                f"(json.dumps? use serializer='json')"
            )
        return data

    return checked
