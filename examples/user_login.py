"""Per-user preloading on login with ``warm_user_data``.

Shows: a login warms every ``user_arg`` function for that user; a second
login inside the preload window is skipped unless ``force=True``;
``preload_forms=False`` leaves out the functions tagged "forms"; and one
user is never served another user's value.

Run it: ``python examples/user_login.py`` (in-memory region, no server).
Each claim is asserted, so the script fails loudly if the library breaks.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from dogpile.cache.api import NO_VALUE

import dogpile_warm
from dogpile_warm.reports import UserWarmReport
from dogpile_warm.testing import FakeClock

# The engine's clock drives the preload window; a settable one lets this
# script show the window passing without waiting five minutes.
clock = FakeClock()
engine = dogpile_warm.CacheWarmingEngine(user_preload_window=300, clock=clock)

computed: Counter[str] = Counter()


@dogpile_warm.warmable(
    priority=80, ttl=600, tags={"user", "session"}, user_arg="user_id", engine=engine
)
def user_profile(user_id: Any) -> dict[str, Any]:
    computed[f"profile:{user_id!r}"] += 1
    return {"user_id": user_id, "name": f"user {user_id}"}


@dogpile_warm.warmable(
    priority=40, ttl=600, tags={"user", "forms"}, user_arg="user_id", engine=engine
)
def recent_forms(user_id: Any, limit: int = 5) -> list[str]:
    computed[f"forms:{user_id!r}"] += 1
    return [f"form-{user_id}-{n}" for n in range(limit)]


def on_login(user_id: Any, *, mobile: bool = False, force: bool = False) -> UserWarmReport:
    """What a login handler would call: warm this user's data before the first page."""
    return engine.warm_user_data(user_id, force=force, preload_forms=not mobile)


def show(label: str, result: UserWarmReport) -> None:
    print(
        f"{label:<42} skipped={result['skipped']!s:<5} "
        f"warmed={len(result['keys_warmed'])} failed={len(result['failed'])}"
    )


def main() -> None:
    first = on_login(1)
    show("1 logs in", first)
    assert first["skipped"] is False and first["failed"] == []
    assert sorted(first["keys_warmed"]) == sorted(
        [user_profile.key_for(1), recent_forms.key_for(1)]
    )

    again = on_login(1)
    show("1 logs in again a moment later", again)
    assert again["skipped"] is True and again["keys_warmed"] == []

    forced = on_login(1, force=True)
    show("1 logs in again with force=True", forced)
    assert forced["skipped"] is False and len(forced["keys_warmed"]) == 2
    assert computed[f"profile:{1!r}"] == 2

    clock.advance(301)  # the preload window (300 s) has passed
    later = on_login(1)
    show("1 logs in after the window", later)
    assert later["skipped"] is False and len(later["keys_warmed"]) == 2

    mobile = on_login(2, mobile=True)
    show("2 logs in on mobile (preload_forms=False)", mobile)
    assert mobile["keys_warmed"] == [user_profile.key_for(2)]
    assert recent_forms.get(2) is NO_VALUE  # forms were left out
    assert user_profile.get(2) is not NO_VALUE

    # The first page: every value is this user's own, answered from the cache.
    before = computed.copy()
    assert user_profile(1)["user_id"] == 1
    assert user_profile(user_id=2)["user_id"] == 2
    assert recent_forms(1) == [f"form-1-{n}" for n in range(5)]
    assert computed == before, "warmed values were recomputed"
    print("first pages of 1 and 2 served from the cache, each user's own values")

    # User ids are part of the key by value and type: 1 and "1" never share one.
    assert user_profile.key_for(1) != user_profile.key_for("1")
    assert user_profile("1")["user_id"] == "1"
    assert computed[f"profile:{'1'!r}"] == 1
    print(f"keys differ per user: {user_profile.key_for(1)!r} vs {user_profile.key_for('1')!r}")

    engine.close()
    print("user_login OK")


if __name__ == "__main__":
    main()
