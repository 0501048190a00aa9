"""The dogpile-warm command line: help, and a demo that prints its tables."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from dogpile_warm.cli import format_table, main


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dogpile_warm.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def section(output: str, title: str) -> str:
    """The text of one titled table of the demo's output, up to the next blank line."""
    start = output.index(f"{title}\n")
    end = output.find("\n\n", start)
    return output[start : end if end != -1 else None]


def test_help_lists_the_demo_command() -> None:
    """`dogpile-warm --help` exits 0 and names the demo subcommand."""
    done = run_cli("--help")
    assert done.returncode == 0, done.stderr
    assert "usage: dogpile-warm" in done.stdout
    assert "demo" in done.stdout


def test_demo_help_describes_the_demo() -> None:
    """`dogpile-warm demo --help` exits 0 and says the demo needs no server."""
    done = run_cli("demo", "--help")
    assert done.returncode == 0, done.stderr
    assert "usage: dogpile-warm demo" in done.stdout
    assert "Needs no server" in done.stdout


def test_no_command_is_a_usage_error() -> None:
    """Running without a subcommand exits 2 with argparse's usage message."""
    done = run_cli()
    assert done.returncode == 2
    assert "usage: dogpile-warm" in done.stderr


def test_demo_exits_zero_with_tasks_warmings_and_hit_ratio() -> None:
    """The demo exits 0 and prints tasks by priority, critical warmings, preloads and a hit ratio."""
    done = run_cli("demo")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    out = done.stdout

    tasks = section(out, "Registered tasks").splitlines()[4:]
    assert [row.split()[0] for row in tasks] == [
        "catalog",
        "navigation",
        "user_session",
        "recent_forms",
    ]
    assert tasks[0].split()[1:4] == ["150", "critical", "yes"]
    assert tasks[3].split()[1:5] == ["40", "nice", "to", "have"]

    warmed = section(out, "Warm critical data (highest priority first)").splitlines()
    assert [row.split()[:3] for row in warmed[4:6]] == [
        ["catalog", "catalog", "yes"],
        ["navigation", "navigation", "yes"],
    ]
    assert "succeeded 2, failed 0" in warmed[-1]

    preload = section(out, "Preload users on login (warm_user_data)")
    assert re.search(r"alice\s+login again \(within window\)\s+yes", preload)
    assert re.search(r"bob\s+login, preload_forms=False\s+no\s+user_session\|'bob'\s", preload)

    reads = section(out, "Reads (hits come from the cache, misses ran the function)")
    assert re.search(r"user_session\|'carol'\s+miss .* never logged in", reads)

    invalidation = section(out, "Invalidate by tag 'catalog'")
    assert re.search(r"invalidate_by_tags\(\{'catalog'\}\)\s+no\s+1 tag invalidated", invalidation)

    figures = section(out, "Engine stats (get_stats)")
    assert re.search(r"^hits\s+10$", figures, re.M)
    assert re.search(r"^misses\s+4$", figures, re.M)
    assert re.search(r"^hit ratio\s+71%$", figures, re.M)


def test_demo_runs_in_process_and_leaves_default_engine_alone(
    capsys: pytest.CaptureFixture[str], engine: object
) -> None:
    """main(["demo"]) returns 0 and registers nothing on the default engine."""
    import dogpile_warm

    assert main(["demo"]) == 0
    assert "hit ratio" in capsys.readouterr().out
    assert dogpile_warm.get_warming_engine() is engine
    assert dogpile_warm.get_warming_stats()["tasks"] == 0


def test_format_table_aligns_numbers_right_and_text_left() -> None:
    """format_table pads columns to the widest cell, right-aligns numbers, shows None as '-'."""
    table = format_table("T", ["name", "ms", "ok"], [["a", 1.25, True], ["long name", 10.0, None]])
    assert table.splitlines() == [
        "T",
        "=",
        "name         ms  ok",
        "---------  ----  ---",
        "a           1.2  yes",
        "long name  10.0  -",
    ]
