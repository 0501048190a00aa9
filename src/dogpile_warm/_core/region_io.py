"""Reading a region's backend directly: payloads, not dogpile's expiry decisions.

For a region without a serializer of its own (memory, memcached) this is
all ``region.get`` does when told to ignore expiration; with one (Redis,
dbm), each value is deserialized here, so that one unreadable value is one
miss rather than a failed read. These raise what the backend raises: the
store calls them inside its failure policy.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from dogpile.cache import CacheRegion
from dogpile.cache.api import NO_VALUE, CantDeserializeException
from dogpile.cache.backends.redis import RedisBackend
from dogpile.cache.backends.valkey import ValkeyBackend
from dogpile.cache.region import value_version

from .._backends import redis_get, traits
from ..errors import ValueUnreadable, describe_error
from .entry import in_stored_form
from .signing import BadSignature

__all__ = ["get_many", "get_one", "mangled", "one_reader", "set_many"]

# dogpile's own reads of one serialized value on Redis and Valkey: the reader
# client's GET, None as NO_VALUE (see one_reader).
_CLIENT_GETS = frozenset({RedisBackend.get_serialized, ValkeyBackend.get_serialized})


def mangled(region: CacheRegion, key: str) -> str:
    """``key`` through ``region``'s key mangler."""
    mangler = region.key_mangler
    return mangler(key) if mangler is not None else key


def get_one(region: CacheRegion, key: str, reader: Any = None) -> Any:
    """The payload stored under ``key`` (safe), ``NO_VALUE``, or a ``ValueUnreadable``.

    The backend is asked directly: for a region without a serializer of
    its own (memory, memcached) that is all ``region.get`` does when told
    to ignore expiration; with one (Redis, dbm), each value is
    deserialized here, so that one unreadable value is one miss rather
    than a failed read. ``reader``: what to read with instead of the backend's
    own reader (see :func:`get_many`).
    """
    if region.key_mangler is not None:
        key = region.key_mangler(key)
    if reader is not None:
        return _deserialized(region, reader.get(key))
    if region.deserializer is None:
        return _payload(region.backend.get(key))
    return _deserialized(region, region.backend.get_serialized(key))


def one_reader(region: CacheRegion, reader: Any = None) -> Callable[[str], Any]:
    """``get_one(region, key, reader)`` as a function of the key, its choices made once.

    On a Redis or Valkey region read as dogpile reads it (no key mangler, no
    direct reader, dogpile's own ``get_serialized``), the reader client's GET
    is called directly: on the hit path that is two frames fewer. Until the
    region's backend is wrapped, that is: a proxy added later sees every read.
    Without a serializer (memory, memcached), the backend's ``get``, as the
    region holds it at each read. The key mangler and the deserializer are
    taken as they are now, as the store takes the region's serializer and
    backend traits: dogpile sets them when a region is made or configured.
    """
    backend = region.backend
    deserializer = region.deserializer
    if reader is not None or region.key_mangler is not None:
        return functools.partial(get_one, region, reader=reader)
    if deserializer is None:  # memory, memcached: the backend's own get

        def read_payload(key: str) -> Any:
            return _payload(region.backend.get(key))

        return read_payload
    if type(backend).get_serialized not in _CLIENT_GETS:
        return functools.partial(get_one, region, reader=reader)

    def read_one(key: str) -> Any:
        if region.backend is not backend:  # wrapped since
            return get_one(region, key, reader)
        client = backend.reader_client
        raw = redis_get.get(client, key) if redis_get.speaks(client, key) else client.get(key)
        if raw is None:
            return NO_VALUE
        return _deserialized_with(deserializer, raw)

    return read_one


def get_many(region: CacheRegion, keys: Sequence[str], reader: Any = None) -> list[Any]:
    """What is stored under ``keys`` (safe keys) in one backend call: payloads,
    ``NO_VALUE`` or ``ValueUnreadable``. Raises what the backend raises: call it
    inside :meth:`CacheStore.attempt <dogpile_warm._core.store.CacheStore.attempt>`.

    ``reader``: what to read with (``get``, ``mget``) instead of the backend's own
    reader: a Sentinel's primary, a Cluster's slot-split ``MGET`` (see
    :func:`~dogpile_warm._backends.traits.direct_reader`).
    """
    if not keys:
        return []
    mangler = region.key_mangler
    if mangler is not None:
        keys = [mangler(key) for key in keys]
    if reader is not None:
        return [_deserialized(region, raw) for raw in reader.mget(keys)]
    if region.deserializer is None:
        values = region.backend.get_multi(keys)
        try:
            return [value.payload for value in values]
        except AttributeError:  # something not stored by dogpile among them
            return [_payload(value) for value in values]
    return [_deserialized(region, raw) for raw in region.backend.get_serialized_multi(keys)]


def _deserialized(region: CacheRegion, raw: Any) -> Any:
    if raw is NO_VALUE or raw is None:
        return NO_VALUE
    deserializer = region.deserializer
    assert deserializer is not None
    return _deserialized_with(deserializer, raw)


def _deserialized_with(deserializer: Callable[[bytes], Any], raw: bytes) -> Any:
    try:
        # dogpile's format: b"<json metadata>|<serialized payload>".
        return deserializer(raw.partition(b"|")[2])
    except BadSignature as exc:  # never deserialized: counted, unlike a plain miss
        return ValueUnreadable(f"refused: {exc}")
    except CantDeserializeException:
        return NO_VALUE  # the deserializer's own way of saying "a miss"
    except Exception as exc:
        return ValueUnreadable(f"cannot deserialize: {describe_error(exc)}")


def _payload(value: Any) -> Any:
    """What dogpile stored in ``value`` (a ``CachedValue``, or ``NO_VALUE``), else a
    ``ValueUnreadable`` saying what was found instead (bytes another client wrote).

    An entry as dogpile_warm's memcached backend stores it, a plain tuple (see
    :data:`~dogpile_warm._backends.memcached.FLAG_ENTRY`), is its own payload:
    a region on dogpile's own pymemcache backend reads it so.
    """
    try:
        return value.payload
    except AttributeError:
        if in_stored_form(value):
            return value
        return ValueUnreadable(f"not a value dogpile stored but a {type(value).__name__}")


def set_many(region: CacheRegion, mapping: dict[str, Any]) -> None:
    """``region.set_multi(mapping)`` (safe keys, payloads); raises what the backend raises.

    On a Redis Cluster, one pipelined write per key, routed by slot (dogpile's
    backend sends one ``MSET``, which a cluster refuses across slots): the values
    carry dogpile's serialized format (what :func:`get_many` reads) and the
    backend's expiry.
    """
    client = traits.cluster_client(region.actual_backend)
    if client is None:
        region.set_multi(mapping)
        return
    if not mapping:
        return
    serializer = region.serializer
    assert serializer is not None  # dogpile's Redis backends serialize
    metadata = json.dumps({"ct": time.time(), "v": value_version}).encode("ascii")
    backend = region.actual_backend
    expiry = getattr(backend, "redis_expiration_time", 0) or getattr(
        backend, "valkey_expiration_time", 0
    )
    pipe = client.pipeline()
    for key, payload in mapping.items():
        raw = b"%b|%b" % (metadata, serializer(payload))
        if expiry:
            pipe.setex(mangled(region, key), expiry, raw)
        else:
            pipe.set(mangled(region, key), raw)
    pipe.execute()
