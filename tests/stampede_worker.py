"""A child process for tests/test_stampede.py: one member of a fleet sharing a backend.

Modes:

``stampede``
    Configure the default region on the shared backend, start ``--threads``
    threads that each call the cold ``stampede.fn`` once, create the
    ``--ready`` file, wait for the ``--go`` file, release the threads
    together and print one JSON line: ``{"values": [...], "errors": [...]}``.
    The function counts its computes in the backend itself (``--counter``).
    Exit 0 when every thread got a value and they all agree.

``astampede``
    As ``stampede`` with ``stampede.fn`` an ``async def`` and ``--threads``
    concurrent awaiters on one event loop instead of threads.

``logins``
    Define ``stampede.profile``, a per-user function counting its computes in
    the backend (``--counter``); create ``--ready``, wait for ``--go``, then
    log in users 0 to ``--threads``-1 once each (``warm_user_data_optimized``)
    and print one JSON line: ``{"warmed": [...], "skipped": [...]}``.

``critical``
    Define ``stampede.critical``, a critical function warmed for ``--threads``
    arguments, counting its computes in the backend (``--counter``); create
    ``--ready``, wait for ``--go``, then warm: with ``--scheduled``, start the
    scheduler (a cycle every 0.1 s) for 2 s, else call ``warm_critical_data()``
    once; print one JSON line ``{"succeeded": n, "skipped_tasks": [...]}``.

``snapshot``
    Define ``stampede.snap`` (counting its computes in the backend, ``--counter``);
    create ``--ready``, wait for ``--go``, then ``warm_from_snapshot()`` the hot set
    the test saved; print one JSON line ``{"succeeded": n, "skipped": n}``.

``hold``
    Configure the region (``--lock-timeout`` if given, else configure's
    default) and call ``stampede.hold``, whose computation creates the
    ``--started`` file and then blocks for a minute: the process holds the
    key's distributed lock, renewing its lease, until it is killed.

Every wait is bounded, so a lost parent never leaves a worker behind for long.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
import time
from typing import Any

import dogpile_warm
from dogpile_warm import warmable
from dogpile_warm.testing import wait_until

WAIT_LIMIT = 30.0  # seconds any wait in a worker may last
STAMPEDE_SLEEP = 0.3  # seconds one compute of stampede.fn takes
HOLD_SLEEP = 60.0  # seconds stampede.hold blocks (it is killed long before)


def configure(backend: str, host: str, port: int, lock_timeout: int | None) -> None:
    """Point the default engine's default region at the shared server, as a fleet would
    (``lock_timeout`` None: configure's default)."""
    extra = {} if lock_timeout is None else {"lock_timeout": lock_timeout}
    if backend == "memcached":
        dogpile_warm.configure(
            "default",
            "dogpile.cache.pymemcache",
            arguments={"url": f"{host}:{port}", "distributed_lock": True, **extra},
        )
    elif backend == "redis":
        dogpile_warm.configure(
            "default",
            "dogpile.cache.redis",
            arguments={"host": host, "port": port, "distributed_lock": True, **extra},
        )
    else:
        raise SystemExit(f"unknown backend {backend!r}")


def increment(backend: str, host: str, port: int, key: str) -> int:
    """Add one to the counter ``key`` in the server itself, with a client of its own."""
    if backend == "memcached":
        from pymemcache.client.base import Client

        client = Client((host, port), connect_timeout=5, timeout=5, default_noreply=False)
        try:
            count = client.incr(key, 1)
        finally:
            client.close()
        if count is None:
            raise RuntimeError(f"counter {key!r} is missing from memcached")
        return int(count)
    import redis

    r = redis.Redis(host=host, port=port, socket_timeout=5)
    try:
        return int(r.incr(key))
    finally:
        r.close()


def wait_for_file(path: str) -> bool:
    try:
        wait_until(lambda: os.path.exists(path), WAIT_LIMIT, interval=0.001, message=path)
    except AssertionError:
        return False
    return True


def ready_then_released(args: argparse.Namespace) -> bool:
    """Create the ``--ready`` file, then wait for the ``--go`` file: False if it never came."""
    with open(args.ready, "w"):
        pass
    return wait_for_file(args.go)


def stampede(args: argparse.Namespace) -> int:
    configure(args.backend, args.host, args.port, args.lock_timeout)

    @warmable(ttl=60, name="stampede.fn")
    def fn() -> dict[str, Any]:
        count = increment(args.backend, args.host, args.port, args.counter)
        time.sleep(STAMPEDE_SLEEP)  # real time: a computation the other callers must wait for
        return {"pid": os.getpid(), "count": count}

    go = threading.Event()
    values: list[Any] = []
    errors: list[str] = []
    lock = threading.Lock()

    def call() -> None:
        if not go.wait(WAIT_LIMIT):
            with lock:
                errors.append("never released")
            return
        try:
            value = fn()
        except BaseException as exc:
            with lock:
                errors.append(f"{type(exc).__name__}: {exc}")
        else:
            with lock:
                values.append(value)

    threads = [threading.Thread(target=call, daemon=True) for _ in range(args.threads)]
    for thread in threads:
        thread.start()
    if not ready_then_released(args):
        print(json.dumps({"values": [], "errors": ["no go file"]}), flush=True)
        return 4
    go.set()
    deadline = time.monotonic() + WAIT_LIMIT
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    with lock:
        hung = sum(1 for t in threads if t.is_alive())
        if hung:
            errors.append(f"{hung} threads still waiting after {WAIT_LIMIT}s")
        report = {"values": list(values), "errors": list(errors)}
    print(json.dumps(report), flush=True)
    ok = not report["errors"] and len(report["values"]) == args.threads
    ok = ok and all(v == report["values"][0] for v in report["values"])
    return 0 if ok else 1


def astampede(args: argparse.Namespace) -> int:
    configure(args.backend, args.host, args.port, args.lock_timeout)

    @warmable(ttl=60, name="stampede.fn")
    async def fn() -> dict[str, Any]:
        count = await asyncio.to_thread(increment, args.backend, args.host, args.port, args.counter)
        await asyncio.sleep(STAMPEDE_SLEEP)  # a computation the other awaiters must wait for
        return {"pid": os.getpid(), "count": count}

    async def fleet() -> dict[str, Any]:
        go = asyncio.Event()
        values: list[Any] = []
        errors: list[str] = []

        async def call() -> None:
            await go.wait()
            try:
                values.append(await fn())
            except BaseException as exc:
                errors.append(f"{type(exc).__name__}: {exc}")

        callers = [asyncio.create_task(call()) for _ in range(args.threads)]
        if not await asyncio.to_thread(ready_then_released, args):
            return {"values": [], "errors": ["no go file"]}
        go.set()
        _, hung = await asyncio.wait(callers, timeout=WAIT_LIMIT)
        if hung:
            errors.append(f"{len(hung)} awaiters still waiting after {WAIT_LIMIT}s")
        return {"values": values, "errors": errors}

    report = asyncio.run(fleet())
    print(json.dumps(report), flush=True)
    ok = not report["errors"] and len(report["values"]) == args.threads
    ok = ok and all(v == report["values"][0] for v in report["values"])
    return 0 if ok else 1


def logins(args: argparse.Namespace) -> int:
    configure(args.backend, args.host, args.port, args.lock_timeout)

    @warmable(ttl=60, name="stampede.profile", user_arg="user_id")
    def profile(user_id: int) -> dict[str, Any]:
        increment(args.backend, args.host, args.port, args.counter)
        return {"user": user_id, "pid": os.getpid()}

    if not ready_then_released(args):
        print(json.dumps({"warmed": [], "skipped": [], "errors": ["no go file"]}), flush=True)
        return 4
    reports = [dogpile_warm.warm_user_data_optimized(user) for user in range(args.threads)]
    warmed = [r["user_id"] for r in reports if not r["skipped"]]
    skipped = [r["user_id"] for r in reports if r["skipped"]]
    print(json.dumps({"warmed": warmed, "skipped": skipped, "errors": []}), flush=True)
    return 0


def critical(args: argparse.Namespace) -> int:
    configure(args.backend, args.host, args.port, args.lock_timeout)

    @warmable(
        ttl=600,
        priority=100,
        name="stampede.critical",
        warm_args=[(n,) for n in range(args.threads)],
    )
    def value(n: int) -> int:
        increment(args.backend, args.host, args.port, args.counter)
        return n

    if not ready_then_released(args):
        print(json.dumps({"succeeded": 0, "skipped_tasks": ["no go file"]}), flush=True)
        return 4
    if args.scheduled:
        dogpile_warm.start_cache_warming(check_every=0.1)
        time.sleep(2.0)  # real time: the scheduler's cycles, across the fleet
        dogpile_warm.stop_cache_warming()
        details = dogpile_warm.get_warming_stats()["task_details"]
        print(json.dumps({"succeeded": details[0]["runs"], "skipped_tasks": []}), flush=True)
        return 0
    report = dogpile_warm.warm_critical_data()
    summary = {"succeeded": report["succeeded"], "skipped_tasks": report["skipped_tasks"]}
    print(json.dumps(summary), flush=True)
    return 0


def snapshot(args: argparse.Namespace) -> int:
    configure(args.backend, args.host, args.port, args.lock_timeout)

    @warmable(ttl=600, name="stampede.snap")
    def snap(n: int) -> int:
        increment(args.backend, args.host, args.port, args.counter)
        return n

    if not ready_then_released(args):
        print(json.dumps({"succeeded": 0, "skipped": -1}), flush=True)
        return 4
    report = dogpile_warm.get_warming_engine().warm_from_snapshot()
    print(json.dumps({"succeeded": report["succeeded"], "skipped": report["skipped"]}), flush=True)
    return 0


def hold(args: argparse.Namespace) -> int:
    configure(args.backend, args.host, args.port, args.lock_timeout)

    @warmable(ttl=60, name="stampede.hold")
    def fn() -> str:
        with open(args.started, "w"):
            pass
        time.sleep(HOLD_SLEEP)
        return "computed by the holder"

    fn()
    return 1  # never reached while the parent behaves: it kills us first


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "mode", choices=("stampede", "astampede", "logins", "critical", "snapshot", "hold")
    )
    parser.add_argument("--backend", required=True, choices=("memcached", "redis"))
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", required=True, type=int)
    parser.add_argument("--lock-timeout", type=int, default=None)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--counter")
    parser.add_argument("--ready")
    parser.add_argument("--go")
    parser.add_argument("--started")
    parser.add_argument("--scheduled", action="store_true")
    args = parser.parse_args(argv)
    modes = {
        "stampede": stampede,
        "astampede": astampede,
        "logins": logins,
        "critical": critical,
        "snapshot": snapshot,
        "hold": hold,
    }
    return modes[args.mode](args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
