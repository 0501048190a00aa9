"""The one exception module of dogpile_warm.

Misuse (bad arguments, unknown names) raises the built-in ``TypeError`` or
``ValueError`` with a message naming the bad value; :class:`WarmError` is for
what goes wrong inside the library's own machinery.
"""

from __future__ import annotations

from dogpile.cache.exception import DogpileCacheException

__all__ = ["UnknownRegionError", "WarmError", "describe_error"]


class WarmError(DogpileCacheException):
    """Base class of dogpile_warm's own errors."""


class UnknownRegionError(WarmError, ValueError):
    """A region name that nobody configured.

    Also a ``ValueError``, since naming a region that does not exist is misuse.
    """


def describe_error(error: BaseException | None) -> str | None:
    """The text reports carry for ``error`` ("Type: message"), or None."""
    return None if error is None else f"{type(error).__name__}: {error}"
