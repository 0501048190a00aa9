"""Nothing dogpile_warm keeps per key outlives the key, beyond structures bounded by count."""

from __future__ import annotations

import sys

import pytest

from dogpile_warm import CacheWarmingEngine, warmable
from dogpile_warm._core.memory_index import MAX_STAMPS
from dogpile_warm._core.store import Entry


@pytest.mark.slow
def test_computing_and_invalidating_many_keys_leaves_only_bounded_structures(
    engine: CacheWarmingEngine,
) -> None:
    @warmable(ttl=3600)
    def value(n: int) -> int:
        return n

    keys = 3 * MAX_STAMPS
    for n in range(keys):
        assert value(n) == n
    index = engine.regions.store_for(None).index
    assert index is not None and len(index.entries) == keys  # stored, then read from the index
    # Sized for the keys removed since its last compaction at most (a few thousand).
    bound = sys.getsizeof(dict.fromkeys(range(4096)))
    for n in range(keys):
        value.invalidate(n)
    assert len(index.entries) == 0
    assert sys.getsizeof(index.entries) <= bound < sys.getsizeof(dict.fromkeys(range(keys)))
    assert len(index.last_write) <= MAX_STAMPS
    usage = engine.usage
    assert usage.tracker.known_keys() <= usage.tracker.max_keys
    assert len(usage.calls) <= usage.tracker.max_keys


def test_a_write_racing_a_verifying_read_is_not_remembered_after_stamps_are_forgotten(
    engine: CacheWarmingEngine,
) -> None:
    """A read that began before the stamps were forgotten cannot tell whether its key was
    written since: it is not remembered (the next read is)."""

    @warmable(ttl=3600)
    def value(n: int) -> int:
        return n

    value(0)
    store = engine.regions.store_for(None)
    index = store.index
    assert index is not None
    stamp = index.stamp("elsewhere")
    for n in range(1, MAX_STAMPS + 2):  # fills the stamps, which are then forgotten
        index.written(f"k{n}")
    entry = store.read(value.key_for(0))
    assert isinstance(entry, Entry)
    index.entries.clear()
    index.verified(value.key_for(0), entry, stamp)
    assert value.key_for(0) not in index.entries
    index.verified(value.key_for(0), entry, index.stamp(value.key_for(0)))
    assert index.entries[value.key_for(0)] is entry
