"""Run every benchmark and print one table: ``python -m benchmarks [--quick] [--chart PATH]``.

Columns: contender | figure | ratio | goal | met | detail. Every goal is an
upper bound on the ratio; the detail column's absolute numbers hold for the
machine that ran it only. Progress goes to stderr, the table to stdout.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks import (
    async_hit,
    celery_warm,
    gunicorn_load,
    hit_path,
    key_memory,
    memcached_hit,
    redis_hit,
    skewed_async,
    skewed_load,
    tracker_cost,
    warm_throughput,
)
from benchmarks._report import Row, format_table, make_parser


def benchmarks(chart: Path | None) -> dict[str, Callable[[bool], list[Row]]]:
    """Each benchmark's ``run(quick)``, in the order the table shows them."""
    return {
        "hit_path": hit_path.run,
        "async_hit": async_hit.run,
        "memcached_hit": memcached_hit.run,
        "redis_hit": redis_hit.run,
        # The threaded and the async skewed loads, on one chart.
        "skewed_load": lambda quick: skewed_async.run(quick, chart=chart),
        "warm_throughput": warm_throughput.run,
        "celery_warm": celery_warm.run,
        "gunicorn_load": gunicorn_load.run,
        "tracker_cost": tracker_cost.run,
        "key_memory": key_memory.run,
    }


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__)
    parser.add_argument(
        "--chart",
        type=Path,
        default=skewed_load.DEFAULT_CHART,
        help="where skewed_load writes its latency chart (PNG)",
    )
    args = parser.parse_args(argv)
    rows: list[Row] = []
    for name, run in benchmarks(args.chart).items():
        print(f"{name} ...", end="", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        rows += run(args.quick)
        print(f" {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    print(format_table(rows))
    print(f"\nchart: {args.chart}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
