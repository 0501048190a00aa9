"""A FastAPI app on dogpile_warm: ``async def`` functions cached, critical data warmed at
startup through the app's lifespan, a user's data preloaded on login.

Run it: ``python examples/fastapi_app.py`` (needs the ``fastapi`` extra:
``pip install 'dogpile_warm[fastapi]'``). It drives the app through FastAPI's
``TestClient``, which runs the lifespan, and asserts each claim, so it fails
loudly if the library breaks. To serve it for real, install uvicorn and run
``uvicorn fastapi_app:app`` from examples/.
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

try:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
except ModuleNotFoundError as missing:
    sys.exit(f"examples/fastapi_app.py: needs {missing.name}: pip install 'dogpile_warm[fastapi]'")

from dogpile_warm import CacheWarmingEngine, warmable

engine = CacheWarmingEngine()  # an in-memory region; configure_region() for memcached or Redis
computed: Counter[str] = Counter()


@warmable(priority=100, ttl=300, tags={"catalog"}, engine=engine)
async def catalog() -> list[str]:
    """The catalog every page shows: critical, warmed before the first request."""
    computed["catalog"] += 1
    await asyncio.sleep(0.01)  # stands in for a database query
    return ["espresso", "latte", "flat white"]


@warmable(priority=100, ttl=300, tags={"catalog"}, engine=engine, warm_args=[(1,), (2,)])
async def product(product_id: int) -> dict[str, Any]:
    """The best sellers' pages are critical too: warm_args names which ones."""
    computed[f"product:{product_id}"] += 1
    await asyncio.sleep(0.01)
    return {"id": product_id, "name": f"product {product_id}"}


@warmable(priority=50, ttl=600, user_arg="user_id", engine=engine)
async def dashboard(user_id: int) -> dict[str, Any]:
    """A user's own page: preloaded when the user logs in."""
    computed[f"dashboard:{user_id}"] += 1
    await asyncio.sleep(0.01)
    return {"user_id": user_id, "orders": [f"order {n} of {user_id}" for n in range(3)]}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # The critical values are computed on this loop before the first request is served.
    app.state.startup_report = await engine.awarm_critical_data()
    yield
    engine.close()


app = FastAPI(lifespan=lifespan)


@app.get("/catalog")
async def get_catalog() -> list[str]:
    return await catalog()


@app.get("/products/{product_id}")
async def get_product(product_id: int) -> dict[str, Any]:
    return await product(product_id)


@app.post("/login/{user_id}")
async def login(user_id: int) -> dict[str, Any]:
    # A real app checks the password first; then the user's pages are warmed
    # before they ask for them (a second login within 5 minutes is skipped).
    report = await engine.awarm_user_data(user_id)
    return {"preloaded": report["keys_warmed"], "skipped": report["skipped"]}


@app.get("/users/{user_id}/dashboard")
async def get_dashboard(user_id: int) -> dict[str, Any]:
    return await dashboard(user_id)


@app.post("/admin/catalog-changed")
async def catalog_changed() -> dict[str, int]:
    # invalidate_by_tags talks to the backend: off the loop for memcached or Redis.
    return {"tags": await asyncio.to_thread(engine.invalidate_by_tags, "catalog")}


def main() -> None:
    with TestClient(app) as client:  # runs the lifespan: startup warming first
        startup = app.state.startup_report
        print(f"1. startup warmed {startup['succeeded']} keys, {startup['failed']} failed")
        assert startup["succeeded"] == 3 and startup["failed"] == 0
        assert computed == {"catalog": 1, "product:1": 1, "product:2": 1}

        assert client.get("/catalog").json() == ["espresso", "latte", "flat white"]
        assert client.get("/products/2").json()["name"] == "product 2"
        print("2. the first requests were served from the cache: nothing recomputed")
        assert computed == {"catalog": 1, "product:1": 1, "product:2": 1}

        login = client.post("/login/7").json()
        print(f"3. user 7 logged in: preloaded {login['preloaded']}")
        assert login == {"preloaded": ["__main__:dashboard|7"], "skipped": False}
        assert client.get("/users/7/dashboard").json()["user_id"] == 7
        assert computed["dashboard:7"] == 1
        assert client.post("/login/7").json()["skipped"] is True
        print("4. user 7's dashboard came from the cache; a second login was skipped")

        assert client.post("/admin/catalog-changed").json() == {"tags": 1}
        client.get("/catalog")
        assert computed["catalog"] == 2 and computed["dashboard:7"] == 1
        print("5. after the catalog changed, the next request recomputed it once")

        stats = engine.get_stats()
        print(f"6. {stats['hits']} hits, {stats['misses']} misses")
        assert stats["misses"] == 1  # only the read after the invalidation missed
    print("fastapi_app OK")


if __name__ == "__main__":
    main()
