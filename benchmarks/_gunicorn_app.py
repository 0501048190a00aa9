"""The WSGI app ``benchmarks/gunicorn_load.py`` serves under gunicorn: products on memcached.

Deployed as the README's gunicorn section says: the default region on a shared
memcached with the distributed lock, the background scheduler (pattern warming
on) started at import, which with ``--preload`` is the master, each worker then
running its own. ``GET /product/<id>`` answers ``product(id)``: ttl 5 s, 5 ms
to compute. ``GET /catalog`` answers ``catalog()``: critical (warmed by the
scheduler every 3 s), ttl 3 s, 0.2 s to compute. Both with dogpile_warm's
default refresh-ahead.

Environment: ``DW_BENCH_MEMCACHED``, the memcached ``host:port``;
``DW_BENCH_LOG``, a directory where each process appends one line per product
computation to ``computes-<pid>`` (``<key> <start> <thread>``, wall clock) and
one line per signalled outcome to ``outcomes-<pid>`` (``<signal> <time> <key>``).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import dogpile_warm
from dogpile_warm import signals

PRODUCT_TTL = 5.0
PRODUCT_COMPUTE = 0.005
CATALOG_TTL = 3.0
CATALOG_COMPUTE = 0.2
INTERVAL_MINUTES = 0.05  # the scheduler warms the catalog every 3 s

LOG = Path(os.environ["DW_BENCH_LOG"])

dogpile_warm.configure(
    "default",
    "dogpile.cache.pymemcache",
    arguments={"url": os.environ["DW_BENCH_MEMCACHED"], "distributed_lock": True},
)


def _append(name: str, line: str) -> None:
    # One short write in append mode per line: lines from threads never interleave.
    with (LOG / f"{name}-{os.getpid()}").open("a") as log:
        log.write(line)


@dogpile_warm.warmable(ttl=PRODUCT_TTL, name="bench:product")
def product(product_id: int) -> dict[str, Any]:
    started = time.time()
    time.sleep(PRODUCT_COMPUTE)
    _append("computes", f"product:{product_id} {started!r} {threading.current_thread().name}\n")
    return {"id": product_id, "name": f"product-{product_id}", "created": started}


@dogpile_warm.warmable(priority=100, ttl=CATALOG_TTL, name="bench:catalog")
def catalog() -> dict[str, Any]:
    """Critical: the scheduler warms it every interval, whoever else computes it."""
    started = time.time()
    time.sleep(CATALOG_COMPUTE)
    _append("computes", f"catalog {started!r} {threading.current_thread().name}\n")
    return {"items": [f"item-{i}" for i in range(20)], "created": started}


def _outcome(signal: str) -> Callable[..., None]:
    def receiver(sender: Any, **kwargs: Any) -> None:
        _append("outcomes", f"{signal} {time.time()!r} {kwargs['key']}\n")

    return receiver


# Kept referenced: blinker holds receivers weakly by default.
RECEIVERS = {name: _outcome(name) for name in ("cache_miss", "warmed", "refreshed")}
for _name, _receiver in RECEIVERS.items():
    getattr(signals, _name).connect(_receiver)


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path: str = environ.get("PATH_INFO", "")
    if path == "/health":
        body = str(os.getpid()).encode()
    elif path == "/catalog":
        body = repr(catalog()).encode()
    elif path.startswith("/product/"):
        body = repr(product(int(path.rsplit("/", 1)[1]))).encode()
    else:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found"]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]


dogpile_warm.start_cache_warming(interval_minutes=INTERVAL_MINUTES, check_every=0.5)
