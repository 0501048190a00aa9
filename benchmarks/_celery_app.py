"""The application benchmarks/celery_warm.py's Celery workers serve (and its caller uses).

``DOGPILE_WARM_BENCH_REDIS`` (``host:port``): broker (db 1), results (db 2), cache (db 0);
``DOGPILE_WARM_BENCH_KEYS``: how many keys ``bench.value`` warms, 5 ms each.
"""

from __future__ import annotations

import os
import time

from celery import Celery

from dogpile_warm import CacheWarmingEngine, warmable
from dogpile_warm.celery import CeleryWarming

HOST, PORT = os.environ["DOGPILE_WARM_BENCH_REDIS"].split(":")
KEYS = int(os.environ.get("DOGPILE_WARM_BENCH_KEYS", "10000"))
COMPUTE_SECONDS = 0.005

app = Celery("bench", broker=f"redis://{HOST}:{PORT}/1", backend=f"redis://{HOST}:{PORT}/2")
app.conf.update(worker_prefetch_multiplier=1, broker_connection_retry_on_startup=True)

engine = CacheWarmingEngine()
engine.configure_region(
    "default",
    "dogpile.cache.redis",
    arguments={"host": HOST, "port": int(PORT), "distributed_lock": True},
)


@warmable(
    ttl=3600, priority=100, engine=engine, name="bench.value", warm_args=[(n,) for n in range(KEYS)]
)
def value(n: int) -> int:
    time.sleep(COMPUTE_SECONDS)  # the computation: 5 ms of waiting, as on a database
    return n


warming = CeleryWarming(app, engine=engine, batch_size=25, timeout=600)
