"""Hit-path cost on the memory backend, as ratios to peers measured in the same run.

Contenders, each answering the same cached call ``f(1)`` from memory:
dogpile_warm's ``@warmable`` (built-in tracking on, no blinker receiver),
the same with one blinker receiver on ``cache_hit``, dogpile.cache's own
``cache_on_arguments``, cachetools' ``TTLCache`` and ``functools.lru_cache``
(the in-process limit). Each row is one contender's time per hit as a ratio
to dogpile's decorator. Then the same hit through a method, a classmethod
and a staticmethod (each order of decorators), as a ratio to a plain
function's, each timed as the statement a caller writes (``shop.price(1)``
against ``f(1)``), so binding the method is part of its call.

Methods bind in C where dogpile_warm's optional extension was built
(``dogpile_warm._binding_c``; each method row's detail says which binding
ran). Beside them, what
binding costs in Python on 3.11, where it was not: the least a Python-level
``__get__`` can do when the bound object must carry attributes of its own
(``shop.price.warm(x)``): return a ``functools.partial`` subclass. A heap
subclass of ``partial`` is called without vectorcall, and the ``__get__`` is
a Python frame. What that costs is timed around a function that does nothing
(``obj.nothing(1)`` against ``nothing(1)``), added to the plain function's
hit and given as a ratio to it.
Run: ``python benchmarks/hit_path.py [--quick] [--calls N]``.
"""

from __future__ import annotations

import functools
import sys
import timeit
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cachetools
from dogpile.cache import make_region

from dogpile_warm import CacheWarmingEngine, signals, warmable
from dogpile_warm._binding import C_EXTENSION

try:
    from benchmarks._report import Row, format_table, make_parser
    from benchmarks._timing import best_per_call
except ModuleNotFoundError:  # run as a script: the repository root is not on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks._report import Row, format_table, make_parser
    from benchmarks._timing import best_per_call

FIGURE = "memory hit: time / dogpile's"
BASELINE = "dogpile cache_on_arguments"
CALLS, REPEAT = 5_000, 15
QUICK_CALLS, QUICK_REPEAT = 200, 2


@contextmanager
def contenders() -> Iterator[dict[str, Callable[[int], Any]]]:
    """The contenders' cached functions, for the block (the engine is closed afterwards)."""
    engine = CacheWarmingEngine()

    @warmable(ttl=3600, engine=engine, name="bench.warm")
    def warm(x: int) -> int:
        return x

    @warmable(ttl=3600, engine=engine, name="bench.warm_signal")
    def warm_signal(x: int) -> int:
        return x

    region = make_region().configure("dogpile.cache.memory", expiration_time=3600)

    @region.cache_on_arguments()
    def dogpile(x: int) -> int:
        return x

    @cachetools.cached(cachetools.TTLCache(maxsize=1024, ttl=3600))
    def ttlcache(x: int) -> int:
        return x

    @functools.lru_cache(maxsize=1024)
    def lru(x: int) -> int:
        return x

    try:
        yield {
            "dogpile_warm": warm,
            "dogpile_warm + 1 receiver": warm_signal,
            BASELINE: dogpile,
            "cachetools TTLCache": ttlcache,
            "functools.lru_cache": lru,
        }
    finally:
        engine.close()


# Goals, as ratios to dogpile's decorator (built-in tracking on).
GOALS = {"dogpile_warm": 0.15, "dogpile_warm + 1 receiver": 0.30}
TTLCACHE_GOAL = 0.8


def measure(calls: int, repeat: int = REPEAT) -> dict[str, float]:
    """Best-of-``repeat`` seconds per hit for each contender.

    Two phases, each with dogpile's decorator as the baseline: first with no
    blinker receiver connected at all (signals nobody listens to),
    then with one receiver on ``cache_hit`` for the "+ 1 receiver" function.
    """
    received: list[object] = []

    def receiver(sender: object, **kw: object) -> None:
        received.append(sender)

    with contenders() as fns:
        for fn in fns.values():
            fn(1)  # the one miss
        timers = {name: timeit.Timer(functools.partial(fn, 1)) for name, fn in fns.items()}
        with_receiver = "dogpile_warm + 1 receiver"
        alone = {name: t for name, t in timers.items() if name != with_receiver}
        results = best_per_call(alone, calls, repeat)
        signals.cache_hit.connect(receiver, sender=fns[with_receiver])
        try:
            pair = {with_receiver: timers[with_receiver], BASELINE: timers[BASELINE]}
            second = best_per_call(pair, calls, repeat)
        finally:
            signals.cache_hit.disconnect(receiver)
        # The receiver's ratio is taken against the baseline of its own phase.
        results[with_receiver] = second[with_receiver] / second[BASELINE] * results[BASELINE]
        return results


METHOD_FIGURE = "memory hit: time / a plain function's"
METHOD_GOAL = 1.25
# What each bound contender's statement calls, beside "f(1)" (a plain function).
BOUND_CALLS = {
    "@warmable method": "shop.price(1)",
    "@classmethod over @warmable": "Shop.rate(1)",
    "@warmable over @classmethod": "Shop.fee(1)",
    "@staticmethod over @warmable": "Shop.tax(1)",
    "@warmable over @staticmethod": "Shop.vat(1)",
}


BINDING_FLOOR = "without the extension: a Python __get__ binding a partial subclass"


class _Bound(functools.partial):  # type: ignore[type-arg]
    __slots__ = ()


class _LeastBinding:
    """A descriptor binding ``fn`` to the instance as a ``functools.partial`` subclass."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def __get__(self, instance: Any, owner: type[Any] | None = None) -> Any:
        return _Bound(self.fn, instance)


def _nothing(*args: Any) -> None:
    return None


class _Holder:
    nothing = _LeastBinding(_nothing)


def measure_bound(calls: int, repeat: int = REPEAT) -> dict[str, float]:
    """Seconds per hit of ``f(1)`` and of each method kind's call, each timed as a
    statement (the attribute lookup that binds a method is part of its call)."""
    engine = CacheWarmingEngine()

    @warmable(ttl=3600, engine=engine, name="bench.f")
    def f(x: int) -> int:
        return x

    class Shop:
        @warmable(ttl=3600, engine=engine, name="bench.price")
        def price(self, x: int) -> int:
            return x

        @classmethod
        @warmable(ttl=3600, engine=engine, name="bench.rate")
        def rate(cls, x: int) -> int:
            return x

        @warmable(ttl=3600, engine=engine, name="bench.fee")
        @classmethod
        def fee(cls, x: int) -> int:
            return x

        @staticmethod
        @warmable(ttl=3600, engine=engine, name="bench.tax")
        def tax(x: int) -> int:
            return x

        @warmable(ttl=3600, engine=engine, name="bench.vat")
        @staticmethod
        def vat(x: int) -> int:
            return x

    names = {"f": f, "Shop": Shop, "shop": Shop(), "nothing": _nothing, "holder": _Holder()}
    statements = {
        "plain function": "f(1)",
        **BOUND_CALLS,
        "nothing": "nothing(1)",
        "bound nothing": "holder.nothing(1)",
    }
    try:
        timers = {}
        for name, statement in statements.items():
            eval(statement, names)  # the one miss
            timers[name] = timeit.Timer(statement, globals=names)
        return best_per_call(timers, calls, repeat)
    finally:
        engine.close()


def run(quick: bool, *, calls: int | None = None) -> list[Row]:
    """One row per contender: its time per hit over dogpile's ``cache_on_arguments``."""
    default_calls, repeat = (QUICK_CALLS, QUICK_REPEAT) if quick else (CALLS, REPEAT)
    results = measure(calls or default_calls, repeat)
    base = results[BASELINE]
    rows = [
        Row(name, FIGURE, seconds / base, GOALS.get(name), detail=f"{seconds * 1e6:.2f} us/hit")
        for name, seconds in results.items()
    ]
    ttlcache = results["cachetools TTLCache"]
    warm = results["dogpile_warm"]
    rows.append(
        Row(
            "dogpile_warm",
            "memory hit: time / cachetools TTLCache's",
            warm / ttlcache,
            TTLCACHE_GOAL,
            detail=f"{warm * 1e6:.2f} vs {ttlcache * 1e6:.2f} us/hit",
        )
    )
    bound = measure_bound(calls or default_calls, repeat)
    plain = bound.pop("plain function")
    binding = bound.pop("bound nothing") - bound.pop("nothing")
    how = "bound in C" if C_EXTENSION else "bound in Python: the extension is not built"
    rows += [
        Row(
            name,
            METHOD_FIGURE,
            seconds / plain,
            METHOD_GOAL,
            detail=f"{seconds * 1e6:.2f} vs {plain * 1e6:.2f} us/hit ({BOUND_CALLS[name]}; {how})",
        )
        for name, seconds in bound.items()
    ]
    rows.append(
        Row(
            BINDING_FLOOR,
            METHOD_FIGURE,
            (plain + binding) / plain,
            None,
            detail=f"binding alone: {binding * 1e6:.2f} us",
        )
    )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__)
    parser.add_argument("--calls", type=int, default=None, help="hits per timed round")
    args = parser.parse_args(argv)
    print(format_table(run(args.quick, calls=args.calls)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
