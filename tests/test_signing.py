"""A shared backend cannot run code in our processes: signed values, tag versions and
snapshots; what is not signed with our key is never unpickled."""

from __future__ import annotations

import base64
import json
import math
import os
import pickle
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dogpile.cache import CacheRegion

import dogpile_warm
from dogpile_warm import CacheWarmingEngine
from dogpile_warm._core.keys import safe_key
from dogpile_warm._core.signing import BadSignature, Signer
from dogpile_warm._core.store import Entry
from dogpile_warm._core.tags import tag_key
from dogpile_warm._warming.snapshot import SNAPSHOT_KEY
from tests import servers

KEY = b"k" * 32
OLD_KEY = b"o" * 32

pytestmark = pytest.mark.slow


class Exploit:
    """A pickle that, when loaded, makes the directory ``path``: proof code ran."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (self.path,))


@pytest.fixture(params=["memcached", "redis"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def server(request: pytest.FixtureRequest, kind: str) -> servers.Server:
    server: servers.Server = request.getfixturevalue(f"{kind}_server")
    server.flush()
    return server


def configure(
    engine: CacheWarmingEngine,
    kind: str,
    server: servers.Server,
    closer: servers.ClientCloser,
    name: str = "default",
    **options: Any,
) -> CacheRegion:
    arguments: dict[str, Any]
    if kind == "memcached":
        backend, arguments = "dogpile.cache.pymemcache", {"url": server.url}
    else:
        backend, arguments = "dogpile.cache.redis", {"host": server.host, "port": server.port}
    arguments["distributed_lock"] = True
    return closer.watch(engine.configure_region(name, backend, arguments=arguments, **options))


def hostile_payloads(marker: Path) -> list[tuple[bytes, int]]:
    """(bytes, memcached flags): a raw pickle, one flagged as a pickle, one in dogpile's
    own Redis format (metadata|pickle)."""
    exploit = pickle.dumps(Exploit(marker))
    return [(exploit, 0), (exploit, 1), (b'{"ct": 1, "v": 2}|' + exploit, 1)]


@pytest.fixture
def runs() -> list[int]:
    return []


@pytest.fixture
def double(engine: CacheWarmingEngine, runs: list[int]) -> Iterator[Any]:
    @dogpile_warm.warmable(ttl=60, tags={"t"})
    def double(x: int) -> int:
        runs.append(x)
        return 2 * x

    yield double
    engine.close()


def test_the_exploit_is_real_without_a_signing_key(
    engine: CacheWarmingEngine,
    kind: str,
    server: servers.Server,
    client_closer: servers.ClientCloser,
    double: Any,
    tmp_path: Path,
) -> None:
    """The control: unsigned, the crafted pickle does run (so the tests below can fail)."""
    configure(engine, kind, server, client_closer)
    marker = tmp_path / "ran"
    raw, flags = hostile_payloads(marker)[1 if kind == "memcached" else 2]
    double(4)
    server.write_raw(safe_key(double.key_for(4)), raw, flags)
    double(4)
    assert marker.exists()


@pytest.mark.parametrize("where", ["value", "tag version"])
@pytest.mark.parametrize(
    "options",
    [{"signing_key": KEY}, {"serializer": "json"}, {"serializer": "json", "signing_key": KEY}],
    ids=["signed", "json", "signed-json"],
)
def test_a_crafted_pickle_never_runs_in_a_signed_or_json_region(
    engine: CacheWarmingEngine,
    kind: str,
    server: servers.Server,
    client_closer: servers.ClientCloser,
    double: Any,
    runs: list[int],
    where: str,
    options: dict[str, Any],
    tmp_path: Path,
) -> None:
    """Written straight into the backend under a value's key or a tag version's key, with
    pickle flags on memcached: it reads as a counted miss, and the value is recomputed."""
    configure(engine, kind, server, client_closer, **options)
    marker = tmp_path / "ran"
    key = safe_key(double.key_for(4)) if where == "value" else tag_key("t")
    assert double(4) == 8
    for raw, flags in hostile_payloads(marker):
        server.write_raw(key, raw, flags)
        assert double(4) == 8
    assert not marker.exists()
    assert runs == [4, 4, 4, 4]
    assert double(4) == 8 and len(runs) == 4  # the recomputed value is signed and read again
    stats = dogpile_warm.get_warming_stats()
    assert stats["values_unreadable"] >= 3 and stats["backend_unavailable"] == 0


def test_a_signed_region_caches_and_rotates_keys(
    engine: CacheWarmingEngine,
    kind: str,
    server: servers.Server,
    client_closer: servers.ClientCloser,
    runs: list[int],
) -> None:
    """Values signed with the old key are read by processes that list it after the new
    one; a process that knows only the new key recomputes (and counts) them."""
    configure(engine, kind, server, client_closer, signing_key=OLD_KEY)

    @dogpile_warm.warmable(ttl=60, name="shared")
    def shared() -> int:
        runs.append(1)
        return 7

    assert shared() == 7 and shared() == 7
    assert runs == [1]

    rotating = CacheWarmingEngine(clock=engine.clock)  # processes sharing a backend share a clock
    configure(rotating, kind, server, client_closer, signing_key=[KEY, OLD_KEY])
    new_only = CacheWarmingEngine(clock=engine.clock)
    configure(new_only, kind, server, client_closer, signing_key=KEY)
    try:
        for other in (rotating, new_only):

            @dogpile_warm.warmable(ttl=60, name="shared", engine=other)
            def shared_elsewhere() -> int:
                runs.append(1)
                return 7

            assert shared_elsewhere() == 7
        assert runs == [1, 1]  # the rotating engine read the old value; new_only did not
        assert new_only.get_stats()["values_unreadable"] >= 1
        assert rotating.get_stats()["values_unreadable"] == 0
    finally:
        rotating.close()
        new_only.close()
    engine.close()


def test_dogpiles_own_decorator_on_a_signed_region_never_runs_a_forgery(
    engine: CacheWarmingEngine,
    kind: str,
    server: servers.Server,
    client_closer: servers.ClientCloser,
    tmp_path: Path,
) -> None:
    """A user's own ``cache_on_arguments`` function on a signed region: a forgery in
    dogpile's format reads as a miss; bytes outside it make dogpile's own metadata
    parsing raise (dogpile's behaviour, before any deserializer). Neither runs code."""
    region = configure(engine, kind, server, client_closer, signing_key=KEY)
    calls: list[int] = []

    @region.cache_on_arguments()
    def plain(x: int) -> int:
        calls.append(x)
        return x

    plain(1)
    marker = tmp_path / "ran"
    dogpile_format, _ = hostile_payloads(marker)[2]
    server.write_raw(f"{__name__}:plain|1", dogpile_format)  # dogpile's own key
    assert plain(1) == 1 and len(calls) == 2
    for raw, flags in hostile_payloads(marker)[:2]:
        server.write_raw(f"{__name__}:plain|1", raw, flags)
        with pytest.raises(ValueError):  # UnicodeDecodeError, JSONDecodeError
            plain(1)
    assert not marker.exists()


def test_json_serializer_caches_json_values_and_refuses_others(
    engine: CacheWarmingEngine,
    kind: str,
    server: servers.Server,
    client_closer: servers.ClientCloser,
    runs: list[int],
) -> None:
    """serializer='json' (signed or not) caches; a value JSON cannot hold is still returned,
    counted as refused, never a silent stop of caching."""
    for signing_key in (None, KEY):
        configure(engine, kind, server, client_closer, serializer="json", signing_key=signing_key)
        runs.clear()

        @dogpile_warm.warmable(ttl=60, tags={"t"}, name=f"profile{signing_key is None}")
        def profile(x: int) -> dict[str, Any]:
            runs.append(x)
            return {"id": x, "names": ["a", "b"]}

        @dogpile_warm.warmable(ttl=60, name=f"odd{signing_key is None}")
        def odd() -> set[int]:
            return {1, 2}

        assert profile(1) == profile(1) == {"id": 1, "names": ["a", "b"]}
        assert runs == [1]
        dogpile_warm.invalidate_by_tags("t")
        assert profile(1)["id"] == 1 and runs == [1, 1]
        refused = engine.get_stats()["values_refused"]
        assert odd() == {1, 2}
        assert engine.get_stats()["values_refused"] == refused + 1


def test_a_serializer_that_cannot_store_is_refused_at_configure(
    engine: CacheWarmingEngine,
) -> None:
    with pytest.raises(TypeError, match=r"not bytes.*serializer='json'"):
        engine.configure_region(
            "r", "dogpile.cache.redis", serializer=json.dumps, deserializer=json.loads
        )
    with pytest.raises(TypeError, match="go together"):
        engine.configure_region("r", "dogpile.cache.redis", serializer=pickle.dumps)
    with pytest.raises(ValueError, match=r"serializer must be one of.*'yaml'"):
        engine.configure_region("r", "dogpile.cache.redis", serializer="yaml")
    with pytest.raises(ValueError, match="at least 16 bytes"):
        engine.configure_region("r", "dogpile.cache.redis", signing_key="short")
    with pytest.raises(ValueError, match=r"dogpile.cache.pylibmc.*flags"):
        engine.configure_region(
            "r", "dogpile.cache.pylibmc", arguments={"url": "127.0.0.1"}, signing_key=KEY
        )


def test_a_dogpile_style_serializer_pair_works(
    engine: CacheWarmingEngine, client_closer: servers.ClientCloser, redis_server: servers.Server
) -> None:
    redis_server.flush()

    def dumps(value: Any) -> bytes:
        return json.dumps(value).encode()

    configure(
        engine, "redis", redis_server, client_closer, serializer=dumps, deserializer=json.loads
    )
    runs: list[int] = []

    @dogpile_warm.warmable(ttl=60)
    def f(x: int) -> int:
        runs.append(x)
        return x

    assert f(3) == f(3) == 3 and runs == [3]
    engine.close()


def test_the_memory_backend_ignores_signing_and_stays_fast(engine: CacheWarmingEngine) -> None:
    """Objects in the process are never serialized: a signing key changes nothing there."""
    region = engine.configure_region("default", signing_key=KEY, serializer="json")
    assert region.serializer is None

    @dogpile_warm.warmable(ttl=60)
    def obj() -> object:
        return marker

    marker = object()
    assert obj() is marker and obj() is marker


def test_signer_refuses_altered_and_foreign_bytes() -> None:
    signer = Signer([KEY, OLD_KEY])
    signed = signer.sign(b"data")
    assert signer.verify(signed) == b"data"
    assert Signer(OLD_KEY).sign(b"data") != signed
    assert signer.verify(Signer(OLD_KEY).sign(b"data")) == b"data"
    for bad in (signed[:-1] + b"X", b"data", b"", Signer(os.urandom(32)).sign(b"data"), None):
        with pytest.raises(BadSignature):
            signer.verify(bad)


# -- snapshots ---------------------------------------------------------------------------
def shop(engine: CacheWarmingEngine, computed: list[Any]) -> Any:
    @dogpile_warm.warmable(ttl=60, name="product", engine=engine)
    def product(product_id: Any) -> str:
        computed.append(product_id)
        return f"product {product_id}"

    return product


def test_a_forged_snapshot_in_a_signed_region_runs_nothing(
    engine: CacheWarmingEngine,
    kind: str,
    server: servers.Server,
    client_closer: servers.ClientCloser,
    tmp_path: Path,
) -> None:
    configure(engine, kind, server, client_closer, signing_key=KEY)
    computed: list[Any] = []
    product = shop(engine, computed)
    product(1)
    assert engine.save_hot_set()["stored"]
    marker = tmp_path / "ran"
    forged_call = base64.b64encode(pickle.dumps([[Exploit(marker)], {}])).decode()
    forged = {"format": 2, "items": [{"task_id": "product", "key": "product|9", "heat": 9,
                                      "priority": 50, "call": forged_call}]}  # fmt: skip
    # Signed with a key the fleet does not know: as a process that stole none would.
    foreign = CacheWarmingEngine()
    configure(foreign, kind, server, client_closer, signing_key=os.urandom(32))
    try:
        foreign.regions.store_for(None).write(
            SNAPSHOT_KEY, Entry(forged, time.time(), math.inf, ())
        )
    finally:
        foreign.close()
    computed.clear()
    report = engine.warm_from_snapshot()
    assert report["found"] is False and computed == [] and not marker.exists()
    assert engine.get_stats()["values_unreadable"] >= 1


def test_a_snapshot_warms_only_registered_tasks_with_arguments_that_give_their_key(
    engine: CacheWarmingEngine, client_closer: servers.ClientCloser, redis_server: servers.Server
) -> None:
    """Items naming an unknown task, or arguments that make another key than saved, are
    skipped with the reason; the genuine item warms."""
    redis_server.flush()
    configure(engine, "redis", redis_server, client_closer, signing_key=KEY)
    computed: list[Any] = []
    product = shop(engine, computed)
    dumps = engine.get_region().serializer
    assert dumps is not None

    def item(task_id: str, key: str, args: list[Any]) -> dict[str, Any]:
        call = base64.b64encode(dumps([args, {}])).decode()
        return {"task_id": task_id, "key": key, "heat": 1, "priority": 50, "call": call}

    items = [
        item("product", "product|1", [1]),
        item("product", "product|1", ["DROP TABLE"]),  # arguments other than the key's
        item("os.system", "os.system|'ls'", ["ls"]),  # no such task
    ]
    engine.regions.store_for(None).write(
        SNAPSHOT_KEY, Entry({"format": 2, "items": items}, time.time(), math.inf, ())
    )
    report = engine.warm_from_snapshot()
    assert computed == [1] and report["succeeded"] == 1
    reasons = sorted(s["reason"].split(" (")[0].split(":")[0] for s in report["skipped_items"])
    assert reasons == ["arguments read back make another key", "unknown task"]
    assert product.get(1) == "product 1"
    engine.close()


def test_a_json_region_saves_and_warms_a_snapshot(
    engine: CacheWarmingEngine, client_closer: servers.ClientCloser, redis_server: servers.Server
) -> None:
    """Arguments go through the region's serializer: JSON-safe ones round-trip; a tuple,
    which JSON turns into a list (another key), is skipped at save, saying why."""
    redis_server.flush()
    configure(engine, "redis", redis_server, client_closer, serializer="json", signing_key=KEY)
    computed: list[Any] = []
    product = shop(engine, computed)
    product(1)
    product("tea")
    product((1, 2))
    result = engine.save_hot_set()
    assert result["saved"] == 2 and result["stored"]
    [skipped] = result["skipped"]
    assert skipped["reason"].startswith("arguments read back make another key")
    computed.clear()
    report = engine.warm_from_snapshot()
    assert sorted(map(str, computed)) == ["1", "tea"] and report["succeeded"] == 2
    engine.close()


def test_a_serde_of_ones_own_cannot_go_with_signing_on_memcached(
    engine: CacheWarmingEngine, memcached_server: servers.Server
) -> None:
    """A client serde would unpickle by flags before the signature is checked (the probe
    ran code this way): refused at configure, naming the setting."""
    from pymemcache.serde import pickle_serde

    with pytest.raises(ValueError, match=r"'serde'.*signing_key"):
        engine.configure_region(
            "r",
            "dogpile.cache.pymemcache",
            arguments={"url": memcached_server.url, "serde": pickle_serde},
            signing_key=KEY,
        )


def test_a_signed_value_copied_under_another_key_is_refused_there(
    engine: CacheWarmingEngine,
    kind: str,
    server: servers.Server,
    client_closer: servers.ClientCloser,
) -> None:
    """The entry names the key it was stored under: alice's signed balance copied over
    bob's key (or another function's) is a counted miss, never bob's value."""
    configure(engine, kind, server, client_closer, signing_key=KEY)

    @dogpile_warm.warmable(ttl=60)
    def balance(user: str) -> str:
        return f"balance of {user}"

    @dogpile_warm.warmable(ttl=60)
    def other(user: str) -> str:
        return f"other of {user}"

    balance("alice")
    balance("bob")
    other("bob")
    raw = server.read_raw(safe_key(balance.key_for("alice")))
    for victim in (safe_key(balance.key_for("bob")), safe_key(other.key_for("bob"))):
        server.write_raw(victim, raw)
    assert balance("bob") == "balance of bob"
    assert other("bob") == "other of bob"
    assert engine.get_stats()["values_unreadable"] >= 2
    engine.close()


def test_json_refuses_dict_keys_it_would_turn_into_strings(
    engine: CacheWarmingEngine, client_closer: servers.ClientCloser, redis_server: servers.Server
) -> None:
    redis_server.flush()
    configure(engine, "redis", redis_server, client_closer, serializer="json", signing_key=KEY)

    @dogpile_warm.warmable(ttl=60)
    def by_id() -> dict[int, str]:
        return {1: "a"}

    assert by_id() == {1: "a"} and by_id() == {1: "a"}  # never {"1": "a"}
    assert engine.get_stats()["values_refused"] == 2
    engine.close()
