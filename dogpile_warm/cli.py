"""The ``dogpile-warm`` command: warm, inspect and snapshot an application's caches.

Commands (each has ``--help``):

- ``demo``: the library at work on an in-memory region (its own engine; no server).
- ``warm MODULE[:ATTR]``: import the application's module (which registers its
  ``@warmable`` functions and configures its regions) and warm its critical
  tasks, or ``--tags``, ``--all``, ``--user ID ...`` or ``--from-snapshot``.
- ``snapshot MODULE[:ATTR]``: save the engine's hot set for a later cold start.
- ``stats MODULE[:ATTR]`` and ``hot-keys MODULE[:ATTR]``: this process's figures.

``ATTR`` names a :class:`CacheWarmingEngine` in the module (dotted names
work); without it the process's default engine is used. Exit status: 0 on
success, 1 when a key failed to warm (the failures are listed), 2 for usage
errors, a module that does not import, or a missing ``rich`` (the ``cli``
extra: ``pip install 'dogpile_warm[cli]'``). Output is drawn with rich; when
stdout is not a terminal it carries no ANSI codes and is 120 columns wide
(or ``$COLUMNS``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dogpile.cache.api import NO_VALUE

from . import __version__, signals
from .decorator import warmable
from .default import get_warming_engine
from .engine import CacheWarmingEngine
from .errors import UnknownRegionError, WarmError, describe_error
from .snapshot import MAX_TOP_N, SNAPSHOT_KEY, save_hot_set, warm_from_snapshot
from .task import priority_level

try:
    from rich import box
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.table import Table
    from rich.text import Text
except ImportError:  # the optional "cli" extra is missing: main() says how to install it
    _HAVE_RICH = False
else:
    _HAVE_RICH = True

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
_NO_RICH = "dogpile-warm needs rich for its output: pip install 'dogpile_warm[cli]'"
_MAX_LISTED = 20  # skipped keys listed without --verbose


class _UsageError(Exception):
    """A problem with what the user asked for: one line on stderr, exit status 2."""


# -- output -------------------------------------------------------------------------
def _console() -> Console:
    # Piped output gets a fixed width so tables are never cut to 80 columns.
    piped = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    return Console(highlight=False, width=120 if piped else None)


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


def _print_table(
    console: Console,
    title: str,
    headers: Sequence[str],
    rows: Iterable[Sequence[object]],
    note: str | None = None,
) -> None:
    """Print ``rows`` under ``headers`` as a titled table, then ``note``.

    Columns of numbers (and blanks) are right-aligned, floats with one
    decimal; booleans read yes/no, None reads "-", collections are joined.
    Cells are plain text: brackets in keys are never taken for rich markup.
    """
    body = [list(row) for row in rows]
    table = Table(box=box.ROUNDED)
    for i, header in enumerate(headers):
        numeric = any(_is_number(r[i]) for r in body) and all(
            _is_number(r[i]) or r[i] is None for r in body
        )
        table.add_column(header, justify="right" if numeric else "left", overflow="fold")
    for row in body:
        table.add_row(*(Text(_cell(v)) for v in row))
    console.print(Text(title, style="bold"))
    console.print(table)
    if not body:
        console.print(Text("(none)"))
    if note:
        console.print(Text(note))
    console.print()


def _when(epoch: float | None, now: float | None = None) -> str | None:
    """Local time of ``epoch`` (HH:MM:SS), with how far from ``now`` when given."""
    if epoch is None:
        return None
    text = datetime.fromtimestamp(epoch).strftime("%H:%M:%S")
    if now is None:
        return text
    delta = epoch - now
    return f"{text} (in {delta:.1f} s)" if delta >= 0 else f"{text} ({-delta:.1f} s ago)"


class _Bar:
    """A live progress bar counting warmed keys (or users); thread-safe."""

    def __init__(self, console: Console, description: str, total: int | None) -> None:
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[failed]} failed"),
            TimeElapsedColumn(),
            console=console,
        )
        self._task = self._progress.add_task(description, total=total, failed=0)
        self._failed = 0
        self._lock = threading.Lock()

    def step(self, ok: bool) -> None:
        with self._lock:
            self._failed += 0 if ok else 1
            self._progress.update(self._task, advance=1, failed=self._failed)

    def on_result(self, row: dict[str, Any]) -> None:
        """``warm_tasks``' ``on_result``: one result row done."""
        self.step(bool(row["success"]))

    @contextmanager
    def shown(self) -> Iterator[_Bar]:
        with self._progress:
            yield self
            done = self._progress.tasks[0].completed
            self._progress.update(self._task, total=done, completed=done)


# -- the application's module ---------------------------------------------------------
@contextmanager
def _loaded(target: str) -> Iterator[CacheWarmingEngine]:
    """The engine of ``target`` (see :func:`_load_engine`), closed after the block."""
    engine = _load_engine(target)
    try:
        yield engine
    finally:
        engine.close()  # waits for background refreshes to finish


def _load_engine(target: str) -> CacheWarmingEngine:
    """Import ``MODULE[:ATTR]`` (the cwd first on sys.path) and return its engine.

    Raises :class:`_UsageError` naming the module and the error when the
    import fails in any way, or when ``ATTR`` is missing or not an engine.
    """
    module_name, _, attr = target.partition(":")
    if not module_name:
        raise _UsageError(f"no module in {target!r}: give MODULE or MODULE:ATTR")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except (Exception, SystemExit) as exc:  # the user's code: anything can happen
        text = (describe_error(exc) or "").replace("\n", " ")
        raise _UsageError(f"cannot import module {module_name!r}: {text}") from None
    if not attr:
        return get_warming_engine()
    found: Any = module
    for part in attr.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise _UsageError(f"module {module_name!r} has no attribute {attr!r}") from None
    if not isinstance(found, CacheWarmingEngine):
        raise _UsageError(f"{target!r} is a {type(found).__name__}, not a CacheWarmingEngine")
    return found


# -- warm -----------------------------------------------------------------------------
def _cmd_warm(args: argparse.Namespace, console: Console) -> int:
    with _loaded(args.target) as engine:
        if args.users:
            return _warm_users(engine, args, console)
        what, run = _warming(engine, args)
        with _Bar(console, f"warming {what}", None).shown() as bar:
            report = run(bar.on_result)
    if args.from_snapshot and not report["found"]:
        console.print(Text(f"no snapshot under {SNAPSHOT_KEY!r} in the region: nothing to warm"))
        return EXIT_OK
    if args.verbose:
        _print_table(
            console,
            f"Warmed {what}",
            ["task", "key", "ok", "duration ms", "error"],
            [
                [r["task_id"], r["key"], r["success"], r["duration_ms"], r["error"]]
                for r in report["results"]
            ],
        )
    figures = [
        ["succeeded", report["succeeded"]],
        ["failed", report["failed"]],
        ["skipped", report["skipped"]],
        ["total ms", f"{report['total_duration_ms']:.1f}"],
    ]
    if args.from_snapshot:
        figures.append(["snapshot saved at", _when(report["saved_at"])])
    _print_table(
        console, f"Summary: {what}", ["figure", "value"], [[k, str(v)] for k, v in figures]
    )
    if args.from_snapshot and report["skipped_items"]:
        _print_skipped(console, report["skipped_items"], args.verbose)
    return _print_failures(
        console,
        [[r["task_id"], r["key"], r["error"]] for r in report["results"] if not r["success"]],
    )


_Run = Callable[[Callable[[dict[str, Any]], None]], dict[str, Any]]


def _warming(engine: CacheWarmingEngine, args: argparse.Namespace) -> tuple[str, _Run]:
    """What ``warm`` warms (for titles) and the call that does it, given ``on_result``."""

    def run(on_result: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        if args.from_snapshot:
            return warm_from_snapshot(engine, args.region, args.rate, args.top, on_result)
        if args.all:
            return engine.warm_tasks(on_result=on_result)
        if args.tags:
            return engine.warm_tasks(args.tags, on_result=on_result)
        return engine.warm_tasks(critical_only=True, on_result=on_result)

    if args.from_snapshot:
        what = "keys of the snapshot"
    elif args.all:
        what = "all tasks"
    elif args.tags:
        what = f"tasks tagged {', '.join(args.tags)}"
    else:
        what = "critical tasks"
    return what, run


def _warm_users(engine: CacheWarmingEngine, args: argparse.Namespace, console: Console) -> int:
    errors: dict[str, str | None] = {}

    def on_failed(sender: Any, *, key: str, error: BaseException, **_: Any) -> None:
        errors[key] = describe_error(error)

    reports = []
    signals.warm_failed.connect(on_failed, weak=False)
    try:
        with _Bar(console, "warming users", len(args.users)).shown() as bar:
            for user_id in args.users:
                report = engine.warm_user_data(user_id, force=True)
                reports.append(report)
                bar.step(not report["failed"])
    finally:
        signals.warm_failed.disconnect(on_failed)
    _print_table(
        console,
        "Summary: users warmed (warm_user_data, force=True)",
        ["user", "keys warmed", "failed", "duration ms"],
        [
            [repr(r["user_id"]), len(r["keys_warmed"]), len(r["failed"]), r["duration_ms"]]
            for r in reports
        ],
    )
    return _print_failures(
        console,
        [[repr(r["user_id"]), key, errors.get(key)] for r in reports for key in r["failed"]],
        first="user",
    )


def _print_failures(console: Console, rows: list[list[Any]], first: str = "task") -> int:
    if not rows:
        return EXIT_OK
    _print_table(console, f"Failures ({len(rows)})", [first, "key", "error"], rows)
    return EXIT_FAILED


def _print_skipped(console: Console, skipped: list[dict[str, Any]], verbose: bool) -> None:
    shown = skipped if verbose else skipped[:_MAX_LISTED]
    more = len(skipped) - len(shown)
    _print_table(
        console,
        f"Skipped ({len(skipped)})",
        ["task", "key", "reason"],
        [[s["task_id"], s["key"], s["reason"]] for s in shown],
        note=f"... and {more} more (--verbose lists them all)" if more else None,
    )


# -- snapshot, stats, hot-keys ---------------------------------------------------------
def _cmd_snapshot(args: argparse.Namespace, console: Console) -> int:
    with _loaded(args.target) as engine:
        result = save_hot_set(engine, args.top, args.region)
    _print_table(
        console,
        f"Snapshot of the hot set ({SNAPSHOT_KEY})",
        ["figure", "value"],
        [
            ["saved", str(result["saved"])],
            ["skipped", str(len(result["skipped"]))],
            ["left out for size", str(result["truncated"])],
            ["bytes", str(result["bytes"])],
            ["stored", "yes" if result["stored"] else "no"],
        ],
    )
    if result["skipped"]:
        _print_skipped(console, result["skipped"], args.verbose)
    if not result["stored"]:
        why = (
            "the hottest key's arguments alone exceed the size limit"
            if result["truncated"]
            else "no key read in this process has arguments to save"
        )
        console.print(Text(f"nothing saved: {why} (the previous snapshot, if any, is kept)"))
    return EXIT_OK


def _cmd_stats(args: argparse.Namespace, console: Console) -> int:
    with _loaded(args.target) as engine:
        stats, performance = engine.get_stats(), engine.get_performance()
    if args.json:
        print(json.dumps({"stats": stats, "performance": performance}, indent=2, default=str))
        return EXIT_OK
    figures = {k: v for k, v in stats.items() if k != "task_details" and not isinstance(v, dict)}
    figures["hit_ratio"] = f"{stats['hit_ratio']:.0%}"
    _print_table(
        console,
        "Engine stats (get_stats)",
        ["figure", "value"],
        [[k, _cell(v)] for k, v in figures.items()],
    )
    _print_table(
        console,
        "Tasks (highest priority first)",
        [
            "task",
            "priority",
            "critical",
            "tags",
            "runs",
            "failures",
            "avg ms",
            "next run",
            "every min",
        ],
        [
            [
                d["task_id"],
                d["priority"],
                d["critical"],
                d["tags"],
                d["runs"],
                d["failures"],
                d["avg_duration_ms"],
                _when(d["next_run"]),
                d["interval_minutes"],
            ]
            for d in stats["task_details"]
        ],
    )
    _print_table(
        console,
        "Warming performance (get_performance)",
        ["figure", "value"],
        [[k, _cell(v)] for k, v in performance.items()],
    )
    return EXIT_OK


def _cmd_hot_keys(args: argparse.Namespace, console: Console) -> int:
    with _loaded(args.target) as engine:
        tracker = engine.usage_tracker
        now = tracker.clock()
        rows = [
            (key, count, tracker.get_access_frequency(key, 60), tracker.predict_next_access(key))
            for key, count in tracker.get_hot_keys(args.top)
        ]
    if args.json:
        keys = [
            {"key": k, "accesses": n, "per_minute": f, "predicted_next_access": p}
            for k, n, f, p in rows
        ]
        print(json.dumps({"hot_keys": keys}, indent=2))
        return EXIT_OK
    _print_table(
        console,
        f"Hot keys (top {args.top}; reads seen by this process)",
        ["#", "key", "accesses", "per min (1 h)", "predicted next access"],
        [[i, k, n, f"{f:.2f}", _when(p, now)] for i, (k, n, f, p) in enumerate(rows, 1)],
        note=None
        if rows
        else "no reads recorded: the tracker only sees reads made in this process "
        "(here, while the module was imported)",
    )
    return EXIT_OK


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


def _cmd_demo(args: argparse.Namespace, console: Console) -> int:
    """Run the demo, printing a table per step."""
    started = time.perf_counter()
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
            step(demo, console)
    finally:
        engine.close()
    console.print(Text(f"demo finished in {(time.perf_counter() - started) * 1000:.0f} ms"))
    return EXIT_OK


def _demo_tasks(demo: _Demo, console: Console) -> None:
    _print_table(
        console,
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


def _demo_warm_critical(demo: _Demo, console: Console) -> None:
    report = demo.engine.warm_critical_data()
    _print_table(
        console,
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


def _demo_preload_users(demo: _Demo, console: Console) -> None:
    engine = demo.engine
    logins = [
        ("login", engine.warm_user_data("alice")),
        ("login, preload_forms=False", engine.warm_user_data("bob", preload_forms=False)),
        ("login again (within window)", engine.warm_user_data("alice")),
        ("login again, force=True", engine.warm_user_data("alice", force=True)),
    ]
    _print_table(
        console,
        "Preload users on login (warm_user_data)",
        ["user", "call", "skipped", "keys warmed", "failed", "duration ms"],
        [
            [r["user_id"], call, r["skipped"], r["keys_warmed"], r["failed"], r["duration_ms"]]
            for call, r in logins
        ],
    )


def _demo_reads(demo: _Demo, console: Console) -> None:
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
    _print_table(
        console,
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


def _demo_invalidate(demo: _Demo, console: Console) -> None:
    catalog = demo.catalog
    before = catalog.get() is not NO_VALUE
    count = demo.engine.invalidate_by_tags({"catalog"})
    after = catalog.get() is not NO_VALUE
    with _recorded_reads() as reads:
        catalog()
    outcome = "hit" if reads[0].hit else f"miss, recomputed in {reads[0].compute_ms:.1f} ms"
    _print_table(
        console,
        "Invalidate by tag 'catalog'",
        ["step", "catalog cached", "detail"],
        [
            ["before", before, "warmed by warm_critical_data"],
            ["invalidate_by_tags({'catalog'})", after, f"{count} tag invalidated"],
            ["catalog()", catalog.get() is not NO_VALUE, outcome],
        ],
    )


def _demo_stats(demo: _Demo, console: Console) -> None:
    stats = demo.engine.get_stats()
    _print_table(
        console,
        "Tasks after the run (runs: warm-ups and background refreshes)",
        ["task", "runs", "failures", "avg duration ms"],
        [
            [d["task_id"], d["runs"], d["failures"], d["avg_duration_ms"]]
            for d in stats["task_details"]
        ],
    )
    _print_table(
        console,
        "Engine stats (get_stats)",
        ["figure", "value"],
        [
            ["hits", str(stats["hits"])],
            ["misses", str(stats["misses"])],
            ["hit ratio", f"{stats['hit_ratio']:.0%}"],
            ["backend errors", str(stats["backend_errors"])],
        ],
    )


# -- entry point ----------------------------------------------------------------------
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _tag_list(text: str) -> list[str]:
    tags = [t.strip() for t in text.split(",") if t.strip()]
    if not tags:
        raise argparse.ArgumentTypeError(f"no tags in {text!r}; give e.g. catalog,prices")
    return tags


_TARGET_HELP = (
    "the application's module, imported with the current directory first on sys.path; "
    ":ATTR names a CacheWarmingEngine in it (default: the process's default engine)"
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dogpile-warm",
        description="Cache warming for dogpile.cache.",
        epilog="Exit status: 0 success, 1 some key failed to warm, 2 usage or import error.",
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

    warm = commands.add_parser(
        "warm",
        help="warm an application's caches now (critical tasks by default)",
        description=(
            "Import MODULE (which registers its @warmable functions and configures its "
            "regions) and warm its critical tasks, highest priority first, with a live "
            "progress bar and a summary. Exit status 1 when any key failed (listed)."
        ),
    )
    warm.add_argument("target", metavar="MODULE[:ATTR]", help=_TARGET_HELP)
    warm.set_defaults(subparser=warm)  # its usage line for the checks argparse cannot do
    which = warm.add_mutually_exclusive_group()
    which.add_argument(
        "--tags", type=_tag_list, metavar="A,B", help="warm the tasks with any of these tags"
    )
    which.add_argument(
        "--all", action="store_true", help="warm every task (per-user ones excepted)"
    )
    which.add_argument(
        "--user",
        dest="users",
        nargs="+",
        metavar="ID",
        help="warm_user_data(ID, force=True) for each user id (strings; see --id-type)",
    )
    which.add_argument(
        "--from-snapshot",
        action="store_true",
        help=f"warm the hot set saved by `dogpile-warm snapshot` (key {SNAPSHOT_KEY!r}), hottest first",
    )
    warm.add_argument(
        "--id-type",
        choices=("str", "int"),
        default="str",
        help="how to pass the --user ids: a user id 7 and '7' are different keys (default: str)",
    )
    warm.add_argument(
        "--rate",
        type=_positive_float,
        metavar="N",
        help="with --from-snapshot: at most N keys per second",
    )
    warm.add_argument(
        "--top",
        type=_positive_int,
        metavar="N",
        help="with --from-snapshot: only the N hottest keys",
    )
    warm.add_argument(
        "--region",
        metavar="NAME",
        help="with --from-snapshot: the region holding the snapshot (default: the engine's default region)",
    )
    warm.add_argument(
        "-v", "--verbose", action="store_true", help="list every key warmed and every key skipped"
    )

    snapshot = commands.add_parser(
        "snapshot",
        help="save the engine's hot set to the backend, for `warm --from-snapshot`",
        description=(
            "Import MODULE and save the hottest keys this process has read (with their "
            "arguments, access counts and priorities) under the snapshot key in the "
            "backend, for `dogpile-warm warm MODULE --from-snapshot` after a restart. "
            "A fresh process has read nothing unless MODULE reads at import: a running "
            "application saves its own hot set with dogpile_warm.snapshot.save_hot_set. "
            "Nothing read: the previous snapshot is kept."
        ),
    )
    snapshot.add_argument("target", metavar="MODULE[:ATTR]", help=_TARGET_HELP)
    snapshot.add_argument(
        "--top",
        type=_positive_int,
        default=1000,
        metavar="N",
        help=f"save at most N keys (default 1000, at most {MAX_TOP_N}; the snapshot stays under 900 kB for memcached)",
    )
    snapshot.add_argument(
        "--region",
        metavar="NAME",
        help="the region to store it in (default: the engine's default region)",
    )
    snapshot.add_argument("-v", "--verbose", action="store_true", help="list every key skipped")

    stats = commands.add_parser(
        "stats",
        help="print the engine's stats and warming performance",
        description=(
            "Import MODULE and print get_stats() and get_performance() as tables: the "
            "figures of this process (reads and warm-ups done while importing MODULE)."
        ),
    )
    stats.add_argument("target", metavar="MODULE[:ATTR]", help=_TARGET_HELP)
    stats.add_argument(
        "--json", action="store_true", help='one JSON object with "stats" and "performance"'
    )

    hot = commands.add_parser(
        "hot-keys",
        help="list the hottest keys with access counts and predicted next access",
        description=(
            "Import MODULE and list the hottest keys of the engine's usage tracker: "
            "accesses, accesses per minute over the last hour, and the predicted next "
            "access. The tracker sees the reads of this process only."
        ),
    )
    hot.add_argument("target", metavar="MODULE[:ATTR]", help=_TARGET_HELP)
    hot.add_argument(
        "--top", type=_positive_int, default=10, metavar="N", help="how many keys (default 10)"
    )
    hot.add_argument("--json", action="store_true", help='one JSON object with "hot_keys"')
    return parser


_COMMANDS: dict[str, Callable[[argparse.Namespace, Console], int]] = {
    "demo": _cmd_demo,
    "warm": _cmd_warm,
    "snapshot": _cmd_snapshot,
    "stats": _cmd_stats,
    "hot-keys": _cmd_hot_keys,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``dogpile-warm`` command with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "warm":
        if not args.from_snapshot and (args.rate or args.top or args.region):
            args.subparser.error("--rate, --top and --region go with --from-snapshot")
        if args.users and args.id_type == "int":
            try:
                args.users = [int(u) for u in args.users]
            except ValueError:
                args.subparser.error(f"--id-type int: not whole numbers: {' '.join(args.users)}")
    if not _HAVE_RICH:
        print(_NO_RICH, file=sys.stderr)
        return EXIT_USAGE
    try:
        return _COMMANDS[args.command](args, _console())
    except (_UsageError, UnknownRegionError) as exc:
        print(f"dogpile-warm: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except WarmError as exc:  # e.g. the backend could not keep or give the snapshot
        print(f"dogpile-warm: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    raise SystemExit(main())
