"""Hit cost on Redis: dogpile_warm against a raw redis-py GET and dogpile's own decorator.

Starts a redis-server of its own on a free loopback port. Contenders, each
answering the same cached call from that server and returning the same
payload as :mod:`benchmarks.memcached_hit`'s: a raw ``redis.Redis.get`` plus
``pickle.loads`` (the floor: one round trip, one unpickle); dogpile.cache's
``cache_on_arguments`` on a ``dogpile.cache.redis`` region; dogpile_warm's
``@warmable`` on a region configured with dogpile_warm's defaults for that
backend (``configure``); and ``@warmable(region=...)`` on the user's own
dogpile Redis region, the same region dogpile's decorator uses. Raw keys are
as long as dogpile_warm's. More rows say where dogpile_warm's time goes: the
raw GET and unpickle through dogpile_warm's own GET
(``_backends/redis_get``: a connection from the client's pool, without the
client's ``execute_command``), which dogpile_warm reads plain Redis regions
with; and a raw GET of the value as dogpile_warm stores it (dogpile's
metadata header, then the entry with the key, its creation time, ttl, tags
and cost), with the socket timeout dogpile_warm sets, split and unpickled
as dogpile_warm does, through the client's GET and through dogpile_warm's:
what is left above the last is dogpile_warm's own work per hit. Goals: through
``configure`` at most 1.1x the raw GET; on the user's region at most 0.9x
dogpile's decorator on it. Each ratio
is the median, over rounds, of the ratio within a round (loopback round trips
are noisy). Run: ``python benchmarks/redis_hit.py [--quick]``.
"""

from __future__ import annotations

import pickle
import statistics
import sys
import timeit
from pathlib import Path
from typing import Any

import redis
from dogpile.cache import make_region

from dogpile_warm import CacheWarmingEngine, warmable
from dogpile_warm._backends import redis_get
from dogpile_warm._core.regions import CLIENT_TIMEOUT

try:
    from benchmarks._report import Row, format_table, make_parser
    from benchmarks._servers import ClientWatch, running_redis
    from benchmarks._timing import per_round
    from benchmarks.memcached_hit import CALLS, PAYLOAD, QUICK_CALLS, QUICK_REPEAT, REPEAT
except ModuleNotFoundError:  # run as a script: the repository root is not on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks._report import Row, format_table, make_parser
    from benchmarks._servers import ClientWatch, running_redis
    from benchmarks._timing import per_round
    from benchmarks.memcached_hit import CALLS, PAYLOAD, QUICK_CALLS, QUICK_REPEAT, REPEAT

RAW_FIGURE = "redis hit: time / raw GET+loads"
DOGPILE_FIGURE = "redis hit on one region: time / dogpile's"
RAW = "raw redis-py GET + pickle.loads"
OWN_GET = "raw GET + pickle.loads through dogpile_warm's GET"
RAW_STORED = "raw GET of the stored entry, with timeout"
OWN_STORED = "raw GET of the stored entry, with timeout, through dogpile_warm's GET"
DOGPILE = "dogpile cache_on_arguments"
CONFIGURED = "dogpile_warm (configure)"
ON_REGION = "dogpile_warm (the user's region)"
CONFIGURED_GOAL, ON_REGION_GOAL = 1.1, 0.9


def measure(url: str, calls: int, repeat: int) -> dict[str, list[float]]:
    """Seconds per hit of each contender in each of ``repeat`` rounds, against Redis at ``url``."""
    redis_url = f"redis://{url}/0"
    with ClientWatch() as clients:
        raw_key = "bench.redis_hit_rw|1"  # as long as dogpile_warm's "bench.redis_hit|1"
        raw = redis.Redis.from_url(redis_url)
        raw.set(raw_key, pickle.dumps(PAYLOAD))

        def raw_hit() -> Any:
            return pickle.loads(raw.get(raw_key))  # type: ignore[arg-type]

        def own_get_hit() -> Any:
            return pickle.loads(redis_get.get(raw, raw_key))

        stored = redis.Redis.from_url(redis_url, socket_timeout=CLIENT_TIMEOUT)

        region = clients.watch(
            make_region().configure(
                "dogpile.cache.redis", expiration_time=3600, arguments={"url": redis_url}
            )
        )

        @region.cache_on_arguments()
        def dogpile(x: int) -> Any:
            return PAYLOAD

        engine = CacheWarmingEngine()
        try:
            clients.watch(
                engine.configure_region(
                    "default", "dogpile.cache.redis", arguments={"url": redis_url}
                )
            )

            @warmable(ttl=3600, engine=engine, name="bench.redis_hit")
            def configured(x: int) -> Any:
                return PAYLOAD

            configured_key = configured.key_for(1)

            def stored_hit() -> Any:
                found: bytes = stored.get(configured_key)  # type: ignore[assignment]
                # b"<dogpile's json metadata>|<pickled (format, key, value, created, ...)>"
                return pickle.loads(found.partition(b"|")[2])[2]

            def own_stored_hit() -> Any:
                found: bytes = redis_get.get(stored, configured_key)
                return pickle.loads(found.partition(b"|")[2])[2]

            @warmable(ttl=1800, engine=engine, region=region, name="bench.redis_own")
            def on_region(x: int) -> Any:
                return PAYLOAD

            contenders = {
                RAW: raw_hit,
                DOGPILE: lambda: dogpile(1),
                CONFIGURED: lambda: configured(1),
                ON_REGION: lambda: on_region(1),
            }
            for hit in [*contenders.values(), *contenders.values()]:
                if hit() != PAYLOAD:  # the misses, then hits that must answer the payload
                    raise RuntimeError(f"a contender answered {hit()!r}")
            raw_reads = {OWN_GET: own_get_hit, RAW_STORED: stored_hit, OWN_STORED: own_stored_hit}
            for name, hit in raw_reads.items():  # configured(1) stored the entry
                if hit() != PAYLOAD:
                    raise RuntimeError(f"{name} answered {hit()!r}")
            contenders = {RAW: raw_hit, **raw_reads, **contenders}
            return per_round(
                {name: timeit.Timer(hit) for name, hit in contenders.items()}, calls, repeat
            )
        finally:
            engine.close()
            raw.close()
            stored.close()


def _median_ratio(times: list[float], base: list[float]) -> float:
    return statistics.median(t / b for t, b in zip(times, base, strict=True))


def run(quick: bool) -> list[Row]:
    """Rows against the raw GET for every contender, and the user's-region row against
    dogpile's decorator on the same region."""
    calls, repeat = (QUICK_CALLS, QUICK_REPEAT) if quick else (CALLS, REPEAT)
    with running_redis() as url:
        rounds = measure(url, calls, repeat)
    rows = [
        Row(
            name,
            RAW_FIGURE,
            _median_ratio(times, rounds[RAW]),
            CONFIGURED_GOAL if name == CONFIGURED else None,
            detail=f"{min(times) * 1e6:.1f} us/hit (best round)",
        )
        for name, times in rounds.items()
    ]
    rows.append(
        Row(
            ON_REGION,
            DOGPILE_FIGURE,
            _median_ratio(rounds[ON_REGION], rounds[DOGPILE]),
            ON_REGION_GOAL,
            detail=f"{min(rounds[ON_REGION]) * 1e6:.1f} vs {min(rounds[DOGPILE]) * 1e6:.1f} us/hit",
        )
    )
    return rows


def main(argv: list[str] | None = None) -> int:
    args = make_parser(__doc__).parse_args(argv)
    print(format_table(run(args.quick)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
