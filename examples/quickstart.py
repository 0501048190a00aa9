"""Quick start: decorate, call, warm the critical data, read the stats, invalidate by tag.

Run it: ``python examples/quickstart.py``. It uses the process's default
engine and its in-memory region, so it needs no server. Every claim it
prints is also asserted, so the script fails loudly if the library breaks.
"""

from __future__ import annotations

import time
from collections import Counter

from dogpile.cache.api import NO_VALUE

import dogpile_warm
from dogpile_warm import signals, warmable

# How often each function really ran (rather than being answered from the cache).
computed: Counter[str] = Counter()


@warmable(priority=100, ttl=3600, tags={"catalog"})
def load_catalog() -> list[str]:
    """Critical (priority >= 100): warmed by warm_critical_data()."""
    computed["load_catalog"] += 1
    time.sleep(0.02)  # stands in for a slow query
    return ["espresso", "latte", "flat white"]


@warmable(priority=120, ttl=600, tags={"prices"}, warm_args=[("EUR",), ("USD",)])
def price_list(currency: str) -> dict[str, float]:
    """Critical and takes an argument: warm_args names the calls to warm."""
    computed[f"price_list({currency})"] += 1
    rate = {"EUR": 1.0, "USD": 1.1}[currency]
    return {"espresso": round(2.5 * rate, 2), "latte": round(3.2 * rate, 2)}


@warmable(priority=10, ttl=60)
def search_suggestions(prefix: str, limit: int = 3) -> list[str]:
    """Nice to have: never warmed up front, cached on first call."""
    computed["search_suggestions"] += 1
    return [item for item in load_catalog() if item.startswith(prefix)][:limit]


def main() -> None:
    misses: list[str] = []

    def on_miss(sender: object, *, key: str, duration_ms: float, **_: object) -> None:
        misses.append(key)

    signals.cache_miss.connect(on_miss)

    print("1. warm_critical_data() warms critical tasks, highest priority first:")
    report = dogpile_warm.warm_critical_data()
    for row in report["results"]:
        print(f"   {row['key']:<45} ok={row['success']}  {row['duration_ms']:6.1f} ms")
    assert report["succeeded"] == 3 and report["failed"] == 0, report
    order = [r["task_id"] for r in report["results"]]
    assert order == [price_list.task.task_id] * 2 + [load_catalog.task.task_id], order
    assert computed == {"load_catalog": 1, "price_list(EUR)": 1, "price_list(USD)": 1}

    print("2. Calls after warming are cache hits; the functions do not run again:")
    assert load_catalog() == ["espresso", "latte", "flat white"]
    assert price_list("USD")["latte"] == 3.52
    assert price_list(currency="EUR") == price_list("EUR")  # positional or keyword: one key
    assert computed["load_catalog"] == 1 and computed["price_list(USD)"] == 1
    assert misses == []
    print("   load_catalog(), price_list('USD'), price_list(currency='EUR'): no computation")

    print("3. A function that was not warmed misses once, then hits:")
    assert search_suggestions("l") == ["latte"]
    assert search_suggestions("l", limit=3) == ["latte"]  # the default fills in: same key
    assert computed["search_suggestions"] == 1
    assert misses == [search_suggestions.key_for("l")]
    print(f"   misses so far: {misses}")

    stats = dogpile_warm.get_warming_stats()
    print(
        f"4. Stats: {stats['tasks']} tasks ({stats['critical_tasks']} critical), "
        f"{stats['hits']} hits, {stats['misses']} misses, hit ratio {stats['hit_ratio']:.0%}"
    )
    # Hits: load_catalog, price_list x3, search_suggestions x1, plus load_catalog
    # inside search_suggestions. Miss: the first search_suggestions call.
    assert (stats["tasks"], stats["critical_tasks"]) == (3, 2), stats
    assert (stats["hits"], stats["misses"]) == (6, 1), stats

    print("5. invalidate_by_tags('catalog') drops every value tagged 'catalog':")
    assert load_catalog.get() is not NO_VALUE
    assert dogpile_warm.invalidate_by_tags("catalog") == 1
    assert load_catalog.get() is NO_VALUE
    assert price_list.get("EUR") is not NO_VALUE  # other tags are untouched
    load_catalog()
    assert computed["load_catalog"] == 2
    print("   load_catalog was recomputed on the next call; price_list stayed cached")

    signals.cache_miss.disconnect(on_miss)
    print("quickstart OK")


if __name__ == "__main__":
    main()
