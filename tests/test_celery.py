"""Warm runs on a real Celery fleet: ``celery worker`` processes (2 of them, prefork)
started by the suite, the suite's redis-server as broker, result backend and cache.

The worker imports ``tests/celery_app.py``, the application; so does this process, which
asks for the warm run and reads the values the workers stored.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from dogpile_warm.testing import wait_until
from tests import servers

pytestmark = [pytest.mark.redis, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def fleet(redis_server: servers.Server) -> Iterator[ModuleType]:
    """tests/celery_app.py, imported here, with a Celery worker of 2 processes serving it."""
    redis_server.flush()
    address = f"{redis_server.host}:{redis_server.port}"
    os.environ["DOGPILE_WARM_TEST_REDIS"] = address
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "tests.celery_app",
            "worker",
            "--concurrency",
            "2",
            "--pool",
            "prefork",
            "--loglevel",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        cwd=ROOT,
        env={**os.environ, "DOGPILE_WARM_TEST_REDIS": address},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        import tests.celery_app as application

        def answers() -> bool:
            if worker.poll() is not None:
                out = worker.stdout.read() if worker.stdout else ""
                pytest.fail(f"the celery worker exited with {worker.returncode}:\n{out}")
            return bool(application.app.control.ping(timeout=0.5))

        wait_until(answers, 30, interval=0.2, message="the celery worker to answer a ping")
        try:
            yield application
        finally:  # this process's connections: the broker's, the results', the region's
            application.engine.close()
            application.engine.region.backend.writer_client.connection_pool.disconnect()
            application.app.close()
            application.app.backend.client.connection_pool.disconnect()
    finally:
        worker.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.wait(15)
        if worker.poll() is None:
            worker.kill()
            worker.wait(5)
        if worker.stdout is not None:
            worker.stdout.close()
        os.environ.pop("DOGPILE_WARM_TEST_REDIS", None)


def test_the_workers_compute_and_store_the_critical_keys(fleet: ModuleType) -> None:
    """warm_critical_data through Celery: every key of the critical function is computed
    by a worker process (not this one), stored in the shared region, and reported; the
    failing key is reported with the worker's error, the plain task is warmed, and a
    function on a memory region is not sent (a worker's memory is not this process's)."""
    for n in range(fleet.KEYS):
        fleet.page.invalidate(n)
    report = fleet.warming.warm_critical_data()
    rows = {row["key"]: row for row in report["results"]}
    assert len(rows) == fleet.KEYS + 4
    assert all(rows[fleet.page.key_for(n)]["success"] for n in range(fleet.KEYS))
    values = [fleet.page.get(n) for n in range(fleet.KEYS)]
    pids = {value["pid"] for value in values}
    assert os.getpid() not in pids and len(pids) >= 1
    assert [value["n"] for value in values] == list(range(fleet.KEYS))
    failed = rows[fleet.flaky.key_for(2)]
    assert failed["success"] is False and "no price for 2" in (failed["error"] or "")
    assert (
        rows["celery:plain"]["success"] and fleet.engine.get_cached("celery:plain") != os.getpid()
    )
    local = rows[fleet.local.key_for()]
    assert local["success"] is False and "each process's memory" in (local["error"] or "")
    assert (report["succeeded"], report["failed"]) == (fleet.KEYS + 2, 2)


def test_the_workers_results_count_in_the_callers_figures(fleet: ModuleType) -> None:
    """The run's keys count in this process's get_performance, failures included."""
    before = fleet.engine.get_performance()
    report = fleet.warming.warm_tasks(critical_only=True)
    after = fleet.engine.get_performance()
    assert after["total_warmings"] - before["total_warmings"] == len(report["results"])
    assert after["failed"] - before["failed"] == report["failed"] == 2
