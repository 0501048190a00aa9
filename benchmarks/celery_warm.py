"""Warm runs on Celery workers: 10,000 keys x 5 ms on 1 and on 4 worker processes.

The caller plans the run and waits; ``celery worker`` processes (prefork, one run with
``--concurrency 1``, one with 4) compute and store each key in a Redis region, Redis
also being the broker. The figure is the 4-worker run's time over the 1-worker run's
(goal: at most 1/3, a speed-up of 3 or more); the detail says how many cores the
machine has, since the speed-up needs them (the computation here waits rather than
computes, so 4 processes overlap even on fewer cores).
Run: ``python benchmarks/celery_warm.py [--quick]`` (needs redis-server and celery).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

try:
    from benchmarks._report import Row, format_table, make_parser
    from benchmarks._servers import running_redis
except ModuleNotFoundError:  # run as a script: the repository root is not on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks._report import Row, format_table, make_parser
    from benchmarks._servers import running_redis

ROOT = Path(__file__).resolve().parents[1]
KEYS, QUICK_KEYS = 10_000, 200
CONTENDER = "CeleryWarming.warm_critical_data"
FIGURE = "warm on Celery: 4 workers' time / 1 worker's"


def timed_run(address: str, keys: int, workers: int) -> float:
    """Seconds ``warm_critical_data`` takes on ``workers`` worker processes (a fresh
    worker, its region emptied first)."""
    env = {**os.environ, "DOGPILE_WARM_BENCH_REDIS": address, "DOGPILE_WARM_BENCH_KEYS": str(keys)}
    code = f"""
import time, sys
sys.path.insert(0, {str(ROOT)!r})
from benchmarks import _celery_app as application
deadline = time.monotonic() + 60
while not application.app.control.ping(timeout=0.5):
    if time.monotonic() > deadline:
        raise SystemExit("no celery worker answered")
application.engine.region.backend.writer_client.flushdb()
t0 = time.perf_counter()
report = application.warming.warm_critical_data()
seconds = time.perf_counter() - t0
assert report["succeeded"] == application.KEYS, report["failed"]
print(seconds)
"""
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "benchmarks._celery_app",
            "worker",
            "--concurrency",
            str(workers),
            "--pool",
            "prefork",
            "--loglevel",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            check=True,
        )
        return float(done.stdout.strip().splitlines()[-1])
    finally:
        worker.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.wait(30)
        if worker.poll() is None:
            worker.kill()
            worker.wait(5)


def run(quick: bool) -> list[Row]:
    """One row: the 4-worker run's time over the 1-worker run's."""
    keys = QUICK_KEYS if quick else KEYS
    try:
        with running_redis() as address:
            one = timed_run(address, keys, 1)
            four = timed_run(address, keys, 4)
    except (RuntimeError, ModuleNotFoundError) as exc:
        return [Row(CONTENDER, FIGURE, None, 1 / 3, f"n/a ({exc})")]
    ideal = keys * 0.005
    return [
        Row(
            CONTENDER,
            FIGURE,
            four / one,
            1 / 3,
            f"{keys:,} keys x 5 ms: 1 worker {one:.2f} s (ideal {ideal:.1f}), 4 workers "
            f"{four:.2f} s: speed-up {one / four:.2f}x on {os.cpu_count()} cores",
        )
    ]


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__)
    args = parser.parse_args(argv)
    print(format_table(run(args.quick)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
