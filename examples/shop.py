"""A module for the dogpile-warm command: the README's "The dogpile-warm command" runs it.

    cd examples && dogpile-warm warm shop --all && dogpile-warm stats shop

Importing it registers four warmable functions on the default engine and
reads a few keys, standing in for the traffic a real application would see.
Run as a script, it warms its critical data and prints the report.

The default region is in memory, so it dies with each command's process.
With ``SHOP_MEMCACHED_URL=host:port`` set it is memcached instead: values and
snapshots (``dogpile-warm snapshot shop``, then ``dogpile-warm warm shop
--from-snapshot`` in another process) are shared between processes.
"""

from __future__ import annotations

import os

import dogpile_warm
from dogpile_warm import warm_critical_data, warmable

if os.environ.get("SHOP_MEMCACHED_URL"):
    dogpile_warm.configure(
        "default",
        "dogpile.cache.pymemcache",
        arguments={"url": os.environ["SHOP_MEMCACHED_URL"], "distributed_lock": True},
    )


@warmable(priority=150, tags={"catalog"}, name="shop:catalog")
def catalog() -> list[str]:
    return ["espresso", "latte", "flat white"]


@warmable(priority=50, tags={"catalog"}, name="shop:product", warm_args=[(1,), (2,)])
def product(product_id: int) -> dict[str, int]:
    return {"id": product_id}


@warmable(priority=60, name="shop:basket", user_arg="user_id")
def basket(user_id: int) -> list[str]:
    return []


@warmable(priority=120, name="shop:opening_hours")
def opening_hours() -> str:
    return "08:00-18:00"


for product_id in (1, 1, 2):  # reads, so that stats and hot-keys have figures
    product(product_id)


if __name__ == "__main__":
    report = warm_critical_data()
    for row in report["results"]:
        print(f"{row['key']} ok={row['success']} {row['duration_ms']:.2f} ms")
    print(f"succeeded={report['succeeded']} failed={report['failed']}")
