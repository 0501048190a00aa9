"""Per-user preloading: who was warmed when, so a login within the window is skipped.

:class:`UserPreloads` remembers, on the engine's clock, when each user was
last warmed, for at most ``max_users`` users (the longest unseen are
forgotten first). A user is marked *before* their warming starts, so a second
login racing the first is skipped rather than warming twice; a warming that
stored nothing gives the mark back, so the next login tries again.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from .._core import forks
from .._core.batch import KeyResult
from .._core.validation import check_non_negative_number
from ..reports import UserWarmReport

__all__ = ["UserPreloads"]

_MAX_USERS = 100_000


class UserPreloads:
    """When each user was last warmed, for the preload window (thread-safe)."""

    def __init__(self, window: float, max_users: int = _MAX_USERS) -> None:
        self.window = check_non_negative_number("user_preload_window", window, " of seconds")
        self.max_users = max_users
        self._warmed: OrderedDict[Any, float] = OrderedDict()
        self._lock = forks.new_lock()

    def claim(self, user_id: Any, now: float, force: bool) -> bool:
        """Mark ``user_id`` as warmed at ``now``; False (and no mark) if within the window."""
        with self._lock:
            last = self._warmed.get(user_id)
            if not force and last is not None and now - last < self.window:
                return False
            self._warmed[user_id] = now
            self._warmed.move_to_end(user_id)
            while len(self._warmed) > self.max_users:
                self._warmed.popitem(last=False)
        return True

    def release(self, user_id: Any, claimed_at: float) -> None:
        """Forget the claim made at ``claimed_at`` (unless a later one replaced it)."""
        with self._lock:
            if self._warmed.get(user_id) == claimed_at:
                del self._warmed[user_id]

    def preload(
        self, user_id: Any, now: float, force: bool, warm: Callable[[], list[KeyResult]]
    ) -> UserWarmReport:
        """Run ``warm()`` for ``user_id`` unless the user was warmed within the window
        (``force`` ignores it); report what it warmed."""
        report: UserWarmReport = {
            "user_id": user_id,
            "skipped": True,
            "keys_warmed": [],
            "failed": [],
            "duration_ms": 0.0,
        }
        if not self.claim(user_id, now, force):
            return report
        t0 = time.perf_counter()
        outcomes = warm()
        report["skipped"] = False
        report["keys_warmed"] = [r.key for r in outcomes if r.success]
        report["failed"] = [r.key for r in outcomes if not r.success]
        if report["failed"] and not report["keys_warmed"]:
            self.release(user_id, now)  # nothing warmed: let the next login try again
        report["duration_ms"] = (time.perf_counter() - t0) * 1000.0
        return report
