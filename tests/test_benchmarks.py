"""Smoke runs of the benchmarks, so they cannot rot (tiny sizes; no timing asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_hit_path_benchmark_prints_a_ratio_per_contender() -> None:
    """benchmarks/hit_path.py runs and prints one ratio row per contender."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "hit_path.py"), "--calls", "50"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    rows = {line.rsplit(None, 2)[0]: float(line.split()[-1]) for line in out.splitlines()[1:]}
    assert set(rows) == {
        "dogpile_warm",
        "dogpile_warm + 1 receiver",
        "dogpile cache_on_arguments",
        "cachetools TTLCache",
        "functools.lru_cache",
    }
    assert rows["dogpile cache_on_arguments"] == 1.0
