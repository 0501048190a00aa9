"""dogpile_warm's pymemcache backend: dogpile's, with timeouts, one retry on a closed
connection, no per-key hashing with one server, and unreadable values that say so."""

from __future__ import annotations

import pickle
import time

import pytest
from dogpile.cache import make_region
from dogpile.cache.api import NO_VALUE, CachedValue
from dogpile.cache.region import value_version
from pymemcache import serde
from pymemcache.client.rendezvous import RendezvousHash

from dogpile_warm import CacheWarmingEngine, warmable
from dogpile_warm._backends import memcached
from dogpile_warm._backends.memcached import OneServerRendezvousHash
from dogpile_warm.errors import ValueUnreadable
from tests.servers import ClientCloser, Server


def test_one_server_hashing_picks_what_pymemcache_picks() -> None:
    """The shortcut hasher answers the one live server, and pymemcache's choice otherwise."""
    ours, theirs = OneServerRendezvousHash(), RendezvousHash()
    assert ours.get_node("k") is None and theirs.get_node("k") is None
    for node in ("10.0.0.1:11211", "10.0.0.2:11211", "10.0.0.3:11211"):
        ours.add_node(node)
        theirs.add_node(node)
        keys = [f"key-{i}" for i in range(200)]
        assert [ours.get_node(k) for k in keys] == [theirs.get_node(k) for k in keys]
    for node in ("10.0.0.1:11211", "10.0.0.2:11211"):
        ours.remove_node(node)
    assert ours.get_node("anything") == "10.0.0.3:11211"


@pytest.mark.memcached
def test_configured_memcached_regions_use_the_one_server_hasher(
    engine: CacheWarmingEngine, memcached_server: Server, client_closer: ClientCloser
) -> None:
    """dogpile_warm's pymemcache regions skip key hashing with one server and still work."""
    region = client_closer.watch(
        engine.configure_region(
            "mc", "dogpile.cache.pymemcache", arguments={"url": memcached_server.url}
        )
    )

    @warmable(ttl=60, region="mc")
    def doubled(x: int) -> int:
        return 2 * x

    assert doubled(21) == 42 and doubled(21) == 42
    assert isinstance(region.backend.client.hasher, OneServerRendezvousHash)
    assert engine.get_stats()["hits"] == 1


@pytest.mark.memcached
@pytest.mark.slow
def test_a_connection_the_server_closed_is_replaced_once_and_a_refusal_raised(
    engine: CacheWarmingEngine, client_closer: ClientCloser
) -> None:
    """After a server restart the old connection's command is sent again on a new one and
    succeeds; with the server gone it raises (the store counts it), and the server is never
    dropped from the hasher, so its keys are not moved to another server."""
    from tests import servers

    server = servers.start_memcached()
    try:
        region = client_closer.watch(
            engine.configure_region("mc", "dogpile.cache.pymemcache", arguments={"url": server.url})
        )
        backend = region.backend
        backend.set("k", "v1")
        server.kill()
        server.start()  # same port, empty; the client's connection is to the dead process
        assert backend.get("k") is NO_VALUE  # retried on a new connection, no error
        backend.set("k", "v2")
        assert backend.get("k") == "v2"
        server.kill()
        with pytest.raises(OSError):
            backend.get("k")
        assert backend.client.hasher.nodes == [server.url]
    finally:
        server.stop()


def test_the_serde_writes_what_pymemcache_writes_and_reads_it_back() -> None:
    """Same bytes and flags as pymemcache's pickle serde for every kind of value but
    dogpile_warm's entries, so processes on either read each other's values; an
    unreadable pickle reads as a value that dogpile takes for a miss and dogpile_warm
    counts as unreadable."""
    values = [CachedValue("v", {"ct": 1.0, "v": 2}), b"raw", "text", 7, True, 2**70, 1.5]
    for value in [*values, {"a": [1, (2, 3)]}, None]:
        ours = memcached.pickle_serde.serialize("k", value)
        assert ours == serde.pickle_serde.serialize("k", value)
        assert memcached.pickle_serde.deserialize("k", *ours) == value
        assert serde.pickle_serde.deserialize("k", *ours) == value
    unreadable = memcached.pickle_serde.deserialize("k", b"not a pickle", serde.FLAG_PICKLE)
    assert isinstance(unreadable.payload, ValueUnreadable)
    assert unreadable.metadata["v"] != value_version  # dogpile's region: a miss


def test_an_entry_is_stored_as_its_plain_tuple_and_read_back_as_dogpile_reads_values() -> None:
    """An entry goes without dogpile's CachedValue around it (unpickling one costs every
    hit a class lookup and a Python call), with flags of its own that keep pymemcache's
    pickle bit: pymemcache's serde reads the tuple; dogpile_warm's reads a CachedValue
    that dogpile's own reads take as expired, as in the memory backend."""
    entry = ("dogpile_warm/2", "k", {"a": 1}, 1.0, 60.0, (), 0.01)
    raw, flags = memcached.pickle_serde.serialize("k", CachedValue(entry, {"ct": 5.0, "v": 2}))
    assert (pickle.loads(raw), flags) == (entry, memcached.FLAG_ENTRY)
    assert flags & serde.FLAG_PICKLE
    assert serde.pickle_serde.deserialize("k", raw, flags) == entry
    read = memcached.pickle_serde.deserialize("k", raw, flags)
    assert type(read) is CachedValue
    assert read == CachedValue(entry, {"ct": 0.0, "v": value_version})


@pytest.mark.memcached
def test_regions_use_the_serde_unless_one_is_given(
    engine: CacheWarmingEngine, memcached_server: Server, client_closer: ClientCloser
) -> None:
    """The default serde is dogpile_warm's; a serde in the arguments is kept."""
    mine = serde.PickleSerde()
    default, given = (
        client_closer.watch(
            engine.configure_region(
                name, "dogpile.cache.pymemcache", arguments={"url": memcached_server.url, **extra}
            )
        )
        for name, extra in (("mc", {}), ("mc2", {"serde": mine}))
    )
    assert default.backend.serde is memcached.pickle_serde
    assert given.backend.serde is mine


@pytest.mark.memcached
def test_entries_stored_as_the_previous_version_stored_them_are_hits(
    engine: CacheWarmingEngine, memcached_server: Server, client_closer: ClientCloser
) -> None:
    """An entry inside dogpile's CachedValue (how versions before FLAG_ENTRY stored
    them, and how a process still running one does during a rolling deploy) is read as
    a hit; the current format is what a recompute writes; dogpile's own read of either
    answers without raising."""
    region = client_closer.watch(
        engine.configure_region(
            "mc",
            "dogpile.cache.pymemcache",
            expiration_time=60,
            arguments={"url": memcached_server.url},
        )
    )
    runs: list[int] = []

    @warmable(ttl=60, region="mc")
    def doubled(x: int) -> int:
        runs.append(x)
        return 2 * x

    key = doubled.key_for(3)
    entry = ("dogpile_warm/2", key, 6, engine.clock(), 60.0, (), 0.0)
    old_format = pickle.dumps(CachedValue(entry, {"ct": time.time(), "v": value_version}))
    memcached_server.write_raw(key, old_format, serde.FLAG_PICKLE)
    assert doubled(3) == 6 and runs == []
    assert region.get(key) == entry  # dogpile's read: its metadata is the real one
    doubled.invalidate(3)
    assert doubled(3) == 6 and runs == [3]
    assert pickle.loads(memcached_server.read_raw(key))[:3] == ("dogpile_warm/2", key, 6)
    assert region.get(key) is NO_VALUE  # dogpile's read: expired, as in the memory backend


@pytest.mark.memcached
def test_a_region_on_dogpiles_own_backend_reads_the_entries_this_backend_stores(
    engine: CacheWarmingEngine, memcached_server: Server, client_closer: ClientCloser
) -> None:
    """pymemcache's serde reads an entry as its plain tuple; dogpile_warm on dogpile's
    own pymemcache region (another process of the fleet, say) takes that for the entry."""
    client_closer.watch(
        engine.configure_region(
            "mc", "dogpile.cache.pymemcache", arguments={"url": memcached_server.url}
        )
    )

    @warmable(ttl=60, region="mc", name="shared.doubled")
    def doubled(x: int) -> int:
        return 2 * x

    assert doubled(5) == 10
    theirs = client_closer.watch(
        make_region().configure("dogpile.cache.pymemcache", arguments={"url": memcached_server.url})
    )
    key = doubled.key_for(5)
    assert theirs.backend.get(key)[:3] == ("dogpile_warm/2", key, 10)  # not a CachedValue
    reader = CacheWarmingEngine(theirs, clock=engine.clock)
    try:
        assert reader.get_cached(key) == 10
        assert reader.get_stats()["values_unreadable"] == 0
    finally:
        reader.close()


class Ambiguous:
    """Compares as a numpy array does: no truth value."""

    def __eq__(self, other: object) -> bool:
        raise ValueError("the truth value of an array is ambiguous")

    __hash__ = object.__hash__


def test_a_users_seven_tuple_is_stored_as_dogpile_stores_it_whatever_it_holds() -> None:
    """Only a tuple whose first item is dogpile_warm's format string is an entry; the
    serde compares nothing else (a numpy array's comparison raises)."""
    value = CachedValue((Ambiguous(), 1, 2, 3, 4, 5, 6), {"ct": 1.0, "v": 2})
    raw, flags = memcached.pickle_serde.serialize("k", value)
    assert flags == serde.FLAG_PICKLE
    assert type(pickle.loads(raw)) is CachedValue
