"""Keys never hold memory addresses: one user's value never reaches another user."""

from __future__ import annotations

import gc
from dataclasses import dataclass
from typing import Any

import pytest

from dogpile_warm import warmable


class User:
    """A user object with object's default repr (its memory address)."""

    def __init__(self, user_id: int) -> None:
        self.id = user_id


@dataclass(frozen=True)
class Account:
    id: int


def test_an_argument_keyed_by_its_address_is_refused_naming_the_parameter() -> None:
    @warmable(user_arg="user")
    def profile(user: User) -> int:
        return user.id

    with pytest.raises(TypeError, match=r"argument 'user' of .*profile is a User .* key_by"):
        profile(User(1))
    with pytest.raises(TypeError, match="'user'"):
        profile(user=User(1))  # the keyword path too
    with pytest.raises(TypeError, match="'user'"):
        profile([User(1)])  # type: ignore[arg-type]  # nested in a container, on purpose
    with pytest.raises(TypeError, match="'user'"):
        profile(lambda: 1)  # type: ignore[arg-type]  # functions' reprs hold addresses too


def test_freed_and_reused_addresses_never_mix_users_when_keyed_by_id() -> None:
    """Many short-lived user objects (their addresses repeat): keyed by id, every
    call returns its own user's value."""

    @warmable(user_arg="user", key_by={"user": lambda user: user.id})
    def profile(user: User) -> int:
        return user.id

    addresses: set[int] = set()
    wrong = 0
    for n in range(3000):
        user = User(n % 1000)
        addresses.add(id(user))
        wrong += profile(user) != n % 1000
        del user
        gc.collect(0)
    assert len(addresses) < 3000  # addresses did repeat
    assert wrong == 0


def test_key_by_none_leaves_an_argument_out_of_the_key() -> None:
    calls: list[Any] = []

    @warmable(key_by={"session": None})
    def count(n: int, session: object) -> int:
        calls.append(session)
        return n * 2

    assert count(2, object()) == 4
    assert count(2, object()) == 4
    assert len(calls) == 1
    assert count.key_for(2, object()) == count.key_for(2, session=None)


def test_objects_with_their_own_repr_keep_working() -> None:
    @warmable()
    def balance(account: Account) -> int:
        return account.id * 10

    assert balance(Account(3)) == 30
    assert balance.key_for(Account(3)).endswith("|Account(id=3)")


def test_a_string_that_looks_like_an_address_is_a_string() -> None:
    @warmable()
    def echo(text: str) -> str:
        return text

    assert echo("meet at 0x10>") == "meet at 0x10>"


@pytest.mark.parametrize(
    ("key_by", "error", "mentions"),
    [
        ({"nope": None}, ValueError, "'nope'.*parameters: user"),
        ({"user": 5}, TypeError, r"key_by\['user'\].*5"),
        ([("user", None)], TypeError, "key_by must map"),
    ],
)
def test_bad_key_by_is_refused_at_decoration(
    key_by: Any, error: type[Exception], mentions: str
) -> None:
    with pytest.raises(error, match=mentions):

        @warmable(key_by=key_by)
        def profile(user: User) -> int:
            return user.id
