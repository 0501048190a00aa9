"""Stampedes: a fleet of processes on one cold key, a killed lock holder, freshness under load.

The fleet tests run real OS processes (tests/stampede_worker.py) against the
suite's real memcached and Redis servers; every wait is bounded, and every
child is killed and reaped in ``finally``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from dogpile_warm import CacheWarmingEngine, warmable
from dogpile_warm._core.keys import safe_key
from dogpile_warm.testing import captured_signals, wait_until
from tests import servers

ROOT = Path(__file__).resolve().parent.parent
WORKER = str(ROOT / "tests" / "stampede_worker.py")

PROCESSES = 4
THREADS = 8
# Processes start, import and connect within this; then all of them are released.
READY_TIMEOUT = 20.0
# dogpile's MemcachedLock retries with growing sleeps (0.4, 0.8, 1.6 ... s):
# the whole stampede gets this long after the release.
STAMPEDE_TIMEOUT = 20.0
COUNTER_KEY = "stampede-computes"

SERVERS = [
    pytest.param("memcached", marks=pytest.mark.memcached, id="memcached"),
    pytest.param("redis", marks=pytest.mark.redis, id="redis"),
]


def spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, WORKER, *args],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def reap(processes: list[subprocess.Popen[str]]) -> None:
    """Kill whatever still runs and collect every process, closing its pipes."""
    for process in processes:
        if process.poll() is None:
            process.kill()
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired, ValueError):
            process.communicate(timeout=10)
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()
        process.wait(10)


def wait_for_files(
    paths: list[Path], processes: list[subprocess.Popen[str]], timeout: float
) -> None:
    """Wait until every path exists; fail at once (with its output) if a process dies first."""

    def ready() -> bool:
        for process in processes:
            if process.poll() is not None:
                out, err = process.communicate(timeout=5)
                pytest.fail(f"worker exited early with {process.returncode}:\n{out}\n{err}")
        return all(p.exists() for p in paths)

    wait_until(ready, timeout, message=f"the workers' ready files {[str(p) for p in paths]}")


def server_for(request: pytest.FixtureRequest, backend: str) -> servers.Server:
    server: servers.Server = request.getfixturevalue(f"{backend}_server")
    server.flush()
    return server


class Counter:
    """A compute counter kept in the server itself, through a plain client of its own."""

    def __init__(self, backend: str, server: servers.Server, key: str) -> None:
        self.key = key
        if backend == "memcached":
            from pymemcache.client.base import Client

            self._memcached = Client(
                (server.host, server.port), connect_timeout=5, timeout=5, default_noreply=False
            )
            assert self._memcached.set(key, b"0")
            self.read = lambda: int(self._memcached.get(key))
            self.close = self._memcached.close
        else:
            import redis

            self._redis = redis.Redis(host=server.host, port=server.port, socket_timeout=5)
            self._redis.set(key, 0)

            def read_redis() -> int:
                value = self._redis.get(key)
                assert isinstance(value, bytes), value
                return int(value)

            self.read = read_redis
            self.close = self._redis.close


class Worker:
    """What one finished fleet worker reported: exit status, values received, errors."""

    def __init__(self, returncode: int, out: str, err: str) -> None:
        self.returncode = returncode
        self.output = f"exit {returncode}\nstdout:\n{out}\nstderr:\n{err}"
        lines = out.strip().splitlines()
        report: dict[str, Any] = (
            json.loads(lines[-1]) if lines else {"values": [], "errors": ["no report"]}
        )
        self.values: list[dict[str, Any]] = report["values"]
        self.errors: list[str] = report["errors"]


def run_fleet(
    backend: str, server: servers.Server, tmp_path: Path, mode: str = "stampede"
) -> list[Worker]:
    """Run PROCESSES x THREADS callers of the cold ``stampede.fn``, released together
    (``mode`` "astampede": the function is an async def, awaited THREADS times at once)."""
    go = tmp_path / "go"
    ready = [tmp_path / f"ready-{i}" for i in range(PROCESSES)]
    processes: list[subprocess.Popen[str]] = []
    try:
        for path in ready:
            processes.append(
                spawn(
                    mode,
                    f"--backend={backend}",
                    f"--host={server.host}",
                    f"--port={server.port}",
                    "--lock-timeout=5",
                    f"--threads={THREADS}",
                    f"--counter={COUNTER_KEY}",
                    f"--ready={path}",
                    f"--go={go}",
                )
            )
        wait_for_files(ready, processes, READY_TIMEOUT)
        go.touch()  # released together: every worker polls for this file
        deadline = time.monotonic() + STAMPEDE_TIMEOUT
        workers = []
        for process in processes:
            try:
                out, err = process.communicate(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pytest.fail(f"a worker did not finish within {STAMPEDE_TIMEOUT}s of the release")
            workers.append(Worker(process.returncode, out, err))
        return workers
    finally:
        reap(processes)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["stampede", "astampede"], ids=["threads", "awaiters"])
@pytest.mark.parametrize("kind", SERVERS)
def test_a_fleet_stampede_on_a_cold_key_computes_it_once(
    request: pytest.FixtureRequest, kind: str, mode: str, tmp_path: Path
) -> None:
    """4 processes x 8 threads (or 8 awaiters of an async def on each process's loop)
    released together on one cold key compute it exactly once."""
    server = server_for(request, kind)
    counter = Counter(kind, server, COUNTER_KEY)
    try:
        workers = run_fleet(kind, server, tmp_path, mode)
        computes = counter.read()
    finally:
        counter.close()
    report = "\n\n".join(w.output for w in workers)
    assert computes == 1, report
    assert all(w.returncode == 0 and not w.errors for w in workers), report
    values = [v for w in workers for v in w.values]
    assert len(values) == PROCESSES * THREADS
    assert all(v == values[0] for v in values) and values[0]["count"] == 1


def run_three(
    kind: str, server: servers.Server, tmp_path: Path, *args: str
) -> list[dict[str, Any]]:
    """Run 3 workers with ``args``, released together; each one's JSON report."""
    go = tmp_path / "go"
    ready = [tmp_path / f"ready-{i}" for i in range(3)]
    processes: list[subprocess.Popen[str]] = []
    try:
        for path in ready:
            processes.append(
                spawn(
                    *args,
                    f"--backend={kind}",
                    f"--host={server.host}",
                    f"--port={server.port}",
                    f"--ready={path}",
                    f"--go={go}",
                )
            )
        wait_for_files(ready, processes, READY_TIMEOUT)
        go.touch()
        reports = []
        for process in processes:
            out, err = process.communicate(timeout=STAMPEDE_TIMEOUT)
            assert process.returncode == 0, f"{out}\n{err}"
            reports.append(json.loads(out.strip().splitlines()[-1]))
        return reports
    finally:
        reap(processes)


@pytest.mark.slow
@pytest.mark.parametrize("kind", SERVERS)
def test_a_login_preloads_a_user_once_per_fleet_within_the_window(
    request: pytest.FixtureRequest, kind: str, tmp_path: Path
) -> None:
    """3 processes released together each log in the same 10 users: each user's data is
    computed once in the fleet (10 computes, not 30), the other logins skipped."""
    server = server_for(request, kind)
    counter = Counter(kind, server, "login-computes")
    try:
        reports = run_three(
            kind, server, tmp_path, "logins", "--threads=10", "--counter=login-computes"
        )
        computes = counter.read()
    finally:
        counter.close()
    warmed = sorted(user for report in reports for user in report["warmed"])
    assert warmed == list(range(10)), reports
    assert computes == 10
    assert sum(len(report["skipped"]) for report in reports) == 20


@pytest.mark.slow
@pytest.mark.parametrize("scheduled", [False, True], ids=["warm_critical_data", "scheduler"])
@pytest.mark.parametrize("kind", SERVERS)
def test_critical_data_is_warmed_once_per_fleet(
    request: pytest.FixtureRequest, kind: str, scheduled: bool, tmp_path: Path
) -> None:
    """3 processes released together warm one critical function of 10 keys, each with
    warm_critical_data() (or each with its scheduler running for 2 s): 10 computes in the
    fleet, not 30; the other processes report the task warmed elsewhere."""
    server = server_for(request, kind)
    counter = Counter(kind, server, "critical-computes")
    args = ["critical", "--threads=10", "--counter=critical-computes"]
    try:
        reports = run_three(kind, server, tmp_path, *args, *(["--scheduled"] if scheduled else []))
        computes = counter.read()
    finally:
        counter.close()
    assert computes == 10, reports
    if not scheduled:
        assert sorted(report["succeeded"] for report in reports) == [0, 0, 10]
        reasons = [t["reason"] for report in reports for t in report["skipped_tasks"]]
        assert reasons == ["warmed by another process of the fleet within its interval"] * 2


@pytest.mark.slow
@pytest.mark.parametrize("kind", SERVERS)
def test_a_snapshot_warm_up_computes_each_key_once_per_fleet(
    request: pytest.FixtureRequest,
    kind: str,
    engine: CacheWarmingEngine,
    client_closer: servers.ClientCloser,
    tmp_path: Path,
) -> None:
    """A hot set of 10 keys saved here; 3 processes released together each warm from it:
    10 computes in the fleet, not 30, the others' keys skipped."""
    server = server_for(request, kind)
    counter = Counter(kind, server, "snapshot-computes")
    try:
        client_closer.watch(configure_parent(engine, kind, server))

        @warmable(engine=engine, ttl=600, name="stampede.snap")
        def snap(n: int) -> int:
            return n

        for n in range(10):
            snap(n)
        engine.usage.drain()
        assert engine.save_hot_set()["saved"] == 10
        args = ["snapshot", "--counter=snapshot-computes"]
        reports = run_three(kind, server, tmp_path, *args)
        computes = counter.read()
    finally:
        counter.close()
    assert computes == 10, reports
    assert sum(r["succeeded"] for r in reports) == 10
    assert sum(r["skipped"] for r in reports) == 20


# The bound held: with configure's defaults, a killed holder delays others by at most a
# few seconds (its lease: 4 s after its last renewal), whatever the computation's length.
RECOVERY_BOUND = 8.0


def configure_parent(engine: CacheWarmingEngine, backend: str, server: servers.Server) -> Any:
    arguments: dict[str, Any] = {"distributed_lock": True}
    if backend == "memcached":
        arguments["url"] = server.url
        return engine.configure_region("default", "dogpile.cache.pymemcache", arguments=arguments)
    arguments.update(host=server.host, port=server.port)
    return engine.configure_region("default", "dogpile.cache.redis", arguments=arguments)


@pytest.mark.slow
@pytest.mark.parametrize("kind", SERVERS)
def test_a_sigkilled_lock_holder_delays_others_by_its_lease_not_its_computation(
    request: pytest.FixtureRequest,
    kind: str,
    engine: CacheWarmingEngine,
    client_closer: servers.ClientCloser,
    tmp_path: Path,
) -> None:
    """With configure's defaults, after the process computing a key (for 60 s) is
    SIGKILLed, another process computes it within 8 s."""
    server = server_for(request, kind)
    region = client_closer.watch(configure_parent(engine, kind, server))

    @warmable(engine=engine, name="stampede.hold", ttl=60)
    def fn() -> str:
        return "computed by the survivor"

    started = tmp_path / "started"
    holder = spawn(
        "hold",
        f"--backend={kind}",
        f"--host={server.host}",
        f"--port={server.port}",
        f"--started={started}",
    )
    try:
        wait_for_files([started], [holder], READY_TIMEOUT)
        # The holder is inside its 60 s computation, so it holds the key's distributed lock.
        assert region.backend.get_mutex(safe_key(fn.key_for())).locked()
        time.sleep(6.0)  # longer than the lease: still held, so renewed by a live holder
        assert region.backend.get_mutex(safe_key(fn.key_for())).locked()
        os.kill(holder.pid, signal.SIGKILL)
        assert holder.wait(10) == -signal.SIGKILL
        t0 = time.monotonic()
        value = fn()
        took = time.monotonic() - t0
    finally:
        reap([holder])
    print(f"\n[{kind}] recomputed {took:.2f}s after the holder was killed")
    assert value == "computed by the survivor"
    assert took < RECOVERY_BOUND


FRESH_TTL = 1.0
FRESH_REFRESH_AHEAD = 0.5
FRESH_COMPUTE = 0.020  # seconds one compute takes
FRESH_READ_FOR = 2.5  # seconds the readers run
SLOW_CALL = 0.015  # a read at least this slow took about as long as a recompute
SLOW_SHARE = 0.01  # at most this share of reads may be that slow (scheduling noise)
READERS = 8


@pytest.mark.slow
@pytest.mark.parametrize(
    "where",
    [
        pytest.param("memory", id="memory"),
        pytest.param("memcached", marks=pytest.mark.memcached, id="memcached"),
    ],
)
def test_sustained_concurrent_reads_never_get_a_value_past_ttl_nor_wait_for_recomputes(
    request: pytest.FixtureRequest,
    where: str,
    client_closer: servers.ClientCloser,
) -> None:
    """Under 8 busy readers every value is within ttl and refresh-ahead keeps reads fast."""
    engine = CacheWarmingEngine()  # on the real clock: values really age while read
    if where == "memcached":
        server = server_for(request, "memcached")
        client_closer.watch(
            engine.configure_region(
                "default",
                "dogpile.cache.pymemcache",
                arguments={"url": server.url, "distributed_lock": True},
            )
        )

    @warmable(
        ttl=FRESH_TTL, refresh_ahead=FRESH_REFRESH_AHEAD, name="stampede.fresh", engine=engine
    )
    def created_at() -> float:
        started = time.time()
        time.sleep(FRESH_COMPUTE)  # real time: what a read must not wait for
        return started

    samples: list[tuple[float, float]] = []  # (latency, age at return) per read
    lock = threading.Lock()
    errors: list[BaseException] = []

    def read_until(deadline: float) -> None:
        mine: list[tuple[float, float]] = []
        try:
            while time.monotonic() < deadline:
                t0 = time.perf_counter()
                value = created_at()
                latency = time.perf_counter() - t0
                mine.append((latency, time.time() - value))
                time.sleep(0.001)  # readers that are busy, not a CPU spin over the GIL
        except BaseException as exc:
            errors.append(exc)
        with lock:
            samples.extend(mine)

    with captured_signals("refreshed", "cache_miss") as sent:
        assert time.time() - created_at() <= FRESH_TTL  # the one cold miss
        deadline = time.monotonic() + FRESH_READ_FOR
        readers = [threading.Thread(target=read_until, args=(deadline,)) for _ in range(READERS)]
        for reader in readers:
            reader.start()
        for reader in readers:
            reader.join(FRESH_READ_FOR + 10)
        hung = [r for r in readers if r.is_alive()]
        engine.close()  # background refreshes finish before their connections close
    assert not hung and not errors, errors
    max_age = max(age for _, age in samples)
    slow = sum(1 for latency, _ in samples if latency >= SLOW_CALL)
    print(
        f"\n[{where}] reads={len(samples)} max_age={max_age:.6f}s slow(>= {SLOW_CALL * 1000:g}ms)="
        f"{slow} max_latency={max(lat for lat, _ in samples) * 1000:.2f}ms "
        f"refreshed={len(sent.named('refreshed'))} misses={len(sent.named('cache_miss'))}"
    )
    assert max_age <= FRESH_TTL
    assert slow <= SLOW_SHARE * len(samples)
    assert sent.named("refreshed")
