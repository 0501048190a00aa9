"""The application a Celery test fleet runs: imported by tests/test_celery.py and by the
``celery worker`` processes it starts (``celery -A tests.celery_app worker``).

``DOGPILE_WARM_TEST_REDIS`` (``host:port``) is the suite's redis-server: the broker
(db 1), the result backend (db 2) and the cache region (db 0).
"""

from __future__ import annotations

import os
import time
from typing import Any

from celery import Celery

from dogpile_warm import CacheWarmingEngine, WarmingTask, warmable
from dogpile_warm.celery import CeleryWarming

HOST, PORT = os.environ["DOGPILE_WARM_TEST_REDIS"].split(":")
KEYS = 40
COMPUTE_SECONDS = 0.005

app = Celery(
    "tests.celery_app", broker=f"redis://{HOST}:{PORT}/1", backend=f"redis://{HOST}:{PORT}/2"
)
app.conf.update(worker_prefetch_multiplier=1, broker_connection_retry_on_startup=True)

engine = CacheWarmingEngine()
engine.configure_region(
    "default",
    "dogpile.cache.redis",
    arguments={"host": HOST, "port": int(PORT), "distributed_lock": True},
)


@warmable(
    ttl=600, priority=100, engine=engine, name="celery.page", warm_args=[(n,) for n in range(KEYS)]
)
def page(n: int) -> dict[str, Any]:
    """A critical value: which process computed it."""
    time.sleep(COMPUTE_SECONDS)  # real time: the computation a worker does
    return {"n": n, "pid": os.getpid()}


@warmable(ttl=600, priority=100, engine=engine, name="celery.flaky", warm_args=[(1,), (2,)])
def flaky(n: int) -> int:
    """Fails for 2, in every process."""
    if n == 2:
        raise ValueError("no price for 2")
    return n


engine.configure_region("local", "dogpile.cache.memory")


@warmable(ttl=600, priority=100, engine=engine, region="local", name="celery.local")
def local() -> int:
    """Kept in each process's memory: not something a worker can warm for another."""
    return os.getpid()


engine.register_task(
    WarmingTask("celery.plain", "plain", "celery:plain", lambda: os.getpid(), priority=100),
    is_critical=True,
)

warming = CeleryWarming(app, engine=engine, batch_size=8, timeout=60)
