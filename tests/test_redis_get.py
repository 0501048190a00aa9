"""dogpile_warm's own single-key Redis GET answers and fails as the client's ``get`` does,
on a connection from the client's own pool, against a real redis-server."""

from __future__ import annotations

import functools
import socket
import threading
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest
import redis
import valkey

from dogpile_warm import CacheWarmingEngine, warmable
from dogpile_warm._backends import redis_get
from tests import servers
from tests.servers import ClientCloser, Server

pytestmark = pytest.mark.redis


@pytest.fixture(params=[redis.Redis, valkey.Valkey], ids=["redis-py", "valkey-py"])
def client(request: pytest.FixtureRequest, redis_server: Server) -> Iterator[Any]:
    client = request.param.from_url(redis_server.url, socket_timeout=2)
    yield client
    client.close()


@pytest.mark.parametrize(
    "value", [b"", b"\r\n$-1\r\n", b"x" * 100_000, "text"], ids=["empty", "crlf", "100KB", "str"]
)
def test_a_stored_value_reads_as_client_get_reads_it(client: Any, value: Any) -> None:
    client.set("rg-value", value)
    assert redis_get.speaks(client, "rg-value")
    read = redis_get.get(client, "rg-value")
    assert read == client.get("rg-value") and type(read) is bytes


def test_a_missing_key_reads_as_none(client: Any) -> None:
    client.delete("rg-missing")
    assert redis_get.get(client, "rg-missing") is None


def test_the_connection_goes_back_to_the_pool_after_a_read_and_after_an_error(
    client: Any,
) -> None:
    pool = client.connection_pool
    client.delete("rg-hash")
    client.hset("rg-hash", "f", "v")
    for _ in range(3):
        redis_get.get(client, "rg-missing")
    response_error = (
        redis.ResponseError if isinstance(client, redis.Redis) else valkey.ResponseError
    )
    with pytest.raises(response_error, match="WRONGTYPE"):
        redis_get.get(client, "rg-hash")  # as client.get raises it
    with pytest.raises(response_error, match="WRONGTYPE"):
        client.get("rg-hash")
    assert len(pool._in_use_connections) == 0
    assert len(pool._available_connections) == 1
    assert redis_get.get(client, "rg-missing") is None  # the connection still answers


@pytest.mark.parametrize("library", [redis.Redis, valkey.Valkey], ids=["redis-py", "valkey-py"])
def test_a_decoding_client_reads_str_as_its_get_does(redis_server: Server, library: Any) -> None:
    client = library.from_url(redis_server.url, decode_responses=True)
    try:
        client.set("rg-decoded", "text")
        assert redis_get.get(client, "rg-decoded") == client.get("rg-decoded") == "text"
    finally:
        client.close()


def test_clients_it_does_not_speak_for_go_to_their_get(redis_server: Server) -> None:
    url = redis_server.url
    plain = redis.Redis.from_url(url)
    single = redis.Redis.from_url(url, single_connection_client=True)
    calls_back = redis.Redis.from_url(url)
    calls_back.set_response_callback("GET", lambda response, **options: response)
    try:
        assert redis_get.speaks(plain, "k")
        assert not redis_get.speaks(plain, "é")  # encoded by the client's encoding
        assert not redis_get.speaks(plain, b"k")
        assert not redis_get.speaks(single, "k")
        assert not redis_get.speaks(calls_back, "k")
    finally:
        for client in (plain, single, calls_back):
            client.close()


def test_a_client_side_cache_goes_to_the_clients_get(redis_server: Server) -> None:
    from redis.cache import CacheConfig

    theirs = redis.Redis.from_url(redis_server.url, protocol=3, cache_config=CacheConfig())
    valkeys = valkey.Valkey.from_url(redis_server.url, protocol=3, cache_enabled=True)
    try:
        assert not redis_get.speaks(theirs, "k")  # redis-py keeps it on the pool
        assert not redis_get.speaks(valkeys, "k")  # valkey-py, on the connection
    finally:
        theirs.close()
        valkeys.close()


@pytest.mark.slow
def test_a_restarted_server_is_read_on_a_new_connection_and_a_dead_one_raises(
    engine: CacheWarmingEngine, client_closer: ClientCloser
) -> None:
    """Under the retry policy dogpile_warm configures (once, at once, on a refused or
    reset connection): a read after a restart reconnects; with the server gone, the
    caller gets its value computed, the failure counted."""
    server = servers.start_redis()
    try:
        region = client_closer.watch(
            engine.configure_region("r", "dogpile.cache.redis", arguments={"url": server.url})
        )
        client = region.backend.reader_client
        client.set("rg-restart", b"v")
        assert redis_get.get(client, "rg-restart") == b"v"
        server.kill()
        server.start()  # same port, empty: the pooled connection is to the dead process
        assert redis_get.get(client, "rg-restart") is None
        runs: list[int] = []

        @warmable(ttl=60, region="r")
        def doubled(x: int) -> int:
            runs.append(x)
            return 2 * x

        assert doubled(2) == 4 and doubled(2) == 4 and runs == [2]
        server.kill()
        with pytest.raises(redis.ConnectionError):
            redis_get.get(client, "rg-restart")
        assert doubled(2) == 4 and runs == [2, 2]
        assert engine.get_stats()["backend_unavailable"] >= 1
    finally:
        server.stop()


class Namespaced(redis.Redis):
    """A client that changes what its get reads: dogpile_warm's GET would not."""

    def get(self, name: Any) -> Any:
        return super().get(f"ns:{name}")


def test_a_client_whose_get_is_overridden_goes_to_its_get(redis_server: Server) -> None:
    client = Namespaced.from_url(redis_server.url)
    try:
        client.set("ns:rg-namespaced", b"v")
        assert not redis_get.speaks(client, "rg-namespaced")
    finally:
        client.close()


def test_an_encoding_that_does_not_write_ascii_as_ascii_goes_to_the_clients_get(
    redis_server: Server,
) -> None:
    client = redis.Redis.from_url(redis_server.url, encoding="utf-16")
    try:
        assert not redis_get.speaks(client, "k")
    finally:
        client.close()


@pytest.mark.parametrize("wraps", [True, False], ids=["functools.wraps", "plain function"])
def test_traced_clients_go_to_their_get_and_the_tracing_sees_every_hit(
    engine: CacheWarmingEngine,
    redis_server: Server,
    client_closer: ClientCloser,
    monkeypatch: pytest.MonkeyPatch,
    wraps: bool,
) -> None:
    """Tracing (OpenTelemetry, ddtrace, Sentry) wraps Redis.execute_command, at any time:
    a hit after that goes through the client's get, and the tracing sees it."""
    client_closer.watch(
        engine.configure_region("r", "dogpile.cache.redis", arguments={"url": redis_server.url})
    )

    x = 4 if wraps else 5  # a key of its own: the server outlives the test

    @warmable(ttl=60, region="r")
    def doubled(x: int) -> int:
        return 2 * x

    assert doubled(x) == 2 * x and doubled(x) == 2 * x  # read before the tracing is installed
    seen: list[Any] = []
    original = redis.Redis.execute_command

    def traced(self: redis.Redis, *args: Any, **options: Any) -> Any:
        seen.append(args[0])
        return original(self, *args, **options)

    monkeypatch.setattr(
        redis.Redis, "execute_command", functools.wraps(original)(traced) if wraps else traced
    )
    for _ in range(3):
        assert doubled(x) == 2 * x
    assert seen.count("GET") == 3
    assert engine.get_stats()["hits"] == 4


class DropsEveryGet(servers.LoopbackListener):
    """A loopback proxy to a real redis-server that passes every command but GET, whose
    connection it closes, counting the GETs."""

    def __init__(self, upstream: Server) -> None:
        self.gets = 0
        self.upstream = (upstream.host, upstream.port)
        super().__init__(self._proxy)

    def _proxy(self, conn: socket.socket) -> None:
        with socket.create_connection(self.upstream) as up:
            threading.Thread(target=_relay, args=(up, conn), daemon=True).start()
            while data := conn.recv(65536):
                if b"\r\nGET\r\n" in data.upper():
                    self.gets += 1
                    return
                up.sendall(data)


def _relay(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass


@pytest.mark.parametrize("library", ["redis", "valkey"])
def test_a_dropped_connection_is_retried_as_the_clients_get_retries_it(
    redis_server: Server, library: str
) -> None:
    """Under the retry policy dogpile_warm configures, as many attempts as the client's
    own get makes: valkey-py fails an attempt its connection's retry_on_error does not
    name at once, redis-py 8 retries it."""
    from dogpile_warm._core.regions import _retry_once

    cls = redis.Redis if library == "redis" else valkey.Valkey
    server = DropsEveryGet(redis_server)
    client = cls(host=servers.HOST, port=server.port, socket_timeout=2, retry=_retry_once(library))
    try:
        with pytest.raises(Exception) as theirs:
            client.get("k")
        attempts = server.gets
        with pytest.raises(Exception) as ours:
            redis_get.get(client, "k")
        assert server.gets - attempts == attempts >= 1
        assert type(ours.value) is type(theirs.value)
    finally:
        client.close()
        server.close()


@pytest.mark.parametrize("backend", ["dogpile.cache.redis", "dogpile.cache.valkey"])
def test_a_configured_regions_hit_reads_with_this_get(
    engine: CacheWarmingEngine,
    redis_server: Server,
    client_closer: ClientCloser,
    keys_read: Callable[[ModuleType], list[str]],
    backend: str,
) -> None:
    reads = keys_read(redis_get)
    client_closer.watch(engine.configure_region("r", backend, arguments={"url": redis_server.url}))

    @warmable(ttl=60, region="r", name=f"rg.{backend}")
    def tripled(x: int) -> int:
        return 3 * x

    assert tripled(2) == 6
    before = len(reads)
    assert tripled(2) == 6
    assert reads[before:] == [tripled.key_for(2)]
