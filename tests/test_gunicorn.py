"""Deployed as web teams deploy it: a Flask app under gunicorn (2 sync workers) on memcached.

Client threads drive every route of tests/gunicorn_app.py while the worker
computing the catalog under its lock is SIGKILLed in the middle of the
computation; gunicorn replaces it, and the test checks that every request was
answered, in bounded time, with a value within its ttl and meant for it, and
that every worker (the replacement too) runs the warming scheduler. With and
without ``--preload`` (the app warms and starts the scheduler at import, so
with ``--preload`` in the gunicorn master, before the fork).

Every wait is bounded; gunicorn (master and workers) is terminated and reaped
in ``finally``, and gunicorn's output is in every failure message.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dogpile_warm.testing import wait_until
from tests import servers

pytestmark = [pytest.mark.slow, pytest.mark.memcached]

ROOT = Path(__file__).resolve().parent.parent
APP = "tests.gunicorn_app:app"
HOST = servers.HOST
WORKERS = 2
CLIENTS = 4  # client threads, each one request at a time
CLIENT_PAUSE = 0.01  # seconds a client waits between two requests

# What tests/gunicorn_app.py uses (each response carries its ttl; checked below).
CATALOG_TTL = 3.0
CATALOG_COMPUTE = 1.0
TTLS = {"catalog": CATALOG_TTL, "product": 5.0, "basket": 5.0}
LOCK_LEASE = 4.0  # dogpile_warm._core.regions.LOCK_LEASE, renewed every third of it
# memcached's clock ticks once a second, so the lock is stored with an expiry of
# LOCK_LEASE + 1 (dogpile_warm._backends.memcached.MemcachedLock): it outlives its holder's
# last renewal by up to this much.
LOCK_OUTLIVES_HOLDER = LOCK_LEASE + 1.0

BOOT_TIMEOUT = 25.0  # seconds gunicorn gets until both workers answer /health
REQUEST_TIMEOUT = 20.0  # a client's socket timeout: a hung route fails, never hangs the test
FIND_TIMEOUT = 12.0  # seconds to find a worker computing the catalog under its lock
KILL_AT = 0.4  # seconds into the 1 s computation when its worker is killed
REPLACE_TIMEOUT = 15.0  # seconds gunicorn gets to boot a replacement that answers
RECOVER_TIMEOUT = 15.0  # seconds until a catalog computed after the kill is served
STATS_TIMEOUT = 10.0  # seconds to hear /stats from every current worker
STOP_TIMEOUT = 10.0  # seconds between SIGTERM and SIGKILL for gunicorn

# A request in flight on the killed worker itself is lost with it: a sync worker
# serves one request at a time, so at most one, and it must span the kill.
LOST_WITH_THE_WORKER = 1
# A value is checked against its ttl at the moment the library returns it; the
# view reads the clock right after, which a GIL switch (5 ms) or two can delay.
AGE_SLACK = 0.05
# Scheduling noise on two shared, busy cores, added to every latency bound.
MARGIN = 1.5
# The slowest /catalog request: it started waiting at the earliest when the killed
# worker took the key's lock; that lock outlives its last renewal (at the latest,
# its taking) by LOCK_OUTLIVES_HOLDER; then the wait's last step (0.2 s) and one
# computation of its own.
CATALOG_BOUND = LOCK_OUTLIVES_HOLDER + 0.2 + CATALOG_COMPUTE + MARGIN
# Every other route computes in milliseconds, but a sync worker serves one request
# at a time: while the dead worker's lock lives, a request can queue behind /catalog
# requests blocked on it in both workers. Same bound.
STALL_BOUND = CATALOG_BOUND
# The stall ends once a catalog computed after the kill was served and the dead
# worker's lock has expired (taken before the kill, it lives LOCK_OUTLIVES_HOLDER
# after it at most). Outside it (and before the kill) a /catalog request waits at
# most for one computation (refresh-ahead at 0.8 x 3 s finishes 0.4 s past the
# ttl, so short waits are normal), and a request of another route can queue
# behind such a wait.
NORMAL_BOUND = CATALOG_COMPUTE + 0.2 + MARGIN


# -- processes ------------------------------------------------------------------------
def parent_of(pid: int) -> int | None:
    """The parent pid of ``pid`` (from /proc), or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def children_of(pid: int) -> set[int]:
    """The pids of the live processes whose parent is ``pid``."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and parent_of(int(entry)) == pid:
            found.add(int(entry))
    return found


def is_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting to be reaped does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def fetch(port: int, path: str, timeout: float) -> tuple[int, bytes]:
    """GET ``path``: the status and the body; raises on connection errors and timeouts."""
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _no_control_socket() -> list[str]:
    """gunicorn >= 24 opens a control socket at one path per user (~/.gunicorn), which
    concurrent runs would share: off where the option exists."""
    from gunicorn.config import Config

    return ["--no-control-socket"] if "control_socket_disable" in Config().settings else []


NO_CONTROL_SOCKET = _no_control_socket()


class Gunicorn:
    """One gunicorn master (in a session of its own) with its workers, and its output."""

    def __init__(self, env: dict[str, str], preload: bool, app: str = APP) -> None:
        self.env = env
        self.preload = preload
        self.app = app
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.workers_seen: set[int] = set()  # every worker pid ever seen, for the cleanup
        self._log = tempfile.NamedTemporaryFile(prefix="gunicorn-", suffix=".log")  # noqa: SIM115

    def start(self) -> None:
        """Start gunicorn on a free port; fail (with its output) unless both workers answer."""
        for attempt in range(3):
            self.port = servers.free_port()
            argv = [
                sys.executable, "-m", "gunicorn",
                "--bind", f"{HOST}:{self.port}",
                "--workers", str(WORKERS),
                "--worker-class", "sync",
                "--timeout", "30",
                "--graceful-timeout", "5",
                *NO_CONTROL_SOCKET,
                *(["--preload"] if self.preload else []),
                self.app,
            ]  # fmt: skip
            self.process = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stray workers die with it
            )
            if self._wait_until_both_workers_answer():
                return
            in_use = "already in use" in self.output() or "Connection in use" in self.output()
            if not in_use or attempt == 2:
                pytest.fail(
                    f"gunicorn did not answer on port {self.port} with {WORKERS} workers "
                    f"within {BOOT_TIMEOUT}s:\n{self.output()}",
                    pytrace=False,
                )
            self.stop()  # the port was taken meanwhile: another one

    def _wait_until_both_workers_answer(self) -> bool:
        """True once WORKERS workers answered; False if gunicorn exits or BOOT_TIMEOUT passes."""
        process = self.process
        assert process is not None
        answered: set[int] = set()

        def settled() -> bool:
            with contextlib.suppress(OSError, http.client.HTTPException):
                status, body = fetch(self.port, "/health", timeout=2.0)
                if status == 200:
                    answered.add(json.loads(body)["pid"])
            self.workers()
            return len(answered) >= WORKERS or process.poll() is not None

        with contextlib.suppress(AssertionError):  # timed out: the caller reports it
            wait_until(settled, BOOT_TIMEOUT, interval=0.05)
        return len(answered) >= WORKERS and process.poll() is None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def workers(self) -> set[int]:
        """The live worker pids now (also remembered for the cleanup)."""
        current = {p for p in children_of(self.pid) if is_alive(p)}
        self.workers_seen |= current
        return current

    def output(self) -> str:
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")[-8000:]

    def stop(self) -> None:
        """SIGTERM, then SIGKILL the whole group; reap the master; kill stray workers."""
        process, self.process = self.process, None
        if process is not None:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
                    process.wait(STOP_TIMEOUT)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)  # anything left in its group
        for pid in self.workers_seen:
            # Still alive and still a gunicorn process (not a reused pid): a stray worker.
            with contextlib.suppress(OSError):
                if is_alive(pid) and b"gunicorn" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGKILL)

    def close(self) -> None:
        self.stop()
        self._log.close()


# -- load -----------------------------------------------------------------------------
@dataclass
class Sample:
    """One request: what was asked, when (monotonic), and what came back."""

    path: str
    start: float
    end: float
    status: int | None = None
    body: dict[str, Any] | None = None
    error: str | None = None

    @property
    def route(self) -> str:
        return self.path.split("/")[1]

    @property
    def took(self) -> float:
        return self.end - self.start

    @property
    def answer(self) -> dict[str, Any]:
        """The body of a sample already known to have one."""
        assert self.body is not None, self
        return self.body


@dataclass
class Load:
    """CLIENTS threads requesting every route in turn until stopped."""

    port: int
    samples: list[Sample] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        for n in range(CLIENTS):
            thread = threading.Thread(target=self._client, args=(n,), name=f"client-{n}")
            self.threads.append(thread)
            thread.start()

    def _client(self, n: int) -> None:
        i = n
        while not self.stop.is_set():
            i += 1
            paths = [
                "/catalog",
                f"/product/{i % 13 + 1}",
                f"/basket/{i % 5 + 1}",
                "/health",
                "/catalog",
                f"/product/{i % 7 + 100}",
                "/stats",
            ]
            path = paths[i % len(paths)]
            sample = Sample(path, time.monotonic(), 0.0)
            try:
                sample.status, raw = fetch(self.port, path, REQUEST_TIMEOUT)
                sample.body = json.loads(raw) if sample.status == 200 else None
                if sample.status != 200:
                    sample.error = f"HTTP {sample.status}: {raw[:200]!r}"
            except Exception as exc:
                sample.error = f"{type(exc).__name__}: {exc}"
            sample.end = time.monotonic()
            with self.lock:
                self.samples.append(sample)
            time.sleep(CLIENT_PAUSE)

    def snapshot(self) -> list[Sample]:
        with self.lock:
            return list(self.samples)

    def finish(self) -> list[str]:
        """Stop the clients; the names of any that did not end in time (none expected)."""
        self.stop.set()
        deadline = time.monotonic() + REQUEST_TIMEOUT + 5
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return [t.name for t in self.threads if t.is_alive()]


# -- the catalog's computations, from the app's marker files ---------------------------------
@dataclass
class Computation:
    """One computation of the catalog, as its marker files tell it."""

    pid: int
    n: int
    thread: str
    in_request: bool
    started: float  # wall clock
    done: bool

    @property
    def under_lock(self) -> bool:
        """Computed by a request or a refresh-ahead, which hold the key's lock (warm runs do not)."""
        return self.in_request or self.thread.startswith("dogpile_warm-refresh")


def computations(markers: Path) -> list[Computation]:
    """Every computation of the catalog so far, oldest first."""
    found = []
    for start in markers.glob("*.start"):
        with contextlib.suppress(OSError, ValueError):
            info = json.loads(start.read_text())
            pid, n = (int(part) for part in start.stem.split("-"))
            found.append(
                Computation(
                    pid,
                    n,
                    info["thread"],
                    info["in_request"],
                    info["at"],
                    start.with_suffix(".done").exists(),
                )
            )
    return sorted(found, key=lambda c: c.started)


def kill_a_worker_computing_the_catalog(gunicorn: Gunicorn, markers: Path) -> Computation:
    """SIGKILL the worker computing the catalog under its lock, KILL_AT s into the computation."""

    def killed_one() -> Computation | None:
        workers = gunicorn.workers()
        for computation in computations(markers):
            if computation.done or not computation.under_lock or computation.pid not in workers:
                continue
            wait = computation.started + KILL_AT - time.time()
            if wait < -0.2:
                continue  # too far into it to be sure it is still computing when killed
            time.sleep(max(0.0, wait))  # real time: killed KILL_AT s into its computation
            done = markers / f"{computation.pid}-{computation.n}.done"
            if done.exists():
                continue
            os.kill(computation.pid, signal.SIGKILL)
            return computation
        return None

    return wait_until(
        killed_one,
        FIND_TIMEOUT,
        message=lambda: (
            f"a worker computing the catalog under its lock; "
            f"computations: {computations(markers)}\n{gunicorn.output()}"
        ),
    )


def stats_of_every_worker(gunicorn: Gunicorn) -> dict[int, dict[str, Any]]:
    """/stats as answered by each current worker (the listening socket picks the worker)."""
    answers: dict[int, dict[str, Any]] = {}

    def everyone_answered() -> bool:
        workers = gunicorn.workers()
        if workers and workers <= set(answers):
            return True
        with contextlib.suppress(OSError, http.client.HTTPException):
            status, body = fetch(gunicorn.port, "/stats", timeout=5.0)
            if status == 200:
                stats = json.loads(body)
                answers[stats["pid"]] = stats
        return False

    with contextlib.suppress(AssertionError):  # timed out: the caller sees who is missing
        wait_until(everyone_answered, STATS_TIMEOUT)
    return {pid: answers[pid] for pid in gunicorn.workers() if pid in answers}


def wrong_value(sample: Sample) -> str | None:
    """Why ``sample``'s body is not the answer to its path (a reply meant for another key)."""
    body = sample.body
    assert body is not None
    parts = sample.path.split("/")
    route = parts[1]
    if route == "health":
        return None if body.get("ok") is True else "not a health answer"
    if route == "stats":
        return None if "running" in body and "hits" in body else "not a stats answer"
    value = body["value"]
    if value.get("kind") != route:
        return f"a {value.get('kind')!r} value"
    if route == "product" and value.get("id") != int(parts[2]):
        return f"product {value.get('id')}"
    if route == "basket" and value.get("user") != int(parts[2]):
        return f"the basket of user {value.get('user')}"
    if body.get("ttl") != TTLS[route]:
        return f"ttl {body.get('ttl')}"
    return None


def claimed_cycles(markers: Path) -> dict[int, list[int]]:
    """The scheduler cycles each process claimed (from the app's ``claims-<pid>`` files)."""
    claims = {}
    for path in markers.glob("claims-*"):
        pid = int(path.name.split("-")[1])
        claims[pid] = [int(line) for line in path.read_text().split()]
    return claims


class Report:
    """The figures of one run, for the assertions and the printout."""

    def __init__(self, samples: list[Sample], kill_mono: float, kill_wall: float) -> None:
        self.samples = samples
        self.kill_mono = kill_mono
        self.kill_wall = kill_wall
        self.valued = [s for s in samples if s.body is not None and "created" in s.body]
        self.failed = [s for s in samples if s.error is not None]
        # Answered by the replacement or the survivor with a catalog computed after the kill.
        self.recomputed = [
            s for s in self.valued if s.route == "catalog" and s.answer["created"] > kill_wall
        ]
        # Seconds from the kill until the first of those computations started.
        self.recompute_after = min(
            (s.answer["created"] - kill_wall for s in self.recomputed), default=None
        )

    @staticmethod
    def age(sample: Sample) -> float:
        """How old the value was when the library returned it to the view."""
        assert sample.body is not None
        return float(sample.body["served_at"] - sample.body["created"])

    def slowest(self, route: str | None = None, outside_stall_until: float | None = None) -> float:
        """The longest request (of ``route``; of those that ended before the kill or
        started after ``outside_stall_until``)."""
        return max(
            (
                s.took
                for s in self.samples
                if (route is None or s.route == route)
                and (
                    outside_stall_until is None
                    or s.end < self.kill_mono
                    or s.start > outside_stall_until
                )
            ),
            default=0.0,
        )

    def text(self, stall_end: float) -> str:
        routes = sorted({s.route for s in self.samples})
        lines = [
            f"requests {len(self.samples)}, failed {len(self.failed)}",
            *(
                f"  {r:8s} {sum(1 for s in self.samples if s.route == r):5d} served, slowest "
                f"{self.slowest(r):.2f}s, outside the stall {self.slowest(r, stall_end):.2f}s"
                for r in routes
            ),
        ]
        for s in self.failed:
            lines.append(
                f"  failed {s.path}: {s.error} "
                f"[{s.start - self.kill_mono:+.2f}s..{s.end - self.kill_mono:+.2f}s from the kill]"
            )
        for route in sorted({s.route for s in self.valued}):
            oldest = max((s for s in self.valued if s.route == route), key=self.age)
            ttl = oldest.body["ttl"] if oldest.body else 0
            lines.append(
                f"  oldest {route} served: {self.age(oldest):.4f}s of its {ttl:g}s ttl "
                f"({self.age(oldest) / ttl:.4f})"
            )
        if self.recomputed:
            first = min(self.recomputed, key=lambda s: s.body["created"] if s.body else 0)
            assert first.body is not None
            lines.append(
                f"  first catalog computed after the kill: started "
                f"{first.body['created'] - self.kill_wall:.2f}s after it, by pid "
                f"{first.body['value']['computed_by']}; first served "
                f"{min(s.end for s in self.recomputed) - self.kill_mono:.2f}s after it"
            )
        return "\n".join(lines)


# -- the test ---------------------------------------------------------------------------------
@pytest.fixture
def memcached() -> Any:
    """A memcached of this test's own."""
    server = servers.start_memcached()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("preload", [False, True], ids=["no-preload", "preload"])
def test_every_route_keeps_answering_when_the_worker_computing_the_catalog_is_killed(
    memcached: servers.Server, tmp_path: Path, preload: bool
) -> None:
    """Killing the worker computing a key loses only its own request; values stay fresh and right."""
    markers = tmp_path / "markers"
    markers.mkdir()
    env = {
        **os.environ,
        "DW_GUNICORN_MEMCACHED": memcached.url,
        "DW_GUNICORN_MARKERS": str(markers),
        "DW_GUNICORN_WARM": "1",
        "DW_GUNICORN_INTERVAL_MINUTES": "1",
        "PYTHONUNBUFFERED": "1",
    }
    gunicorn = Gunicorn(env, preload)
    load: Load | None = None
    hung: list[str] = []
    try:
        t_boot = time.monotonic()
        gunicorn.start()
        booted = time.monotonic() - t_boot
        master = gunicorn.pid
        first_workers = gunicorn.workers()
        load = Load(gunicorn.port)
        load.start()
        started = time.monotonic()

        killed = kill_a_worker_computing_the_catalog(gunicorn, markers)
        kill_mono, kill_wall = time.monotonic(), time.time()
        wait_until(
            lambda: not is_alive(killed.pid),
            10.0,
            message=lambda: f"the killed worker to exit\n{gunicorn.output()}",
        )
        # Killed in the middle: its computation never ended.
        assert not (markers / f"{killed.pid}-{killed.n}.done").exists(), gunicorn.output()

        def replacement() -> int | None:
            new = gunicorn.workers() - first_workers
            served = {s.body["pid"] for s in load.snapshot() if s.body is not None}
            return next(iter(new & served), None)

        new_pid = wait_until(
            replacement,
            REPLACE_TIMEOUT,
            message=lambda: f"a replacement worker to answer\n{gunicorn.output()}",
        )
        replaced_at = time.monotonic()

        def recovered() -> bool:
            return any(
                s.route == "catalog" and s.body is not None and s.body["created"] > kill_wall
                for s in load.snapshot()
            )

        wait_until(
            recovered,
            RECOVER_TIMEOUT,
            message=lambda: f"a catalog computed after the kill to be served\n{gunicorn.output()}",
        )
        recovered_at = time.monotonic()
        # At least one catalog ttl of load after the replacement answered, a catalog
        # computed since the kill was served, and the dead worker's lock expired.
        until = max(replaced_at, recovered_at, kill_mono + LOCK_OUTLIVES_HOLDER) + CATALOG_TTL
        time.sleep(max(0.0, until + 0.5 - time.monotonic()))  # real time: load past all that
        hung = load.finish()
        loaded_for = time.monotonic() - started
        stats = stats_of_every_worker(gunicorn)
        final_workers = gunicorn.workers()
    finally:
        if load is not None:
            hung = load.finish() or hung
        output = gunicorn.output()
        gunicorn.close()

    assert load is not None
    samples = load.samples
    report = Report(samples, kill_mono, kill_wall)
    stall_end = max(recovered_at, kill_mono + LOCK_OUTLIVES_HOLDER)
    claims = claimed_cycles(markers)
    all_claims = [cycle for cycles in claims.values() for cycle in cycles]
    figures = (
        f"[{'preload' if preload else 'no-preload'}] gunicorn answered after {booted:.2f}s; "
        f"load for {loaded_for:.1f}s; killed pid {killed.pid} {KILL_AT}s into its catalog "
        f"computation in thread {killed.thread}{' (a request)' if killed.in_request else ''}; "
        f"replacement {new_pid} answered {replaced_at - kill_mono:.2f}s after the kill\n"
        f"{report.text(stall_end)}\n"
        f"  scheduler cycles claimed: "
        + ", ".join(
            f"{'master ' if pid == master else ''}{pid}: {len(cycles)}"
            for pid, cycles in sorted(claims.items())
        )
        + "\n  /stats: "
        + ", ".join(
            f"{pid} running={s['running']} cycles={s['scheduler'] and s['scheduler']['cycles']}"
            for pid, s in sorted(stats.items())
        )
    )
    print(f"\n{figures}")
    context = (
        f"\n{figures}\nworkers: first {sorted(first_workers)}, final {sorted(final_workers)}\n"
        f"--- gunicorn output ---\n{output}"
    )

    assert not hung, f"client threads still waiting: {hung}{context}"
    assert killed.pid not in final_workers and new_pid in final_workers, context
    # Every request answered 200 but the one in flight on the killed worker, if any.
    lost = [s for s in report.failed if s.start <= kill_mono <= s.end + 0.05]
    assert len(lost) <= LOST_WITH_THE_WORKER and report.failed == lost, context
    # Each reply is the one its path asked for, from a worker of this gunicorn.
    answered = [s for s in samples if s.body is not None]
    wrong = [(s.path, why) for s in answered if (why := wrong_value(s)) is not None]
    assert not wrong, f"{wrong[:10]}{context}"
    assert {s.answer["pid"] for s in answered} <= gunicorn.workers_seen, context
    # No value older than its ttl when the library returned it.
    too_old = [
        (s.path, Report.age(s))
        for s in report.valued
        if Report.age(s) > s.answer["ttl"] + AGE_SLACK
    ]
    assert not too_old, f"{too_old[:10]}{context}"
    # The dead worker's lock held the key up to LOCK_OUTLIVES_HOLDER at most.
    assert report.recompute_after is not None, context
    assert report.recompute_after <= LOCK_OUTLIVES_HOLDER + MARGIN, context
    # Bounded latencies: a stall only while the dead worker's lock lives.
    assert report.slowest("catalog") <= CATALOG_BOUND, context
    assert report.slowest() <= STALL_BOUND, context
    assert report.slowest(outside_stall_until=stall_end) <= NORMAL_BOUND, context
    # Every worker, the replacement too, runs the scheduler (restarted after the fork
    # with --preload, started by its own import without) ...
    assert set(stats) == final_workers and all(s["running"] for s in stats.values()), context
    # ... and the processes sharing memcached never ran one cycle twice.
    assert len(all_claims) == len(set(all_claims)), context


@pytest.mark.parametrize("preload", [False, True], ids=["no-preload", "preload"])
def test_prometheus_multiprocess_mode_counts_every_workers_reads(
    preload: bool, tmp_path: Path
) -> None:
    """Under gunicorn (2 workers, with and without --preload) in prometheus_client's
    multiprocess mode, /metrics from any worker counts the reads of both: hits plus
    misses equal the requests made, and each worker's first read of a key is a miss."""
    shared = tmp_path / "prometheus"
    shared.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(shared)}
    gunicorn = Gunicorn(env, preload, app="tests.gunicorn_metrics_app:app")
    try:
        gunicorn.start()
        answered: set[int] = set()
        requests = 0

        def both_workers_read() -> bool:
            nonlocal requests
            status, body = fetch(gunicorn.port, f"/value/{requests % 5}", timeout=5.0)
            assert status == 200, body
            requests += 1
            answered.add(json.loads(body)["pid"])
            return len(answered) == WORKERS and requests >= 40

        wait_until(both_workers_read, 30, interval=0.0, message="reads answered by both workers")
        status, body = fetch(gunicorn.port, "/metrics", timeout=5.0)
        assert status == 200, body
        text = body.decode()
        hits = _sample(text, 'dogpile_warm_hits_total{task="metrics.value"}')
        misses = _sample(text, 'dogpile_warm_misses_total{task="metrics.value"}')
        assert hits + misses == requests, f"{requests} requests\n{text}"
        assert 5 < misses <= 5 * WORKERS, text  # each worker computes the keys it reads
    finally:
        gunicorn.close()


def _sample(text: str, name: str) -> float:
    """The value of the sample ``name`` (with its labels) in an exposition ``text``."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {name} in:\n{text}")
