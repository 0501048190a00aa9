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
(or ``$COLUMNS``). ``--json`` output (``stats``, ``hot-keys``) is plain JSON
and needs no rich.

This module parses the arguments and runs the commands; what they draw is
in :mod:`dogpile_warm.cli.render`, what the demo does in :mod:`dogpile_warm.cli.demo`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from dogpile.cache.backends.memory import MemoryBackend

from .. import signals
from .._warming.runs import OnResult
from .._warming.snapshot import SNAPSHOT_KEY
from ..default import get_warming_engine
from ..engine import CacheWarmingEngine
from ..errors import UnknownRegionError, WarmError, describe_error
from ..reports import Performance, Stats, WarmReport
from .demo import DemoTable, run_demo
from .parser import build_parser
from .render import (
    HAVE_RICH,
    Bar,
    make_console,
    print_hot_keys,
    print_line,
    print_snapshot_result,
    print_stats,
    print_table,
    print_user_reports,
    print_warm_report,
)

if TYPE_CHECKING:  # rich is optional at run time: main() says how to install it
    from rich.console import Console

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
_NO_RICH = "dogpile-warm needs rich for its output: pip install 'dogpile_warm[cli]'"
_SHARED = "snapshots need a backend shared between processes (memcached, Redis)"


class _UsageError(Exception):
    """A problem with what the user asked for: one line on stderr, exit status 2."""


def _status(failed: int) -> int:
    """The exit status after a warm-up in which ``failed`` keys failed."""
    return EXIT_FAILED if failed else EXIT_OK


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


def _in_memory(engine: CacheWarmingEngine, region: str | None) -> bool:
    """Whether ``region`` (None: the engine's default) keeps its values in this process."""
    found = engine.get_region(region) if region else engine.region
    return isinstance(found.backend, MemoryBackend)


# -- warm -----------------------------------------------------------------------------
def _cmd_warm(args: argparse.Namespace, console: Console) -> int:
    with _loaded(args.target) as engine:
        if args.users:
            return _warm_users(engine, args, console)
        what, run = _warming(engine, args)
        with Bar(console, f"warming {what}", None).shown() as bar:
            report = run(bar.on_result)
        in_memory = args.from_snapshot and _in_memory(engine, args.region)
    if args.from_snapshot and not report.get("found", True):
        print_line(console, f"no snapshot under {SNAPSHOT_KEY!r} in the region: nothing to warm")
        if in_memory:
            print_line(
                console, f"the region is in memory: no other process stored one here; {_SHARED}"
            )
        return EXIT_OK
    failed = print_warm_report(
        console, what, report, verbose=args.verbose, from_snapshot=args.from_snapshot
    )
    return _status(failed)


_Run = Callable[[OnResult], WarmReport]


def _warming(engine: CacheWarmingEngine, args: argparse.Namespace) -> tuple[str, _Run]:
    """What ``warm`` warms (for titles) and the call that does it, given ``on_result``."""

    def run(on_result: OnResult) -> WarmReport:
        if args.from_snapshot:
            return engine.warm_from_snapshot(args.region, args.rate, args.top, on_result)
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
        with Bar(console, "warming users", len(args.users)).shown() as bar:
            for user_id in args.users:
                report = engine.warm_user_data(user_id, force=True)
                reports.append(report)
                bar.step(not report["failed"])
    finally:
        signals.warm_failed.disconnect(on_failed)
    return _status(print_user_reports(console, reports, errors))


# -- snapshot, stats, hot-keys ---------------------------------------------------------
def _cmd_snapshot(args: argparse.Namespace, console: Console) -> int:
    with _loaded(args.target) as engine:
        result = engine.save_hot_set(args.top, args.region)
        in_memory = _in_memory(engine, args.region)
    print_snapshot_result(console, result, verbose=args.verbose)
    if in_memory and result["stored"]:
        print_line(
            console, f"the region is in memory: the snapshot ends with this process; {_SHARED}"
        )
    return EXIT_OK


def _stats(args: argparse.Namespace) -> tuple[Stats, Performance]:
    """``get_stats()`` and ``get_performance()`` of the target's engine."""
    with _loaded(args.target) as engine:
        return engine.get_stats(), engine.get_performance()


def _cmd_stats(args: argparse.Namespace, console: Console) -> int:
    print_stats(console, *_stats(args))
    return EXIT_OK


def _json_stats(args: argparse.Namespace) -> int:
    stats, performance = _stats(args)
    print(json.dumps({"stats": stats, "performance": performance}, indent=2, default=str))
    return EXIT_OK


_HotKey = tuple[str, int, float, float | None]


def _hot_keys(args: argparse.Namespace) -> tuple[list[_HotKey], float]:
    """The ``--top`` hot keys as (key, accesses, per minute, predicted next access), and now."""
    with _loaded(args.target) as engine:
        tracker = engine.usage_tracker
        now = tracker.clock()
        rows = [
            (key, count, tracker.get_access_frequency(key, 60), tracker.predict_next_access(key))
            for key, count in tracker.get_hot_keys(args.top)
        ]
    return rows, now


def _cmd_hot_keys(args: argparse.Namespace, console: Console) -> int:
    rows, now = _hot_keys(args)
    print_hot_keys(console, args.top, rows, now)
    return EXIT_OK


def _json_hot_keys(args: argparse.Namespace) -> int:
    rows, _ = _hot_keys(args)
    keys = [
        {"key": k, "accesses": n, "per_minute": f, "predicted_next_access": p}
        for k, n, f, p in rows
    ]
    print(json.dumps({"hot_keys": keys}, indent=2))
    return EXIT_OK


# -- demo -----------------------------------------------------------------------------
def _cmd_demo(args: argparse.Namespace, console: Console) -> int:
    """Run the demo, printing a table per step as it is done."""
    started = time.perf_counter()

    def show(table: DemoTable) -> None:
        print_table(console, table.title, table.headers, table.rows, table.note)

    run_demo(show)
    print_line(console, f"demo finished in {(time.perf_counter() - started) * 1000:.0f} ms")
    return EXIT_OK


# -- entry point ----------------------------------------------------------------------
_COMMANDS: dict[str, Callable[[argparse.Namespace, Console], int]] = {
    "demo": _cmd_demo,
    "warm": _cmd_warm,
    "snapshot": _cmd_snapshot,
    "stats": _cmd_stats,
    "hot-keys": _cmd_hot_keys,
}
# --json: plain JSON on stdout, without rich.
_JSON_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "stats": _json_stats,
    "hot-keys": _json_hot_keys,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``dogpile-warm`` command with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "warm":
        if not args.from_snapshot and (args.rate or args.top or args.region):
            args.subparser.error("--rate, --top and --region go with --from-snapshot")
        if args.users and args.id_type == "int":
            try:
                args.users = [int(u) for u in args.users]
            except ValueError:
                args.subparser.error(f"--id-type int: not whole numbers: {' '.join(args.users)}")
    try:
        if getattr(args, "json", False):
            return _JSON_COMMANDS[args.command](args)
        if not HAVE_RICH:
            print(_NO_RICH, file=sys.stderr)
            return EXIT_USAGE
        return _COMMANDS[args.command](args, make_console())
    except (_UsageError, UnknownRegionError) as exc:
        print(f"dogpile-warm: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except WarmError as exc:  # e.g. the backend could not keep or give the snapshot
        print(f"dogpile-warm: {exc}", file=sys.stderr)
        return EXIT_FAILED
