"""dogpile's own backend, mutex and serializer suites, run against ``dogpile_warm.pymemcache``.

``dogpile.testing.fixtures`` ships the suites dogpile runs against each of
its backends. Regions that dogpile_warm configures for
``dogpile.cache.pymemcache`` get ``dogpile_warm.pymemcache`` instead (see
``src/dogpile_warm/_backends/memcached.py``), with the arguments of
``backend_defaults("dogpile.cache.pymemcache")``: it must pass them as
dogpile's own backend does. One small class per configuration, as in
dogpile's ``tests/cache/test_memcached_backend.py``, on the suite's own
memcached (every test runs: the server is started, never skipped).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from typing import Any, TypeVar

import pytest
from dogpile.testing.fixtures import (
    _GenericBackendFixture,
    _GenericBackendTestSuite,
    _GenericMutexTestSuite,
    _GenericSerializerTestSuite,
)

from dogpile_warm._backends import memcached
from dogpile_warm._core.regions import backend_defaults
from tests.servers import Server

pytestmark = pytest.mark.memcached

# What regions configured through dogpile_warm for "dogpile.cache.pymemcache" get.
BACKEND = memcached.BACKEND_NAME  # "dogpile_warm.pymemcache"
DEFAULTS = backend_defaults("dogpile.cache.pymemcache")

C = TypeVar("C", bound=type)


def slow_where_time_intensive(cls: C) -> C:
    """Marks ``slow`` (this suite's marker for real time) each test dogpile marks
    ``time_intensive``, on a copy: dogpile's own functions are left as they are."""
    for name in dir(cls):
        test = getattr(cls, name)
        marks = getattr(test, "pytestmark", [])
        if name.startswith("test_") and any(m.name == "time_intensive" for m in marks):

            @functools.wraps(test)
            def copy(self: Any, _test: Any = test) -> Any:
                return _test(self)

            setattr(cls, name, pytest.mark.slow(copy))
    return cls


@pytest.fixture(scope="class", autouse=True)
def on_the_suites_memcached(
    request: pytest.FixtureRequest, memcached_server: Server
) -> Iterator[None]:
    """Gives the class's ``config_args`` the address of the suite's memcached, emptied.

    Module-level and class-scoped, so it runs before the class's
    ``setup_class`` (which builds a backend from ``config_args``): pytest sets
    up a module's autouse fixtures before those a class declares.
    """
    cls = request.cls
    arguments = {**cls.config_args["arguments"], "url": memcached_server.url}
    cls.config_args = {**cls.config_args, "arguments": arguments}
    memcached_server.flush()
    yield


class _ClosesItsClients(_GenericBackendFixture):
    """Closes, after each test, every pymemcache client its backends created, in any thread.

    The suites never close theirs; a socket the garbage collector closes is
    a ``ResourceWarning``, an error in this suite.
    """

    # dogpile's fixtures declare region_args and config_args as plain (instance) attributes
    # that each suite class overrides: annotated as ClassVar they would clash with them
    # (mypy), so the classes below keep ruff's RUF012 quiet line by line instead.
    config_args: dict[str, Any]

    def setup_method(self, method: Any) -> None:
        self._clients: list[Any] = []
        self._clients_lock = threading.Lock()

    def teardown_method(self, method: Any) -> None:
        try:
            super().teardown_method(method)  # deletes the test's keys
        finally:
            for client in self._clients:
                client.close()

    def _watch(self, backend: Any) -> Any:
        create = backend._create_client

        def create_and_record() -> Any:
            client = create()
            with self._clients_lock:
                self._clients.append(client)
            return client

        backend._create_client = create_and_record
        return backend

    def _region(self, *args: Any, **kwargs: Any) -> Any:
        region = super()._region(*args, **kwargs)
        self._watch(region.actual_backend)
        return region

    def _backend(self) -> Any:
        return self._watch(super()._backend())


@slow_where_time_intensive
class _DistributedSuite(_ClosesItsClients, _GenericBackendTestSuite):
    backend = BACKEND
    region_args: dict[str, Any] = {"key_mangler": lambda key: key.replace(" ", "_")}  # noqa: RUF012
    config_args: dict[str, Any] = {"arguments": {**DEFAULTS, "distributed_lock": True}}  # noqa: RUF012


@slow_where_time_intensive
class _NonDistributedSuite(_ClosesItsClients, _GenericBackendTestSuite):
    backend = BACKEND
    region_args: dict[str, Any] = {"key_mangler": lambda key: key.replace(" ", "_")}  # noqa: RUF012
    config_args: dict[str, Any] = {"arguments": {**DEFAULTS, "distributed_lock": False}}  # noqa: RUF012


@slow_where_time_intensive
class _DistributedMutexSuite(_ClosesItsClients, _GenericMutexTestSuite):
    backend = BACKEND
    config_args: dict[str, Any] = {"arguments": {**DEFAULTS, "distributed_lock": True}}  # noqa: RUF012


class TestWarmPyMemcacheDistributed(_DistributedSuite):
    """dogpile's backend suite, with dogpile_warm's owner-token distributed lock."""


class TestWarmPyMemcacheDistributedMutex(_DistributedMutexSuite):
    """dogpile's mutex suite, on dogpile_warm's owner-token distributed lock."""


class TestWarmPyMemcache(_NonDistributedSuite):
    """dogpile's backend suite, with dogpile's process-local lock."""


class TestWarmPyMemcacheSerializer(_GenericSerializerTestSuite, _NonDistributedSuite):
    """dogpile's serializer suite (a region with a JSON serializer) and backend suite."""
