"""Cache keys: from call arguments to a string, and from a string to a safe key.

A key is ``<name>`` for a function without parameters and ``<name>|<args>``
otherwise, where ``<args>`` is the ``repr`` of every bound argument, defaults
applied, in signature order: ``f(1)``, ``f(x=1)`` and ``f()`` with ``x=1`` as
its default share one key, and ``f(1)`` never shares one with ``f("1")``.

``key_by`` (``{parameter: function or None}``) keys a parameter by
``function(value)`` instead, or leaves it out of the key (None): for an object
without a repr of its own, or a database session that does not change the
result. An argument whose repr holds a memory address (``object``'s default
repr, a function's, a lambda's) is refused with ``TypeError``: addresses are
reused once an object is freed, and a key built from one would hand one
caller's value to another (a user's data to another user).

:func:`safe_key` turns any key into one every backend accepts (memcached:
at most 250 bytes, no spaces or control characters).
"""

from __future__ import annotations

import hashlib
import inspect
import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["KeyBuilder", "KeyBy", "safe_key"]

KeyBy = Mapping[str, Callable[[Any], Any] | None]

# What a repr holding a memory address ends with: "<... object at 0x7f...>".
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+>")

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

    def __init__(self, name: str, fn: Callable[..., Any], key_by: KeyBy | None = None) -> None:
        signature = inspect.signature(fn)
        params = list(signature.parameters.values())
        self.skips_first = bool(params) and params[0].name in ("self", "cls")
        if self.skips_first:
            params = params[1:]
        self.name = name
        self.signature = signature.replace(parameters=params)
        self.parameter_names = tuple(p.name for p in params)
        self.key_by = _check_key_by(key_by, self.parameter_names, name)
        self._positional_only = (
            len(params) > 0
            and not self.key_by
            and all(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)
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
            key = f"{self.name}|{','.join(map(repr, args))}"
            if " at 0x" in key:  # cheap first look; _parts says which argument
                self._parts(args, kwargs)
            return key
        return f"{self.name}|{','.join(self._parts(args, kwargs))}"

    def _parts(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> list[str]:
        """The repr of every argument that goes in the key, in signature order."""
        arguments = self.bind(args, kwargs)
        key_by = self.key_by
        parts = []
        for param in self.signature.parameters.values():
            value = arguments[param.name]
            if param.name in key_by:
                keyed_by = key_by[param.name]
                if keyed_by is None:
                    continue
                value = keyed_by(value)
            elif param.kind is param.VAR_KEYWORD:
                value = dict(sorted(value.items()))
            part = repr(value)
            if _ADDRESS.search(part) and not isinstance(value, str):
                raise TypeError(self._address_message(param.name, value, part))
            parts.append(part)
        return parts

    def _address_message(self, parameter: str, value: Any, part: str) -> str:
        kind = type(value).__qualname__
        return (
            f"argument {parameter!r} of {self.name} is a {kind} whose repr holds a memory "
            f"address ({part[:80]}): addresses are reused, so the key could hand another "
            f"call's value (another user's data) to this one; give {kind} a __repr__ "
            f"that identifies it, key it by something that does with "
            f"@warmable(key_by={{{parameter!r}: lambda v: v.id}}), or leave it out of "
            f"the key with key_by={{{parameter!r}: None}}"
        )


def _check_key_by(key_by: Any, parameters: tuple[str, ...], name: str) -> dict[str, Any]:
    if key_by is None:
        return {}
    if not isinstance(key_by, Mapping):
        raise TypeError(f"key_by must map parameter names to functions or None, got {key_by!r}")
    for parameter, keyed_by in key_by.items():
        if parameter not in parameters:
            raise ValueError(
                f"key_by names {parameter!r}, which is not a parameter of {name} "
                f"(parameters: {', '.join(parameters) or 'none'})"
            )
        if keyed_by is not None and not callable(keyed_by):
            raise TypeError(
                f"key_by[{parameter!r}] must be a function of the argument or None, "
                f"got {keyed_by!r}"
            )
    return dict(key_by)
