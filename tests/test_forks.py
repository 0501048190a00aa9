"""Forked children (gunicorn --preload, multiprocessing) never share their parent's
connections and never start with a lock of ours held.

Children report through their exit status and never return into pytest.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from dogpile_warm import CacheWarmingEngine, warmable
from dogpile_warm._core import forks
from dogpile_warm._core.health import BackendHealth
from dogpile_warm.testing import FakeClock, wait_until
from tests import servers
from tests.conftest import configure_backend

ROOT = Path(__file__).resolve().parent.parent

DISTRIBUTED = [
    pytest.param("memcached", marks=pytest.mark.memcached, id="memcached"),
    pytest.param("redis", marks=pytest.mark.redis, id="redis"),
]
CHILDREN = 4
CALLS = 300


def run_child(body: Callable[[], object]) -> int:
    """Fork; the child runs ``body()`` (True: success) and exits; return its exit code."""
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            status = 0 if body() else 3
        finally:
            os._exit(status)
    return pid


def wait_all(pids: list[int], timeout: float = 30.0) -> list[int]:
    """Exit codes of ``pids``; a child still running after ``timeout`` is killed (code -9)."""
    codes: dict[int, int] = {}

    def all_reaped() -> bool:
        for pid in pids:
            if pid not in codes:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    codes[pid] = os.waitstatus_to_exitcode(status)
        return len(codes) == len(pids)

    with contextlib.suppress(AssertionError):  # timed out: the rest are killed below
        wait_until(all_reaped, timeout)
    for pid in pids:
        if pid not in codes:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            codes[pid] = -9
    return [codes[pid] for pid in pids]


@pytest.mark.slow
@pytest.mark.parametrize("kind", DISTRIBUTED)
def test_children_forked_after_use_get_connections_of_their_own(
    kind: str,
    request: pytest.FixtureRequest,
    engine: CacheWarmingEngine,
    client_closer: servers.ClientCloser,
) -> None:
    """A parent that has used the backend forks 4 children; parent and children then read
    and write distinct keys at once, and every one of them gets exactly its own values."""
    server: servers.Server = request.getfixturevalue(f"{kind}_server")
    server.flush()
    configure_backend(engine, kind, server)
    client_closer.watch(engine.region)

    @warmable(ttl=60, tags={"t"}, name="forks.owned")
    def owned(owner: int, i: int) -> tuple[int, int]:
        return (owner, i)

    assert owned(0, 0) == (0, 0)  # the parent's connection is open now

    def child() -> bool:
        me = os.getpid()
        return all(owned(me, i) == (me, i) and owned(me, i) == (me, i) for i in range(CALLS))

    pids = [run_child(child) for _ in range(CHILDREN)]
    mine = all(owned(0, i) == (0, i) for i in range(CALLS))
    codes = wait_all(pids)
    assert mine and codes == [0] * CHILDREN, codes
    assert owned(0, 1) == (0, 1) and engine.get_stats()["backend_errors"] == 0


@pytest.mark.slow
@pytest.mark.parametrize("kind", DISTRIBUTED)
def test_children_forked_after_awaited_reads_await_with_io_threads_of_their_own(
    kind: str,
    request: pytest.FixtureRequest,
    engine: CacheWarmingEngine,
    client_closer: servers.ClientCloser,
) -> None:
    """A parent whose awaited reads started the io pool forks 4 children; each child's
    own event loop awaits its own keys (its pool started anew) and gets its own values."""
    server: servers.Server = request.getfixturevalue(f"{kind}_server")
    server.flush()
    configure_backend(engine, kind, server)
    client_closer.watch(engine.region)

    @warmable(ttl=60, tags={"t"}, name="forks.awaited")
    async def owned(owner: int, i: int) -> tuple[int, int]:
        return (owner, i)

    assert asyncio.run(owned(0, 0)) == (0, 0)  # the parent's io threads exist now

    def child() -> bool:
        me = os.getpid()

        async def reads() -> bool:
            # One await alone first: the parent's io threads do not exist here.
            if await owned(me, -1) != (me, -1):
                return False
            values = await asyncio.gather(*(owned(me, i) for i in range(CALLS)))
            again = await asyncio.gather(*(owned(me, i) for i in range(CALLS)))
            return values == again == [(me, i) for i in range(CALLS)]

        return asyncio.run(asyncio.wait_for(reads(), 20))

    pids = [run_child(child) for _ in range(CHILDREN)]
    codes = wait_all(pids)
    assert codes == [0] * CHILDREN, codes
    assert engine.get_stats()["backend_errors"] == 0


@pytest.mark.slow
def test_a_child_forked_while_threads_compute_starts_with_free_locks(
    backend: str, engine: CacheWarmingEngine
) -> None:
    """Forked while one thread computes a key under its lock and eight warm workers hold
    connections, a child reads that key, warms and invalidates (nothing stays locked)."""
    inside = threading.Barrier(10)
    release = threading.Event()
    parent = os.getpid()

    @warmable(priority=100, ttl=60, tags={"t"}, warm_args=[(i,) for i in range(8)])
    def slow(i: int) -> int:
        if os.getpid() == parent and i < 9:
            inside.wait(10)
            assert release.wait(10)
        return i

    warming = threading.Thread(target=engine.warm_critical_data)
    calling = threading.Thread(target=slow, args=(8,))  # holds key 8's lock meanwhile
    warming.start()
    calling.start()
    inside.wait(10)  # every one of them is inside a computation

    def child() -> bool:
        # warm_tasks, not warm_critical_data: the parent's claim on the task would
        # (rightly) make the child skip it, and this test is about the keys' locks.
        report = engine.warm_tasks(critical_only=True)
        engine.invalidate_by_tags("t")
        return report["succeeded"] == 8 and [slow(i) for i in range(9)] == list(range(9))

    pid = run_child(child)
    threading.Timer(0.5, release.set).start()  # the parent's holders finish later
    codes = wait_all([pid])
    warming.join(10)
    calling.join(10)
    assert codes == [0]


@pytest.mark.slow
def test_a_lock_of_ours_held_by_another_thread_is_free_in_a_forked_child() -> None:
    """What makes the test above hold for every lock of the package, not just the ones it
    happens to meet: a lock from dogpile_warm._core.forks, held elsewhere, is free after fork."""
    lock, rlock = forks.new_lock(), forks.new_rlock()
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with lock, rlock:
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(10)
    pid = run_child(lambda: lock.acquire(timeout=5) and rlock.acquire(timeout=5))
    codes = wait_all([pid])
    release.set()
    holder.join(10)
    assert codes == [0]


FORK_AT_FIRST_CONNECTION = textwrap.dedent(
    """
    import os, sys, time
    import dogpile_warm
    dogpile_warm.configure(
        "default", "dogpile.cache.pymemcache",
        arguments={"url": "localhost:%(port)d", "distributed_lock": True},
    )

    @dogpile_warm.warmable(priority=100, ttl=60)
    def critical():
        return 1

    dogpile_warm.start_cache_warming(check_every=0.01)  # connects from its own thread
    time.sleep(%(delay)f)  # real time: each process forks a little later into the connect
    pid = os.fork()
    if pid == 0:
        code = 0 if critical() == 1 else 3
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    dogpile_warm.stop_cache_warming()
    sys.exit(os.waitstatus_to_exitcode(status))
    """
)


@pytest.mark.slow
@pytest.mark.memcached
def test_a_fork_while_the_scheduler_makes_its_first_connection_never_hangs_the_child(
    memcached_server: servers.Server,
) -> None:
    """Fresh processes fork while their scheduler thread connects for the first time (a
    host name: its lookup imports a codec); every child answers."""
    hung = []
    for n in range(12):
        script = FORK_AT_FIRST_CONNECTION % {"port": memcached_server.port, "delay": n * 0.002}
        try:
            done = subprocess.run(
                [sys.executable, "-c", script], cwd=ROOT, capture_output=True, timeout=20
            )
        except subprocess.TimeoutExpired:
            hung.append(n)
            continue
        assert done.returncode == 0, done.stderr.decode()
    assert hung == []


@pytest.mark.slow
def test_importing_dogpile_warm_imports_the_codec_host_lookups_need() -> None:
    """The idna codec is imported with the package, never first by one of its threads
    (a fork while a thread imports leaves the child without the import lock)."""
    code = "import sys, dogpile_warm; sys.exit(0 if 'encodings.idna' in sys.modules else 1)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


@pytest.mark.slow
def test_a_child_forked_during_a_breaker_probe_may_probe_at_once() -> None:
    """The parent's probe in flight does not exist in the child: the child's first
    operation may try the backend instead of waiting out the probe timeout."""
    clock = FakeClock()
    health = BackendHealth("r", retry_after=1.0, probe_timeout=5.0, clock=clock)
    health.failed_unavailable(ConnectionRefusedError(), "k", "read")
    clock.advance(1.0)
    assert health.allows()  # the parent's probe, in flight
    assert not health.allows()
    pid = run_child(health.allows)
    assert wait_all([pid]) == [0]
