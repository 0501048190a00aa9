"""Steady load under gunicorn: what four prefork workers on one memcached compute.

gunicorn serves ``benchmarks/_gunicorn_app.py`` with 4 sync workers (``--preload``:
the scheduler starts in the master and again in each worker) on a memcached of
its own. Eight client threads request ``/product/<id>``, ids Zipf(1.1) over 100,
and one request in twenty ``/catalog``, pausing 5 ms between requests. A
product lives 5 s and takes 5 ms to compute; the catalog is critical (the
scheduler warms it every 3 s), lives 3 s and takes 0.2 s.
Every computation is logged by the process that ran it (its start and thread),
and every ``cache_miss``, ``warmed`` and ``refreshed`` signal is counted.

Figures, over the measured window (after a warm-up):

- computes / the ttl-implied minimum. The minimum is what computing on demand
  needs: per key, one computation at the first read the last computation does
  not cover, which then covers the ttl that follows. Goal 1.25;
- computes starting within 1 s of the previous computation of the same key,
  and which parts of the processes ran the two (reported, no goal);
- the share of computes each source did: reads (misses), refresh-ahead,
  warmings (pattern warming and scheduled warm runs).

Run: ``python benchmarks/gunicorn_load.py [--quick]``.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

try:
    from benchmarks._report import Row, format_table, make_parser
    from benchmarks._servers import HOST, free_port, running_memcached
    from benchmarks.skewed_load import zipf_cum_weights
except ModuleNotFoundError:  # run as a script: the repository root is not on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks._report import Row, format_table, make_parser
    from benchmarks._servers import HOST, free_port, running_memcached
    from benchmarks.skewed_load import zipf_cum_weights

ROOT = Path(__file__).resolve().parents[1]
WORKERS = 4
CLIENTS = 8
KEYS = 100
IDS = range(1, KEYS + 1)  # product ids, id k read with weight 1 / k**ZIPF_S
ZIPF_S = 1.1
THINK = 0.005
TTLS = {"product": 5.0, "catalog": 3.0}  # the app's
CATALOG_SHARE = 0.05  # of requests
DUPLICATE_WITHIN = 1.0
WARMUP, DURATION = 10.0, 30.0
QUICK_WARMUP, QUICK_DURATION = 2.0, 3.0
BOOT_TIMEOUT = 30.0
RATIO_GOAL = 1.25

CONTENDER = "dogpile_warm, gunicorn 4 workers"
MINIMUM = "gunicorn load: computes / ttl-implied minimum"
DUPLICATES = "gunicorn load: computes within 1 s of the last"
SOURCES = "gunicorn load: share of computes by source"


@contextlib.contextmanager
def running_gunicorn(memcached: str, log: Path) -> Iterator[int]:
    """gunicorn serving the app on a free loopback port for the block; yields the port."""
    port = free_port()
    env = {
        "DW_BENCH_MEMCACHED": memcached,
        "DW_BENCH_LOG": str(log),
        "PATH": os.environ.get("PATH", ""),
    }
    argv = [
        sys.executable, "-m", "gunicorn", "--bind", f"{HOST}:{port}",
        "--workers", str(WORKERS), "--worker-class", "sync", "--preload",
        *_no_control_socket(), "benchmarks._gunicorn_app:app",
    ]  # fmt: skip
    process = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait_for_workers(port, process)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _no_control_socket() -> list[str]:
    """gunicorn >= 24 opens a control socket at one path per user: off where it can be."""
    from gunicorn.config import Config

    return ["--no-control-socket"] if "control_socket_disable" in Config().settings else []


def _get(port: int, path: str) -> bytes:
    connection = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"GET {path}: {response.status} {body[:200]!r}")
        return body
    finally:
        connection.close()


def _wait_for_workers(port: int, process: subprocess.Popen[bytes]) -> None:
    seen: set[bytes] = set()
    deadline = time.monotonic() + BOOT_TIMEOUT
    while len(seen) < WORKERS:
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"gunicorn did not start {WORKERS} workers on port {port}")
        with contextlib.suppress(OSError, http.client.HTTPException, RuntimeError):
            seen.add(_get(port, "/health"))
        time.sleep(0.02)


def load(port: int, seconds: float) -> list[tuple[float, str]]:
    """Read from ``CLIENTS`` threads for ``seconds``: (time, key) of every read."""
    cum_weights = zipf_cum_weights(KEYS, ZIPF_S)
    reads: list[tuple[float, str]] = []
    lock = threading.Lock()
    stop = time.time() + seconds

    def client(seed: int) -> None:
        rng = random.Random(seed)
        mine: list[tuple[float, str]] = []
        while (now := time.time()) < stop:
            if rng.random() < CATALOG_SHARE:
                key = "catalog"
            else:
                key = f"product:{rng.choices(IDS, cum_weights=cum_weights)[0]}"
            _get(port, "/" + key.replace(":", "/"))
            mine.append((now, key))
            time.sleep(THINK)
        with lock:
            reads.extend(mine)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return reads


def on_demand_minimum(reads: list[float], ttl: float, start: float, end: float) -> int:
    """Computations that on-demand computing needs between ``start`` and ``end`` for
    ``reads`` (sorted, from the first): one at each read the last one does not cover,
    which then covers ``ttl``."""
    count, covered_until = 0, -1.0
    for at in reads:
        if at > covered_until:
            count += start <= at < end
            covered_until = at + ttl
    return count


class Measured(NamedTuple):
    reads: int
    computes: int
    minimum: int
    duplicates: Counter[str]  # "key kind: the two computing threads" -> count
    sources: Counter[str]  # signal -> count, in the window


def _thread_kind(name: str) -> str:
    """A thread's name without its number: which part of a process computed."""
    return name.rstrip("0123456789").rstrip("-_") or name


def measure(quick: bool) -> Measured:
    """Run the load; what was read and computed in the measured window."""
    warmup, duration = (QUICK_WARMUP, QUICK_DURATION) if quick else (WARMUP, DURATION)
    log = Path(tempfile.mkdtemp(prefix="dw-gunicorn-load-"))
    try:
        with running_memcached() as memcached, running_gunicorn(memcached, log) as port:
            reads = load(port, warmup)
            start = time.time()
            reads += load(port, duration)
            end = time.time()
            time.sleep(0.5)  # computations begun in the window finish and log
        computes: dict[str, list[tuple[float, str]]] = defaultdict(list)
        for path in log.glob("computes-*"):
            for line in path.read_text().splitlines():
                key, started, thread = line.split(" ", 2)
                computes[key].append((float(started), thread))
        outcomes: Counter[str] = Counter()
        for path in log.glob("outcomes-*"):
            for line in path.read_text().splitlines():
                signal, at, _ = line.split(" ", 2)
                outcomes[signal] += start <= float(at) < end
    finally:
        shutil.rmtree(log, ignore_errors=True)
    read_times: dict[str, list[float]] = defaultdict(list)
    for read_at, read_key in reads:
        read_times[read_key].append(read_at)
    minimum = sum(
        on_demand_minimum(sorted(times), TTLS[key.split(":")[0]], start, end)
        for key, times in read_times.items()
    )
    in_window = 0
    duplicates: Counter[str] = Counter()  # "key kind: thread, thread" of each duplicate
    for key, runs in computes.items():
        runs.sort()
        for i, (began, thread) in enumerate(runs):
            if start <= began < end:
                in_window += 1
                if i and began - runs[i - 1][0] < DUPLICATE_WITHIN:
                    pair = f"{_thread_kind(runs[i - 1][1])} then {_thread_kind(thread)}"
                    duplicates[f"{key.split(':')[0]}: {pair}"] += 1
    return Measured(
        reads=sum(start <= at < end for at, _ in reads),
        computes=in_window,
        minimum=minimum,
        duplicates=duplicates,
        sources=outcomes,
    )


def run(quick: bool) -> list[Row]:
    """Rows: computes over the minimum, duplicates, and each source's share."""
    m = measure(quick)
    duplicates = sum(m.duplicates.values())
    sourced = sum(m.sources.values()) or 1
    shares = ", ".join(
        f"{name} {m.sources[signal] / sourced:.0%}"
        for signal, name in (("cache_miss", "reads"), ("refreshed", "refresh-ahead"),
                             ("warmed", "warmings"))
    )  # fmt: skip
    return [
        Row(
            CONTENDER,
            MINIMUM,
            m.computes / m.minimum if m.minimum else None,
            RATIO_GOAL,
            f"{m.computes:,} computes, minimum {m.minimum:,}, {m.reads:,} reads",
        ),
        Row(
            CONTENDER,
            DUPLICATES,
            duplicates / m.computes if m.computes else None,
            None,
            f"{duplicates} of {m.computes:,}"
            + "".join(f"; {what} x{n}" for what, n in m.duplicates.most_common()),
        ),
        Row(CONTENDER, SOURCES, None, None, shares),
    ]


def main(argv: list[str] | None = None) -> int:
    args = make_parser(__doc__).parse_args(argv)
    print(format_table(run(args.quick)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
