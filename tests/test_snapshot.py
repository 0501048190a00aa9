"""Cold-start snapshots: save the hot set in one engine, warm it back in a fresh one."""

from __future__ import annotations

import base64
import os
import pickle
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from dogpile.cache import CacheRegion, make_region
from dogpile.cache.api import NO_VALUE

from dogpile_warm import CacheWarmingEngine, warmable
from dogpile_warm._warming import snapshot
from dogpile_warm._warming.snapshot import MAX_SNAPSHOT_BYTES, MAX_TOP_N, SNAPSHOT_KEY
from dogpile_warm.reports import ResultRow
from tests.servers import ClientCloser, Server


@dataclass(frozen=True)
class Sku:
    """An argument type that pickles by reference to this module."""

    code: str


class Shop:
    """The same cached functions, registered on one engine: one "process" of the app."""

    def __init__(self, engine: CacheWarmingEngine, *, category_per_user: bool = False) -> None:
        self.engine = engine
        self.computed: list[str] = []
        self.lock = threading.Lock()

        @warmable(priority=50, name="product", engine=engine)
        def product(product_id: Any) -> str:
            return self._compute(f"product({product_id!r})")

        @warmable(
            priority=80,
            name="category",
            engine=engine,
            user_arg="name" if category_per_user else None,
        )
        def category(name: str) -> str:
            return self._compute(f"category({name!r})")

        @warmable(priority=60, name="basket", user_arg="user_id", engine=engine)
        def basket(user_id: int) -> str:
            return self._compute(f"basket({user_id!r})")

        self.product = product
        self.category = category
        self.basket = basket

    def _compute(self, what: str) -> str:
        with self.lock:
            self.computed.append(what)
        return what

    def read(self, fn: Callable[..., Any], arg: Any, times: int) -> None:
        for _ in range(times):
            fn(arg)


@pytest.fixture
def snapshots() -> CacheRegion:
    """A memory region standing in for the backend that outlives a restart."""
    return make_region(name="snapshots").configure("dogpile.cache.memory")


@pytest.fixture
def engines() -> Iterator[Callable[..., CacheWarmingEngine]]:
    """Makes engines (each a "process" with its own empty memory cache), closed afterwards."""
    made: list[CacheWarmingEngine] = []

    def make(**kwargs: Any) -> CacheWarmingEngine:
        engine = CacheWarmingEngine(**kwargs)
        made.append(engine)
        return engine

    yield make
    for engine in made:
        engine.close()


@pytest.fixture
def on_memcached(
    memcached_server: Server, client_closer: ClientCloser
) -> Iterator[Callable[..., CacheWarmingEngine]]:
    """Makes engines whose default region is the suite's real memcached (emptied first)."""
    memcached_server.flush()
    made: list[CacheWarmingEngine] = []

    def make(**kwargs: Any) -> CacheWarmingEngine:
        engine = CacheWarmingEngine(**kwargs)
        engine.configure_region(
            "default",
            "dogpile.cache.pymemcache",
            arguments={"url": memcached_server.url, "distributed_lock": True},
        )
        client_closer.watch(engine.region)
        made.append(engine)
        return engine

    yield make
    for engine in made:
        engine.close()  # before client_closer closes the connections


class FakeTime:
    """A monotonic clock that only moves when ``sleep`` is called."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Unpicklable:
    """An argument with a repr of its own that refuses to be pickled."""

    def __repr__(self) -> str:
        return "Unpicklable()"

    def __reduce__(self) -> Any:
        raise TypeError("Unpicklable objects cannot be pickled")


# -- saving -------------------------------------------------------------------------
def test_save_stores_the_hot_keys_with_heat_priority_and_arguments(
    engines: Callable[..., CacheWarmingEngine], snapshots: CacheRegion
) -> None:
    """save_hot_set stores each hot key's task id, arguments, access count and priority."""
    shop = Shop(engines())
    shop.read(shop.product, 1, 3)
    shop.read(shop.category, "tea", 2)
    result = shop.engine.save_hot_set(region=snapshots)
    assert result["saved"] == 2 and result["stored"] and result["skipped"] == []
    assert 0 < result["bytes"] <= MAX_SNAPSHOT_BYTES and result["key"] == SNAPSHOT_KEY
    stored = shop.engine.get_cached(SNAPSHOT_KEY, snapshots)
    items = stored["items"]
    assert [(i["task_id"], i["key"], i["heat"], i["priority"]) for i in items] == [
        ("product", "product|1", 3, 50),
        ("category", "category|'tea'", 2, 80),
    ]
    calls = [pickle.loads(base64.b64decode(i["call"])) for i in items]
    assert calls == [[[1], {}], [["tea"], {}]]


def test_unpicklable_arguments_are_skipped_and_reported(
    engines: Callable[..., CacheWarmingEngine], snapshots: CacheRegion
) -> None:
    """A key whose arguments cannot be pickled is left out and reported; the others are saved."""
    shop = Shop(engines())
    unpicklable = Unpicklable()
    shop.read(shop.product, unpicklable, 5)
    shop.read(shop.product, 2, 1)
    result = shop.engine.save_hot_set(region=snapshots)
    assert result["saved"] == 1
    [skipped] = result["skipped"]
    assert skipped["task_id"] == "product"
    assert skipped["key"] == shop.product.key_for(unpicklable)
    assert skipped["reason"].startswith("arguments cannot be serialized: TypeError")


def test_per_user_and_method_keys_are_not_saved(
    engines: Callable[..., CacheWarmingEngine], snapshots: CacheRegion
) -> None:
    """Per-user keys (warmed on login) and methods (no instance to warm with) are skipped, with reasons."""
    engine = engines()
    shop = Shop(engine)

    class Repo:
        @warmable(name="repo.find", engine=engine)
        def find(self, item: int) -> int:
            return item

    shop.read(shop.basket, 7, 2)
    Repo().find(1)
    shop.read(shop.product, 1, 1)
    result = engine.save_hot_set(region=snapshots)
    assert result["saved"] == 1
    reasons = {s["key"]: s["reason"] for s in result["skipped"]}
    assert reasons["basket|7"].startswith("per-user function")
    assert reasons["repo.find|1"].startswith("method")


def test_save_takes_the_top_n_saveable_keys(
    engines: Callable[..., CacheWarmingEngine], snapshots: CacheRegion
) -> None:
    """top_n counts saved keys, hottest first, walking past the skipped ones."""
    shop = Shop(engines())
    shop.read(shop.basket, 1, 9)
    for product_id, reads in ((1, 5), (2, 4), (3, 3)):
        shop.read(shop.product, product_id, reads)
    result = shop.engine.save_hot_set(top_n=2, region=snapshots)
    assert result["saved"] == 2
    report = engines().warm_from_snapshot(snapshots)  # no task registered: all unknown
    assert [s["key"] for s in report["skipped_items"]] == ["product|1", "product|2"]


def test_nothing_to_save_keeps_the_previous_snapshot(
    engines: Callable[..., CacheWarmingEngine], snapshots: CacheRegion
) -> None:
    """A process that has read nothing does not overwrite the fleet's snapshot."""
    shop = Shop(engines())
    shop.read(shop.product, 1, 1)
    assert shop.engine.save_hot_set(region=snapshots)["stored"]
    empty = engines().save_hot_set(region=snapshots)
    assert (empty["saved"], empty["stored"]) == (0, False)
    later = Shop(engines())
    assert later.engine.warm_from_snapshot(snapshots)["succeeded"] == 1


def test_top_n_and_max_bytes_are_checked() -> None:
    """top_n above MAX_TOP_N (the memcached-safe cap) or below 1, and max_bytes < 1, raise ValueError."""
    engine = CacheWarmingEngine()
    with pytest.raises(ValueError, match="top_n must be at most 10000"):
        engine.save_hot_set(top_n=MAX_TOP_N + 1)
    with pytest.raises(ValueError, match="top_n"):
        engine.save_hot_set(top_n=0)
    with pytest.raises(ValueError, match="max_bytes"):
        engine.save_hot_set(max_bytes=0)
    with pytest.raises(ValueError, match="rate_limit"):
        engine.warm_from_snapshot(rate_limit=0)
    with pytest.raises(ValueError, match="top_n"):
        engine.warm_from_snapshot(top_n=-1)


def test_coldest_items_beyond_max_bytes_are_left_out(
    engines: Callable[..., CacheWarmingEngine], snapshots: CacheRegion
) -> None:
    """Items that would push the snapshot past max_bytes are dropped coldest first and counted."""
    shop = Shop(engines())
    for i in range(10):
        shop.read(shop.product, f"{i}-" + "x" * 1000, 20 - i)
    result = shop.engine.save_hot_set(region=snapshots, max_bytes=5000)
    assert result["saved"] >= 1 and result["saved"] + result["truncated"] == 10, result
    assert result["bytes"] <= 5000
    hottest = [k for k, _ in shop.engine.usage_tracker.get_hot_keys(result["saved"])]
    later = Shop(engines(max_workers=1))
    report = later.engine.warm_from_snapshot(snapshots)
    assert [r["key"] for r in report["results"]] == hottest


# -- warming --------------------------------------------------------------------------
def test_warm_from_snapshot_goes_hottest_first_then_highest_priority(
    engines: Callable[..., CacheWarmingEngine], snapshots: CacheRegion
) -> None:
    """Keys warm hottest first; among equal heat the higher priority (category, 80) goes first."""
    before = Shop(engines())
    before.read(before.product, 2, 3)
    before.read(before.product, 1, 5)
    before.read(before.category, "tea", 3)
    before.read(before.product, 3, 1)
    before.engine.save_hot_set(region=snapshots)

    after = Shop(engines(max_workers=1))
    report = after.engine.warm_from_snapshot(snapshots)
    assert after.computed == ["product(1)", "category('tea')", "product(2)", "product(3)"]
    assert [r["key"] for r in report["results"]] == [
        "product|1",
        "category|'tea'",
        "product|2",
        "product|3",
    ]
    assert (report["succeeded"], report["failed"], report["skipped"]) == (4, 0, 0)
    assert report["found"] and report["saved_at"] is not None


@pytest.mark.memcached
def test_warm_from_snapshot_in_a_fresh_engine_sharing_memcached(
    on_memcached: Callable[..., CacheWarmingEngine],
) -> None:
    """A second engine on the same memcached warms the first one's hot set, hottest first."""
    before = Shop(on_memcached())
    before.read(before.product, 1, 4)
    before.read(before.category, "tea", 2)
    assert before.engine.save_hot_set()["saved"] == 2
    before.product.invalidate(1)
    before.category.invalidate("tea")

    after = Shop(on_memcached(max_workers=1))
    report = after.engine.warm_from_snapshot()
    assert after.computed == ["product(1)", "category('tea')"]
    assert report["succeeded"] == 2
    assert before.product.get(1) == "product(1)"  # stored in the shared backend
    assert after.category("tea") == "category('tea')"
    assert after.engine.get_stats()["misses"] == 0


@pytest.mark.memcached
@pytest.mark.slow
def test_a_snapshot_at_the_size_cap_fits_memcached(
    on_memcached: Callable[..., CacheWarmingEngine],
) -> None:
    """A hot set over 1 MB is cut to MAX_SNAPSHOT_BYTES, which real memcached stores and returns."""
    shop = Shop(on_memcached())
    for i in range(120):
        shop.read(shop.product, f"{i:03d}" + "x" * 10_000, 2 if i < 10 else 1)
    result = shop.engine.save_hot_set()
    assert result["stored"] and result["truncated"] > 0
    assert result["bytes"] <= MAX_SNAPSHOT_BYTES
    hottest = [k for k, _ in shop.engine.usage_tracker.get_hot_keys(result["saved"])]
    report = on_memcached().warm_from_snapshot()  # the functions are unknown there: skipped
    assert [s["key"] for s in report["skipped_items"]] == hottest


def test_unknown_tasks_and_functions_now_per_user_are_skipped_and_counted(
    engines: Callable[..., CacheWarmingEngine], snapshots: CacheRegion
) -> None:
    """A task id not registered in the new process, or a function that became per-user, is skipped."""
    before = Shop(engines())
    before.read(before.product, 1, 2)
    before.read(before.category, "tea", 1)
    before.engine.save_hot_set(region=snapshots)

    after = Shop(engines(), category_per_user=True)
    after.engine.unregister_task("product")
    report = after.engine.warm_from_snapshot(snapshots)
    assert (report["succeeded"], report["skipped"]) == (0, 2)
    reasons = [(s["key"], s["reason"].split(":")[0]) for s in report["skipped_items"]]
    assert reasons == [("product|1", "unknown task"), ("category|'tea'", "per-user function")]
    assert after.computed == []


def test_arguments_that_no_longer_unpickle_are_skipped(
    engines: Callable[..., CacheWarmingEngine],
    snapshots: CacheRegion,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An item whose arguments the new process cannot unpickle is skipped; the rest still warm."""
    before = Shop(engines())
    before.read(before.product, Sku("A-1"), 2)
    before.read(before.product, 2, 1)
    before.engine.save_hot_set(region=snapshots)
    monkeypatch.delattr(sys.modules[__name__], "Sku")  # the class is gone after a deploy

    after = Shop(engines())
    report = after.engine.warm_from_snapshot(snapshots)
    assert report["succeeded"] == 1 and after.computed == ["product(2)"]
    [skipped] = report["skipped_items"]
    assert skipped["reason"].startswith("arguments cannot be read back")


def test_no_snapshot_warms_nothing_and_says_so(engines: Callable[..., CacheWarmingEngine]) -> None:
    """Without a saved snapshot the report is empty and "found" is False."""
    report = engines().warm_from_snapshot()
    assert report["found"] is False and report["saved_at"] is None
    assert (report["succeeded"], report["failed"], report["skipped"], report["results"]) == (
        0,
        0,
        0,
        [],
    )


def test_top_n_warms_only_the_hottest_items(
    engines: Callable[..., CacheWarmingEngine], snapshots: CacheRegion
) -> None:
    """top_n.warm_from_snapshot(=2) warms the two hottest keys of the snapshot."""
    before = Shop(engines())
    for product_id, reads in ((1, 1), (2, 3), (3, 2)):
        before.read(before.product, product_id, reads)
    before.engine.save_hot_set(region=snapshots)
    after = Shop(engines(max_workers=1))
    after.engine.warm_from_snapshot(snapshots, top_n=2)
    assert after.computed == ["product(2)", "product(3)"]


def test_on_result_sees_every_key_and_failures_are_reported(
    engines: Callable[..., CacheWarmingEngine], snapshots: CacheRegion
) -> None:
    """on_result gets one row per key; a failing computation is a failed row, not an exception."""
    before = Shop(engines())
    before.read(before.product, 1, 2)
    before.read(before.category, "tea", 1)
    before.engine.save_hot_set(region=snapshots)

    after = engines()
    Shop(after)

    @warmable(name="product", engine=after)  # replaces the shop's product: a failing one
    def product(product_id: int) -> str:
        raise RuntimeError("catalog database down")

    rows: list[ResultRow] = []
    report = after.warm_from_snapshot(snapshots, on_result=rows.append)
    assert sorted(r["key"] for r in rows) == ["category|'tea'", "product|1"]
    assert (report["succeeded"], report["failed"]) == (1, 1)
    [failed] = [r for r in report["results"] if not r["success"]]
    assert failed["error"] == "RuntimeError: catalog database down"


def test_rate_limit_spaces_key_starts(
    engines: Callable[..., CacheWarmingEngine], snapshots: CacheRegion
) -> None:
    """rate_limit=4 starts one key every 0.25 s (a fake clock and sleep; nothing waits)."""
    before = Shop(engines())
    for product_id in range(5):
        before.read(before.product, product_id, 10 - product_id)
    before.engine.save_hot_set(region=snapshots)

    fake = FakeTime()
    after = engines(max_workers=1)
    started: list[float] = []

    @warmable(name="product", engine=after)
    def product(product_id: int) -> int:
        started.append(fake.now)
        return product_id

    store = after.regions.store_for(snapshots)
    report = snapshot.warm_from_snapshot(
        after.registry, store, after.max_workers, rate_limit=4, clock=fake.clock, sleep=fake.sleep
    )
    assert report["succeeded"] == 5
    assert started == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert fake.sleeps == [0.25] * 4


@pytest.mark.slow
def test_rate_limit_holds_across_worker_threads(
    engines: Callable[..., CacheWarmingEngine], snapshots: CacheRegion
) -> None:
    """With max_workers=4 and rate_limit=50, the k-th key starts no earlier than k/50 s (real time)."""
    before = Shop(engines())
    for product_id in range(6):
        before.read(before.product, product_id, 1)
    before.engine.save_hot_set(region=snapshots)

    after = engines(max_workers=4)
    started: list[float] = []
    lock = threading.Lock()

    @warmable(name="product", engine=after)
    def product(product_id: int) -> int:
        with lock:
            started.append(time.monotonic())
        return product_id

    t0 = time.monotonic()
    assert after.warm_from_snapshot(snapshots, rate_limit=50)["succeeded"] == 6
    # Each key starts no earlier than its slot, t0 + k/50 s (timer slack allowed).
    started.sort()
    late_enough = [t - t0 >= k * 0.02 - 0.002 for k, t in enumerate(started)]
    assert all(late_enough), [round(t - t0, 4) for t in started]


# -- through the command line, in separate processes ------------------------------------
SHOP_MODULE = """
import dogpile_warm
from dogpile_warm import warmable

dogpile_warm.configure(
    "default", "dogpile.cache.pymemcache", arguments={{"url": {url!r}}}
)

@warmable(priority=50, name="product")
def product(product_id):
    print("computing", product_id, flush=True)
    return f"product {{product_id}}"

if {reads!r}:
    for product_id, times in (({hot}, 3), (1, 1)):
        for _ in range(times):
            product(product_id)
"""


@pytest.mark.memcached
@pytest.mark.slow
def test_cli_saves_in_one_process_and_warms_in_another(
    memcached_server: Server, client_closer: ClientCloser, tmp_path: Path
) -> None:
    """`dogpile-warm snapshot` in one process, `warm --from-snapshot` in a new one, via memcached."""
    memcached_server.flush()

    def run(module: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "dogpile_warm.cli", *args, module],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "PYTHONIOENCODING": "utf-8"},
        )

    source = textwrap.dedent(SHOP_MODULE)
    (tmp_path / "reader.py").write_text(source.format(url=memcached_server.url, reads=True, hot=7))
    (tmp_path / "fresh.py").write_text(source.format(url=memcached_server.url, reads=False, hot=7))

    saved = run("reader", "snapshot")
    assert saved.returncode == 0, saved.stderr
    assert "saved" in saved.stdout and "stored" in saved.stdout

    region = client_closer.watch(
        make_region().configure("dogpile.cache.pymemcache", arguments={"url": memcached_server.url})
    )
    region.delete("product|7")  # the cold start: values gone, the snapshot kept
    region.delete("product|1")

    warmed = run("fresh", "warm", "--from-snapshot", "--rate", "100")
    assert warmed.returncode == 0, warmed.stdout + warmed.stderr
    computing = [line for line in warmed.stdout.splitlines() if line.startswith("computing")]
    assert computing == ["computing 7", "computing 1"]
    # Read with dogpile's backend: dogpile's region.get expects a CachedValue, and
    # dogpile_warm's memcached backend stores entries as plain tuples (see FLAG_ENTRY).
    assert region.backend.get("product|7") is not NO_VALUE


def test_the_engine_saves_and_warms_its_hot_set(engine: CacheWarmingEngine) -> None:
    """engine.save_hot_set / engine.warm_from_snapshot round-trip through the backend."""
    computed: list[int] = []

    @warmable(ttl=600)
    def cube(x: int) -> int:
        computed.append(x)
        return x**3

    for x in (2, 2, 3):
        cube(x)
    assert engine.save_hot_set()["saved"] == 2
    cube.invalidate(2)
    cube.invalidate(3)
    computed.clear()
    report = engine.warm_from_snapshot()
    assert report["succeeded"] == 2 and computed == [2, 3]
