"""The ``dogpile-warm`` command line: ``dogpile-warm demo`` shows the library at work.

The demo runs on an in-memory region inside its own engine, so it needs no
server and leaves the process's default engine alone. Output is plain text
(aligned columns); the optional ``rich`` extra is not needed.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TextIO

from dogpile.cache.api import NO_VALUE

from . import __version__, signals
from .decorator import warmable
from .engine import CacheWarmingEngine
from .task import priority_level

__all__ = ["format_table", "main"]


# -- tables -----------------------------------------------------------------------
def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, frozenset | set | list | tuple):
        return ", ".join(sorted(str(v) for v in value)) or "-"
    return str(value)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def format_table(title: str, headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Render ``rows`` under ``headers`` as aligned plain-text columns, titled.

    A column of numbers (and blanks) is right-aligned, floats with one
    decimal; any other column is left-aligned. Booleans read "yes"/"no",
    None reads "-", collections are sorted and joined with commas.
    """
    body = [list(row) for row in rows]
    cells = [[_cell(v) for v in row] for row in body]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, text in enumerate(row):
            widths[i] = max(widths[i], len(text))
    right = [
        any(_is_number(row[i]) for row in body)
        and all(_is_number(row[i]) or row[i] is None for row in body)
        for i in range(len(headers))
    ]

    def line(texts: Sequence[str]) -> str:
        parts = (
            t.rjust(w) if r else t.ljust(w) for t, w, r in zip(texts, widths, right, strict=True)
        )
        return "  ".join(parts).rstrip()

    out = [title, "=" * len(title), line(headers), line(["-" * w for w in widths])]
    out.extend(line(row) for row in cells)
    if not cells:
        out.append("(none)")
    return "\n".join(out)


# -- the demo -----------------------------------------------------------------------
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


def run_demo(out: TextIO) -> int:
    """Run the demo, writing its tables to ``out``; return the exit status."""
    started = time.perf_counter()
    engine = CacheWarmingEngine(max_workers=4)
    try:
        demo = _Demo(engine)
        for step in (
            _tasks_table,
            _warm_critical,
            _preload_users,
            _simulate_reads,
            _invalidate_catalog,
            _stats_tables,
        ):
            print(step(demo), end="\n\n", file=out)
    finally:
        engine.close()
    print(f"demo finished in {(time.perf_counter() - started) * 1000:.0f} ms", file=out)
    return 0


def _tasks_table(demo: _Demo) -> str:
    return format_table(
        "Registered tasks",
        ["task", "priority", "level", "critical", "per user", "tags"],
        (
            [
                d["task_id"],
                d["priority"],
                priority_level(d["priority"]),
                d["critical"],
                demo.user_args.get(d["task_id"]),
                d["tags"],
            ]
            for d in demo.engine.get_stats()["task_details"]
        ),
    )


def _warm_critical(demo: _Demo) -> str:
    report = demo.engine.warm_critical_data()
    table = format_table(
        "Warm critical data (highest priority first)",
        ["task", "key", "ok", "duration ms", "error"],
        (
            [r["task_id"], r["key"], r["success"], r["duration_ms"], r["error"]]
            for r in report["results"]
        ),
    )
    return (
        f"{table}\nsucceeded {report['succeeded']}, failed {report['failed']}, "
        f"skipped {report['skipped']}, total {report['total_duration_ms']:.1f} ms"
    )


def _preload_users(demo: _Demo) -> str:
    engine = demo.engine
    logins = [
        ("login", engine.warm_user_data("alice")),
        ("login, preload_forms=False", engine.warm_user_data("bob", preload_forms=False)),
        ("login again (within window)", engine.warm_user_data("alice")),
        ("login again, force=True", engine.warm_user_data("alice", force=True)),
    ]
    return format_table(
        "Preload users on login (warm_user_data)",
        ["user", "call", "skipped", "keys warmed", "failed", "duration ms"],
        (
            [r["user_id"], call, r["skipped"], r["keys_warmed"], r["failed"], r["duration_ms"]]
            for call, r in logins
        ),
    )


def _simulate_reads(demo: _Demo) -> str:
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
    return format_table(
        "Reads (hits come from the cache, misses ran the function)",
        ["key", "outcome", "compute ms", "value age ms", "note"],
        (
            [
                r.key,
                "hit" if r.hit else "miss",
                r.compute_ms,
                None if r.age_s is None else r.age_s * 1000,
                notes.get(i, ""),
            ]
            for i, r in enumerate(reads)
        ),
    )


def _invalidate_catalog(demo: _Demo) -> str:
    catalog = demo.catalog
    before = catalog.get() is not NO_VALUE
    count = demo.engine.invalidate_by_tags({"catalog"})
    after = catalog.get() is not NO_VALUE
    with _recorded_reads() as reads:
        catalog()
    outcome = "hit" if reads[0].hit else f"miss, recomputed in {reads[0].compute_ms:.1f} ms"
    return format_table(
        "Invalidate by tag 'catalog'",
        ["step", "catalog cached", "detail"],
        [
            ["before", before, "warmed by warm_critical_data"],
            ["invalidate_by_tags({'catalog'})", after, f"{count} tag invalidated"],
            ["catalog()", catalog.get() is not NO_VALUE, outcome],
        ],
    )


def _stats_tables(demo: _Demo) -> str:
    stats = demo.engine.get_stats()
    tasks = format_table(
        "Tasks after the run (runs: warm-ups and background refreshes)",
        ["task", "runs", "failures", "avg duration ms"],
        (
            [d["task_id"], d["runs"], d["failures"], d["avg_duration_ms"]]
            for d in stats["task_details"]
        ),
    )
    figures = format_table(
        "Engine stats (get_stats)",
        ["figure", "value"],
        [
            ["hits", str(stats["hits"])],
            ["misses", str(stats["misses"])],
            ["hit ratio", f"{stats['hit_ratio']:.0%}"],
            ["backend errors", str(stats["backend_errors"])],
        ],
    )
    return f"{tasks}\n\n{figures}"


# -- entry point ----------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dogpile-warm",
        description="Cache warming for dogpile.cache.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser(
        "demo",
        help="warm, preload, read and invalidate an in-memory cache, and print what happened",
        description=(
            "Register a catalog, a navigation menu and two per-user functions on an "
            "in-memory region; warm critical data, preload users on login, read, "
            "invalidate by tag, and print each step as a table. Needs no server."
        ),
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``dogpile-warm`` command with ``argv`` (default: ``sys.argv[1:]``)."""
    args = _parser().parse_args(argv)
    if args.command == "demo":
        return run_demo(sys.stdout)
    raise AssertionError(f"unhandled command {args.command!r}")  # argparse rejects others


if __name__ == "__main__":
    raise SystemExit(main())
