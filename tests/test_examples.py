"""The scripts in examples/ run, succeed and print what they claim."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import dogpile_warm
from dogpile_warm import CacheWarmingEngine, signals
from tests.servers import Server

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
README = EXAMPLES.parent / "README.md"


def readme_python(section: str) -> list[str]:
    """The ```python blocks of the README's ``## section``, in order."""
    text = README.read_text().split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


class StandInDb:
    """The ``db`` the README's Usage snippets read from."""

    def fetch_catalog(self) -> list[str]:
        return ["espresso", "latte"]

    def recent_forms(self, user_id: int, limit: int) -> list[str]:
        return [f"form {n} of {user_id}" for n in range(limit)]


@pytest.fixture
def readme_usage(engine: CacheWarmingEngine) -> Iterator[dict[str, Any]]:
    """The namespace after running the README's Usage snippets as written (with a ``db``),
    in order, on this test's default engine; the one that configures memcached left out."""
    namespace: dict[str, Any] = {"__name__": "readme", "db": StandInDb()}
    for block in readme_python("Usage"):
        if "dogpile_warm.configure(" not in block:
            exec(compile(block, "README.md", "exec"), namespace)
    yield namespace
    signals.cache_miss.disconnect(namespace["log_miss"])


def test_the_readme_usage_snippets_run_as_written(readme_usage: dict[str, Any]) -> None:
    """The README's Usage snippets run in order, and warm_critical_data warms load_catalog."""
    assert readme_usage["report"]["succeeded"] == 1
    assert readme_usage["report"]["results"][0]["key"].endswith("load_catalog")


def test_the_readme_user_snippet_warms_the_users_keys(readme_usage: dict[str, Any]) -> None:
    """README's warm_user_data_optimized(7) warms recent_forms for user 7, as its comment says."""
    result = readme_usage["result"]
    assert result["skipped"] is False
    assert result["keys_warmed"] == ["readme:recent_forms|7,10"]  # limit=10 by default


class StandInAsyncDb:
    """The ``db`` the README's Async code snippet awaits."""

    def __init__(self) -> None:
        self.loops: list[asyncio.AbstractEventLoop] = []

    async def fetch_catalog(self) -> list[str]:
        self.loops.append(asyncio.get_running_loop())
        return ["espresso", "latte"]


def test_the_readme_async_snippet_warms_on_the_callers_loop(engine: CacheWarmingEngine) -> None:
    """The README's Async code snippet, as written: on_startup warms catalog on its own
    loop, after which awaiting catalog() computes nothing; on_login runs."""
    db = StandInAsyncDb()
    namespace: dict[str, Any] = {
        "__name__": "readme",
        "db": db,
        "dogpile_warm": dogpile_warm,
        "warmable": dogpile_warm.warmable,
    }
    [block] = readme_python("Async code")
    exec(compile(block, "README.md", "exec"), namespace)

    async def serve() -> tuple[list[str], asyncio.AbstractEventLoop]:
        await namespace["on_startup"]()
        await namespace["on_login"](7)
        return await namespace["catalog"](), asyncio.get_running_loop()

    value, loop = asyncio.run(serve())
    assert value == ["espresso", "latte"] and db.loops == [loop]


def readme_block(first_line: str) -> list[str]:
    """The README's indented command block that starts with ``first_line``, unindented."""
    lines = README.read_text().splitlines()
    start = lines.index(f"    {first_line}")
    block = []
    for line in lines[start:]:
        if not line.startswith("    "):
            break
        block.append(line[4:])
    return block


def run_example(
    name: str, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        cwd=EXAMPLES.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **(extra_env or {})},
    )


@pytest.mark.parametrize("script", sorted(p.name for p in EXAMPLES.glob("*.py")))
@pytest.mark.slow
def test_every_example_exits_zero(script: str) -> None:
    """Every script in examples/ runs to completion, so none can rot unnoticed."""
    done = run_example(script)
    assert done.returncode == 0, f"{script} failed:\n{done.stdout}\n{done.stderr}"


@pytest.mark.slow
def test_quickstart_warms_critical_data_and_invalidates_by_tag() -> None:
    """quickstart.py warms its critical tasks in priority order, then reports hits and invalidation."""
    done = run_example("quickstart.py")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    warmed = [line.split()[0] for line in lines if "ok=True" in line]
    assert warmed == [
        "__main__:price_list|'EUR'",
        "__main__:price_list|'USD'",
        "__main__:load_catalog",
    ]
    assert "4. Stats: 3 tasks (2 critical), 6 hits, 1 misses, hit ratio 86%" in lines
    assert "   load_catalog was recomputed on the next call; price_list stayed cached" in lines
    assert lines[-1] == "quickstart OK"


@pytest.mark.slow
def test_user_login_shows_skip_window_force_and_forms() -> None:
    """user_login.py shows a skipped second login, force, the window passing and preload_forms=False."""
    done = run_example("user_login.py")
    assert done.returncode == 0, done.stderr
    rows = {
        line[:42].strip(): line[42:].split()
        for line in done.stdout.splitlines()
        if "skipped=" in line
    }
    assert rows == {
        "1 logs in": ["skipped=False", "warmed=2", "failed=0"],
        "1 logs in again a moment later": ["skipped=True", "warmed=0", "failed=0"],
        "1 logs in again with force=True": ["skipped=False", "warmed=2", "failed=0"],
        "1 logs in after the window": ["skipped=False", "warmed=2", "failed=0"],
        "2 logs in on mobile (preload_forms=False)": ["skipped=False", "warmed=1", "failed=0"],
    }
    assert "first pages of 1 and 2 served from the cache, each user's own values" in done.stdout
    assert done.stdout.splitlines()[-1] == "user_login OK"


@pytest.mark.slow
def test_metrics_without_prometheus_client_names_the_extra_to_install(tmp_path: Path) -> None:
    """metrics.py where prometheus_client cannot be imported exits 1 with one line naming the extra."""
    (tmp_path / "prometheus_client.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'prometheus_client'\", name='prometheus_client')\n"
    )
    done = run_example("metrics.py", extra_env={"PYTHONPATH": str(tmp_path)})
    assert done.returncode == 1, done.stdout
    assert done.stderr.splitlines() == [
        "examples/metrics.py: dogpile_warm.contrib.prometheus needs prometheus-client: "
        "pip install 'dogpile_warm[prometheus]'"
    ]


@pytest.mark.slow
def test_the_command_warms_and_reports_the_shop_example() -> None:
    """The README's command lines work on examples/shop.py, run from examples/."""

    def command(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "dogpile_warm.cli", *args],
            cwd=EXAMPLES,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    warmed = command("warm", "shop", "--all", "-v")
    assert warmed.returncode == 0, warmed.stderr
    assert "shop:catalog" in warmed.stdout and "shop:product|1" in warmed.stdout
    stats = command("stats", "shop", "--json")
    assert stats.returncode == 0, stats.stderr
    assert '"tasks": 4' in stats.stdout


@pytest.mark.memcached
def test_the_readme_snapshot_commands_carry_the_hot_set_to_another_process(
    memcached_server: Server,
) -> None:
    """README's snapshot lines, run as written from examples/ (on the suite's memcached):
    `warm --from-snapshot` in a new process warms the keys `snapshot` saved."""
    memcached_server.flush()
    block = readme_block("export SHOP_MEMCACHED_URL=127.0.0.1:11211")
    script = "\n".join(block).replace("127.0.0.1:11211", memcached_server.url)
    bin_dir = str(Path(sys.executable).parent)  # where pip put the dogpile-warm script
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=EXAMPLES,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"},
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    summary = done.stdout[done.stdout.index("Summary: keys of the snapshot") :]
    assert re.search(r"│ succeeded +│ 2 ", summary), done.stdout


@pytest.mark.slow
def test_the_readme_demo_command_installs_and_runs_the_demo() -> None:
    """README's first command, ``bash scripts/demo``, as written (with this suite's Python
    first on PATH, as a user's active Python would be)."""
    bin_dir = str(Path(sys.executable).parent)
    done = subprocess.run(
        ["bash", "scripts/demo"],
        cwd=EXAMPLES.parent,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"},
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert "Engine stats" in done.stdout and "demo finished in" in done.stdout
