"""dogpile_warm's own single-key memcached get answers, fails and cleans up as
pymemcache's ``Client.get`` does: against a real memcached, and against a loopback
server that answers with scripted bytes (split replies, errors, a connection
closed midway), which no real memcached can be made to send."""

from __future__ import annotations

import functools
import pickle
import socket
import time
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest
from pymemcache.client.base import Client, PooledClient
from pymemcache.client.hash import HashClient
from pymemcache.exceptions import (
    MemcacheClientError,
    MemcacheError,
    MemcacheServerError,
    MemcacheUnexpectedCloseError,
    MemcacheUnknownCommandError,
    MemcacheUnknownError,
)

from dogpile_warm._backends import memcached_get
from dogpile_warm._backends.memcached import pickle_serde
from tests.servers import HOST, LoopbackListener, Server


@pytest.fixture
def client(memcached_server: Server) -> Iterator[Client]:
    host, port = memcached_server.url.rsplit(":", 1)
    client = Client((host, int(port)), serde=pickle_serde, timeout=2, connect_timeout=2)
    yield client
    client.close()


@pytest.mark.memcached
@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"raw bytes\r\nEND\r\n with memcached's terminators inside",
        "text",
        7,
        {"nested": [1, (2, 3)], "text": "x" * 10_000},
        b"\x00" * 900_000,  # many reads of the socket
    ],
    ids=["empty", "terminators", "str", "int", "dict", "900KB"],
)
def test_a_stored_value_reads_as_client_get_reads_it(client: Client, value: Any) -> None:
    client.set("mg-value", value)
    assert memcached_get.get(client, "mg-value") == client.get("mg-value") == value
    assert type(memcached_get.get(client, "mg-value")) is type(value)


@pytest.mark.memcached
def test_a_missing_key_reads_as_none_and_the_connection_stays_usable(client: Client) -> None:
    assert memcached_get.get(client, "mg-never-set") is None
    client.set("mg-after", 1)
    assert memcached_get.get(client, "mg-after") == 1


@pytest.mark.memcached
def test_the_first_read_opens_the_connection(client: Client) -> None:
    client.set("mg-connect", "v", noreply=False)  # stored before the connection closes
    client.close()
    assert client.sock is None
    assert memcached_get.get(client, "mg-connect") == "v"
    assert client.sock is not None


@pytest.mark.parametrize(
    "key",
    ["with space", "tab\there", "new\nline", "nul\x00", "é", "k" * 251, b"bytes"],
    ids=["space", "tab", "newline", "nul", "non-ascii", "251 chars", "bytes"],
)
def test_keys_pymemcache_would_refuse_or_change_go_to_client_get(key: Any) -> None:
    assert not memcached_get.speaks(Client((HOST, 1)), key)


def test_other_clients_and_prefixed_keys_go_to_client_get() -> None:
    key = "k" * 250
    assert memcached_get.speaks(Client((HOST, 1)), key)
    assert not memcached_get.speaks(Client((HOST, 1), key_prefix=b"p:"), key)
    assert not memcached_get.speaks(PooledClient((HOST, 1)), key)
    assert not memcached_get.speaks(HashClient([f"{HOST}:1"]), key)


class ScriptedServer(LoopbackListener):
    """A loopback server answering every command with the next scripted reply, sent
    in its chunks with a pause between them; a ``None`` chunk closes the connection
    there, and the server takes the next one."""

    def __init__(self, replies: list[list[bytes | None]]) -> None:
        self.replies = replies
        super().__init__(self._answer)

    def _answer(self, conn: socket.socket) -> None:
        while self.replies and conn.recv(4096):
            for chunk in self.replies.pop(0):
                if chunk is None:
                    return
                conn.sendall(chunk)
                time.sleep(0.002)


@pytest.fixture
def scripted() -> Iterator[Any]:
    """``scripted(*replies)``: a client of a new :class:`ScriptedServer`."""
    servers: list[ScriptedServer] = []
    clients: list[Client] = []

    def start(*replies: list[bytes | None]) -> Client:
        server = ScriptedServer(list(replies))
        servers.append(server)
        clients.append(
            Client((HOST, server.port), serde=pickle_serde, timeout=2, connect_timeout=2)
        )
        return clients[-1]

    yield start
    for client in clients:
        client.close()
    for server in servers:
        server.close()


class OneByteAtATime:
    """A connected socket that hands at most one byte to each read, as a reply split
    anywhere by the network would arrive."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv(self, size: int) -> bytes:
        return self.sock.recv(min(size, 1))

    def recv_into(self, buffer: memoryview) -> int:
        return self.sock.recv_into(buffer[:1])

    def close(self) -> None:
        self.sock.close()


@pytest.mark.memcached
def test_a_reply_split_anywhere_is_read_whole(client: Client) -> None:
    value = {"a": list(range(2000))}  # longer than one read of the header's buffer
    client.set("mg-split", value)
    client.get("mg-never-set")  # connected
    client.sock = OneByteAtATime(client.sock)
    assert memcached_get.get(client, "mg-split") == value
    assert memcached_get.get(client, "mg-never-set") is None
    assert memcached_get.get(client, "mg-split") == value


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (b"SERVER_ERROR out of memory\r\n", MemcacheServerError),
        (b"CLIENT_ERROR bad command line format\r\n", MemcacheClientError),
        (b"ERROR\r\n", MemcacheUnknownCommandError),
        (b"VALUE other 0 1\r\nx\r\nEND\r\n", MemcacheUnknownError),  # another key's value
        (b"VALUE k 0 1\r\nxy\r\nEND\r\n", MemcacheUnknownError),  # longer than it said
        (b"VALUE k 0 1\r\nx\r\nEND\r\nEND\r\n", MemcacheUnknownError),  # more than one reply
        (b"END\r\nEND\r\n", MemcacheUnknownError),
        (b"STORED\r\n", MemcacheUnknownError),
    ],
    ids=["server error", "client error", "error", "other key", "long", "trailing", "2 ends", "odd"],
)
def test_a_reply_that_is_not_a_value_raises_what_client_get_raises_and_closes(
    scripted: Any, reply: bytes, error: type[MemcacheError]
) -> None:
    ours, theirs = scripted([reply]), scripted([reply])
    with pytest.raises(error):
        memcached_get.get(ours, "k")
    assert ours.sock is None  # the next command starts on a new connection
    if error is not MemcacheUnknownError:  # pymemcache reads past what it expects
        with pytest.raises(error):
            theirs.get("k")


def test_a_connection_closed_midway_raises_and_the_next_read_reconnects(scripted: Any) -> None:
    data = pickle.dumps("v")
    reply = b"VALUE k 1 %d\r\n%b\r\nEND\r\n" % (len(data), data)
    client = scripted([reply[:10], None], [reply[:-3], None], [reply])  # cut in the header,
    # then in the end marker
    with pytest.raises(MemcacheUnexpectedCloseError):
        memcached_get.get(client, "k")
    assert client.sock is None
    with pytest.raises(MemcacheUnexpectedCloseError):
        memcached_get.get(client, "k")
    assert memcached_get.get(client, "k") == "v"


@pytest.mark.memcached
def test_a_traced_client_get_is_called_for_every_hit(
    engine: Any, memcached_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tracing (OpenTelemetry's pymemcache instrumentation, say) wraps Client.get, at any
    time: a hit after that goes through Client.get, and the tracing sees it."""
    from dogpile_warm import warmable

    region = engine.configure_region(
        "mc", "dogpile.cache.pymemcache", arguments={"url": memcached_server.url}
    )

    @warmable(ttl=60, region="mc")
    def doubled(x: int) -> int:
        return 2 * x

    try:
        assert doubled(6) == 12 and doubled(6) == 12  # read before the tracing is installed
        seen: list[Any] = []
        original = Client.get

        @functools.wraps(original)
        def traced(self: Client, key: Any, *args: Any, **kwargs: Any) -> Any:
            seen.append(key)
            return original(self, key, *args, **kwargs)

        monkeypatch.setattr(Client, "get", traced)
        assert not memcached_get.speaks(Client((HOST, 1)), "k")
        for _ in range(3):
            assert doubled(6) == 12
        assert seen == [doubled.key_for(6)] * 3
    finally:
        region.backend.client.close()


def test_a_client_that_ignores_errors_goes_to_client_get() -> None:
    """pymemcache's ignore_exc answers None for an error reply; get() would raise."""
    assert not memcached_get.speaks(Client((HOST, 1), ignore_exc=True), "k")


@pytest.mark.memcached
def test_a_configured_regions_hit_reads_with_this_get(
    engine: Any, memcached_server: Server, keys_read: Callable[[ModuleType], list[str]]
) -> None:
    from dogpile_warm import warmable

    reads = keys_read(memcached_get)
    region = engine.configure_region(
        "mc", "dogpile.cache.pymemcache", arguments={"url": memcached_server.url}
    )

    @warmable(ttl=60, region="mc")
    def tripled(x: int) -> int:
        return 3 * x

    try:
        assert tripled(2) == 6 and tripled(2) == 6
        assert reads.count(tripled.key_for(2)) >= 2  # the miss's reads and the hit's
        hits_before = len(reads)
        assert tripled(2) == 6
        assert reads[hits_before:] == [tripled.key_for(2)]
    finally:
        region.backend.client.close()
