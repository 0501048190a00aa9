"""The dogpile-warm command, run as a user runs it: help, demo, warm, snapshot, stats, hot-keys."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from dogpile.cache import make_region

from dogpile_warm import CacheWarmingEngine
from dogpile_warm.cli import main
from tests.servers import ClientCloser, Server

# Environment variables that would change rich's output (colour, width) in the child.
_RICH_ENV = ("FORCE_COLOR", "NO_COLOR", "COLUMNS", "LINES", "TTY_COMPATIBLE", "TTY_INTERACTIVE")

SCRIPT = Path(sys.executable).with_name("dogpile-warm")

APP = """
import dogpile_warm
from dogpile_warm import CacheWarmingEngine, warmable

engine = CacheWarmingEngine(max_workers=2)

@warmable(priority=150, tags={"catalog"}, name="catalog", engine=engine)
def catalog():
    return ["espresso", "latte"]

@warmable(priority=100, tags={"navigation"}, name="navigation", engine=engine)
def navigation():
    return ["home", "menu"]

@warmable(priority=50, tags={"catalog"}, name="product", engine=engine, warm_args=[(1,), (2,)])
def product(product_id):
    return {"id": product_id}

@warmable(priority=60, tags={"user"}, name="profile", user_arg="user_id", engine=engine)
def profile(user_id):
    return {"user_id": user_id}

if READS:
    for _ in range(3):
        catalog()
    product(2)
    product(2)
    product(1)
"""

BROKEN_PRICES = """
@warmable(priority=120, name="prices", engine=engine)
def prices():
    raise RuntimeError("price service down")
"""


def run_cli(
    *args: str, cwd: Path | None = None, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in _RICH_ENV}
    return subprocess.run(
        [sys.executable, "-m", "dogpile_warm.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**env, "PYTHONIOENCODING": "utf-8", **(extra_env or {})},
    )


def without_rich(tmp_path: Path) -> dict[str, str]:
    """Environment of a child in which ``import rich`` fails, as when the cli extra is missing."""
    shadow = tmp_path / "no_rich"
    shadow.mkdir()
    (shadow / "rich.py").write_text("raise ImportError('No module named rich')\n")
    return {"PYTHONPATH": str(shadow)}


def write_app(tmp_path: Path, *, reads: bool = False, broken: bool = False) -> Path:
    """Write the user's module ``app.py`` into ``tmp_path`` and return the directory."""
    source = f"READS = {reads}\n" + textwrap.dedent(APP) + (BROKEN_PRICES if broken else "")
    (tmp_path / "app.py").write_text(source)
    return tmp_path


def table(output: str, title: str) -> list[list[str]]:
    """The body rows (cells stripped) of the table printed under the line ``title``."""
    lines = output.splitlines()
    start = lines.index(title)
    rows = []
    for line in lines[start + 1 :]:
        if line.startswith("│"):
            rows.append([cell.strip() for cell in line.strip().strip("│").split("│")])
        elif line.startswith("╰"):
            break
    return rows[1:]  # without the header


def figures(output: str, title: str) -> dict[str, str]:
    """A two-column (figure, value) table as a dict."""
    return {name: value for name, value in table(output, title)}


# -- help and usage ---------------------------------------------------------------------
@pytest.mark.slow
def test_help_lists_every_command() -> None:
    """`dogpile-warm --help` exits 0 and names demo, warm, snapshot, stats and hot-keys."""
    done = run_cli("--help")
    assert done.returncode == 0, done.stderr
    assert "usage: dogpile-warm" in done.stdout
    for command in ("demo", "warm", "snapshot", "stats", "hot-keys"):
        assert command in done.stdout


@pytest.mark.parametrize("command", ["demo", "warm", "snapshot", "stats", "hot-keys"])
@pytest.mark.slow
def test_every_command_has_help(command: str) -> None:
    """`dogpile-warm COMMAND --help` exits 0 with that command's usage line."""
    done = run_cli(command, "--help")
    assert done.returncode == 0, done.stderr
    assert f"usage: dogpile-warm {command}" in done.stdout


@pytest.mark.slow
def test_demo_help_describes_the_demo() -> None:
    """`dogpile-warm demo --help` says the demo needs no server."""
    assert "Needs no server" in run_cli("demo", "--help").stdout


@pytest.mark.slow
def test_no_command_is_a_usage_error() -> None:
    """Running without a subcommand exits 2 with argparse's usage message."""
    done = run_cli()
    assert done.returncode == 2
    assert "usage: dogpile-warm" in done.stderr


@pytest.mark.slow
def test_rate_without_from_snapshot_is_a_usage_error(tmp_path: Path) -> None:
    """--rate only goes with --from-snapshot: exit 2 saying so."""
    done = run_cli("warm", "app", "--rate", "5", cwd=write_app(tmp_path))
    assert done.returncode == 2
    assert "--rate, --top and --region go with --from-snapshot" in done.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["hot-keys", "app", "--top", "0"], "--top: N must be at least 1, got 0"),
        (["hot-keys", "app", "--top", "1.5"], "--top: not a whole number: '1.5'"),
        (["warm", "app", "--from-snapshot", "--rate", "0"], "--rate: N must be positive"),
        (["warm", "app", "--from-snapshot", "--rate", "inf"], "--rate: N must be a finite number"),
        (["warm", "app", "--from-snapshot", "--rate", "x"], "--rate: not a number: 'x'"),
    ],
)
def test_counts_and_rates_out_of_range_are_usage_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--top takes a whole number from 1, --rate a finite number above 0: else exit 2, naming it."""
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_missing_rich_says_how_to_install_it_and_exits_2() -> None:
    """Without rich, the command prints one line naming dogpile_warm[cli] and exits 2."""
    code = (
        "import sys; sys.modules['rich'] = None\n"
        "from dogpile_warm.cli import main\n"
        "raise SystemExit(main(['demo']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "dogpile-warm needs rich for its output: pip install 'dogpile_warm[cli]'"
    ]


# -- demo ---------------------------------------------------------------------------
@pytest.mark.slow
def test_demo_exits_zero_with_tasks_warmings_and_hit_ratio() -> None:
    """The demo exits 0 and prints tasks by priority, critical warmings, preloads and a hit ratio."""
    done = run_cli("demo")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    out = done.stdout
    assert "\x1b" not in out  # no ANSI codes when stdout is not a terminal

    tasks = table(out, "Registered tasks")
    assert [row[0] for row in tasks] == ["catalog", "navigation", "user_session", "recent_forms"]
    assert tasks[0][1:4] == ["150", "critical", "yes"]
    assert tasks[3][1:3] == ["40", "nice to have"]

    warmed = table(out, "Warm critical data (highest priority first)")
    assert [row[:3] for row in warmed] == [
        ["catalog", "catalog", "yes"],
        ["navigation", "navigation", "yes"],
    ]
    assert any(line.startswith("succeeded 2, failed 0") for line in out.splitlines())

    preload = table(out, "Preload users on login (warm_user_data)")
    assert ["alice", "login again (within window)", "yes"] in [row[:3] for row in preload]
    bob = next(row for row in preload if row[0] == "bob")
    assert bob[1:4] == ["login, preload_forms=False", "no", "user_session|'bob'"]

    reads = table(out, "Reads (hits come from the cache, misses ran the function)")
    carol = next(row for row in reads if row[0] == "user_session|'carol'")
    assert (carol[1], carol[4]) == ("miss", "never logged in")

    invalidation = table(out, "Invalidate by tag 'catalog'")
    assert invalidation[1] == ["invalidate_by_tags({'catalog'})", "no", "1 tag invalidated"]

    stats = figures(out, "Engine stats (get_stats)")
    assert (stats["hits"], stats["misses"], stats["hit ratio"]) == ("10", "4", "71%")


def test_demo_runs_in_process_and_leaves_default_engine_alone(
    capsys: pytest.CaptureFixture[str], engine: object
) -> None:
    """main(["demo"]) returns 0 and registers nothing on the default engine."""
    import dogpile_warm

    assert main(["demo"]) == 0
    assert "hit ratio" in capsys.readouterr().out
    assert dogpile_warm.get_warming_engine() is engine
    assert dogpile_warm.get_warming_stats()["tasks"] == 0


@pytest.mark.slow
def test_the_installed_script_runs_the_demo() -> None:
    """The `dogpile-warm` console script (from pyproject's entry point) runs the demo."""
    assert SCRIPT.exists(), f"{SCRIPT} missing: install with pip install -e '.[dev]'"
    done = subprocess.run(
        [str(SCRIPT), "demo"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "Registered tasks" in done.stdout


# -- warm ---------------------------------------------------------------------------
@pytest.mark.slow
def test_warm_critical_tasks_succeeds_with_a_summary(tmp_path: Path) -> None:
    """`warm app:engine` warms the critical tasks, shows a finished progress bar and exits 0."""
    done = run_cli("warm", "app:engine", "-v", cwd=write_app(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "\x1b" not in done.stdout
    assert "warming critical tasks" in done.stdout and "2/2" in done.stdout
    rows = table(done.stdout, "Warmed critical tasks")
    assert [row[:3] for row in rows] == [
        ["catalog", "catalog", "yes"],
        ["navigation", "navigation", "yes"],
    ]
    summary = figures(done.stdout, "Summary: critical tasks")
    assert (summary["succeeded"], summary["failed"]) == ("2", "0")
    assert "Failures" not in done.stdout


@pytest.mark.slow
def test_warm_with_a_failing_task_exits_1_and_lists_it(tmp_path: Path) -> None:
    """A task that raises makes `warm` exit 1 with the task and its error in a failures table."""
    done = run_cli("warm", "app:engine", cwd=write_app(tmp_path, broken=True))
    assert done.returncode == 1, done.stdout + done.stderr
    assert table(done.stdout, "Failures (1)") == [
        ["prices", "prices", "RuntimeError: price service down"]
    ]
    assert figures(done.stdout, "Summary: critical tasks")["succeeded"] == "2"


@pytest.mark.slow
def test_warm_tags_and_all_choose_the_tasks(tmp_path: Path) -> None:
    """--tags warms the tagged tasks' keys; --all warms every task, per-user ones skipped."""
    app = write_app(tmp_path)
    tagged = run_cli("warm", "app:engine", "--tags", "catalog", "-v", cwd=app)
    assert tagged.returncode == 0, tagged.stderr
    keys = [row[1] for row in table(tagged.stdout, "Warmed tasks tagged catalog")]
    assert keys == ["catalog", "product|1", "product|2"]

    everything = run_cli("warm", "app:engine", "--all", cwd=app)
    assert everything.returncode == 0, everything.stderr
    summary = figures(everything.stdout, "Summary: all tasks")
    assert (summary["succeeded"], summary["skipped"]) == ("4", "1")


@pytest.mark.slow
def test_warm_verbose_names_each_skipped_task_and_why(tmp_path: Path) -> None:
    """`warm --all -v` lists every skipped task with the reason the engine gave."""
    app = write_app(tmp_path)
    with (app / "app.py").open("a") as source:
        source.write(
            textwrap.dedent(
                """
                @warmable(name="search", engine=engine)
                def search(prefix):
                    return []

                class Shop:
                    @warmable(name="opening_hours", engine=engine)
                    def opening_hours(self):
                        return "08:00-18:00"
                """
            )
        )
    done = run_cli("warm", "app:engine", "--all", "-v", cwd=app)
    assert done.returncode == 0, done.stdout + done.stderr
    assert figures(done.stdout, "Summary: all tasks")["skipped"] == "3"
    assert sorted(table(done.stdout, "Skipped tasks (3)")) == [
        ["opening_hours", "method: warming has no instance to call it on"],
        ["profile", "per-user function: warm_user_data warms it on login"],
        ["search", "needs arguments and has no warm_args: missing a required argument: 'prefix'"],
    ]


@pytest.mark.slow
def test_warm_users_forces_each_user(tmp_path: Path) -> None:
    """--user 7 8 --id-type int runs warm_user_data(7, force=True) and (8, ...)."""
    done = run_cli(
        "warm", "app:engine", "--user", "7", "8", "--id-type", "int", cwd=write_app(tmp_path)
    )
    assert done.returncode == 0, done.stderr
    rows = table(done.stdout, "Summary: users warmed (warm_user_data, force=True)")
    assert [row[:3] for row in rows] == [["7", "1", "0"], ["8", "1", "0"]]


@pytest.mark.slow
def test_warm_users_lists_a_failing_users_key_with_its_error(tmp_path: Path) -> None:
    """A per-user function failing for one user: exit 1, that user's key and error listed."""
    app = write_app(tmp_path)
    with (app / "app.py").open("a") as source:
        source.write(
            textwrap.dedent(
                """
                @warmable(name="orders", user_arg="user_id", engine=engine)
                def orders(user_id):
                    if user_id == "13":
                        raise LookupError("no orders table for user 13")
                    return []
                """
            )
        )
    done = run_cli("warm", "app:engine", "--user", "12", "13", cwd=app)
    assert done.returncode == 1, done.stdout + done.stderr
    assert table(done.stdout, "Failures (1)") == [
        ["'13'", "orders|'13'", "LookupError: no orders table for user 13"]
    ]


@pytest.mark.slow
def test_warm_uses_the_default_engine_without_attr(tmp_path: Path) -> None:
    """Without :ATTR the module's functions registered on the default engine are warmed."""
    (tmp_path / "plain.py").write_text(
        textwrap.dedent(
            """
            from dogpile_warm import warmable

            @warmable(priority=100, name="menu")
            def menu():
                return ["tea"]
            """
        )
    )
    done = run_cli("warm", "plain", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert figures(done.stdout, "Summary: critical tasks")["succeeded"] == "1"


@pytest.mark.memcached
@pytest.mark.slow
def test_warm_stores_in_the_modules_memcached_region(
    memcached_server: Server, client_closer: ClientCloser, tmp_path: Path
) -> None:
    """A module that configures memcached is warmed into it: this process reads the value back."""
    memcached_server.flush()
    (tmp_path / "mc_app.py").write_text(
        textwrap.dedent(
            f"""
            import dogpile_warm
            from dogpile_warm import warmable

            dogpile_warm.configure(
                "default", "dogpile.cache.pymemcache", arguments={{"url": {memcached_server.url!r}}}
            )

            @warmable(priority=100, name="menu")
            def menu():
                return ["tea", "coffee"]
            """
        )
    )
    done = run_cli("warm", "mc_app", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    region = client_closer.watch(
        make_region().configure("dogpile.cache.pymemcache", arguments={"url": memcached_server.url})
    )
    reader = CacheWarmingEngine(region)  # another process's view of the same memcached
    try:
        assert reader.get_cached("menu") == ["tea", "coffee"]
    finally:
        reader.close()


# -- modules that cannot be used --------------------------------------------------------
@pytest.mark.slow
def test_a_module_that_is_missing_exits_2_naming_it(tmp_path: Path) -> None:
    """An unknown module: exit 2, one line on stderr naming the module and the ImportError."""
    done = run_cli("warm", "no_such_app", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        "dogpile-warm: cannot import module 'no_such_app': "
        "ModuleNotFoundError: No module named 'no_such_app'"
    ]


@pytest.mark.slow
def test_a_module_that_raises_on_import_exits_2_with_the_error(tmp_path: Path) -> None:
    """A module raising while importing: exit 2 with the exception's type and message."""
    (tmp_path / "crashing.py").write_text("raise RuntimeError('no DATABASE_URL set')\n")
    done = run_cli("stats", "crashing", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "dogpile-warm: cannot import module 'crashing': RuntimeError: no DATABASE_URL set"
    )


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("app:engin", "dogpile-warm: module 'app' has no attribute 'engin'"),
        (
            "app:catalog",
            "dogpile-warm: 'app:catalog' is a WarmableFunction, not a CacheWarmingEngine",
        ),
    ],
)
@pytest.mark.slow
def test_a_bad_attr_exits_2(tmp_path: Path, target: str, message: str) -> None:
    """:ATTR that is missing or not an engine: exit 2 with a one-line message."""
    done = run_cli("hot-keys", target, cwd=write_app(tmp_path))
    assert done.returncode == 2
    assert done.stderr.strip() == message


# -- stats and hot-keys --------------------------------------------------------------------
@pytest.mark.slow
def test_stats_json_is_one_object_with_stats_and_performance(tmp_path: Path) -> None:
    """`stats --json` prints one JSON object holding get_stats() and get_performance()."""
    done = run_cli("stats", "app:engine", "--json", cwd=write_app(tmp_path, reads=True))
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert set(data) == {"stats", "performance"}
    assert (data["stats"]["tasks"], data["stats"]["hits"], data["stats"]["misses"]) == (4, 3, 3)
    assert [d["task_id"] for d in data["stats"]["task_details"]][:2] == ["catalog", "navigation"]
    assert "efficiency_score" in data["performance"]


@pytest.mark.slow
@pytest.mark.parametrize(("command", "key"), [("stats", "stats"), ("hot-keys", "hot_keys")])
@pytest.mark.slow
def test_json_output_needs_no_rich(tmp_path: Path, command: str, key: str) -> None:
    """`stats --json` and `hot-keys --json` print their JSON where rich cannot be imported."""
    app = write_app(tmp_path, reads=True)
    done = run_cli(command, "app:engine", "--json", cwd=app, extra_env=without_rich(tmp_path))
    assert done.returncode == 0, done.stderr
    assert key in json.loads(done.stdout)


@pytest.mark.slow
def test_stats_prints_figures_tasks_and_performance_tables(tmp_path: Path) -> None:
    """`stats` prints the engine's figures, a task table and the performance table."""
    done = run_cli("stats", "app:engine", cwd=write_app(tmp_path, reads=True))
    assert done.returncode == 0, done.stderr
    stats = figures(done.stdout, "Engine stats (get_stats)")
    assert (stats["hits"], stats["misses"], stats["hit_ratio"]) == ("3", "3", "50%")
    tasks = table(done.stdout, "Tasks (highest priority first)")
    assert [row[0] for row in tasks] == ["catalog", "navigation", "profile", "product"]
    assert figures(done.stdout, "Warming performance (get_performance)")["total_warmings"] == "0"


@pytest.mark.slow
def test_hot_keys_lists_the_hottest_keys_with_counts(tmp_path: Path) -> None:
    """`hot-keys --top 2` lists the two most read keys, hottest first, with their counts."""
    done = run_cli("hot-keys", "app:engine", "--top", "2", cwd=write_app(tmp_path, reads=True))
    assert done.returncode == 0, done.stderr
    rows = table(done.stdout, "Hot keys (top 2; reads seen by this process)")
    assert [row[:3] for row in rows] == [["1", "catalog", "3"], ["2", "product|2", "2"]]
    assert all(row[4] != "-" for row in rows)  # two or more reads: a predicted next access


TIMED_APP = """
from dogpile_warm import CacheWarmingEngine, warmable
from dogpile_warm.testing import FakeClock

clock = FakeClock()
engine = CacheWarmingEngine(clock=clock)

@warmable(name="soon", engine=engine)
def soon():
    return 1

@warmable(name="late", engine=engine)
def late():
    return 2

soon()
late()
clock.advance(1)
late()  # read at 0 and 1: next read expected at 2
clock.advance(9)
soon()  # read at 0 and 10: next read expected at 20
clock.advance(3)  # now 13
"""


def predicted_next_access(tmp_path: Path) -> dict[str, str]:
    """`hot-keys` on TIMED_APP: the predicted next access shown for each key."""
    (tmp_path / "timed.py").write_text(TIMED_APP)
    done = run_cli("hot-keys", "timed:engine", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = table(done.stdout, "Hot keys (top 10; reads seen by this process)")
    return {row[1]: row[4] for row in rows}


@pytest.mark.slow
def test_hot_keys_shows_a_predicted_access_to_come_as_in(tmp_path: Path) -> None:
    """A predicted next access still ahead reads "in N s", never "ago"."""
    assert predicted_next_access(tmp_path)["soon"].endswith("(in 7.0 s)")


@pytest.mark.slow
def test_hot_keys_shows_a_predicted_access_that_passed_as_overdue(tmp_path: Path) -> None:
    """A predicted next access already past (no read since) reads "overdue by N s"."""
    assert predicted_next_access(tmp_path)["late"].endswith("(overdue by 11.0 s)")


@pytest.mark.slow
def test_hot_keys_json_and_an_engine_that_read_nothing(tmp_path: Path) -> None:
    """`hot-keys --json` is machine-readable; with no reads the table explains why it is empty."""
    app = write_app(tmp_path, reads=True)
    data = json.loads(run_cli("hot-keys", "app:engine", "--json", cwd=app).stdout)
    assert [(k["key"], k["accesses"]) for k in data["hot_keys"]] == [
        ("catalog", 3),
        ("product|2", 2),
        ("product|1", 1),
    ]
    assert data["hot_keys"][2]["predicted_next_access"] is None

    (tmp_path / "idle.py").write_text(
        "from dogpile_warm import CacheWarmingEngine\nengine = CacheWarmingEngine()\n"
    )
    done = run_cli("hot-keys", "idle:engine", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "no reads recorded" in done.stdout


# -- snapshot (memory region: a save within one process) ------------------------------------
@pytest.mark.slow
def test_snapshot_command_reports_saved_and_skipped_keys(tmp_path: Path) -> None:
    """`snapshot` saves the module's hot keys and lists the per-user ones it skipped."""
    app = write_app(tmp_path, reads=True)
    with (app / "app.py").open("a") as source:
        source.write("    profile(7)\n")
    done = run_cli("snapshot", "app:engine", cwd=app)
    assert done.returncode == 0, done.stdout + done.stderr
    saved = figures(done.stdout, "Snapshot of the hot set (dogpile_warm:snapshot:v1)")
    assert (saved["saved"], saved["skipped"], saved["stored"]) == ("3", "1", "yes")
    [skipped] = table(done.stdout, "Skipped (1)")
    assert skipped[:2] == ["profile", "profile|7"]


@pytest.mark.slow
def test_snapshot_with_nothing_read_keeps_the_previous_one(tmp_path: Path) -> None:
    """`snapshot` in a process that read nothing stores nothing and says so (exit 0)."""
    done = run_cli("snapshot", "app:engine", cwd=write_app(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "nothing saved: no key read in this process" in done.stdout


@pytest.mark.slow
def test_warm_from_snapshot_without_one_warms_nothing(tmp_path: Path) -> None:
    """`warm --from-snapshot` with no snapshot in the backend says so and exits 0."""
    done = run_cli("warm", "app:engine", "--from-snapshot", cwd=write_app(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "no snapshot under 'dogpile_warm:snapshot:v1'" in done.stdout


def test_snapshot_on_an_in_memory_region_says_it_ends_with_the_process(tmp_path: Path) -> None:
    """`snapshot` into the embedded memory region says no later process will see it."""
    done = run_cli("snapshot", "app:engine", cwd=write_app(tmp_path, reads=True))
    assert done.returncode == 0, done.stderr
    assert "the region is in memory: the snapshot ends with this process; snapshots need a " in (
        " ".join(done.stdout.split())
    )


def test_warm_from_snapshot_on_an_in_memory_region_says_why_none_is_found(tmp_path: Path) -> None:
    """`warm --from-snapshot` finding nothing in a memory region says snapshots need a shared backend."""
    done = run_cli("warm", "app:engine", "--from-snapshot", cwd=write_app(tmp_path))
    assert done.returncode == 0, done.stderr
    assert (
        "the region is in memory: no other process stored one here; snapshots need a backend "
        "shared between processes (memcached, Redis)"
    ) in " ".join(done.stdout.split())
