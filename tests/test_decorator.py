"""@warmable on the embedded memory region: keys, attributes, methods, validation."""

from __future__ import annotations

import asyncio
import inspect
import threading
from typing import Any, TypeVar

import pytest
from dogpile.cache import make_region
from dogpile.cache.api import NO_VALUE

import dogpile_warm
from dogpile_warm import CacheWarmingEngine, warmable
from dogpile_warm.testing import FakeClock, captured_signals, wait_until

T = TypeVar("T")


class Counter:
    """Counts calls of the functions it wraps."""

    def __init__(self) -> None:
        self.calls: list[object] = []
        self._lock = threading.Lock()

    def __call__(self, value: T) -> T:
        with self._lock:
            self.calls.append(value)
        return value


def test_second_call_is_answered_from_the_cache() -> None:
    """A cold call computes; the same call again does not."""
    count = Counter()

    @warmable(ttl=60)
    def double(x: int) -> int:
        return count(x) * 2

    assert double(2) == 4
    assert double(2) == 4
    assert count.calls == [2]


def test_positional_keyword_and_default_arguments_share_one_key() -> None:
    """f(1), f(x=1) and f() with default x=1 map to one key and one computation."""
    count = Counter()

    @warmable(ttl=60)
    def f(x: int = 1, y: str = "a") -> tuple[int, str]:
        count((x, y))
        return x, y

    assert f(1) == f(x=1) == f() == f(1, "a") == f(y="a", x=1) == (1, "a")
    assert count.calls == [(1, "a")]
    assert f.key_for(1) == f.key_for() == f.key_for(x=1, y="a")


def test_equal_looking_arguments_of_other_types_get_other_keys() -> None:
    """f(1) and f("1") are different calls with different values."""

    @warmable(ttl=60)
    def kind(x: object) -> str:
        return type(x).__name__

    assert kind(1) == "int"
    assert kind("1") == "str"
    assert kind.key_for(1) != kind.key_for("1")


def test_signature_and_docstring_are_kept() -> None:
    """The decorated function keeps its name, docstring and signature."""

    @warmable(ttl=60)
    def documented(a: int, b: str = "x") -> str:
        """Docs survive."""
        return b * a

    assert documented.__doc__ == "Docs survive."
    assert documented.__name__ == "documented"
    assert list(inspect.signature(documented).parameters) == ["a", "b"]
    assert documented.original(2) == "xx"


def test_default_name_is_module_and_qualname_plus_namespace() -> None:
    """The task id is module:qualname, with the namespace appended."""

    @warmable(ttl=60)
    def plain() -> int:
        return 1

    @warmable(ttl=60, namespace="v2")
    def spaced() -> int:
        return 2

    assert plain.task.task_id == f"{__name__}:{plain.__qualname__}"
    assert spaced.task.task_id == f"{__name__}:{spaced.__qualname__}|v2"
    assert plain.key_for() == plain.task.task_id


def test_get_set_invalidate_refresh_and_warm() -> None:
    """The attributes read, write, drop, recompute and warm one key."""
    count = Counter()

    @warmable(ttl=60)
    def square(x: int) -> int:
        count(x)
        return x * x

    assert square.get(3) is NO_VALUE
    assert square.warm(3) is True
    assert square.get(3) == 9
    square.set(100, 3)
    assert square(3) == 100
    square.invalidate(3)
    assert square.get(3) is NO_VALUE
    assert square.refresh(3) == 9
    assert square(3) == 9
    assert count.calls == [3, 3]


def test_exactly_one_hit_or_miss_signal_per_call() -> None:
    """Each call sends one cache_miss (computed) or one cache_hit (cached), with its key."""

    @warmable(ttl=60)
    def ident(x: int) -> int:
        return x

    with captured_signals("cache_hit", "cache_miss") as sent:
        ident(1)
        ident(1)
        ident(2)
    assert [s.signal for s in sent] == ["cache_miss", "cache_hit", "cache_miss"]
    assert all(s.sender is ident for s in sent)
    assert [s.kwargs["key"] for s in sent] == [ident.key_for(1), ident.key_for(1), ident.key_for(2)]
    assert sent[1].kwargs["age"] >= 0
    assert sent[0].kwargs["duration_ms"] >= 0


def test_errors_reach_the_caller_and_are_not_cached() -> None:
    """An exception from the function propagates and the next call tries again."""
    attempts = Counter()

    @warmable(ttl=60)
    def flaky() -> str:
        attempts(1)
        if len(attempts.calls) == 1:
            raise RuntimeError("boom")
        return "ok"

    with pytest.raises(RuntimeError, match="boom"):
        flaky()
    assert flaky() == "ok"
    assert flaky() == "ok"
    assert len(attempts.calls) == 2


class Catalog:
    """A class with warmable methods."""

    def __init__(self, calls: Counter) -> None:
        self.calls = calls

    @warmable(ttl=60, name="Catalog.item", engine=CacheWarmingEngine())
    def item(self, item_id: int) -> str:
        self.calls(item_id)
        return f"item-{item_id}"

    @staticmethod
    @warmable(ttl=60, name="Catalog.static", engine=CacheWarmingEngine())
    def static(x: int) -> int:
        return x + 1


def test_methods_leave_self_out_of_the_key() -> None:
    """Two instances share a method's cached value, keyed without self."""
    calls = Counter()
    a, b = Catalog(calls), Catalog(calls)
    assert a.item(1) == "item-1"
    assert b.item(1) == "item-1"
    assert calls.calls == [1]
    assert Catalog.item.key_for(1) == a.item.key_for(1) == "Catalog.item|1"


def test_method_signal_sender_is_the_function_in_the_class() -> None:
    """The sender of a method's signals is Class.__dict__[name]."""
    with captured_signals("cache_hit", "cache_miss") as sent:
        Catalog(Counter()).item(42)
    assert sent[0].sender is Catalog.__dict__["item"]


def test_bound_method_warm_uses_the_instance() -> None:
    """obj.method.warm(x) computes with obj and stores the value."""
    calls = Counter()
    obj = Catalog(calls)
    assert obj.item.warm(7) is True
    assert obj.item.get(7) == "item-7"
    assert obj.item(7) == "item-7"
    assert calls.calls == [7]


def test_staticmethods_work() -> None:
    """A warmable staticmethod caches like a function."""
    assert Catalog.static(1) == 2
    assert Catalog(Counter()).static(1) == 2
    assert Catalog.static.get(1) == 2


def test_a_passed_in_region_is_used_and_not_changed() -> None:
    """Values go to the region given; its configuration stays the user's."""
    region = make_region().configure("dogpile.cache.memory")
    backend, mangler = region.backend, region.key_mangler

    @warmable(ttl=60, region=region)
    def value() -> str:
        return "v"

    assert value() == "v"
    assert region.backend is backend and region.key_mangler is mangler
    assert region.async_creation_runner is None
    assert value.get() == "v"


def test_a_named_region_resolves_at_first_call(engine: CacheWarmingEngine) -> None:
    """Decorating before configure() works: the name is looked up when first called."""

    @warmable(ttl=60, region="late")
    def value() -> str:
        return "v"

    dogpile_warm.configure("late", "dogpile.cache.memory")
    assert value() == "v"
    assert value.get() == "v"
    assert engine.get_region("late").get(value.key_for(), ignore_expiration=True) is not NO_VALUE


def test_an_unknown_region_name_is_a_clear_error() -> None:
    """Calling a function whose region was never configured names the region."""

    @warmable(ttl=60, region="nowhere")
    def value() -> str:
        return "v"

    with pytest.raises(ValueError, match="'nowhere'"):
        value()


def test_redecorating_replaces_the_task(engine: CacheWarmingEngine) -> None:
    """Decorating the same function again (a re-import) replaces its task."""

    def source() -> int:
        return 1

    first = warmable(ttl=60, name="same")(source)
    second = warmable(ttl=60, name="same", priority=7)(source)
    assert engine.get_stats()["tasks"] == 1
    assert first.task is not second.task
    assert engine.get_stats()["task_details"][0]["priority"] == 7


@pytest.mark.parametrize(
    ("kwargs", "error", "mentions"),
    [
        ({"priority": 1.5}, TypeError, "priority"),
        ({"priority": "high"}, TypeError, "'high'"),
        ({"priority": True}, TypeError, "priority"),
        ({"ttl": 0}, ValueError, "ttl"),
        ({"ttl": -5}, ValueError, "-5"),
        ({"ttl": "60"}, TypeError, "'60'"),
        ({"refresh_ahead": 0}, ValueError, "refresh_ahead"),
        ({"refresh_ahead": 1}, ValueError, "refresh_ahead"),
        ({"refresh_ahead": 1.5}, ValueError, "1.5"),
        ({"tags": [""]}, TypeError, "tags"),
        ({"tags": [1]}, TypeError, "1"),
        ({"region": 3}, TypeError, "region"),
        ({"warm_args": 5}, TypeError, "warm_args"),
        ({"warm_args": [[1]]}, TypeError, "warm_args"),
    ],
)
def test_bad_arguments_fail_at_decoration_naming_the_value(
    kwargs: dict[str, Any], error: type[Exception], mentions: str
) -> None:
    """Each bad argument raises TypeError/ValueError naming it."""
    with pytest.raises(error, match=mentions):
        warmable(**kwargs)


def test_user_arg_must_be_a_parameter() -> None:
    """A user_arg that the function lacks is a ValueError naming it and the parameters."""
    with pytest.raises(ValueError, match=r"'uid'.*user_id"):

        @warmable(user_arg="uid")
        def forms(user_id: int) -> list[str]:
            return []


def test_a_non_callable_is_refused() -> None:
    """Decorating something that is not callable is a TypeError."""
    with pytest.raises(TypeError, match="42"):
        warmable()(42)  # type: ignore[call-overload]


def test_values_older_than_ttl_are_never_returned(clock: FakeClock) -> None:
    """Past ttl (engine clock) a call recomputes in the caller instead of serving the old value."""
    count = Counter()

    @warmable(ttl=10, refresh_ahead=None)
    def stamp() -> float:
        count(1)
        return clock()

    started = clock()
    assert stamp() == started
    clock.advance(9.9)
    assert stamp() == started
    clock.advance(0.2)
    with captured_signals("cache_hit", "cache_miss") as sent:
        assert stamp() == clock()
    assert [s.signal for s in sent] == ["cache_miss"]
    assert len(count.calls) == 2


def test_refresh_ahead_serves_the_cached_value_and_refreshes_in_background(
    clock: FakeClock,
) -> None:
    """Past refresh_ahead * ttl the caller gets the cached value now; one refresh follows."""
    count = Counter()

    @warmable(ttl=10, refresh_ahead=0.5)
    def stamp() -> float:
        count(1)
        return clock()

    started = clock()
    with captured_signals("refreshed") as sent:
        assert stamp() == started
        clock.advance(6)
        with captured_signals("cache_hit", "cache_miss") as calls:
            assert stamp() == started  # cached, within ttl, returned at once
        assert [c.signal for c in calls] == ["cache_hit"]
        wait_until(lambda: sent, message="the background refresh")
        assert stamp() == started + 6
    assert len(count.calls) == 2
    assert [s.kwargs["key"] for s in sent] == [stamp.key_for()]


@pytest.mark.slow
def test_importing_the_package_starts_no_thread() -> None:
    """A fresh interpreter importing dogpile_warm has one thread and no default engine."""
    import subprocess
    import sys

    code = (
        "import threading, dogpile_warm, dogpile_warm.default as d;"
        "print(threading.active_count(), d._default is None)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "True"]


class NamesItsInstanceThis:
    """A shop whose methods name their first parameter neither self nor cls."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"NamesItsInstanceThis({self.name!r})"

    @warmable(ttl=60)
    def price(this, item: str) -> str:
        return f"{this.name}:{item}"

    @warmable(ttl=60, key_by={"this": lambda shop: shop.name})
    def stock(this, item: str) -> str:
        return f"{this.name} has {item}"

    @warmable(ttl=60)
    @classmethod
    def kind(klass, item: str) -> str:
        return f"{klass.__name__}:{item}"

    @classmethod
    @warmable(ttl=60)
    def origin(klass, item: str) -> str:
        return f"{klass.__name__} from {item}"


Shop = NamesItsInstanceThis


def test_a_first_parameter_named_neither_self_nor_cls_is_kept_in_the_key() -> None:
    """As in dogpile's key generator: the instance is an argument of the call and its
    key; two instances get two keys."""
    a, b = Shop("a"), Shop("b")
    price: Any = Shop.price  # on the class the instance comes first, unseen by type checkers
    assert (a.price("tea"), price(b, "tea")) == ("a:tea", "b:tea")
    assert a.price.key_for("tea") == price.key_for(a, "tea")
    assert a.price.key_for("tea").endswith("|NamesItsInstanceThis('a'),'tea'")
    assert a.price.key_for("tea") != b.price.key_for("tea")


def test_a_kept_instance_is_passed_to_every_attribute_of_a_bound_method() -> None:
    a, b = Shop("a"), Shop("b")  # items of their own: the class outlives each test's engine
    assert a.price("soup") == "a:soup"
    assert a.price.get("soup") == "a:soup" and b.price.get("soup") is NO_VALUE
    assert b.price.warm("jam") and b.price.get("jam") == "b:jam"
    a.price.set("set by hand", "pie")
    assert a.price("pie") == "set by hand" and b.price("pie") == "b:pie"
    a.price.invalidate("pie")
    assert a.price.get("pie") is NO_VALUE and a.price.refresh("pie") == "a:pie"


def test_a_kept_instance_is_passed_to_the_awaitable_attributes_too() -> None:
    a = Shop("a")

    async def attributes() -> tuple[Any, ...]:
        await a.price.aset("set by hand", "cake")
        got = await a.price.aget("cake")
        await a.price.ainvalidate("cake")
        return got, await a.price.aget("cake")

    assert asyncio.run(attributes()) == ("set by hand", NO_VALUE)


def test_a_kept_instance_may_be_keyed_by_what_identifies_it() -> None:
    stock: Any = Shop.stock
    a = Shop("a")
    assert a.stock("tea") == "a has tea" and a.stock.key_for("tea").endswith("|'a','tea'")
    assert a.stock.key_for("tea") == stock.key_for(a, "tea")


def test_a_classmethods_first_parameter_kept_in_the_key_is_its_class() -> None:
    """Both decorator orders, on the class and through an instance."""
    assert (Shop.kind("x"), Shop("c").kind("y")) == (
        "NamesItsInstanceThis:x",
        "NamesItsInstanceThis:y",
    )
    assert (Shop.origin("x"), Shop("c").origin("y")) == (
        "NamesItsInstanceThis from x",
        "NamesItsInstanceThis from y",
    )
    assert Shop.kind.key_for("x").endswith("NamesItsInstanceThis'>,'x'")
    assert Shop("c").kind.key_for("x") == Shop.kind.key_for("x")
    assert Shop.kind.warm("z") and Shop("c").kind.get("z") == "NamesItsInstanceThis:z"


class Unnamed:
    @warmable(ttl=60)
    def price(this, item: str) -> str:
        return item


def test_an_instance_kept_in_the_key_needs_a_repr_that_identifies_it() -> None:
    with pytest.raises(TypeError, match=r"argument 'this' of .*Unnamed\.price is a Unnamed"):
        Unnamed().price("tea")
