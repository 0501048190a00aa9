"""Cold-start snapshots: keep the hot set in the backend, warm it back after a restart.

:func:`save_hot_set` stores the engine's hottest keys that have remembered
arguments (the task id, the call's arguments, how often the key was read and
the task's priority) under :data:`SNAPSHOT_KEY` in a region, through the
region's own API, so memory, memcached and Redis all work.
:func:`warm_from_snapshot` reads it back, typically in a freshly started
process, and recomputes those keys hottest first, at most ``rate_limit`` keys
per second so a cold start does not stampede the database.

Size: memcached refuses items over 1 MB by default (``-I``), so a snapshot is
at most :data:`MAX_SNAPSHOT_BYTES` (serialized) and :data:`MAX_TOP_N` items;
the coldest items that do not fit are left out and counted as ``truncated``.

Trust: each item's arguments go through the region's own serializer (pickle,
JSON, signed or not: see :mod:`dogpile_warm._core.signing`), on their own, so one
item whose arguments cannot be serialized (or read back in the new process)
is skipped and reported without losing the others, and the snapshot as a
whole is stored like any value, signed in a signed region. Warming calls only
tasks registered in this process, and only with arguments that give back the
key they were saved under.
"""

from __future__ import annotations

import base64
import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._core import forks
from .._core.batch import KeyResult, WriteBatch
from .._core.store import UNAVAILABLE, CacheStore, Entry
from .._core.validation import check_positive_int, check_positive_number
from ..errors import WarmError, describe_error
from ..reports import SkippedItem, SnapshotSaved, SnapshotWarmReport
from . import fleet
from .call_codec import Dumps, Loads, codec_of, decode_call, encode_call
from .planner import METHOD, PER_USER
from .runs import OnResult, WarmJob, bind_job, report_jobs

if TYPE_CHECKING:
    from .._usage.usage import Usage
    from .registry import TaskRecord, TaskRegistry

__all__ = [
    "MAX_SNAPSHOT_BYTES",
    "MAX_TOP_N",
    "SNAPSHOT_KEY",
    "save_hot_set",
    "warm_from_snapshot",
]

log = logging.getLogger(__name__)

SNAPSHOT_KEY = "dogpile_warm:snapshot:v1"

# memcached's default item limit is 1 MiB, key, flags and dogpile's wrapper
# included; 900 kB of pickled snapshot leaves room for all of them.
MAX_SNAPSHOT_BYTES = 900_000

# The usage tracker's default bound on keys: a snapshot cannot know more.
MAX_TOP_N = 10_000

_FORMAT = 2  # the payload's version: a snapshot of another version reads as unreadable


def save_hot_set(
    registry: TaskRegistry,
    usage: Usage,
    store: CacheStore,
    now: float,
    top_n: int = 1000,
    *,
    max_bytes: int = MAX_SNAPSHOT_BYTES,
) -> SnapshotSaved:
    """Store the ``top_n`` hottest keys read through ``usage`` that can be warmed again.

    Walks the usage tracker's keys hottest first and keeps those whose
    arguments the engine remembers from a real call, until ``top_n`` are
    kept (``top_n`` at most :data:`MAX_TOP_N`). Skipped, with a reason:
    arguments that cannot be pickled, per-user functions (``warm_user_data``
    warms those on login), methods (warming has no instance) and keys whose
    task is gone. The pickled snapshot is at most ``max_bytes``; the coldest
    items beyond it are left out and counted in ``truncated``.

    The snapshot, stamped ``now`` (epoch seconds), goes to ``store`` under :data:`SNAPSHOT_KEY`, replacing the
    previous one, except when nothing is left to save: a process that has
    seen no reads yet does not erase the fleet's snapshot.

    Returns ``{"saved", "skipped": [{"key", "task_id", "reason"}],
    "truncated", "bytes", "stored", "key"}``. Raises :class:`WarmError`
    when the backend does not keep the snapshot.
    """
    _check_at_most("top_n", check_positive_int("top_n", top_n), MAX_TOP_N)
    check_positive_int("max_bytes", max_bytes)
    codec = codec_of(store.region)
    calls = usage.remembered_calls()  # a consistent copy; real calls keep adding to it
    tasks = registry.snapshot()
    items: list[dict[str, Any]] = []
    skipped: list[SkippedItem] = []
    for key, heat in usage.tracker.get_hot_keys(usage.tracker.max_keys):
        if len(items) >= top_n:
            break
        call = calls.get(key)
        if call is None:
            continue  # arguments never seen or forgotten: not part of the hot set we can warm
        source, args, kwargs = call
        task_id = source.task.task_id
        record = tasks.get(task_id)
        reason = _unwarmable(record)
        encoded: str | None = None
        if reason is None:
            encoded, reason = encode_call(codec, source, args, kwargs, key)
            if reason is not None:
                log.warning("snapshot of the hot set skips %r: %s", key, reason)
        if reason is not None:
            skipped.append({"key": key, "task_id": task_id, "reason": reason})
            continue
        assert record is not None  # _unwarmable said so
        items.append(
            {
                "task_id": task_id,
                "key": key,
                "heat": heat,
                "priority": record.task.priority,
                "call": encoded,
            }
        )
    size, kept = _fit(codec[0], items, max_bytes)
    payload = _payload(items[:kept])
    result: SnapshotSaved = {
        "saved": kept,
        "skipped": skipped,
        "truncated": len(items) - kept,
        "bytes": size if kept else 0,
        "stored": False,
        "key": SNAPSHOT_KEY,
    }
    if not kept:
        return result
    entry = Entry(payload, now, math.inf, ())
    error = store.write(SNAPSHOT_KEY, entry, "the hot-set snapshot")
    if error is not None:
        raise WarmError(
            f"could not store the snapshot in region {store.region.name!r}: {error}"
        ) from error
    # Read back: memcached refuses oversized items and some clients drop
    # writes to a server they think is down, without raising.
    back = store.read(SNAPSHOT_KEY)
    if not isinstance(back, Entry) or back.value != payload:
        raise WarmError(
            f"the backend of region {store.region.name!r} did not keep the snapshot ({size} bytes)"
        )
    result["stored"] = True
    return result


def warm_from_snapshot(
    registry: TaskRegistry,
    store: CacheStore,
    max_workers: int,
    rate_limit: float | None = None,
    top_n: int | None = None,
    on_result: OnResult | None = None,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], object] = time.sleep,
) -> SnapshotWarmReport:
    """Recompute and store the keys of the saved snapshot now, hottest first.

    Among keys of equal heat the higher priority goes first (the priority of
    the task as registered now). ``top_n`` keeps only the hottest ``top_n``
    items. At most ``max_workers`` keys compute at once, and with
    ``rate_limit`` (keys per second) their starts are spaced
    ``1 / rate_limit`` seconds apart; ``clock`` and ``sleep`` drive that
    spacing (tests pass fakes). Tasks are found by ``task_id`` among the
    tasks of ``registry``: unknown tasks, per-user functions, methods and
    arguments that no longer unpickle or fit the function are skipped.

    A key whose function's region is the fleet's (a distributed lock on
    memcached or Redis) and that another process warmed within 80% of its
    ttl is skipped. Same shape as
    ``warm_critical_data`` (``on_result`` as in ``warm_tasks``),
    plus ``"found"`` (was there a snapshot), ``"saved_at"`` (epoch seconds or
    None) and ``"skipped_items"`` (``[{"key", "task_id", "reason"}]``).
    Raises :class:`WarmError` when the backend cannot be read.
    """
    if rate_limit is not None:
        rate_limit = check_positive_number("rate_limit", rate_limit, " of keys per second")
    if top_n is not None:
        check_positive_int("top_n", top_n)
    t0 = time.perf_counter()
    codec = codec_of(store.region)
    entry = store.read(SNAPSHOT_KEY)
    if entry is UNAVAILABLE:
        raise WarmError(
            f"could not read the snapshot from region {store.region.name!r}: "
            "its backend is unavailable"
        )
    items = _items(entry)
    tasks = registry.snapshot()

    def priority(item: dict[str, Any]) -> int:
        record = tasks.get(item["task_id"])
        return record.task.priority if record is not None else int(item["priority"])

    items.sort(key=lambda item: (-item["heat"], -priority(item)))
    if top_n is not None:
        items = items[:top_n]
    pace = _Pacer(rate_limit, clock, sleep) if rate_limit is not None else None
    jobs: list[tuple[TaskRecord, WarmJob]] = []
    skipped: list[SkippedItem] = []
    claims = fleet.Held()
    for item in items:
        record = tasks.get(item["task_id"])
        reason = _unwarmable(record)
        job: WarmJob | None = None
        if reason is None:
            assert record is not None and record.source is not None
            reason = claims.key(record.source.store(), item["key"], record.task.ttl)
            if reason is None:
                job, reason = _job(record, item, codec, pace)
        if job is None:
            why = reason or "cannot be warmed"
            skipped.append({"key": item["key"], "task_id": item["task_id"], "reason": why})
            continue
        assert record is not None
        jobs.append((record, job))
    report = report_jobs(jobs, [], len(skipped), t0, max_workers, on_result)
    claims.give_back(report["results"])  # a key that was not stored: unclaimed
    return {
        **report,
        "found": entry is not None,
        "saved_at": entry.created if entry is not None else None,
        "skipped_items": skipped,
    }


# -- helpers ------------------------------------------------------------------------
def _check_at_most(name: str, value: int, limit: int) -> None:
    if value > limit:
        raise ValueError(
            f"{name} must be at most {limit} (a snapshot must fit memcached's 1 MB item limit), "
            f"got {value!r}"
        )


def _unwarmable(record: TaskRecord | None) -> str | None:
    """Why a key of ``record``'s task cannot be warmed from a snapshot, or None if it can."""
    if record is None:
        return "unknown task: not registered in this process"
    source = record.source
    if source is None:
        return "not a @warmable function: a plain task has no arguments to warm"
    if source.user_arg is not None:
        return PER_USER
    if source.keys.skips_first:
        return METHOD
    return None


def _payload(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"format": _FORMAT, "items": items}


def _fit(dumps: Dumps, items: list[dict[str, Any]], max_bytes: int) -> tuple[int, int]:
    """The serialized size and length of the longest prefix of ``items`` (hottest first)
    that fits ``max_bytes``.

    Sized from each item serialized alone, which overestimates a little (the
    whole payload shares repeated strings), so the prefix may fall an item
    or two short of the longest that would fit; never over the limit.
    """
    kept = len(items)
    size = len(dumps(_payload(items)))
    if size <= max_bytes:
        return size, kept
    # Estimate from per-item sizes (the prefix that fits), then trim to the exact size.
    budget = max_bytes - len(dumps(_payload([])))
    kept = 0
    for item in items:
        budget -= len(dumps(item))
        if budget < 0:
            break
        kept += 1
    size = len(dumps(_payload(items[:kept])))
    while kept and size > max_bytes:
        kept -= 1
        size = len(dumps(_payload(items[:kept])))
    return size, kept


def _items(entry: Entry | None) -> list[dict[str, Any]]:
    """The items of a stored snapshot (empty when there is none)."""
    if entry is None:
        return []
    payload = entry.value
    try:
        if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
            raise ValueError("not a snapshot of this version of dogpile_warm")
        items = [item for item in payload["items"] if isinstance(item, dict)]
    except Exception as exc:
        raise WarmError(f"the snapshot under {SNAPSHOT_KEY!r} is unreadable: {exc}") from exc
    return items


def _job(
    record: TaskRecord, item: dict[str, Any], codec: tuple[Dumps, Loads], pace: _Pacer | None
) -> tuple[WarmJob | None, str | None]:
    """The warm job of one snapshot item, or None and the reason it cannot run."""
    source = record.source
    assert source is not None
    try:
        data = base64.b64decode(item["call"], validate=True)
    except Exception as exc:
        return None, f"arguments cannot be read back: {describe_error(exc)}"
    call, reason = decode_call(codec[1], data, source, str(item.get("key")))
    if call is None:
        return None, reason
    args, kwargs = call
    job = bind_job(source, source.fn, args, kwargs, item["key"])
    if pace is None:
        return job, None
    return pace.wrap(job), None


class _Pacer:
    """Spaces the starts of jobs ``1 / rate`` seconds apart, across worker threads."""

    def __init__(
        self, rate: float, clock: Callable[[], float], sleep: Callable[[float], object]
    ) -> None:
        self._interval = 1.0 / rate
        self._clock = clock
        self._sleep = sleep
        self._next: float | None = None
        self._lock = forks.new_lock()

    def wait(self) -> None:
        """Return at this caller's start slot (the first caller starts at once)."""
        with self._lock:
            now = self._clock()
            start = now if self._next is None else max(now, self._next)
            self._next = start + self._interval
        if start > now:
            self._sleep(start - now)

    def wrap(self, job: WarmJob) -> WarmJob:
        def paced(batch: WriteBatch | None) -> KeyResult:
            self.wait()
            return job(batch)

        return paced
