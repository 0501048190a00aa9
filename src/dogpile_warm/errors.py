"""The one exception module of dogpile_warm.

Misuse (bad arguments, unknown names) raises the built-in ``TypeError`` or
``ValueError`` with a message naming the bad value; :class:`WarmError` is for
what goes wrong inside the library's own machinery.

Backend failures never reach the caller of a decorated function; they are
classified by the store (see :mod:`dogpile_warm._core.health`) into the three
:class:`BackendError` kinds, which appear in warm reports (``error``) and in
``warm_failed`` signals.
"""

from __future__ import annotations

from dogpile.cache.exception import DogpileCacheException

__all__ = [
    "BackendError",
    "BackendUnavailable",
    "LockLost",
    "ReentrantCallError",
    "UnknownRegionError",
    "ValueRefused",
    "ValueUnreadable",
    "WarmError",
    "describe_error",
]


class WarmError(DogpileCacheException):
    """Base class of dogpile_warm's own errors."""


class UnknownRegionError(WarmError, ValueError):
    """A region name that nobody configured.

    Also a ``ValueError``, since naming a region that does not exist is misuse.
    """


class BackendError(WarmError):
    """A backend operation that failed; ``__cause__`` is what the client raised."""

    kind = "error"


class BackendUnavailable(BackendError):
    """The backend did not answer: connection refused or reset, a timeout, or
    skipped while the region's circuit breaker is open."""

    kind = "unavailable"


class ValueRefused(BackendError):
    """The backend answered but would not store a value (too large, cannot be serialized)."""

    kind = "refused"


class ValueUnreadable(BackendError):
    """A value came back that cannot be deserialized or is not dogpile_warm's."""

    kind = "unreadable"


class LockLost(BackendError):
    """A lock released or renewed had already expired and may be another's (not a failure
    of the backend, and not counted as one)."""

    kind = "lost"


class ReentrantCallError(WarmError, RuntimeError):
    """A computation asked for the very key it is computing (directly or through
    other cached functions), which would otherwise wait for itself forever."""


def describe_error(error: BaseException | None) -> str | None:
    """The text reports carry for ``error`` ("Type: message"), or None."""
    return None if error is None else f"{type(error).__name__}: {error}"
