"""The library at work, for ``dogpile-warm demo``: each step's outcome as a table.

:func:`run_demo` registers four functions on an engine of its own (an
in-memory region: no server), warms critical data, preloads users on
login, reads, invalidates by tag and reads the stats, handing each step's
outcome to its caller as a :class:`DemoTable`. Drawing the tables is the
caller's job (the command draws them with rich); this module needs no rich.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from dogpile.cache.api import NO_VALUE

from .. import signals
from ..decorator import warmable
from ..engine import CacheWarmingEngine
from ..task import priority_level

__all__ = ["DemoTable", "run_demo"]


@dataclass(frozen=True)
class DemoTable:
    """One step's outcome: ``rows`` under ``headers``, with a ``title`` and maybe a ``note``.

    Cells are raw values (None, bools, floats in ms, collections of keys);
    how they read is the drawing's business.
    """

    title: str
    headers: Sequence[str]
    rows: Sequence[Sequence[object]]
    note: str | None = None


_Show = Callable[[DemoTable], None]


def run_demo(show: _Show) -> None:
    """Run the demo, calling ``show`` with each table as soon as its step is done.

    Registers nothing on the default engine; its own engine is closed
    (background refreshes finished) before this returns, also when
    ``show`` raises.
    """
    engine = CacheWarmingEngine(max_workers=4)
    try:
        demo = _Demo(engine)
        for step in (
            _demo_tasks,
            _demo_warm_critical,
            _demo_preload_users,
            _demo_reads,
            _demo_invalidate,
            _demo_stats,
        ):
            step(demo, show)
    finally:
        engine.close()


@dataclass
class _Read:
    """One call through a decorated function, as the signals reported it."""

    key: str
    hit: bool
    compute_ms: float | None  # misses: how long the caller's computation took
    age_s: float | None  # hits: how old the value served was


@contextmanager
def _recorded_reads() -> Iterator[list[_Read]]:
    """Collect every ``cache_hit``/``cache_miss`` sent inside the block, in order."""
    reads: list[_Read] = []

    def on_hit(sender: Any, *, key: str, age: float, **_: Any) -> None:
        reads.append(_Read(key, True, None, age))

    def on_miss(sender: Any, *, key: str, duration_ms: float, **_: Any) -> None:
        reads.append(_Read(key, False, duration_ms, None))

    signals.cache_hit.connect(on_hit, weak=False)
    signals.cache_miss.connect(on_miss, weak=False)
    try:
        yield reads
    finally:
        signals.cache_hit.disconnect(on_hit)
        signals.cache_miss.disconnect(on_miss)


class _Demo:
    """Four "expensive" functions registered on one engine, as an application would."""

    def __init__(self, engine: CacheWarmingEngine) -> None:
        self.engine = engine

        # The sleeps stand in for database queries, so durations show.
        @warmable(priority=150, ttl=3600, tags={"catalog"}, name="catalog", engine=engine)
        def catalog() -> list[str]:
            time.sleep(0.030)
            return ["espresso", "latte", "flat white"]

        @warmable(priority=100, ttl=3600, tags={"navigation"}, name="navigation", engine=engine)
        def navigation() -> list[str]:
            time.sleep(0.010)
            return ["home", "menu", "orders"]

        @warmable(
            priority=80,
            ttl=600,
            tags={"user", "session"},
            user_arg="user_id",
            name="user_session",
            engine=engine,
        )
        def user_session(user_id: str) -> dict[str, Any]:
            time.sleep(0.015)
            return {"user_id": user_id, "cart": []}

        @warmable(
            priority=40,
            ttl=600,
            tags={"user", "forms"},
            user_arg="user_id",
            name="recent_forms",
            engine=engine,
        )
        def recent_forms(user_id: str) -> list[str]:
            time.sleep(0.020)
            return [f"{user_id}-order-form"]

        self.catalog = catalog
        self.navigation = navigation
        self.user_session = user_session
        self.recent_forms = recent_forms
        # task id -> the parameter that holds the user id, for per-user tasks
        self.user_args = {
            user_session.task.task_id: "user_id",
            recent_forms.task.task_id: "user_id",
        }


def _demo_tasks(demo: _Demo, show: _Show) -> None:
    show(
        DemoTable(
            "Registered tasks",
            ["task", "priority", "level", "critical", "per user", "tags"],
            [
                [
                    d["task_id"],
                    d["priority"],
                    priority_level(d["priority"]),
                    d["critical"],
                    demo.user_args.get(d["task_id"]),
                    d["tags"],
                ]
                for d in demo.engine.get_stats()["task_details"]
            ],
        )
    )


def _demo_warm_critical(demo: _Demo, show: _Show) -> None:
    report = demo.engine.warm_critical_data()
    show(
        DemoTable(
            "Warm critical data (highest priority first)",
            ["task", "key", "ok", "duration ms", "error"],
            [
                [r["task_id"], r["key"], r["success"], r["duration_ms"], r["error"]]
                for r in report["results"]
            ],
            note=(
                f"succeeded {report['succeeded']}, failed {report['failed']}, "
                f"skipped {report['skipped']}, total {report['total_duration_ms']:.1f} ms"
            ),
        )
    )


def _demo_preload_users(demo: _Demo, show: _Show) -> None:
    engine = demo.engine
    logins = [
        ("login", engine.warm_user_data("alice")),
        ("login, preload_forms=False", engine.warm_user_data("bob", preload_forms=False)),
        ("login again (within window)", engine.warm_user_data("alice")),
        ("login again, force=True", engine.warm_user_data("alice", force=True)),
    ]
    show(
        DemoTable(
            "Preload users on login (warm_user_data)",
            ["user", "call", "skipped", "keys warmed", "failed", "duration ms"],
            [
                [r["user_id"], call, r["skipped"], r["keys_warmed"], r["failed"], r["duration_ms"]]
                for call, r in logins
            ],
        )
    )


def _demo_reads(demo: _Demo, show: _Show) -> None:
    notes: dict[int, str] = {}
    with _recorded_reads() as reads:

        def read(fn: Callable[..., Any], *args: Any, note: str = "") -> Any:
            value = fn(*args)
            if note:
                notes[len(reads) - 1] = note
            return value

        for _ in range(3):
            read(demo.catalog)
        read(demo.navigation)
        for user in ("alice", "bob", "carol"):
            first = "never logged in" if user == "carol" else ""
            session = read(demo.user_session, user, note=first)
            if session["user_id"] != user:
                raise AssertionError(f"{user} was served {session['user_id']}'s session")
            read(demo.user_session, user)
            forms_note = "logged in with preload_forms=False" if user == "bob" else first
            read(demo.recent_forms, user, note=forms_note)
    show(
        DemoTable(
            "Reads (hits come from the cache, misses ran the function)",
            ["key", "outcome", "compute ms", "value age ms", "note"],
            [
                [
                    r.key,
                    "hit" if r.hit else "miss",
                    r.compute_ms,
                    None if r.age_s is None else r.age_s * 1000,
                    notes.get(i, ""),
                ]
                for i, r in enumerate(reads)
            ],
        )
    )


def _demo_invalidate(demo: _Demo, show: _Show) -> None:
    catalog = demo.catalog
    before = catalog.get() is not NO_VALUE
    count = demo.engine.invalidate_by_tags({"catalog"})
    after = catalog.get() is not NO_VALUE
    with _recorded_reads() as reads:
        catalog()
    outcome = "hit" if reads[0].hit else f"miss, recomputed in {reads[0].compute_ms:.1f} ms"
    show(
        DemoTable(
            "Invalidate by tag 'catalog'",
            ["step", "catalog cached", "detail"],
            [
                ["before", before, "warmed by warm_critical_data"],
                ["invalidate_by_tags({'catalog'})", after, f"{count} tag invalidated"],
                ["catalog()", catalog.get() is not NO_VALUE, outcome],
            ],
        )
    )


def _demo_stats(demo: _Demo, show: _Show) -> None:
    stats = demo.engine.get_stats()
    show(
        DemoTable(
            "Tasks after the run (runs: warm-ups and background refreshes)",
            ["task", "runs", "failures", "avg duration ms"],
            [
                [d["task_id"], d["runs"], d["failures"], d["avg_duration_ms"]]
                for d in stats["task_details"]
            ],
        )
    )
    show(
        DemoTable(
            "Engine stats (get_stats)",
            ["figure", "value"],
            [
                ["hits", str(stats["hits"])],
                ["misses", str(stats["misses"])],
                ["hit ratio", f"{stats['hit_ratio']:.0%}"],
                ["backend errors", str(stats["backend_errors"])],
            ],
        )
    )
