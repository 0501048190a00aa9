"""``invalidate_by_tags`` is strict and fleet-wide, across real OS processes.

Processes share one real memcached. Each child runs tests/fleet_worker.py,
which caches ``fleet:read_source`` (tagged ``fleet``, the text of a file the
test rewrites); this process defines the same function by ``name=`` on its
own engine. After the source changes and some process's invalidate returned,
no process may read the old text.
"""

from __future__ import annotations

import contextlib
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import pytest

import dogpile_warm
from dogpile_warm import CacheWarmingEngine
from dogpile_warm.testing import FakeClock
from tests.fleet_worker import FUNCTION_NAME, TAG
from tests.servers import ClientCloser, Server

pytestmark = [pytest.mark.slow, pytest.mark.memcached]

WORKER = Path(__file__).with_name("fleet_worker.py")
ANSWER_TIMEOUT = 10.0  # seconds a worker gets to answer one command


class Worker:
    """A fleet_worker.py child process and its line protocol; never hangs the test."""

    def __init__(self, name: str, url: str, source: Path) -> None:
        self.name = name
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._diagnostics: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, str(WORKER), url, str(source)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self._reader = threading.Thread(target=self._read, name=f"{name}-reader", daemon=True)
        self._reader.start()
        self.expect("ready")

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)  # end of output

    def send(self, command: str) -> None:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(command + "\n")
            self.process.stdin.flush()
        except OSError as exc:
            self.fail(f"could not send {command!r}: {exc}")

    def answer(self) -> str:
        """The next protocol answer (without its ``@ ``), failing the test on timeout or exit."""
        while True:
            try:
                line = self._lines.get(timeout=ANSWER_TIMEOUT)
            except queue.Empty:
                self.fail(f"no answer within {ANSWER_TIMEOUT}s")
            if line is None:
                self.fail(f"exited with status {self.process.wait(5)}")
            if line.startswith("@ "):
                if line.startswith("@ error"):
                    self.fail(line[2:])
                return line[2:]
            self._diagnostics.append(line)

    def expect(self, prefix: str) -> str:
        """The next answer, which must start with ``prefix``; the rest of it is returned."""
        line = self.answer()
        if not line.startswith(prefix):
            self.fail(f"answered {line!r}, expected {prefix!r}")
        return line[len(prefix) :].strip()

    def read(self) -> tuple[str, int]:
        """Call the cached function: ``(value, computations so far in this worker)``."""
        self.send("read")
        line = self.answer()
        if line.startswith("computing "):
            line = self.answer()
        value, computations = self.parse_value(line)
        return value, computations

    def parse_value(self, line: str) -> tuple[str, int]:
        if not line.startswith("value "):
            self.fail(f"answered {line!r}, expected a value")
        value, _, computations = line[len("value ") :].rpartition(" ")
        return value, int(computations)

    def invalidate(self, tag: str) -> None:
        self.send(f"invalidate {tag}")
        assert self.expect("invalidated") == "1"

    def fail(self, message: str) -> NoReturn:
        self.stop()
        output = "\n".join(self._diagnostics[-40:])
        pytest.fail(f"worker {self.name}: {message}\n--- its other output ---\n{output}")

    def stop(self) -> None:
        """Ask the worker to quit; kill it if it does not. Idempotent."""
        process = self.process
        if process.poll() is None and process.stdin is not None and not process.stdin.closed:
            try:
                process.stdin.write("quit\n")
                process.stdin.flush()
            except OSError:
                pass
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        for stream in (process.stdin, process.stdout):
            if stream is not None and not stream.closed:
                with contextlib.suppress(OSError):
                    stream.close()
        self._reader.join(5)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """The external data the cached function reads; tests rewrite it."""
    path = tmp_path / "source.txt"
    path.write_text("v1")
    return path


@pytest.fixture
def fleet(memcached_server: Server, source: Path) -> Iterator[Callable[[str], Worker]]:
    """Starts named workers on the shared memcached (emptied first); stops them afterwards."""
    memcached_server.flush()
    workers: list[Worker] = []

    def start(name: str) -> Worker:
        worker = Worker(name, memcached_server.url, source)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


class ThisProcess:
    """This process's copy of the fleet's function: same name and tag, the test's engine."""

    def __init__(self, source: Path) -> None:
        self.computations = 0

        @dogpile_warm.warmable(ttl=600, tags={TAG}, name=FUNCTION_NAME, refresh_ahead=None)
        def read_source() -> str:
            self.computations += 1
            return source.read_text()

        self.read = read_source


@pytest.fixture
def here(
    engine: CacheWarmingEngine,
    clock: FakeClock,
    memcached_server: Server,
    client_closer: ClientCloser,
    source: Path,
) -> Iterator[ThisProcess]:
    """This process as a member of the fleet, on the shared memcached; its clock reads the
    fleet's time (processes sharing a backend share a clock)."""
    clock.now = time.time()
    client_closer.watch(
        engine.configure_region(
            "default",
            "dogpile.cache.pymemcache",
            arguments={"url": memcached_server.url, "distributed_lock": True},
        )
    )
    yield ThisProcess(source)
    engine.close()


def test_processes_share_the_cached_value(
    fleet: Callable[[str], Worker], here: ThisProcess
) -> None:
    """A value a child process cached is a hit in this process (same name, same key)."""
    child = fleet("child")

    assert child.read() == ("v1", 1)
    assert here.read() == "v1"
    assert here.computations == 0


def test_child_never_reads_the_old_value_after_this_process_invalidates(
    fleet: Callable[[str], Worker], here: ThisProcess, source: Path
) -> None:
    """Once this process's ``invalidate_by_tags`` returned, a child reads the new source, never the old."""
    child = fleet("child")
    assert child.read() == ("v1", 1)

    for version in range(2, 7):
        source.write_text(f"v{version}")
        assert dogpile_warm.invalidate_by_tags(TAG) == 1

        assert child.read() == (f"v{version}", version)
        assert child.read() == (f"v{version}", version)  # and it is cached again


def test_this_process_never_reads_the_old_value_after_a_child_invalidates(
    fleet: Callable[[str], Worker], here: ThisProcess, source: Path
) -> None:
    """Once a child's ``invalidate_by_tags`` returned, this process reads the new source, never the old."""
    child = fleet("child")
    assert here.read() == "v1"

    for version in range(2, 7):
        source.write_text(f"v{version}")
        child.invalidate(TAG)

        assert here.read() == f"v{version}"
        assert here.read() == f"v{version}"
    assert here.computations == 6


def test_three_processes_all_see_the_invalidation(
    fleet: Callable[[str], Worker], here: ThisProcess, source: Path
) -> None:
    """After one child's invalidate, two children and this process read the new value, computed once."""
    first, second = fleet("first"), fleet("second")
    assert first.read() == ("v1", 1)
    assert second.read() == ("v1", 0)

    source.write_text("v2")
    first.invalidate(TAG)

    assert second.read() == ("v2", 1)
    assert first.read() == ("v2", 1)
    assert here.read() == "v2"
    assert here.computations == 0


def test_a_computation_racing_an_invalidation_is_not_served_afterwards(
    fleet: Callable[[str], Worker], here: ThisProcess, source: Path
) -> None:
    """A child that read the old source before an invalidation stores a value nobody reads afterwards."""
    child = fleet("child")
    hold = source.with_name(source.name + ".hold")
    hold.touch()

    child.send("read")
    assert child.expect("computing") == "v1"  # the old source is read; storing waits on hold
    source.write_text("v2")
    assert dogpile_warm.invalidate_by_tags(TAG) == 1
    hold.unlink()
    assert child.parse_value(child.answer()) == ("v1", 1)  # that call started before

    assert here.read() == "v2"
    assert child.read() == ("v2", 1)  # this process's recompute, shared
