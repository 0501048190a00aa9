"""A Flask app exporting dogpile_warm's Prometheus metrics under gunicorn, in
prometheus_client's multiprocess mode: run by tests/test_gunicorn.py as
``gunicorn tests.gunicorn_metrics_app:app`` with ``PROMETHEUS_MULTIPROC_DIR`` set,
never imported by the test process.

Each worker counts its own reads of ``metrics.value`` (a memory region of its own);
``/metrics``, served by whichever worker, adds up every worker's counters, as
prometheus_client documents for gunicorn.
"""

from __future__ import annotations

import os

from flask import Flask, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

import dogpile_warm
from dogpile_warm.contrib.prometheus import PrometheusMetrics

metrics = PrometheusMetrics().connect()


@dogpile_warm.warmable(ttl=600, name="metrics.value")
def value(n: int) -> int:
    return n


app = Flask(__name__)


@app.route("/health")
def health() -> dict[str, int]:
    return {"pid": os.getpid()}


@app.route("/value/<int:n>")
def read(n: int) -> dict[str, int]:
    return {"value": value(n), "pid": os.getpid()}


@app.route("/metrics")
def scrape() -> Response:
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
