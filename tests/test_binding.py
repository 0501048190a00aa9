"""Binding a warmable method (dogpile_warm._binding): in C where the extension is
built, in Python elsewhere; this file runs once for each (the Python run in a
subprocess, see the last test)."""

from __future__ import annotations

import copy
import gc
import inspect
import os
import pickle
import re
import subprocess
import sys
import weakref
from pathlib import Path
from typing import Any

import blinker
import pytest

from dogpile_warm import warmable
from dogpile_warm._binding import C_EXTENSION, BoundMethod

PURE_PYTHON = bool(os.environ.get("DOGPILE_WARM_PURE_PYTHON"))
ROOT = Path(__file__).resolve().parents[1]


def test_methods_bind_in_c_unless_told_not_to() -> None:
    """The test command builds the C extension (scripts/test installs a compiler where
    there is none): a build that failed quietly would leave every method slower."""
    assert C_EXTENSION is not PURE_PYTHON, (
        "dogpile_warm._binding_c (src/dogpile_warm/_binding_c.c) was not built: install a C "
        "compiler and Python's headers, then `pip install -e .` again"
    )


class Shop:
    def __init__(self, name: str) -> None:
        self.name = name

    @warmable(ttl=60)
    def price(self, item: str, size: int = 1) -> str:
        """The price of an item."""
        return f"{self.name}:{item}x{size}"

    @warmable(ttl=60)
    def many(self, *args: int, **kwargs: int) -> int:
        return sum(args) + sum(kwargs.values())

    @warmable(ttl=60)
    def fails(self, item: str) -> str:
        raise ValueError(f"no {item} in {self.name}")

    @classmethod
    @warmable(ttl=60)
    def origin(cls) -> str:
        return cls.__name__

    @warmable(ttl=60)
    @classmethod
    def label(cls, text: str) -> str:
        return f"{cls.__name__}:{text}"


class Corner(Shop):
    pass


def test_a_bound_method_is_bound_by_the_binding_in_use() -> None:
    bound: list[Any] = [Shop("a").price, Corner.origin, Corner.label]  # both orders
    assert [type(each) for each in bound] == [BoundMethod] * 3


def test_arguments_reach_the_method_however_the_call_is_made() -> None:
    """Positional and keyword arguments, through every way CPython calls an object (a
    direct call leaves room for the instance in front of the arguments; map(), * and
    ** calls do not), and more arguments than fit the binding's stack copy."""
    shop = Shop("a")
    assert shop.price("tea") == "a:teax1"
    assert shop.price("tea", size=2) == "a:teax2"
    assert shop.price(item="jam", size=3) == "a:jamx3"
    assert list(map(shop.price, ["x", "y"])) == ["a:xx1", "a:yx1"]
    args: list[Any] = ["tea"]
    kwargs: dict[str, Any] = {"size": 4}
    assert shop.price(*args, **kwargs) == "a:teax4"
    many = list(range(20))
    assert shop.many(*many) == sum(many)
    assert shop.many(*many, a=1, b=2) == sum(many) + 3
    assert shop.many(1, 2, 3, 4, 5, 6, 7, 8, 9, 10) == 55  # direct, past the stack copy


def test_classmethods_bind_the_class_they_are_looked_up_on() -> None:
    assert Corner.origin() == "Corner"  # computed first for the subclass
    assert Shop.origin() == "Corner"  # the key leaves cls out: a hit
    assert Corner("b").label("x") == "Corner:x"
    assert Shop.label.key_for("x") == Corner.label.key_for("x")


def test_an_error_in_the_method_reaches_the_caller() -> None:
    with pytest.raises(ValueError, match="no tea in a"):
        Shop("a").fails("tea")


def test_a_bound_method_answers_as_a_bound_method() -> None:
    shop = Shop("a")
    bound: Any = shop.price
    assert inspect.ismethod(shop.price) and bound.__self__ is shop
    assert bound.__name__ == "price" and bound.__doc__ == "The price of an item."
    assert bound.__module__ == __name__
    assert list(inspect.signature(bound).parameters) == ["item", "size"]
    assert bound.key_for("tea") == Shop.price.key_for("tea", 1)
    assert bound == shop.price and hash(bound) == hash(shop.price)
    assert bound != Shop("a").price and bound != Shop("a").fails
    assert repr(bound) == f"<bound warmable Shop.price of {shop!r}>"
    with pytest.raises(AttributeError, match="no_such_attribute"):
        bound.no_such_attribute  # noqa: B018


def test_a_bound_method_pickles_as_the_method_of_its_pickled_object() -> None:
    shop = Shop("pickled")
    bound: Any
    for bound in (shop.price, Corner.label):
        unpickled = pickle.loads(pickle.dumps(bound))
        assert type(unpickled) is BoundMethod and unpickled._read is bound._read
    assert pickle.loads(pickle.dumps(shop.price))("cake") == "pickled:cakex1"
    assert pickle.loads(pickle.dumps(Corner.label))._target is Corner


def test_a_bound_method_is_its_class_functions_and_can_be_rebuilt_from_it() -> None:
    """``__func__`` is the proxy in the class, ``__self__`` the instance (a classmethod's
    class); the type called with the two binds again: what weakref.WeakMethod, a
    blinker receiver and copy.deepcopy rely on."""
    shop = Shop("weak")
    bound: Any = shop.price
    assert bound.__func__ is Shop.__dict__["price"] and bound.__self__ is shop
    assert type(bound)(bound.__func__, bound.__self__) == bound
    label: Any = Corner.label
    assert label.__self__ is Corner and type(label)(label.__func__, Corner) == label
    weak = weakref.WeakMethod(bound)
    rebuilt = weak()
    assert rebuilt == bound and rebuilt is not None and rebuilt("pie") == "weak:piex1"
    del rebuilt
    del bound
    gc.collect()
    assert weak() is not None  # the instance and the proxy live on, as for a real method
    del shop
    gc.collect()
    assert weak() is None
    with pytest.raises(TypeError, match=r"takes a warmable method .* got <built-in function len>"):
        BoundMethod(len, Shop("x"))


def test_a_bound_method_is_a_blinker_receiver() -> None:
    class Listener:
        @warmable(ttl=60)
        def heard(self, sender: str) -> str:
            return f"heard {sender}"

    listener = Listener()
    signal = blinker.Signal()
    signal.connect(listener.heard)
    assert signal.send("news") == [(listener.heard, "heard news")]


def test_a_bound_method_deep_copies_as_a_bound_method_does() -> None:
    """With its instance copied: the copy is bound to the copy."""
    shop = Shop("deep")
    copied: Any = copy.deepcopy(shop.price)
    assert copied.__self__ is not shop and copied.__self__.name == "deep"
    assert copy.copy(shop.price) == shop.price


def test_a_bound_method_keeps_its_instance_alive_only_while_it_lives() -> None:
    shop = Shop("a")
    instance = weakref.ref(shop)
    bound = shop.price
    bound_ref = weakref.ref(bound)
    del shop
    gc.collect()
    assert instance() is not None and bound("tea") == "a:teax1"
    del bound
    gc.collect()
    assert instance() is None and bound_ref() is None


FINALISER_REBINDS = """
import copy
import gc
from dogpile_warm import warmable

class Shop:
    @warmable(ttl=60)
    def price(self, item):
        return item

proxy = Shop.__dict__["price"]

class Rebinds:  # a finaliser that drops the binding the lookup is reading
    def __del__(self):
        proxy._self_fast_binding = None

shop = Shop()
gc.collect()
gc.disable()
cycle = Rebinds()
cycle.me = cycle
del cycle
gc.set_threshold(1)  # the next allocation collects, in the middle of the lookup
gc.enable()
bound = shop.price
print(bound("tea"), repr(getattr(bound, "_read", None)))  # what a freed read path breaks
"""


def test_a_finaliser_run_by_the_lookup_cannot_free_what_it_binds() -> None:
    """A collection during the lookup (any allocation may start one) runs finalisers;
    one that replaces the binding must not free the read path being bound (in a
    process of its own: a use after free ends it). The C binding's case: the Python
    one holds what it reads."""
    done = subprocess.run(
        [sys.executable, "-X", "dev", "-c", FINALISER_REBINDS],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("tea "), done.stdout


def test_a_method_looked_up_on_its_class_is_wrapts_binding() -> None:
    shop = Shop("a")
    looked_up: Any = Shop.price
    assert type(looked_up) is not BoundMethod
    assert Shop.price(shop, "tea") == "a:teax1"
    assert Shop.price.key_for("tea") == shop.price.key_for("tea")


@pytest.mark.skipif(PURE_PYTHON, reason="this is the run the test below starts")
def test_the_python_binding_passes_the_same_tests() -> None:
    """This file and the method tests elsewhere, with DOGPILE_WARM_PURE_PYTHON set."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/test_binding.py",
            "tests/test_read_path.py::test_methods_bind_without_wrapt_unless_looked_up_on_their_class",
            "tests/test_decorator.py",
        ],
        cwd=ROOT,
        env={**os.environ, "DOGPILE_WARM_PURE_PYTHON": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"\b1 skipped\b", done.stdout), done.stdout  # this test, not run again
