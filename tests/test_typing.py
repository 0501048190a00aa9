"""A type checker sees a decorated function as the function: mypy --strict, run on a user's
module outside the repository, against the package as installed: editable (the README's
way, this suite's environment) and from a wheel, in a virtualenv of its own."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

USER_MODULE = textwrap.dedent(
    """
    from dogpile_warm import warmable


    @warmable(ttl=60)
    def load(user_id: int) -> str:
        return str(user_id)


    @warmable(ttl=60)
    async def fetch(user_id: int) -> bytes:
        return b""


    class Shop:
        @warmable(ttl=60)
        def price(self, item: str) -> int:
            return len(item)

        @warmable(ttl=60)
        async def stock(self, item: str) -> int:
            return 0

        @warmable(ttl=60)
        @classmethod
        def currency(cls, country: str) -> str:
            return country

        @warmable(ttl=60)
        @staticmethod
        def tax(rate: float) -> float:
            return rate

        @warmable(ttl=60)
        @classmethod
        async def rates(cls, day: int) -> list[float]:
            return []


    async def handler() -> None:
        reveal_type(await fetch(1))
        reveal_type(await fetch.aget(1))
        reveal_type(await Shop().stock("tea"))
        reveal_type(await Shop().price.awarm("tea"))
        reveal_type(await Shop.rates(1))
        await fetch("x")  # bad: an async function's argument of the wrong type


    reveal_type(load(1))
    reveal_type(load.get(1))
    reveal_type(Shop().price("tea"))
    reveal_type(Shop.price(Shop(), "tea"))
    reveal_type(Shop().price.key_for("tea"))
    reveal_type(fetch.get(1))
    reveal_type(Shop.currency("fr"))
    reveal_type(Shop().currency("fr"))
    reveal_type(Shop.tax(0.2))
    reveal_type(Shop().tax.get(0.2))
    load("x")  # bad: an argument of the wrong type
    load(1, 2)  # bad: one argument too many
    n: int = load(1)  # bad: the wrong return type
    Shop().price(3)  # bad: a method's argument of the wrong type
    Shop.currency(3)  # bad: a classmethod's argument of the wrong type
    Shop().tax("x")  # bad: a staticmethod's argument of the wrong type
    """
)
BAD_LINES = [n for n, line in enumerate(USER_MODULE.splitlines(), 1) if "# bad:" in line]


ROOT = Path(__file__).resolve().parent.parent


def python_with_a_wheel(where: Path) -> str:
    """A virtualenv's python with dogpile_warm installed from a wheel built here, with its
    dependencies, as a user installs it."""
    run = {"check": True, "capture_output": True, "timeout": 300}
    subprocess.run([sys.executable, "-m", "venv", str(where / "venv")], **run)  # type: ignore[call-overload]
    python = str(where / "venv" / "bin" / "python")
    wheels = where / "wheels"
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(ROOT)]
    subprocess.run(build, **run)  # type: ignore[call-overload]
    [wheel] = wheels.glob("dogpile_warm-*.whl")
    install = [python, "-m", "pip", "install", "-q", str(wheel)]
    subprocess.run(install, **run)  # type: ignore[call-overload]
    return python


@pytest.fixture(scope="module", params=["editable", "wheel"])
def mypy_output(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """mypy --strict's report on USER_MODULE, in a directory of its own, against the
    package installed editable (this environment) or from a wheel."""
    where: Path = tmp_path_factory.mktemp("user_project")
    (where / "user_module.py").write_text(USER_MODULE)
    command = [sys.executable, "-m", "mypy", "--strict", "--no-incremental"]
    if request.param == "wheel":
        command += ["--python-executable", python_with_a_wheel(where)]
    done = subprocess.run(
        [*command, "user_module.py"], cwd=where, capture_output=True, text=True, timeout=300
    )
    return done.stdout + done.stderr


def revealed(output: str) -> list[str]:
    return re.findall(r'Revealed type is "([^"]+)"', output)


def errors_on(output: str) -> dict[int, str]:
    return {int(m[0]): m[1] for m in re.findall(r"user_module\.py:(\d+): error: (.*)", output)}


@pytest.mark.slow
def test_the_installed_package_is_found_and_typed(mypy_output: str) -> None:
    """mypy finds dogpile_warm from outside the repository and reads its types."""
    assert "import-not-found" not in mypy_output, mypy_output
    assert "untyped" not in mypy_output, mypy_output


@pytest.mark.slow
def test_a_decorated_function_and_method_keep_their_return_types(mypy_output: str) -> None:
    """Calls reveal the functions' own return types (awaited, for an async def), for
    functions, methods, classmethods and staticmethods; get() adds NO_VALUE."""
    names = [name.removeprefix("builtins.") for name in revealed(mypy_output)]
    no_value = "dogpile.cache.api.NoValue"
    assert names == [
        "bytes",
        f"bytes | {no_value}",
        "int",
        "bool",
        "list[float]",
        "str",
        f"str | {no_value}",
        "int",
        "int",
        "str",
        f"bytes | {no_value}",
        "str",
        "str",
        "float",
        f"float | {no_value}",
    ], mypy_output


@pytest.mark.slow
def test_bad_calls_are_errors_and_good_ones_are_not(mypy_output: str) -> None:
    """Exactly the bad lines are flagged: arguments (of a function, an async function,
    a method, a classmethod, a staticmethod), arity, return type."""
    errors = errors_on(mypy_output)
    assert sorted(errors) == BAD_LINES, mypy_output
    awaited, argument, arity, returned, method, classmethod, staticmethod = (
        errors[n] for n in BAD_LINES
    )
    assert "incompatible type" in classmethod and 'expected "str"' in classmethod
    assert "incompatible type" in staticmethod and 'expected "float"' in staticmethod
    assert "incompatible type" in awaited and 'expected "int"' in awaited
    assert "incompatible type" in argument and 'expected "int"' in argument
    assert "Too many arguments" in arity
    assert "Incompatible types in assignment" in returned
    assert "incompatible type" in method and 'expected "str"' in method
