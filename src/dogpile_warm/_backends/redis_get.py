"""Redis's ``GET`` of one key, on a connection from a redis-py (or valkey-py) client's pool.

A hit on Redis is one ``GET``. The client's ``get`` goes through its
``execute_command``: per call it parses the arguments for commands with
connection state, builds closures for the retry policy, records figures for
its observability hooks and looks up response callbacks, Python work that a
``GET`` of bytes does not need (``benchmarks/redis_hit.py`` measures both).
:func:`get` takes a connection from the client's own pool, sends the ``GET``
and reads the reply with that connection's parser, under that connection's
retry policy and the client's own way of failing an attempt, and gives the
connection back: the pool's fork check, health checks, reconnection and
release events (re-authentication) are all the pool's and the connection's
own, and so are the errors raised.

What it does not do is record redis-py's observability figures for the
``GET``. A client it does not speak for (:func:`speaks`) is read with the
client's ``get``: one whose ``get``, ``execute_command`` or
``parse_response`` is not the library's own (a subclass that overrides one,
or tracing that wraps one: OpenTelemetry, ddtrace and Sentry wrap
``execute_command``), one bound to a single connection, one with a
client-side cache, a ``GET`` with a response callback, an encoding that does
not write ASCII as ASCII, or a key that is not ASCII.
"""

from __future__ import annotations

import inspect
from typing import Any

from . import traits

__all__ = ["get", "speaks"]

# Whether a pool's get_connection needs the command's name (redis-py before 5.3,
# valkey-py), by pool class.
_NAMES_COMMAND: dict[type, tuple[str, ...]] = {}

# What a client's get goes through: if any of these is not the library's own,
# client.get does something this module does not.
_COMMAND_PATH = ("get", "execute_command", "parse_response")
# By client class: those methods as they were when the class was first seen, if
# they were the library's own then, else None.
_OWN_METHODS: dict[type, tuple[Any, ...] | None] = {}
# Encodings (the client's "encoding" argument) that write an ASCII key as ASCII.
_ASCII_ENCODINGS = frozenset({"utf-8", "utf8", "UTF-8", "ascii", "latin-1", "latin1"})
# Connection arguments that turn a client-side cache on (valkey-py keeps it on the
# connection; redis-py 5.1 and later on the pool, as its "cache").
_CACHE_ARGUMENTS = ("cache_enabled", "client_cache", "cache", "cache_config")


def speaks(client: Any, key: Any) -> bool:
    """Whether :func:`get` reads ``key`` exactly as ``client.get`` would (see the module
    docstring for who is turned down)."""
    cls = type(client)
    if cls in _OWN_METHODS:
        own = _OWN_METHODS[cls]
    else:
        library = cls.__module__.partition(".")[0]
        own = _OWN_METHODS[cls] = (
            traits.own_functions(cls, _COMMAND_PATH, library)
            if library in ("redis", "valkey")
            else None
        )
    if own is None or type(key) is not str or not key.isascii():
        return False
    pool = client.connection_pool
    arguments = pool.connection_kwargs
    return (
        cls.get is own[0]
        and cls.execute_command is own[1]  # not wrapped since
        and cls.parse_response is own[2]
        and client.connection is None  # not a single-connection client
        and getattr(pool, "cache", None) is None
        and not any(arguments.get(name) for name in _CACHE_ARGUMENTS)
        and "GET" not in client.response_callbacks
        and arguments.get("encoding", "utf-8") in _ASCII_ENCODINGS
    )


def get(client: Any, key: str) -> Any:
    """``client.get(key)`` for a client and key :func:`speaks` accepts: the value as the
    connection reads it (bytes unless the client decodes), or None if Redis has none."""
    command = b"*2\r\n$3\r\nGET\r\n$%d\r\n%b\r\n" % (len(key), key.encode("ascii"))
    pool = client.connection_pool
    names = _NAMES_COMMAND.get(type(pool))
    if names is None:
        names = _NAMES_COMMAND[type(pool)] = _command_name_for(pool)
    conn = pool.get_connection(*names)
    # How the client's own get fails an attempt: where the client has
    # _disconnect_raise (valkey-py, older redis-py), an error the connection's
    # retry_on_error does not name is raised at once; elsewhere (redis-py 8) the
    # connection is dropped and the retry policy decides.
    disconnect_raise = getattr(client, "_disconnect_raise", None)
    if disconnect_raise is not None:
        fail = lambda error: disconnect_raise(conn, error)  # noqa: E731
    else:
        fail = lambda error: conn.disconnect()  # noqa: E731
    try:
        return conn.retry.call_with_retry(lambda: _round_trip(conn, command), fail)
    finally:
        pool.release(conn)


def _round_trip(conn: Any, command: bytes) -> Any:
    """Send ``command`` on ``conn`` and read its reply; a connection or timeout error
    disconnects it (redis-py's own ``send_packed_command`` and ``read_response``), an
    error reply (``WRONGTYPE``) leaves it as it is."""
    conn.send_packed_command([command])  # a list of chunks: bytes would be iterated
    return conn.read_response()


def _command_name_for(pool: Any) -> tuple[str, ...]:
    """``("GET",)`` if ``pool.get_connection`` requires the command's name, else ()."""
    try:
        parameter = inspect.signature(pool.get_connection).parameters.get("command_name")
    except (TypeError, ValueError):
        return ("GET",)
    if parameter is not None and parameter.default is inspect.Parameter.empty:
        return ("GET",)
    return ()
