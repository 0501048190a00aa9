"""Hit cost on memcached: dogpile_warm against a raw pymemcache get and dogpile's own decorator.

Starts a memcached of its own on a free loopback port. Contenders, each
answering the same cached call from that server and returning the same
payload: a raw ``pymemcache`` ``Client.get`` plus ``pickle.loads`` (the
floor: one round trip, one unpickle), the same through pymemcache's
``HashClient`` with its pickle serde (the client dogpile's backend uses: it
hashes every key in pure Python), dogpile.cache's ``cache_on_arguments`` on a
``dogpile.cache.pymemcache`` region, and dogpile_warm's ``@warmable`` on a
region configured with dogpile_warm's defaults for that backend. Raw keys are
as long as dogpile_warm's, since hashing cost grows with key length. Each row
is a contender's time per hit as a ratio to the raw get; the goal for
dogpile_warm is 1.1.

More rows say where dogpile_warm's time goes. The raw get with the client
timeouts dogpile_warm sets (it fails fast on a hung server; a socket with a
timeout polls before every send and receive). The same get and unpickle
through dogpile_warm's own single-key get (``_backends/memcached_get``), which
dogpile_warm's backend reads with instead of pymemcache's ``Client.get``: the
floor dogpile_warm's hit now stands on. And a raw get of the entry as
dogpile_warm stores it (a plain tuple carrying the key, its creation time,
ttl, tags and cost), through pymemcache's get and through dogpile_warm's,
with those timeouts and dogpile_warm's serde: what is left above the last is
dogpile_warm's own work per hit.
Run: ``python benchmarks/memcached_hit.py [--quick]``.
"""

from __future__ import annotations

import pickle
import statistics
import sys
import timeit
from pathlib import Path
from typing import Any

from dogpile.cache import make_region
from pymemcache import serde
from pymemcache.client.base import Client
from pymemcache.client.hash import HashClient

from dogpile_warm import CacheWarmingEngine, warmable
from dogpile_warm._backends import memcached_get
from dogpile_warm._backends.memcached import pickle_serde
from dogpile_warm._core.regions import CLIENT_TIMEOUT

try:
    from benchmarks._report import Row, format_table, make_parser
    from benchmarks._servers import ClientWatch, running_memcached
    from benchmarks._timing import per_round
except ModuleNotFoundError:  # run as a script: the repository root is not on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks._report import Row, format_table, make_parser
    from benchmarks._servers import ClientWatch, running_memcached
    from benchmarks._timing import per_round

FIGURE = "memcached hit: time / raw get+loads"
RAW = "raw pymemcache get + pickle.loads"
RAW_HASH = "raw pymemcache HashClient get"
RAW_TIMEOUTS = "raw get + pickle.loads, with timeouts"
OWN_GET = "raw get + pickle.loads, with timeouts, through dogpile_warm's get"
RAW_STORED = "raw get of the stored entry, with timeouts"
OWN_STORED = "raw get of the stored entry, with timeouts, through dogpile_warm's get"
DOGPILE = "dogpile cache_on_arguments"
WARM = "dogpile_warm"
GOAL = 1.1
CALLS, REPEAT = 500, 31  # many short rounds: network jitter makes a best-of noisy
QUICK_CALLS, QUICK_REPEAT = 50, 2

# What every contender returns: a small record, as a cached row or API answer might be.
PAYLOAD: dict[str, Any] = {
    "id": 1,
    "name": "catalog entry",
    "tags": ["a", "b", "c"],
    "prices": [9.99, 19.99, 29.99],
    "stock": {str(i): i for i in range(20)},
}


def measure(url: str, calls: int, repeat: int) -> dict[str, list[float]]:
    """Seconds per hit of each contender in each of ``repeat`` rounds, against memcached at ``url``."""
    host, port = url.rsplit(":", 1)
    with ClientWatch() as clients:
        # As long as dogpile_warm's key "bench.memcached_hit|1".
        raw_key, hash_key = "bench.memcached_raw|1", "bench.memcached_hsh|1"
        raw = clients.adopt(Client((host, int(port))))
        raw.set(raw_key, pickle.dumps(PAYLOAD))
        hashed = clients.adopt(HashClient([url], serde=serde.pickle_serde))
        hashed.set(hash_key, PAYLOAD)

        def raw_hit() -> Any:
            return pickle.loads(raw.get(raw_key))

        timeouts = {"timeout": CLIENT_TIMEOUT, "connect_timeout": CLIENT_TIMEOUT}
        timed = clients.adopt(Client((host, int(port)), **timeouts))

        def timed_hit() -> Any:
            return pickle.loads(timed.get(raw_key))

        def own_get_hit() -> Any:
            return pickle.loads(memcached_get.get(timed, raw_key))

        stored = clients.adopt(Client((host, int(port)), serde=pickle_serde, **timeouts))

        def hash_hit() -> Any:
            return hashed.get(hash_key)

        region = clients.watch(
            make_region().configure(
                "dogpile.cache.pymemcache", expiration_time=3600, arguments={"url": url}
            )
        )

        @region.cache_on_arguments()
        def dogpile(x: int) -> Any:
            return PAYLOAD

        engine = CacheWarmingEngine()
        try:
            clients.watch(
                engine.configure_region(
                    "default",
                    "dogpile.cache.pymemcache",
                    arguments={"url": url, "distributed_lock": True},
                )
            )

            @warmable(ttl=3600, engine=engine, name="bench.memcached_hit")
            def warm(x: int) -> Any:
                return PAYLOAD

            warm_key = warm.key_for(1)

            def stored_hit() -> Any:
                return stored.get(warm_key).payload[2]  # (format, key, value, created, ...)

            def own_stored_hit() -> Any:
                return memcached_get.get(stored, warm_key).payload[2]

            for check in (raw_hit(), hash_hit(), dogpile(1), warm(1), dogpile(1), warm(1)):
                if check != PAYLOAD:  # the misses, then hits that must answer the payload
                    raise RuntimeError(f"a contender answered {check!r}")
            # warm(1) stored the entry
            for check in (timed_hit(), own_get_hit(), stored_hit(), own_stored_hit()):
                if check != PAYLOAD:
                    raise RuntimeError(f"a raw read answered {check!r}")
            timers = {
                RAW: timeit.Timer(raw_hit),
                RAW_TIMEOUTS: timeit.Timer(timed_hit),
                OWN_GET: timeit.Timer(own_get_hit),
                RAW_STORED: timeit.Timer(stored_hit),
                OWN_STORED: timeit.Timer(own_stored_hit),
                RAW_HASH: timeit.Timer(hash_hit),
                DOGPILE: timeit.Timer(lambda: dogpile(1)),
                WARM: timeit.Timer(lambda: warm(1)),
            }
            return per_round(timers, calls, repeat)
        finally:
            engine.close()


def run(quick: bool) -> list[Row]:
    """One row per contender: the median, over rounds, of its time per hit over the raw
    get + unpickle's in the same round."""
    calls, repeat = (QUICK_CALLS, QUICK_REPEAT) if quick else (CALLS, REPEAT)
    with running_memcached() as url:
        rounds = measure(url, calls, repeat)
    base = rounds[RAW]
    return [
        Row(
            name,
            FIGURE,
            statistics.median(t / b for t, b in zip(times, base, strict=True)),
            GOAL if name == WARM else None,
            detail=f"{min(times) * 1e6:.1f} us/hit (best round)",
        )
        for name, times in rounds.items()
    ]


def main(argv: list[str] | None = None) -> int:
    args = make_parser(__doc__).parse_args(argv)
    print(format_table(run(args.quick)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
