"""How a warmable method binds to its instance (or a classmethod to its class).

``shop.price(1)`` first binds the proxy in ``Shop.price`` to ``shop``
(``__get__``), then calls what that returns. :class:`Binding`, a mixin of
the proxies in :mod:`dogpile_warm.wrappers`, binds a method whose proxy has a
``_self_fast_binding`` of ``(read, binds_class)``: what it returns calls
``read(target, *args, **kwargs)``, where ``read`` is the method's read path
(:func:`~dogpile_warm._cached.reader.make_reader` with ``binds``) and
``target`` the instance, or for a classmethod its class. A staticmethod's
proxy (``_self_fast_binding`` of ``()``) binds to nothing: the lookup returns
it as it is. Every other lookup (a method looked up on its class, any other
descriptor) goes to the proxy's ``_bind_slowly``.

The binding is in C where the optional extension ``dogpile_warm._binding_c``
was built (see ``_binding_c.c``), and this module chooses it: on CPython 3.11 a ``__get__`` written in
Python and a ``functools.partial`` subclass cost about as much as the memory
hit they lead to (benchmarks/hit_path.py). This module is the same binding
in Python, used where the extension is missing, or everywhere when the
environment variable ``DOGPILE_WARM_PURE_PYTHON`` is set to a non-empty value
(the test suite runs both).

A bound object answers the attributes of a bound method (``__self__``,
``__name__``, ``__wrapped__``, the signature) and of the proxy
(``shop.price.warm(x)`` warms with ``shop``) from wrapt's bound wrapper,
made on demand by :func:`bound_attribute`. Its ``__func__`` is the proxy (as
a bound method's is the function in its class), and its type called with
``(__func__, __self__)`` binds it again, so ``weakref.WeakMethod`` (and a
blinker receiver) works.
"""

from __future__ import annotations

import functools
import operator
import os
import types
from typing import TYPE_CHECKING, Any

import wrapt

__all__ = ["C_EXTENSION", "Binding", "BoundMethod", "bound_attribute"]


def bound_attribute(bound: Any, name: str) -> Any:
    """The attribute ``name`` of ``bound`` (a method bound by :class:`Binding`) that it
    does not have itself: wrapt's bound wrapper's; for ``"__repr__"`` its repr, for
    ``"__reduce__"`` what it pickles as (a bound method's ``getattr(target, name)``)."""
    read, target = bound._read, bound._target
    proxy = read.proxy  # the read path's own proxy (see WarmableFunction.__init__)
    if name == "__repr__":
        return f"<bound warmable {proxy.__qualname__} of {target!r}>"
    if name == "__reduce__":
        return getattr, (target, proxy.__name__)
    if name == "__func__":  # as a bound method's is the function in its class
        return proxy
    if name == "__deepcopy__":
        # wrapt's proxies refuse to be deep-copied; without this, copy.deepcopy
        # takes the bound method apart as it does a real one: __reduce__ above.
        raise AttributeError(name)
    if proxy._self_fast_binding[1]:  # binds a class
        wrapt_bound: Any = wrapt.FunctionWrapper.__get__(proxy, None, target)
    else:
        wrapt_bound = wrapt.FunctionWrapper.__get__(proxy, target, type(target))
    return getattr(wrapt_bound, name)


_new_partial = functools.partial.__new__


class _PythonBoundMethod(functools.partial):  # type: ignore[type-arg]
    """A method bound by the Python :class:`_PythonBinding`: ``func`` is its read path,
    ``args`` its target; a call is partial's own (in C)."""

    __slots__ = ()

    def __new__(cls, func: Any, target: Any) -> _PythonBoundMethod:
        """``func``'s binding to ``target``: what WeakMethod rebuilds a bound method
        from (its ``__func__``, the proxy, and ``__self__``)."""
        binding = getattr(func, "_self_fast_binding", None)
        if not (isinstance(binding, tuple) and len(binding) == 2):
            raise TypeError(
                "BoundMethod() takes a warmable method and its instance (or a"
                f" classmethod's class), got {func!r}"
            )
        return _new_partial(cls, binding[0], target)

    @property
    def _read(self) -> Any:
        return self.func

    @property
    def _target(self) -> Any:
        return self.args[0]

    def __getattr__(self, name: str) -> Any:
        return bound_attribute(self, name)

    # partial's own class attributes, which __getattr__ would not be asked for: what
    # a bound method answers (inspect.ismethod and getdoc, mock's autospec).
    @property  # type: ignore[misc]
    def __class__(self) -> type[Any]:
        return types.MethodType

    @property
    def __doc__(self) -> str | None:  # type: ignore[override]
        doc: str | None = bound_attribute(self, "__doc__")
        return doc

    @property
    def __module__(self) -> str:  # type: ignore[override]
        module: str = bound_attribute(self, "__module__")
        return module

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _PythonBoundMethod):
            return NotImplemented
        return self.func is other.func and self.args[0] is other.args[0]

    def __hash__(self) -> int:
        return hash((id(self.func), id(self.args[0])))

    def __repr__(self) -> str:
        text: str = bound_attribute(self, "__repr__")
        return text

    def __reduce__(self) -> Any:
        return bound_attribute(self, "__reduce__")


class _PythonBinding:
    """:class:`Binding`, written in Python (``_binding_c.c``'s ``binding_call`` and
    ``binding_get``)."""

    __slots__ = ()

    # Calling the proxy calls ``_self_call`` itself: ``__call__`` is a property
    # handing it out, so no frame (and no attribute lookup in one) stands between
    # a caller and the read path.
    __call__ = property(operator.attrgetter("_self_call"))

    def __get__(self, instance: Any, owner: type[Any] | None = None) -> Any:
        # _binding_c.c's bind(), branch for branch.
        binding = self._self_fast_binding  # type: ignore[attr-defined]
        if type(binding) is tuple and not binding:
            return self
        if type(binding) is tuple and len(binding) == 2:
            read, binds_class = binding
            if binds_class is True:  # a classmethod: its class
                if owner is not None:
                    return _new_partial(_PythonBoundMethod, read, owner)
                if instance is not None:
                    return _new_partial(_PythonBoundMethod, read, type(instance))
            elif instance is not None:
                return _new_partial(_PythonBoundMethod, read, instance)
        return self._bind_slowly(instance, owner)  # type: ignore[attr-defined]


if TYPE_CHECKING:

    class Binding:
        """The mixin, as type checkers see it: nothing (the proxies type their own
        ``__get__``, see :mod:`dogpile_warm.signatures`)."""

    BoundMethod: type[Any]
    C_EXTENSION: bool
elif os.environ.get("DOGPILE_WARM_PURE_PYTHON"):
    Binding, BoundMethod, C_EXTENSION = _PythonBinding, _PythonBoundMethod, False
else:
    try:
        from . import _binding_c
    except ImportError:  # not built here (no compiler, another interpreter)
        Binding, BoundMethod, C_EXTENSION = _PythonBinding, _PythonBoundMethod, False
    else:
        _binding_c.set_attribute_hook(bound_attribute)
        Binding, BoundMethod, C_EXTENSION = _binding_c.Binding, _binding_c.BoundMethod, True
