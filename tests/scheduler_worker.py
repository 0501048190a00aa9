"""One process of a fleet running the background scheduler, for tests/test_scheduler.py.

Usage: ``python scheduler_worker.py BACKEND ADDRESS SECONDS CHECK_EVERY``

BACKEND is ``memcached`` (ADDRESS ``host:port``) or ``redis`` (ADDRESS
``host:port``). The worker configures the default region on that server,
starts the scheduler with cycles every CHECK_EVERY seconds, and prints
``@ cycle N`` (flushed at once) for every cycle this process claimed and
ran. After SECONDS it stops the scheduler and prints ``@ done SKIPPED``,
the number of cycles another process claimed first.
"""

from __future__ import annotations

import sys
import threading
import time

import dogpile_warm
from dogpile_warm._warming.scheduler import Scheduler


def main(backend: str, address: str, seconds: float, check_every: float) -> int:
    host, port = address.rsplit(":", 1)
    if backend == "memcached":
        dogpile_warm.configure(
            "default",
            "dogpile.cache.pymemcache",
            arguments={"url": address, "distributed_lock": True, "lock_timeout": 5},
        )
    else:
        dogpile_warm.configure(
            "default",
            "dogpile.cache.redis",
            arguments={"host": host, "port": int(port), "distributed_lock": True},
        )
    out = threading.Lock()
    claim = Scheduler._claim

    def claim_and_say(self: Scheduler, cycle: int) -> bool:
        claimed = claim(self, cycle)
        if claimed:
            with out:
                sys.stdout.write(f"@ cycle {cycle}\n")
                sys.stdout.flush()
        return claimed

    Scheduler._claim = claim_and_say  # type: ignore[method-assign]
    engine = dogpile_warm.get_warming_engine()
    engine.start(interval_minutes=60, check_every=check_every)
    time.sleep(seconds)  # real time: the scheduler runs its cycles for this long
    figures = engine.get_stats()["scheduler"]
    assert figures is not None
    skipped = figures["cycles_skipped"]
    dogpile_warm.stop_cache_warming(timeout=5)
    with out:
        sys.stdout.write(f"@ done {skipped}\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])))
