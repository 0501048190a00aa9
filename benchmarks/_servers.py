"""A memcached of the benchmarks' own on a free loopback port, and its clients' bookkeeping.

:func:`running_memcached` starts one and stops it afterwards (like
``tests/servers.py``, without pytest). :class:`ClientWatch` closes the
connections that dogpile's memcached backend opens, one per thread, and can
count the commands sent through them: the round trips.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from dogpile.cache import CacheRegion

__all__ = ["HOST", "ClientWatch", "free_port", "running_memcached", "running_redis"]

HOST = "127.0.0.1"
START_TIMEOUT = 10.0  # seconds memcached gets to answer
STOP_TIMEOUT = 5.0  # seconds between terminate() and kill()

# pymemcache client methods that each make one round trip to a single server.
_COMMANDS = frozenset(
    {
        "add", "append", "cas", "decr", "delete", "delete_many", "delete_multi", "get",
        "get_many", "get_multi", "gets", "gets_many", "incr", "prepend", "replace", "set",
        "set_many", "set_multi", "touch",
    }
)  # fmt: skip


def free_port() -> int:
    """A loopback port free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _answers(port: int, request: bytes, reply: bytes) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1.0) as sock:
            sock.sendall(request)
            return sock.recv(64).startswith(reply)
    except OSError:
        return False


def _start(
    name: str, argv: list[str], port: int, ping: tuple[bytes, bytes]
) -> subprocess.Popen[bytes] | None:
    """The server ``argv`` starts on ``port``, once it answers ``ping``; None if it exited
    (the port was taken)."""
    process = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return None
        if _answers(port, *ping):
            return process
        time.sleep(0.02)
    _stop(process, port)
    raise RuntimeError(f"{name} did not answer on {HOST}:{port} within {START_TIMEOUT:g} s")


def _stop(process: subprocess.Popen[bytes], port: int) -> None:
    if process.poll() is None:
        process.terminate()
        # An idle memcached notices the signal only when its event loop wakes,
        # once a second; a connection wakes it at once.
        with contextlib.suppress(OSError):
            socket.create_connection((HOST, port), timeout=0.2).close()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT)


@contextlib.contextmanager
def _running(
    name: str,
    package: str,
    argv: Callable[[str, int], list[str]],
    ping: tuple[bytes, bytes],
    attempts: int,
) -> Iterator[str]:
    """Run ``name`` (``argv(binary, port)``) on a free loopback port for the block; yields
    its ``host:port``. ``RuntimeError`` (saying what to install) when it is not on PATH."""
    binary = shutil.which(name)
    if binary is None:
        raise RuntimeError(
            f"{name} is not installed (not on PATH): install it, e.g. `apt-get install {package}`"
        )
    for _ in range(attempts):
        port = free_port()
        process = _start(name, argv(binary, port), port, ping)
        if process is None:
            continue  # another process took the port meanwhile: try another
        try:
            yield f"{HOST}:{port}"
        finally:
            _stop(process, port)
        return
    raise RuntimeError(f"{name} did not start on any of {attempts} free ports")


def running_memcached(attempts: int = 3) -> contextlib.AbstractContextManager[str]:
    """Run memcached on a free loopback port for the block; yields its ``host:port``."""

    def argv(binary: str, port: int) -> list[str]:
        args = [binary, "-l", HOST, "-p", str(port), "-U", "0", "-m", "64"]
        if os.geteuid() == 0:
            args += ["-u", "root"]  # memcached refuses to run as root otherwise
        return args

    return _running("memcached", "memcached", argv, (b"version\r\n", b"VERSION"), attempts)


def running_redis(attempts: int = 3) -> contextlib.AbstractContextManager[str]:
    """Run redis-server (nothing kept on disk, in a directory of its own) on a free loopback
    port for the block; yields its ``host:port``."""

    def argv(binary: str, port: int) -> list[str]:
        where = tempfile.mkdtemp(prefix="redis-")  # no dump.rdb in the working directory
        return [binary, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no",
                "--dir", where]  # fmt: skip

    return _running("redis-server", "redis-server", argv, (b"PING\r\n", b"+PONG"), attempts)


class _CountingClient:
    """A pymemcache client that counts its commands into ``counts``."""

    def __init__(self, client: Any, counts: Counter[str], lock: threading.Lock) -> None:
        self._client = client
        self._counts = counts
        self._lock = lock

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if name not in _COMMANDS:
            return attr

        def counted(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self._counts[name] += 1
            return attr(*args, **kwargs)

        return counted


class ClientWatch:
    """Closes, on :meth:`close`, every client the watched regions' backends create.

    dogpile's memcached backends keep one client per thread and never close
    it, so a finished worker thread's socket would otherwise be closed by the
    garbage collector with a ``ResourceWarning``. With ``count=True`` the
    clients count their commands in :attr:`counts` (one command is one round
    trip to a single server); :meth:`reset` zeroes them.
    """

    def __init__(self, *, count: bool = False) -> None:
        self.count = count
        self.counts: Counter[str] = Counter()
        self._clients: list[Any] = []
        self._lock = threading.Lock()

    def watch(self, region: CacheRegion) -> CacheRegion:
        """Record (and maybe count) the clients of ``region`` created from now on."""
        backend = region.actual_backend
        create: Callable[[], Any] = backend._create_client

        def create_and_record() -> Any:
            client = create()
            with self._lock:
                self._clients.append(client)
            return _CountingClient(client, self.counts, self._lock) if self.count else client

        backend._create_client = create_and_record
        return region

    def adopt(self, client: Any) -> Any:
        """Close ``client`` (made by hand) along with the others; returns it."""
        with self._lock:
            self._clients.append(client)
        return client

    @property
    def round_trips(self) -> int:
        with self._lock:
            return sum(self.counts.values())

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()

    def close(self) -> None:
        """Close every client recorded so far."""
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            client.close()

    def __enter__(self) -> ClientWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
