"""What the ``dogpile-warm`` command draws: rich tables, a progress bar, its reports.

Everything here prints to a rich :class:`~rich.console.Console`; deciding
what to run, and the exit status, is :mod:`dogpile_warm.cli.commands`'s job. The
module imports without rich (``HAVE_RICH`` is then false and nothing here
may be called), so the command can say how to install it.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from .._warming.snapshot import SNAPSHOT_KEY

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
except ImportError:  # the optional "cli" extra is missing: cli.main() says how to install it
    HAVE_RICH = False
else:
    HAVE_RICH = True

_MAX_LISTED = 20  # skipped keys listed without --verbose


# -- building blocks -----------------------------------------------------------------
def make_console() -> Console:
    """The console the command prints to: stdout, without highlighting."""
    # Piped output gets a fixed width so tables are never cut to 80 columns.
    piped = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    return Console(highlight=False, width=120 if piped else None)


def cell(value: object) -> str:
    """``value`` as table text: "-" for None, yes/no, one decimal, collections joined."""
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


def print_line(console: Console, text: str) -> None:
    """Print ``text`` as plain text: brackets in it are never taken for rich markup."""
    console.print(Text(text))


def print_table(
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
        table.add_row(*(Text(cell(v)) for v in row))
    console.print(Text(title, style="bold"))
    console.print(table)
    if not body:
        console.print(Text("(none)"))
    if note:
        console.print(Text(note))
    console.print()


def when(epoch: float | None) -> str | None:
    """Local time of ``epoch`` (HH:MM:SS)."""
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch).strftime("%H:%M:%S")


def expected(epoch: float | None, now: float) -> str | None:
    """An expected event at ``epoch``, seen at ``now``: its local time, and "in 3.2 s",
    "due now", or "overdue by 1.5 s" when that time has passed without it."""
    if epoch is None:
        return None
    delta = round(epoch - now, 1)
    if delta > 0:
        return f"{when(epoch)} (in {delta:.1f} s)"
    if delta < 0:
        return f"{when(epoch)} (overdue by {-delta:.1f} s)"
    return f"{when(epoch)} (due now)"


class Bar:
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
        """One key (or user) done; ``ok`` false counts it as failed."""
        with self._lock:
            self._failed += 0 if ok else 1
            self._progress.update(self._task, advance=1, failed=self._failed)

    def on_result(self, row: Mapping[str, Any]) -> None:
        """``warm_tasks``' ``on_result``: one result row done."""
        self.step(bool(row["success"]))

    @contextmanager
    def shown(self) -> Iterator[Bar]:
        """Draw the bar during the block; at its end the bar shows as complete."""
        with self._progress:
            yield self
            done = self._progress.tasks[0].completed
            self._progress.update(self._task, total=done, completed=done)


# -- the commands' reports ---------------------------------------------------------------
def print_warm_report(
    console: Console, what: str, report: Mapping[str, Any], *, verbose: bool, from_snapshot: bool
) -> int:
    """Print what ``warm`` did (``report`` from ``warm_tasks``/``warm_from_snapshot``).

    ``what`` names what was warmed, for the titles. ``verbose`` lists every
    key warmed and every task skipped, with the reason the engine gave.
    Returns how many keys failed (listed in a failures table).
    """
    if verbose:
        print_table(
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
    if from_snapshot:
        figures.append(["snapshot saved at", when(report["saved_at"])])
    print_table(console, f"Summary: {what}", ["figure", "value"], [[k, str(v)] for k, v in figures])
    if verbose and report.get("skipped_tasks"):
        print_table(
            console,
            f"Skipped tasks ({len(report['skipped_tasks'])})",
            ["task", "reason"],
            [[s["task_id"], s["reason"]] for s in report["skipped_tasks"]],
        )
    if from_snapshot and report["skipped_items"]:
        _print_skipped(console, report["skipped_items"], verbose)
    return _print_failures(
        console,
        [[r["task_id"], r["key"], r["error"]] for r in report["results"] if not r["success"]],
    )


def print_user_reports(
    console: Console, reports: Sequence[Mapping[str, Any]], errors: dict[str, str | None]
) -> int:
    """Print ``warm --user``: ``reports`` from ``warm_user_data``, ``errors`` by failed key.

    Returns how many keys failed (listed in a failures table).
    """
    print_table(
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
    if rows:
        print_table(console, f"Failures ({len(rows)})", [first, "key", "error"], rows)
    return len(rows)


def _print_skipped(console: Console, skipped: Sequence[Mapping[str, Any]], verbose: bool) -> None:
    shown = skipped if verbose else skipped[:_MAX_LISTED]
    more = len(skipped) - len(shown)
    print_table(
        console,
        f"Skipped ({len(skipped)})",
        ["task", "key", "reason"],
        [[s["task_id"], s["key"], s["reason"]] for s in shown],
        note=f"... and {more} more (--verbose lists them all)" if more else None,
    )


def print_snapshot_result(console: Console, result: Mapping[str, Any], *, verbose: bool) -> None:
    """Print what ``snapshot`` saved (``result`` from ``save_hot_set``) and skipped."""
    print_table(
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
        _print_skipped(console, result["skipped"], verbose)
    if not result["stored"]:
        why = (
            "the hottest key's arguments alone exceed the size limit"
            if result["truncated"]
            else "no key read in this process has arguments to save"
        )
        print_line(console, f"nothing saved: {why} (the previous snapshot, if any, is kept)")


def print_stats(console: Console, stats: Mapping[str, Any], performance: Mapping[str, Any]) -> None:
    """Print ``get_stats()`` (its figures and its tasks) and ``get_performance()``."""
    figures = {k: v for k, v in stats.items() if k != "task_details" and not isinstance(v, dict)}
    figures["hit_ratio"] = f"{stats['hit_ratio']:.0%}"
    print_table(
        console,
        "Engine stats (get_stats)",
        ["figure", "value"],
        [[k, cell(v)] for k, v in figures.items()],
    )
    print_table(
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
                when(d["next_run"]),
                d["interval_minutes"],
            ]
            for d in stats["task_details"]
        ],
    )
    print_table(
        console,
        "Warming performance (get_performance)",
        ["figure", "value"],
        [[k, cell(v)] for k, v in performance.items()],
    )


def print_hot_keys(
    console: Console,
    top: int,
    rows: Sequence[tuple[str, int, float, float | None]],
    now: float,
) -> None:
    """Print the ``top`` hot keys: (key, accesses, per minute, predicted next access) rows.

    ``now`` is the tracker's clock, to say how far ahead each predicted access is, or
    how overdue (the key's accesses came more often than it has been read since).
    """
    print_table(
        console,
        f"Hot keys (top {top}; reads seen by this process)",
        ["#", "key", "accesses", "per min (1 h)", "predicted next access"],
        [[i, k, n, f"{f:.2f}", expected(p, now)] for i, (k, n, f, p) in enumerate(rows, 1)],
        note=None
        if rows
        else "no reads recorded: the tracker only sees reads made in this process "
        "(here, while the module was imported)",
    )
