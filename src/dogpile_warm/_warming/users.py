"""Per-user preloading: who was warmed when, so a login within the window is skipped.

:class:`UserPreloads` remembers, on the engine's clock, when each user was
last warmed, for at most ``max_users`` users (the longest unseen are
forgotten first). A user is marked *before* their warming starts, so a second
login racing the first is skipped rather than warming twice; a warming that
stored nothing gives the mark back, so the next login tries again.

Where a fleet shares a backend (see :mod:`dogpile_warm._warming.fleet`), the
window is the fleet's: a login also claims the user there for the window,
and a login in any process within it is skipped.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from .._core import forks
from .._core.batch import KeyResult
from .._core.store import CacheStore
from .._core.validation import check_non_negative_number
from ..reports import UserWarmReport
from . import fleet

__all__ = ["UserPreloads"]

_MAX_USERS = 100_000


class UserPreloads:
    """When each user was last warmed, for the preload window (thread-safe).

    ``stores()`` gives the stores in use, among which a fleet's shared one is
    looked for at each login (None: this process's window only).
    """

    def __init__(
        self,
        window: float,
        max_users: int = _MAX_USERS,
        stores: Callable[[], Iterable[CacheStore]] | None = None,
    ) -> None:
        self.window = check_non_negative_number("user_preload_window", window, " of seconds")
        self.max_users = max_users
        self._stores = stores
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

    def set_window(self, window: float) -> None:
        """Change the window (seconds of the engine's clock, 0 or more)."""
        self.window = check_non_negative_number("user_preload_window", window, " of seconds")

    def _fleet_store(self) -> CacheStore | None:
        """Where a login is claimed: the stores of the per-user functions, when every one
        is the fleet's (see :func:`.fleet.fleet_store`)."""
        return fleet.fleet_store(self._stores()) if self._stores is not None else None

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
        shared = self._fleet_store() if self.window and not force else None
        name = f"dogpile_warm:login:{user_id!r}"
        if shared is not None and not fleet.claim(shared, name, self.window):
            return report  # another process of the fleet warmed this user within the window
        t0 = time.perf_counter()
        outcomes = warm()
        report["skipped"] = False
        report["keys_warmed"] = [r.key for r in outcomes if r.success]
        report["failed"] = [r.key for r in outcomes if not r.success]
        if report["failed"] and not report["keys_warmed"]:
            self.release(user_id, now)  # nothing warmed: let the next login try again
            if shared is not None:
                fleet.forget(shared, name)
        report["duration_ms"] = (time.perf_counter() - t0) * 1000.0
        return report
