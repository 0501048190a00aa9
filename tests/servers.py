"""Real memcached and Redis servers for the test suite, on free loopback ports.

:func:`start_memcached` and :func:`start_redis` return a running
:class:`Server`; ``stop()`` ends it and ``start()`` brings it back on the same
port (the outage tests need both). A missing binary fails the test with what
to install: the suite runs against real servers, never skips them.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from dogpile.cache import CacheRegion

from dogpile_warm.testing import wait_until

__all__ = [
    "ClientCloser",
    "Server",
    "SlowProxy",
    "free_port",
    "start_memcached",
    "start_redis",
    "start_redis_cluster",
    "start_redis_replica",
    "start_redis_sentinel",
]

HOST = "127.0.0.1"
START_TIMEOUT = 10.0  # seconds a server gets to accept connections
STOP_TIMEOUT = 5.0  # seconds between terminate() and kill()

# Servers still running when the interpreter exits (a crashed session): stopped by atexit.
_running: set[Server] = set()


def _all_threads_stopped(pid: int) -> bool:
    """Whether every thread of ``pid`` is stopped (state T in /proc)."""
    states = []
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        try:
            # "pid (comm) S ...": the state follows the last parenthesis.
            states.append(stat.read_text().rpartition(")")[2].split()[0])
        except (FileNotFoundError, IndexError):
            continue
    return bool(states) and all(state in ("T", "t") for state in states)


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _ask(port: int, request: bytes, timeout: float = 1.0) -> bytes:
    """Send one text-protocol request and return the first reply line."""
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(request)
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
        return reply


class Server:
    """One server process on ``host:port``: started, stopped and restarted by the tests.

    ``argv(port)`` builds the command line; ``ping`` is a request and the
    reply prefix that proves the server answers; ``flush_request`` empties it.
    """

    def __init__(
        self,
        name: str,
        argv: Callable[[int], list[str]],
        ping: tuple[bytes, bytes],
        flush_request: tuple[bytes, bytes],
        url: Callable[[int], str],
        port: int | None = None,
    ) -> None:
        self.name = name
        self.host = HOST
        self.port = port if port is not None else free_port()
        self._argv = argv
        self._ping = ping
        self._flush = flush_request
        self._url = url
        self._process: subprocess.Popen[bytes] | None = None
        self._log: tempfile._TemporaryFileWrapper[bytes] | None = None
        self._exit_status: int | None = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Server {self.name} {self.host}:{self.port} {state}>"

    @property
    def url(self) -> str:
        """What a client is configured with (memcached ``host:port``, Redis ``redis://...``)."""
        return self._url(self.port)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> Server:
        """Start the server on ``self.port`` and wait until it answers; no-op if running.

        Fails the test (with the server's output) if it exits or does not
        answer within ``START_TIMEOUT`` seconds.
        """
        if self.running:
            return self
        self._close_log()
        # Lives as long as the process writing to it; closed by stop().
        self._log = tempfile.NamedTemporaryFile(prefix=f"{self.name}-", suffix=".log")  # noqa: SIM115
        self._process = subprocess.Popen(
            self._argv(self.port),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        _running.add(self)
        process = self._process
        request, expected = self._ping
        last_error: Exception | None = None

        def answers() -> bool:
            nonlocal last_error
            if process.poll() is not None:
                output = self._output()
                self.stop()
                pytest.fail(
                    f"{self.name} exited with status {self._exit_status} on port {self.port}:\n"
                    f"{output}",
                    pytrace=False,
                )
            try:
                return _ask(self.port, request).startswith(expected)
            except OSError as exc:
                last_error = exc
                return False

        with contextlib.suppress(AssertionError):  # timed out: failed below, with the output
            wait_until(answers, START_TIMEOUT, interval=0.02)
            return self
        output = self._output()
        self.stop()
        pytest.fail(
            f"{self.name} did not answer on {self.host}:{self.port} within {START_TIMEOUT}s "
            f"(last error: {last_error!r}); its output:\n{output}",
            pytrace=False,
        )

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open, nothing answers (a hung server)."""
        assert self._process is not None and self._process.poll() is None, "not running"
        self._process.send_signal(signal.SIGSTOP)
        # The signal reaches a thread running on another core a moment later: wait
        # until every thread is stopped, or a request sent now may still be answered.
        pid = self._process.pid
        wait_until(lambda: _all_threads_stopped(pid), 2.0, 0.001, message=f"{self.name} to stop")

    def resume(self) -> None:
        """Let a paused server run again (SIGCONT), with everything it held."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """Terminate the server (kill it if it does not exit in time); idempotent."""
        process, self._process = self._process, None
        _running.discard(self)
        if process is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)  # a paused server cannot see SIGTERM
                process.terminate()
                # An idle memcached notices the signal only when its event loop
                # wakes, once a second; a connection wakes it at once.
                with contextlib.suppress(OSError):
                    socket.create_connection((self.host, self.port), timeout=0.2).close()
                try:
                    process.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(STOP_TIMEOUT)
            self._exit_status = process.returncode
        self._close_log()

    def kill(self) -> None:
        """Crash the server (SIGKILL, no grace): an outage without the second a clean stop takes."""
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(STOP_TIMEOUT)
        self.stop()

    def flush(self) -> None:
        """Remove every key, so that tests sharing the server stay independent."""
        request, expected = self._flush
        reply = _ask(self.port, request, timeout=5.0)
        if not reply.startswith(expected):
            raise RuntimeError(f"{self.name} flush answered {reply!r}")

    def write_raw(self, key: str, raw: bytes, flags: int = 0) -> None:
        """Store ``raw`` under ``key`` with a client of our own, as a hostile process could
        (memcached: with ``flags``, which tell pymemcache how to read it back: 0 bytes,
        1 pickle, 2 int)."""
        if self.name == "memcached":
            from pymemcache.client.base import Client

            client = Client((self.host, self.port), default_noreply=False)
            try:
                assert client.set(key, raw, flags=flags)
            finally:
                client.close()
        else:
            import redis

            redis_client = redis.Redis(host=self.host, port=self.port)
            try:
                redis_client.set(key, raw)
            finally:
                redis_client.close()

    def read_raw(self, key: str) -> bytes:
        """The bytes stored under ``key``, read with a client of our own."""
        if self.name == "memcached":
            from pymemcache.client.base import Client

            client = Client((self.host, self.port), default_noreply=False)
            try:
                value = client.get(key)
            finally:
                client.close()
        else:
            import redis

            redis_client = redis.Redis(host=self.host, port=self.port)
            try:
                value = redis_client.get(key)
            finally:
                redis_client.close()
        assert isinstance(value, bytes), f"{key!r}: {value!r}"
        return value

    def _output(self) -> str:
        if self._log is None:
            return ""
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")[-4000:]

    def _close_log(self) -> None:
        log, self._log = self._log, None
        if log is not None:
            log.close()


def _binary(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} is not installed (not on PATH); the suite needs the real server: "
            f"install it with `apt-get install {package}` (or your platform's {package} package)",
            pytrace=False,
        )
    return path


def _start(
    make: Callable[[int], Server], attempts: int = 3, port: Callable[[], int] = free_port
) -> Server:
    """Start a server on a fresh free port (from ``port()``), trying another if one was
    taken meanwhile."""
    for attempt in range(attempts):
        server = make(port())
        try:
            return server.start()
        except pytest.fail.Exception:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def memcached(port: int | None = None) -> Server:
    """A memcached :class:`Server` (not started)."""
    binary = _binary("memcached", "memcached")

    def argv(port: int) -> list[str]:
        args = [binary, "-l", HOST, "-p", str(port), "-U", "0", "-m", "64"]
        if os.geteuid() == 0:
            args += ["-u", "root"]  # memcached refuses to run as root otherwise
        return args

    return Server(
        "memcached",
        argv,
        ping=(b"version\r\n", b"VERSION"),
        flush_request=(b"flush_all\r\n", b"OK"),
        url=lambda port: f"{HOST}:{port}",
        port=port,
    )


def _redis_server(name: str, port: int | None, *options: str, flush: bool = True) -> Server:
    """A redis-server :class:`Server` (not started) keeping nothing on disk, in a
    directory of its own (a replica's sync writes an RDB file, which a server started
    in the same directory would load), with more ``options``."""
    binary = _binary("redis-server", "redis-server")
    where = tempfile.mkdtemp(prefix=f"{name}-")

    def argv(port: int) -> list[str]:
        return [
            binary,
            "--port", str(port),
            "--bind", HOST,
            "--save", "",
            "--appendonly", "no",
            "--dir", where,
            *(option.format(where=where, port=port) for option in options),
        ]  # fmt: skip

    return Server(
        name,
        argv,
        ping=(b"PING\r\n", b"+PONG"),
        # A replica takes no writes: its "flush" is a ping.
        flush_request=(b"FLUSHALL\r\n", b"+OK") if flush else (b"PING\r\n", b"+PONG"),
        url=lambda port: f"redis://{HOST}:{port}/0",
        port=port,
    )


def redis(port: int | None = None) -> Server:
    """A redis-server :class:`Server` (not started), keeping nothing on disk."""
    return _redis_server("redis-server", port)


def redis_replica(primary: Server, port: int | None = None) -> Server:
    """A redis-server :class:`Server` (not started) replicating ``primary``."""
    return _redis_server(
        "redis-replica", port, "--replicaof", primary.host, str(primary.port), flush=False
    )


def redis_sentinel(primary: Server, service: str, port: int | None = None) -> Server:
    """A Redis Sentinel :class:`Server` (not started) watching ``primary`` as ``service``.

    Its configuration file (which Sentinel rewrites) lives in a directory of its own.
    """
    binary = _binary("redis-server", "redis-server")
    where = tempfile.mkdtemp(prefix="sentinel-")

    def argv(port: int) -> list[str]:
        config = os.path.join(where, f"sentinel-{port}.conf")
        with open(config, "w") as file:
            file.write(
                f"port {port}\nbind {HOST}\n"
                f"sentinel monitor {service} {primary.host} {primary.port} 1\n"
                f"sentinel down-after-milliseconds {service} 1000\n"
            )
        return [binary, config, "--sentinel"]

    return Server(
        "redis-sentinel",
        argv,
        ping=(b"PING\r\n", b"+PONG"),
        flush_request=(b"PING\r\n", b"+PONG"),
        url=lambda port: f"{HOST}:{port}",
        port=port,
    )


def redis_cluster_node(port: int | None = None) -> Server:
    """A redis-server :class:`Server` (not started) in cluster mode;
    :func:`start_redis_cluster` gives it slots and peers."""
    return _redis_server(
        "redis-cluster-node",
        port,
        "--cluster-enabled", "yes",
        "--cluster-config-file", "{where}/nodes-{port}.conf",
        "--cluster-node-timeout", "2000",
    )  # fmt: skip


def start_redis_cluster(masters: int = 3) -> list[Server]:
    """``masters`` running cluster nodes, the 16,384 hash slots split evenly among them,
    introduced to each other, the cluster answering ``cluster_state:ok`` on every node."""
    import redis

    nodes = [_start(redis_cluster_node, port=_cluster_port) for _ in range(masters)]
    clients = [redis.Redis(host=node.host, port=node.port, socket_timeout=5) for node in nodes]
    try:
        bounds = [16384 * i // masters for i in range(masters + 1)]
        for client, first, end in zip(clients, bounds, bounds[1:], strict=False):
            client.execute_command("CLUSTER", "ADDSLOTSRANGE", first, end - 1)
        for node in nodes[1:]:
            clients[0].execute_command("CLUSTER", "MEET", node.host, node.port)

        def ready() -> bool:
            return all(
                b"cluster_state:ok" in client.execute_command("CLUSTER", "INFO")
                and len(client.execute_command("CLUSTER", "NODES").splitlines()) == masters
                for client in clients
            )

        wait_until(ready, START_TIMEOUT, interval=0.05, message="the cluster's state ok")
    finally:
        for client in clients:
            client.close()
    return nodes


def _cluster_port() -> int:
    """A free port for a cluster node: at most 55535, its cluster bus port (10,000
    higher) free too, as redis-server requires."""
    while True:
        port = free_port()
        if port > 55535:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((HOST, port + 10000))
            except OSError:
                continue
        return port


def start_redis_replica(primary: Server) -> Server:
    """A running replica of ``primary`` on a free loopback port."""
    return _start(lambda port: redis_replica(primary, port))


def start_redis_sentinel(primary: Server, service: str) -> Server:
    """A running Sentinel watching ``primary`` as ``service``, on a free loopback port."""
    return _start(lambda port: redis_sentinel(primary, service, port))


def start_memcached() -> Server:
    """A running memcached on a free loopback port."""
    return _start(memcached)


def start_redis() -> Server:
    """A running redis-server on a free loopback port."""
    return _start(redis)


class ClientCloser:
    """Closes the client connections of the regions it watches, in every thread.

    dogpile's memcached backends keep one client per thread in a
    ``threading.local`` and never close it, so a finished thread's socket is
    closed by the garbage collector with a ``ResourceWarning`` (an error under
    the suite's ``filterwarnings``). :meth:`watch` records each client the
    backend creates, in whatever thread, and :meth:`close` closes them all.
    """

    def __init__(self) -> None:
        self._closers: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def watch(self, region: CacheRegion) -> CacheRegion:
        """Track ``region``'s connections from now on; return the region."""
        backend: Any = region.actual_backend
        create = getattr(backend, "_create_client", None)
        if create is not None:  # memcached: one client per thread

            def create_and_record() -> Any:
                client = create()
                with self._lock:
                    self._closers.append(client.close)
                return client

            backend._create_client = create_and_record
        for name in ("writer_client", "reader_client"):  # redis: one shared pool
            client = getattr(backend, name, None)
            if client is not None:
                pool = getattr(client, "connection_pool", None)  # a cluster client has none
                self._closers.append(pool.disconnect if pool is not None else client.close)
                # A Sentinel backend's pools ask the Sentinels through clients of their own.
                manager = getattr(pool, "sentinel_manager", None)
                for sentinel in getattr(manager, "sentinels", ()):
                    self._closers.append(sentinel.close)
        return region

    def close(self) -> None:
        """Close every connection recorded so far (errors of dead servers ignored)."""
        with self._lock:
            closers, self._closers = self._closers, []
        for close in closers:
            # A server the test stopped: its sockets are closed all the same.
            with contextlib.suppress(Exception):
                close()


class SlowProxy:
    """A TCP proxy on a free loopback port that holds every request ``delay`` seconds.

    A server that answers, slowly: what clients with timeouts never notice as
    a failure. Replies pass at once. ``url`` is its ``host:port``; ``stop()``
    closes every socket it opened.
    """

    def __init__(self, target: Server) -> None:
        self.target = (target.host, target.port)
        self.delay = 0.0
        self._listener = socket.create_server((HOST, 0))
        self.host, self.port = HOST, int(self._listener.getsockname()[1])
        self._sockets: list[socket.socket] = [self._listener]
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        threading.Thread(target=self._accept, name="slow-proxy", daemon=True).start()

    @property
    def url(self) -> str:
        return f"{self.host}:{self.port}"

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # stopped
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets += [client, upstream]
            for source, sink, slow in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pipe, args=(source, sink, slow), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, slow: bool) -> None:
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                if slow and self.delay:
                    time.sleep(self.delay)
                sink.sendall(chunk)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def stop(self) -> None:
        self._stopped.set()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


@atexit.register
def _stop_leftovers() -> None:
    for server in list(_running):
        server.stop()


class LoopbackListener:
    """A loopback TCP server: a thread handing each connection it accepts to
    ``answer(conn)``, one at a time, until :meth:`close`. For replies no real server
    can be made to send."""

    def __init__(self, answer: Callable[[socket.socket], None]) -> None:
        self.answer = answer
        self.listener = socket.create_server((HOST, 0))
        self.listener.settimeout(0.05)  # a closed listener does not wake accept()
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.listener.fileno() != -1:
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(None)
                self.answer(conn)

    def close(self) -> None:
        self.listener.close()
        self.thread.join(5)
