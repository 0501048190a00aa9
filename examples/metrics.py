"""Prometheus metrics: count hits, misses and warm-ups per task, then scrape them.

Run it: ``python examples/metrics.py`` (needs ``pip install 'dogpile_warm[prometheus]'``,
and says so when prometheus-client is missing; in-memory region, no server). In a real service you would keep the default
registry and serve it, e.g. with ``prometheus_client.start_http_server(9100)``;
this script uses a registry of its own and prints an excerpt of one scrape.
Every claim it prints is also asserted, so the script fails loudly if the
library breaks.
"""

from __future__ import annotations

import sys

import dogpile_warm
from dogpile_warm import warmable

try:
    from dogpile_warm.contrib.prometheus import PrometheusMetrics
except ImportError as exc:  # prometheus-client is missing: the message names the extra
    sys.exit(f"examples/metrics.py: {exc}")

from prometheus_client import CollectorRegistry, generate_latest

registry = CollectorRegistry()
# Counts the default engine's functions and tasks from now on.
metrics = PrometheusMetrics(registry=registry).connect()


@warmable(priority=100, ttl=3600, tags={"catalog"}, name="load_catalog")
def load_catalog() -> list[str]:
    """Critical: warmed up front by warm_critical_data()."""
    return ["espresso", "latte", "flat white"]


@warmable(priority=100, ttl=600, name="exchange_rates")
def exchange_rates() -> dict[str, float]:
    """Critical too, but the rates service is down: its warm-up fails."""
    raise ConnectionError("rates service unreachable")


@warmable(priority=10, ttl=60, name="search")
def search(prefix: str) -> list[str]:
    """Not warmed: cached on first call, one key per prefix (never a label)."""
    return [item for item in load_catalog() if item.startswith(prefix)]


def excerpt(text: str) -> list[str]:
    """The scrape's sample lines, without histogram buckets and _created timestamps."""
    return [
        line
        for line in text.splitlines()
        if line.startswith("dogpile_warm_") and "_bucket{" not in line and "_created" not in line
    ]


def main() -> None:
    report = dogpile_warm.warm_critical_data()
    assert (report["succeeded"], report["failed"]) == (1, 1), report

    load_catalog()  # a hit: the warmed value is read, so the efficiency score is known
    for prefix in ("e", "l", "f", "l"):
        search(prefix)  # three misses, then a hit (and a hit on load_catalog each time)

    lines = excerpt(generate_latest(registry).decode())
    for line in lines:
        print(line)
    for expected in (
        'dogpile_warm_warmings_total{task="load_catalog"} 1.0',
        'dogpile_warm_warm_failures_total{task="exchange_rates"} 1.0',
        'dogpile_warm_hits_total{task="load_catalog"} 4.0',
        'dogpile_warm_hits_total{task="search"} 1.0',
        'dogpile_warm_misses_total{task="search"} 3.0',
        "dogpile_warm_efficiency_score 100.0",
        "dogpile_warm_tasks 3.0",
    ):
        assert expected in lines, f"missing from the scrape: {expected}"

    metrics.disconnect()  # stops counting and removes the metrics from the registry
    assert generate_latest(registry) == b""
    print("metrics OK")


if __name__ == "__main__":
    main()
