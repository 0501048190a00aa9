"""Every backend dogpile ships, configured by the user and passed in as ``@warmable(region=...)``.

Each test runs once per backend: dogpile's memory, memory_pickle and dbm
backends, its four memcached clients (pymemcache, pylibmc,
python-binary-memcached, python-memcached) with and without a distributed
lock, and Redis and Valkey (the Valkey client against the suite's
redis-server, which speaks the same protocol) with a process-local lock, a
thread-local distributed lock (dogpile's default) and a plain distributed
lock. The regions are plain
``make_region().configure(...)`` regions on the suite's real servers, with
dogpile's default arguments but for the address (and a ``lock_timeout``
with a distributed lock, see the last test).

Every call of a decorated function is made from one application thread and
must return within :data:`CALL_TIMEOUT`: a call that hangs fails its test
instead of the session. Locks that only their own thread can release
(dbm's file lock, a thread-local Redis lock) are where a hang would come
from: a background refresh releases a lock in another thread than the one
that took it.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from dogpile.cache import CacheRegion, make_region

import dogpile_warm
from dogpile_warm import CacheWarmingEngine
from dogpile_warm._core.keys import safe_key
from dogpile_warm._core.tags import tag_key
from dogpile_warm.testing import FakeClock, captured_signals, wait_until
from tests.servers import ClientCloser, Server
from tests.test_locks import remaining_seconds

# Seconds a call of a decorated function may take before its test fails as hung.
CALL_TIMEOUT = 10.0
# Seconds a background refresh gets to report itself.
REFRESH_TIMEOUT = 10.0
# A distributed lock's expiry (seconds): without one, decoration warns (see the last test).
LOCK = {"distributed_lock": True, "lock_timeout": 4}


@dataclass(frozen=True)
class Backend:
    """A dogpile backend as a user configures it: its name, the server it needs and arguments
    beyond the server's address."""

    name: str
    server: str | None = None  # "memcached", "redis" or None (in-process or a file)
    arguments: Mapping[str, Any] = field(default_factory=dict)
    configure_warns: str | None = None  # what dogpile's own warning at configure says


def _memcached(name: str, distributed: bool = False) -> Any:
    arguments = LOCK if distributed else {}
    test_id = name.rsplit(".", 1)[1] + ("-distributed" if distributed else "")
    return pytest.param(
        Backend(name, "memcached", arguments), id=test_id, marks=pytest.mark.memcached
    )


BACKENDS = [
    pytest.param(Backend("dogpile.cache.memory"), id="memory"),
    pytest.param(Backend("dogpile.cache.memory_pickle"), id="memory_pickle"),
    pytest.param(Backend("dogpile.cache.dbm"), id="dbm"),
    _memcached("dogpile.cache.pymemcache"),
    _memcached("dogpile.cache.pymemcache", distributed=True),
    _memcached("dogpile.cache.pylibmc"),
    _memcached("dogpile.cache.pylibmc", distributed=True),
    _memcached("dogpile.cache.bmemcached"),
    _memcached("dogpile.cache.bmemcached", distributed=True),
    _memcached("dogpile.cache.memcached"),
    _memcached("dogpile.cache.memcached", distributed=True),
    pytest.param(Backend("dogpile.cache.redis", "redis"), id="redis", marks=pytest.mark.redis),
    pytest.param(
        # thread_local_lock left at dogpile's default, True: dogpile warns at configure.
        Backend("dogpile.cache.redis", "redis", LOCK, configure_warns="thread_local_lock"),
        id="redis-distributed-thread-local",
        marks=pytest.mark.redis,
    ),
    pytest.param(
        Backend("dogpile.cache.redis", "redis", {**LOCK, "thread_local_lock": False}),
        id="redis-distributed",
        marks=pytest.mark.redis,
    ),
    pytest.param(Backend("dogpile.cache.valkey", "redis"), id="valkey", marks=pytest.mark.redis),
    pytest.param(
        Backend("dogpile.cache.valkey", "redis", LOCK, configure_warns="thread_local_lock"),
        id="valkey-distributed-thread-local",
        marks=pytest.mark.redis,
    ),
    pytest.param(
        Backend("dogpile.cache.valkey", "redis", {**LOCK, "thread_local_lock": False}),
        id="valkey-distributed",
        marks=pytest.mark.redis,
    ),
]


class Disconnector:
    """Closes every connection the clients of a dogpile memcached backend open, in any thread.

    For pylibmc, python-binary-memcached and python-memcached, whose clients
    have no ``close()`` (the one method :class:`~tests.servers.ClientCloser`
    calls). dogpile keeps one client per thread and never closes it, and a
    socket the garbage collector closes is a ``ResourceWarning``, an error in
    this suite. python-memcached's client and python-binary-memcached's
    per-server protocol objects are ``threading.local`` themselves: their
    sockets are only reachable from the thread that opened them, and vanish
    with it. So when the backend creates a thread's client, in that thread,
    the thread's own state is kept here, and :meth:`close` closes its sockets.
    """

    def __init__(self) -> None:
        self._closers: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def watch(self, region: CacheRegion) -> None:
        backend = region.actual_backend
        create = backend._create_client

        def create_and_record() -> Any:
            client = create()  # in the thread that will use it
            with self._lock:
                self._closers.append(_closer_of(client))
            return client

        backend._create_client = create_and_record

    def close(self) -> None:
        with self._lock:
            closers, self._closers = self._closers, []
        for close in closers:
            close()


def _closer_of(client: Any) -> Callable[[], None]:
    """Closes, from any thread, the sockets ``client`` opens in the thread calling this."""
    module = type(client).__module__
    if module == "memcache":  # python-memcached: this thread's servers, each with its socket
        hosts = list(client.servers)

        def close_hosts() -> None:
            for host in hosts:
                host.close_socket()

        return close_hosts
    if module.startswith("bmemcached"):  # each server's state in this thread holds its socket
        states = [server.__dict__ for server in client.servers]

        def close() -> None:
            for state in states:
                connection = state.get("connection")
                if connection is not None:
                    connection.close()

        return close
    disconnect_all: Callable[[], None] = client.disconnect_all  # pylibmc: one C client
    return disconnect_all


def configured(
    backend: Backend,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    client_closer: ClientCloser,
    disconnector: Disconnector,
) -> CacheRegion:
    """A plain dogpile region of ``backend``, on an emptied server, its sockets watched."""
    arguments = dict(backend.arguments)
    if backend.server is not None:
        server: Server = request.getfixturevalue(f"{backend.server}_server")
        server.flush()
        if backend.server == "memcached":
            arguments["url"] = server.url
        else:
            arguments.update(host=server.host, port=server.port)
    elif backend.name == "dogpile.cache.dbm":
        arguments["filename"] = str(tmp_path / "cache.dbm")
    if backend.configure_warns:
        with pytest.warns(UserWarning, match=backend.configure_warns):
            region = make_region().configure(backend.name, arguments=arguments)
    else:
        region = make_region().configure(backend.name, arguments=arguments)
    if backend.name in ("dogpile.cache.pymemcache", "dogpile.cache.redis", "dogpile.cache.valkey"):
        client_closer.watch(region)
    elif backend.server == "memcached":
        disconnector.watch(region)
    return region


@pytest.fixture(params=BACKENDS)
def region(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    engine: CacheWarmingEngine,
    client_closer: ClientCloser,
) -> Iterator[CacheRegion]:
    """A plain dogpile region of the parametrised backend, on an emptied server."""
    disconnector = Disconnector()
    try:
        yield configured(request.param, request, tmp_path, client_closer, disconnector)
    finally:
        engine.close()  # background refreshes end before their connections close
        disconnector.close()


class Caller:
    """The application thread making a test's calls: each must return within ``timeout``."""

    def __init__(self, timeout: float = CALL_TIMEOUT) -> None:
        self.timeout = timeout
        self._jobs: queue.Queue[Callable[[], None] | None] = queue.Queue()
        # A daemon: a call that hangs fails its test and is left behind.
        self._thread = threading.Thread(target=self._serve, name="caller", daemon=True)
        self._thread.start()
        self.ident = self._thread.ident

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            job()

    def __call__(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` in the caller thread: its result, or its exception raised here."""
        done = threading.Event()
        outcome: dict[str, Any] = {}

        def job() -> None:
            try:
                outcome["value"] = fn(*args)
            except BaseException as exc:
                outcome["error"] = exc
            finally:
                done.set()

        self._jobs.put(job)
        if not done.wait(self.timeout):
            pytest.fail(f"{getattr(fn, '__name__', fn)}() hangs: no return in {self.timeout} s")
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]

    def stop(self) -> None:
        self._jobs.put(None)
        self._thread.join(self.timeout)


@pytest.fixture
def caller() -> Iterator[Caller]:
    """Makes the test's calls from one thread, failing any call that does not return in time."""
    thread = Caller()
    yield thread
    thread.stop()


class Versions:
    """A function body: returns 1, 2, 3, ... and records the thread of each computation."""

    def __init__(self) -> None:
        self.threads: list[int | None] = []
        self._lock = threading.Lock()

    def __call__(self) -> int:
        with self._lock:
            self.threads.append(threading.get_ident())
            return len(self.threads)

    @property
    def computed(self) -> int:
        return len(self.threads)


# -- reading through the cache ------------------------------------------------------------


def test_a_miss_computes_once_and_the_next_call_hits(region: CacheRegion, caller: Caller) -> None:
    """The first call computes and stores the value; the second is a hit that computes nothing."""
    body = Versions()

    @dogpile_warm.warmable(region=region, ttl=60, refresh_ahead=0.8, tags={"catalog"})
    def catalog() -> int:
        return body()

    with captured_signals("cache_hit", "cache_miss") as sent:
        assert caller(catalog) == 1
        assert caller(catalog) == 1

    assert [s.signal for s in sent] == ["cache_miss", "cache_hit"]
    assert body.computed == 1


@pytest.mark.slow
def test_refresh_ahead_returns_the_cached_value_and_refreshes_in_the_background(
    region: CacheRegion,
    caller: Caller,
    engine: CacheWarmingEngine,
    clock: FakeClock,
) -> None:
    """In the refresh window a call returns the cached value at once; a background refresh replaces it."""
    body = Versions()
    caller_returned = threading.Event()

    @dogpile_warm.warmable(region=region, ttl=1.0, refresh_ahead=0.5, tags={"prices"})
    def prices() -> int:
        version = body()
        if version == 2:  # the refresh: held back until the call that started it returned
            caller_returned.wait(REFRESH_TIMEOUT)
        return version

    try:
        assert caller(prices) == 1
        clock.advance(0.6)  # inside the refresh window (0.5 s to 1 s)
        with captured_signals("refreshed") as sent:
            assert caller(prices) == 1  # returned while its refresh was still held back
            caller_returned.set()
            wait_until(lambda: sent.named("refreshed"), REFRESH_TIMEOUT, message="the refresh")
        assert caller(prices) == 2
        assert body.threads[1] != caller.ident  # refreshed in another thread
    finally:
        caller_returned.set()
        engine.close()


@pytest.mark.slow
def test_a_value_past_its_ttl_is_recomputed_in_the_caller(
    region: CacheRegion,
    caller: Caller,
    engine: CacheWarmingEngine,
    clock: FakeClock,
) -> None:
    """A call after ``ttl`` never returns the old value: it recomputes it in the calling thread."""
    body = Versions()

    @dogpile_warm.warmable(region=region, ttl=0.5, refresh_ahead=0.5, tags={"stock"})
    def stock() -> int:
        return body()

    assert caller(stock) == 1
    clock.advance(0.7)  # past the ttl
    with captured_signals("cache_hit", "cache_miss", "refreshed") as sent:
        assert caller(stock) == 2

    assert [s.signal for s in sent] == ["cache_miss"]
    assert body.threads == [caller.ident, caller.ident]
    engine.close()


def test_invalidate_by_tags_makes_the_tagged_function_recompute(
    region: CacheRegion, caller: Caller
) -> None:
    """After ``invalidate_by_tags`` a function carrying the tag recomputes; one without it hits."""
    tagged, other = Versions(), Versions()

    @dogpile_warm.warmable(region=region, ttl=60, refresh_ahead=0.8, tags={"catalog"})
    def catalog() -> int:
        return tagged()

    @dogpile_warm.warmable(region=region, ttl=60, refresh_ahead=0.8, tags={"basket"})
    def basket() -> int:
        return other()

    assert (caller(catalog), caller(basket)) == (1, 1)
    assert caller(dogpile_warm.invalidate_by_tags, {"catalog"}) == 1

    assert (caller(catalog), caller(basket)) == (2, 1)
    assert (tagged.computed, other.computed) == (2, 1)


@pytest.mark.slow
def test_the_first_call_past_ttl_after_a_background_refresh_returns(
    region: CacheRegion,
    caller: Caller,
    engine: CacheWarmingEngine,
    clock: FakeClock,
) -> None:
    """The first call past ttl after a background refresh recomputes, never hanging on a leftover lock."""
    body = Versions()

    @dogpile_warm.warmable(region=region, ttl=0.6, refresh_ahead=0.1, tags={"menu"})
    def menu() -> int:
        return body()

    assert caller(menu) == 1
    clock.advance(0.15)  # inside the refresh window (0.06 s to 0.6 s)
    with captured_signals("refreshed") as sent:
        assert caller(menu) == 1
        wait_until(lambda: sent.named("refreshed"), REFRESH_TIMEOUT, message="the refresh")
    clock.advance(0.75)  # past the refreshed value's ttl

    assert caller(menu) == 3  # within CALL_TIMEOUT: the lock was free
    assert body.threads[2] == caller.ident
    engine.close()


# -- a distributed lock that never expires -------------------------------------------------


@pytest.mark.memcached
def test_a_distributed_lock_without_lock_timeout_warns_at_decoration(
    memcached_server: Server, client_closer: ClientCloser
) -> None:
    """Decorating with a region whose distributed lock never expires warns, naming ``lock_timeout``."""
    region = make_region().configure(
        "dogpile.cache.pymemcache",
        arguments={"url": memcached_server.url, "distributed_lock": True},
    )
    client_closer.watch(region)

    with pytest.warns(UserWarning, match=r"never expires.*'lock_timeout'"):

        @dogpile_warm.warmable(region=region, ttl=60, refresh_ahead=0.8, tags={"catalog"})
        def catalog() -> str:
            return "espresso"


# -- a computation that outlasts lock_timeout ------------------------------------------------

# Distributed locks whose expiry is shorter than the computation below. The holder renews
# its lease (dogpile's memcached lock through ``touch``: it lasts lock_timeout - 1 s for
# sure, memcached counting whole seconds), so nobody else computes meanwhile.
SHORT_LEASES = [
    pytest.param(
        Backend(name, "memcached", {"distributed_lock": True, "lock_timeout": 2}),
        id=name.rsplit(".", 1)[1],
        marks=pytest.mark.memcached,
    )
    for name in ("dogpile.cache.pymemcache", "dogpile.cache.pylibmc", "dogpile.cache.memcached")
] + [
    pytest.param(
        Backend(
            "dogpile.cache.redis",
            "redis",
            {"distributed_lock": True, "lock_timeout": 1},
            configure_warns="thread_local_lock",
        ),
        id="redis-thread-local",
        marks=pytest.mark.redis,
    ),
    pytest.param(
        Backend(
            "dogpile.cache.redis",
            "redis",
            {"distributed_lock": True, "lock_timeout": 1, "thread_local_lock": False},
        ),
        id="redis",
        marks=pytest.mark.redis,
    ),
]
LONG_COMPUTE = 2.5  # seconds: longer than every lease above


def two_processes_on(region: CacheRegion, seconds: float, counter: list[int]) -> list[Any]:
    """One function on ``region`` in two engines (two processes sharing the backend)."""
    functions = []
    for _ in range(2):
        engine = CacheWarmingEngine()

        @dogpile_warm.warmable(region=region, ttl=60, name="backends.long", engine=engine)
        def long() -> int:
            counter.append(1)
            time.sleep(seconds)  # real time: longer than the lock's lease
            return len(counter)

        functions.append(long)
    return functions


@pytest.mark.slow
@pytest.mark.parametrize("backend", SHORT_LEASES)
def test_a_computation_longer_than_lock_timeout_keeps_its_lock(
    backend: Backend,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    client_closer: ClientCloser,
) -> None:
    """A holder computing past ``lock_timeout`` renews its lock: the other process waits
    for its value instead of computing it again, and nothing counts as a backend failure."""
    disconnector = Disconnector()
    region = configured(backend, request, tmp_path, client_closer, disconnector)
    counter: list[int] = []
    holder, waiter = two_processes_on(region, LONG_COMPUTE, counter)
    try:
        computing = threading.Thread(target=holder)
        computing.start()
        wait_until(lambda: counter == [1], message="the holder's computation")  # it holds the lock
        assert waiter() == 1
        computing.join(10)
        stats = [fn.engine.get_stats() for fn in (holder, waiter)]
    finally:
        for fn in (holder, waiter):
            fn.engine.close()
        disconnector.close()
    assert counter == [1]
    assert [s["backend_errors"] for s in stats] == [0, 0]


@pytest.mark.slow
@pytest.mark.memcached
def test_a_lock_the_client_cannot_renew_is_no_outage(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    client_closer: ClientCloser,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """python-binary-memcached has no ``touch``: its lock is not renewed and simply expires,
    which is neither a backend failure nor a reason to skip the backend."""
    backend = Backend(
        "dogpile.cache.bmemcached", "memcached", {"distributed_lock": True, "lock_timeout": 2}
    )
    disconnector = Disconnector()
    region = configured(backend, request, tmp_path, client_closer, disconnector)
    counter: list[int] = []
    holder, _ = two_processes_on(region, LONG_COMPUTE, counter)
    try:
        assert holder() == 1
        stats = holder.engine.get_stats()
    finally:
        holder.engine.close()
        disconnector.close()
    assert stats["backend_errors"] == 0 and stats["backends_down"] == []
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


# -- tag versions outlive the backend expiry of values -----------------------------------------

EXPIRING = [
    pytest.param(
        Backend(name, "memcached", {"memcached_expire_time": 20}),
        id=name.rsplit(".", 1)[1],
        marks=pytest.mark.memcached,
    )
    for name in ("dogpile.cache.pymemcache", "dogpile.cache.pylibmc", "dogpile.cache.memcached")
] + [
    pytest.param(
        Backend("dogpile.cache.redis", "redis", {"redis_expiration_time": 20}),
        id="redis",
        marks=pytest.mark.redis,
    ),
]


@pytest.mark.parametrize("backend", EXPIRING)
def test_tag_versions_on_a_region_that_expires_values_do_not_expire(
    backend: Backend,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    client_closer: ClientCloser,
) -> None:
    """The backend expires values after 20 s, but never a tag's version: an unchanged tag
    must not invalidate its values on a timer (python-binary-memcached, which has no
    ``touch``, is the one client that cannot lift the expiry)."""
    disconnector = Disconnector()
    region = configured(backend, request, tmp_path, client_closer, disconnector)
    server: Server = request.getfixturevalue(f"{backend.server}_server")
    try:

        @dogpile_warm.warmable(region=region, ttl=10, tags={"catalog"})
        def catalog() -> str:
            return "espresso"

        catalog()
        kind = "redis" if backend.server == "redis" else "memcached"
        value_left = remaining_seconds(kind, server, safe_key(catalog.key_for()))
        tag_left = remaining_seconds(kind, server, tag_key("catalog"))
    finally:
        disconnector.close()
    assert value_left is not None and 15 <= value_left <= 20
    assert tag_left is None


# -- a region with a serializer of its own --------------------------------------------------

JSON = {"serializer": lambda value: json.dumps(value).encode(), "deserializer": json.loads}


@pytest.mark.parametrize(
    "backend",
    [
        pytest.param(Backend("dogpile.cache.memory"), id="memory"),
        pytest.param(
            Backend("dogpile.cache.pymemcache", "memcached"),
            id="pymemcache",
            marks=pytest.mark.memcached,
        ),
        pytest.param(Backend("dogpile.cache.redis", "redis"), id="redis", marks=pytest.mark.redis),
    ],
)
def test_a_region_serializing_to_json_caches_and_invalidates(
    backend: Backend,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    client_closer: ClientCloser,
    caller: Caller,
) -> None:
    """dogpile_warm's entries survive a JSON serializer (tuples come back as lists): the
    second call hits, and tag invalidation still works."""
    arguments = dict(backend.arguments)
    if backend.server is not None:
        server: Server = request.getfixturevalue(f"{backend.server}_server")
        server.flush()
        if backend.server == "memcached":
            arguments["url"] = server.url
        else:
            arguments.update(host=server.host, port=server.port)
    region = make_region(**JSON).configure(backend.name, arguments=arguments)
    if backend.server is not None:
        client_closer.watch(region)
    body = Versions()

    @dogpile_warm.warmable(region=region, ttl=60, tags={"catalog"})
    def catalog() -> dict[str, int]:
        return {"version": body()}

    assert caller(catalog) == caller(catalog) == {"version": 1}
    dogpile_warm.invalidate_by_tags("catalog")
    assert caller(catalog) == {"version": 2}
    stats = dogpile_warm.get_warming_stats()
    assert (stats["hits"], stats["misses"], stats["values_unreadable"]) == (1, 2, 0)
