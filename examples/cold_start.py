"""Cold-start warmup: save the hot set before a restart, warm it back after.

Shows: one engine (the process before the restart) serves reads and saves
its hot set with ``engine.save_hot_set``; a second engine with an empty cache (the
process after the restart) warms those keys back with
``engine.warm_from_snapshot``, hottest first, at most 200 keys per second, so its
first reads are hits. The snapshot lives in a region both share (memcached
or Redis in production; one in-memory region here); per-user keys are left
to ``warm_user_data`` on login.

Run it: ``python examples/cold_start.py`` (in-memory regions, no server).
Each claim is asserted, so the script fails loudly if the library breaks.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from dogpile.cache import make_region

import dogpile_warm

# Where the snapshot survives the restart: the shared backend.
snapshots = make_region(name="snapshots").configure("dogpile.cache.memory")

computed: Counter[str] = Counter()


def register(engine: dogpile_warm.CacheWarmingEngine) -> dict[str, Any]:
    """The application's cached functions, as each process defines them at start-up."""

    @dogpile_warm.warmable(priority=50, ttl=600, name="shop:product", engine=engine)
    def product(product_id: int) -> dict[str, Any]:
        computed[f"product({product_id})"] += 1
        return {"id": product_id, "name": f"product {product_id}"}

    @dogpile_warm.warmable(priority=80, ttl=600, name="shop:category", engine=engine)
    def category(name: str) -> list[int]:
        computed[f"category({name!r})"] += 1
        return [1, 2, 3]

    @dogpile_warm.warmable(
        priority=60, ttl=600, name="shop:basket", user_arg="user_id", engine=engine
    )
    def basket(user_id: int) -> list[int]:
        computed[f"basket({user_id})"] += 1
        return []

    return {"product": product, "category": category, "basket": basket}


def main() -> None:
    print("1. Before the restart: the process serves reads, then saves its hot set")
    before = dogpile_warm.CacheWarmingEngine()
    shop = register(before)
    reads = [("product", 1)] * 5 + [("product", 2)] * 3 + [("category", "tea")] * 3
    reads += [("product", 3), ("basket", 7)]
    for name, arg in reads:
        shop[name](arg)
    saved = before.save_hot_set(top_n=100, region=snapshots)
    print(f"   saved {saved['saved']} keys ({saved['bytes']} bytes) under {saved['key']!r}")
    for skipped in saved["skipped"]:
        print(f"   skipped {skipped['key']}: {skipped['reason']}")
    assert saved["saved"] == 4 and saved["stored"], saved
    assert [s["key"] for s in saved["skipped"]] == ["shop:basket|7"], saved
    before.close()

    print("2. After the restart: a new engine, empty cache, warms from the snapshot")
    computed.clear()
    after = dogpile_warm.CacheWarmingEngine(max_workers=2)
    shop = register(after)
    report = after.warm_from_snapshot(region=snapshots, rate_limit=200)
    for row in report["results"]:
        print(f"   {row['key']:<22} ok={row['success']}  {row['duration_ms']:5.1f} ms")
    order = [row["key"] for row in report["results"]]
    # Hottest first; product|2 and category|'tea' were read 3 times each, and
    # among equals the higher priority (category, 80) goes first, though read later.
    assert order == [
        "shop:product|1",
        "shop:category|'tea'",
        "shop:product|2",
        "shop:product|3",
    ], order
    assert (report["succeeded"], report["failed"]) == (4, 0), report

    print("3. The first reads after the restart are cache hits")
    assert shop["product"](1)["name"] == "product 1"
    assert shop["category"]("tea") == [1, 2, 3]
    stats = after.get_stats()
    assert (stats["hits"], stats["misses"]) == (2, 0), stats
    assert computed["product(1)"] == 1  # computed once, by the warm-up
    print(
        f"   warmed {report['succeeded']} keys in {report['total_duration_ms']:.1f} ms; "
        f"{stats['hits']} hits, {stats['misses']} misses since the restart"
    )
    after.close()
    print("cold_start OK")


if __name__ == "__main__":
    main()
