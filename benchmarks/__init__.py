"""Reproducible benchmarks of dogpile_warm, as ratios to peers measured in the same run.

One script per figure, each runnable on its own (``python benchmarks/<name>.py
[--quick]``) and each exposing ``run(quick: bool) -> list[Row]``:

- :mod:`benchmarks.hit_path`: a hit on the memory backend.
- :mod:`benchmarks.memcached_hit`: a hit on memcached, against a raw pymemcache get.
- :mod:`benchmarks.skewed_load`: Zipf reads of expiring keys from many threads.
- :mod:`benchmarks.warm_throughput`: ``warm_critical_data`` against the ideal.
- :mod:`benchmarks.tracker_cost`: the usage tracker's time and memory.

``python -m benchmarks [--quick]`` runs them all and prints one table.
Importing this package imports none of them.
"""
