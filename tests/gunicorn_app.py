"""A Flask app deployed as web teams deploy dogpile_warm: gunicorn, prefork workers, memcached.

Run by tests/test_gunicorn.py as ``gunicorn tests.gunicorn_app:app`` (never imported
by the test process itself). Environment:

- ``DW_GUNICORN_MEMCACHED``: the memcached ``host:port`` of the default region;
- ``DW_GUNICORN_MARKERS``: a directory where every computation of the catalog
  writes ``<pid>-<n>.start`` when it starts and ``<pid>-<n>.done`` when it ends
  (JSON: pid, thread, whether a request is being served, wall-clock time), so
  the test knows which process is computing it right now; and ``claims-<pid>``,
  one line per scheduler cycle that process claimed;
- ``DW_GUNICORN_WARM=1``: at import, warm the critical values and start the
  background scheduler (with ``--preload`` that runs in the gunicorn master,
  before the workers are forked);
- ``DW_GUNICORN_INTERVAL_MINUTES``: the scheduler's interval (default 1).

Every cached route answers JSON with the value, its creation time (``created``,
wall clock, when its computation started), its ``ttl``, the time the view got it
(``served_at``) and the pid of the worker that answered.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from flask import Flask, Response, has_request_context

import dogpile_warm

CATALOG_TTL = 3.0
CATALOG_COMPUTE = 1.0  # seconds one computation of the catalog takes
PRODUCT_TTL = 5.0
BASKET_TTL = 5.0

logging.basicConfig(
    stream=sys.stderr,
    level=logging.INFO,
    format="%(asctime)s [%(process)d] [%(threadName)s] %(levelname)s %(name)s: %(message)s",
)

MARKERS = Path(os.environ["DW_GUNICORN_MARKERS"])
_computations = itertools.count()
_marker_lock = threading.Lock()

dogpile_warm.configure(
    "default",
    "dogpile.cache.pymemcache",
    arguments={"url": os.environ["DW_GUNICORN_MEMCACHED"], "distributed_lock": True},
)


def _marker(name: str) -> None:
    """Write one marker file atomically (the test polls the directory)."""
    payload = {
        "pid": os.getpid(),
        "thread": threading.current_thread().name,
        "in_request": has_request_context(),
        "at": time.time(),
    }
    tmp = MARKERS / f".{name}.tmp"
    tmp.write_text(json.dumps(payload))
    tmp.rename(MARKERS / name)


@dogpile_warm.warmable(priority=100, tags={"catalog"}, ttl=CATALOG_TTL, name="app:catalog")
def catalog() -> dict[str, Any]:
    """The critical, slow value: about a second to compute."""
    created = time.time()
    with _marker_lock:
        n = next(_computations)
    _marker(f"{os.getpid()}-{n}.start")
    time.sleep(CATALOG_COMPUTE)
    _marker(f"{os.getpid()}-{n}.done")
    return {
        "kind": "catalog",
        "items": [f"item-{i}" for i in range(20)],
        "created": created,
        "computed_by": os.getpid(),
    }


@dogpile_warm.warmable(tags={"catalog"}, ttl=PRODUCT_TTL, name="app:product")
def product(product_id: int) -> dict[str, Any]:
    """A fast per-id value."""
    created = time.time()
    time.sleep(0.005)
    return {
        "kind": "product",
        "id": product_id,
        "name": f"product-{product_id}",
        "created": created,
        "computed_by": os.getpid(),
    }


@dogpile_warm.warmable(ttl=BASKET_TTL, user_arg="user", name="app:basket")
def basket(user: int) -> dict[str, Any]:
    """A fast per-user value."""
    created = time.time()
    time.sleep(0.005)
    return {
        "kind": "basket",
        "user": user,
        "items": [f"user-{user}-item-{i}" for i in range(3)],
        "created": created,
        "computed_by": os.getpid(),
    }


app = Flask(__name__)


def _answer(value: dict[str, Any], ttl: float) -> Response:
    served_at = time.time()  # first thing after the cached call returned
    body = {"value": value, "created": value["created"], "ttl": ttl}
    body.update(served_at=served_at, pid=os.getpid())
    return Response(json.dumps(body), mimetype="application/json")


@app.get("/catalog")
def catalog_route() -> Response:
    return _answer(catalog(), CATALOG_TTL)


@app.get("/product/<int:product_id>")
def product_route(product_id: int) -> Response:
    return _answer(product(product_id), PRODUCT_TTL)


@app.get("/basket/<int:user>")
def basket_route(user: int) -> Response:
    return _answer(basket(user), BASKET_TTL)


@app.get("/health")
def health_route() -> Response:
    return Response(json.dumps({"ok": True, "pid": os.getpid()}), mimetype="application/json")


@app.get("/stats")
def stats_route() -> Response:
    stats = {**dogpile_warm.get_warming_stats(), "pid": os.getpid()}
    return Response(json.dumps(stats, default=str), mimetype="application/json")


def _record_claims() -> None:
    """Test instrumentation: append each scheduler cycle this process claims to
    ``claims-<pid>`` in the marker directory (the scheduler itself is unchanged)."""
    from dogpile_warm._warming.scheduler import Scheduler

    claim = Scheduler._claim

    def claim_and_record(self: Scheduler, cycle: int) -> bool:
        claimed = claim(self, cycle)
        if claimed:
            with (MARKERS / f"claims-{os.getpid()}").open("a") as claims:
                claims.write(f"{cycle}\n")
        return claimed

    Scheduler._claim = claim_and_record  # type: ignore[method-assign]


if os.environ.get("DW_GUNICORN_WARM") == "1":
    _record_claims()
    dogpile_warm.warm_critical_data()
    dogpile_warm.start_cache_warming(
        interval_minutes=float(os.environ.get("DW_GUNICORN_INTERVAL_MINUTES", "1")),
        check_every=0.5,
    )
