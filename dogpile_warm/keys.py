"""Cache keys: from call arguments to a string, and from a string to a safe key.

A key is ``<name>`` for a function without parameters and ``<name>|<args>``
otherwise, where ``<args>`` is the ``repr`` of every bound argument, defaults
applied, in signature order: ``f(1)``, ``f(x=1)`` and ``f()`` with ``x=1`` as
its default share one key, and ``f(1)`` never shares one with ``f("1")``.

:func:`safe_key` turns any key into one every backend accepts (memcached:
at most 250 bytes, no spaces or control characters).
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["KeyBuilder", "safe_key"]

# Short enough that memcached's 250-byte limit holds with dogpile's "_lock"
# prefix and a user's own key_mangler prefix on top.
_MAX_KEY_LENGTH = 200
_READABLE_PREFIX = 80

# Keys of positional calls with these exact argument types are memoised
# (at most _MEMO_SIZE per function; the memo starts over when full).
MEMO_TYPES = frozenset({int, str})
_MEMO_SIZE = 4096


def safe_key(key: str) -> str:
    """Return ``key`` itself if every backend accepts it, else a stable digest form.

    The digest form keeps a readable prefix (unsafe characters replaced) and
    appends the SHA-256 of the whole key, so distinct keys stay distinct.
    """
    if len(key) <= _MAX_KEY_LENGTH and key.isascii() and key.isprintable() and " " not in key:
        return key
    head = "".join(c if c.isascii() and c.isprintable() and c != " " else "_" for c in key)
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{head[:_READABLE_PREFIX]}#{digest}"


class KeyBuilder:
    """Builds the cache key of one function from its call arguments.

    ``self``/``cls`` as the first parameter is left out of the key, as in
    dogpile's ``function_key_generator``; the caller passes the arguments
    without it.
    """

    def __init__(self, name: str, fn: Callable[..., Any]) -> None:
        signature = inspect.signature(fn)
        params = list(signature.parameters.values())
        self.skips_first = bool(params) and params[0].name in ("self", "cls")
        if self.skips_first:
            params = params[1:]
        self.name = name
        self.signature = signature.replace(parameters=params)
        self.parameter_names = tuple(p.name for p in params)
        self._positional_only = len(params) > 0 and all(
            p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params
        )
        # args -> key, for positional calls whose arguments are all exact ints
        # and strs (at most _MEMO_SIZE; starts over when full, cleared in place).
        # Equal tuples may differ in type (1, 1.0 and True; a str and a StrEnum
        # member) and so in repr: a looked-up key is only valid for args whose
        # every type is in MEMO_TYPES.
        self.memo: dict[tuple[Any, ...], str] = {}

    def bind(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """Return every argument by name, defaults applied; ``TypeError`` if they do not fit."""
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return dict(bound.arguments)

    def key(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
        """Return the key (before :func:`safe_key`) for a call with these arguments.

        Always builds it; a key of exact ints and strs, given positionally, is
        also remembered in :attr:`memo` for the read path to look up.
        """
        key = self._build(args, kwargs)
        if not kwargs and all(type(arg) in MEMO_TYPES for arg in args):
            if len(self.memo) >= _MEMO_SIZE:
                self.memo.clear()
            self.memo[args] = key
        return key

    def _build(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
        if not self.parameter_names:
            if args or kwargs:
                self.signature.bind(*args, **kwargs)  # raises the usual TypeError
            return self.name
        if self._positional_only and not kwargs and len(args) == len(self.parameter_names):
            # The common call: every argument given positionally, nothing to bind.
            return f"{self.name}|{','.join(map(repr, args))}"
        arguments = self.bind(args, kwargs)
        parts = []
        for param in self.signature.parameters.values():
            value = arguments[param.name]
            if param.kind is param.VAR_KEYWORD:
                value = dict(sorted(value.items()))
            parts.append(repr(value))
        return f"{self.name}|{','.join(parts)}"
