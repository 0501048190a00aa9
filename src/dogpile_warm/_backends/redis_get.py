"""Redis's ``GET`` of one key, on a connection from a redis-py (or valkey-py) client's pool.

A hit on Redis is one ``GET``. The client's ``get`` goes through its
``execute_command``: per call it parses the arguments for commands with
connection state, builds closures for the retry policy, records figures for
its observability hooks and looks up response callbacks, about 62,000
instructions per call with redis-py 8.1 (callgrind) that a ``GET`` of bytes
does not need. :func:`get` takes a connection from the client's own pool,
sends the ``GET`` and reads the reply with that connection's parser, under
that connection's retry policy, and gives the connection back: the pool's
fork check, health checks, reconnection and release events (re-authentication)
are all the pool's and the connection's own, and so are the errors raised.

What it does not do is record redis-py's observability figures for the
``GET``; and a client it does not speak for (:func:`speaks`: one bound to a
single connection, one with client-side caching, a ``GET`` with a response
callback, a key that is not ASCII) is read with the client's ``get``.
"""

from __future__ import annotations

import inspect
from typing import Any

__all__ = ["get", "speaks"]

# Whether a pool's get_connection needs the command's name (redis-py before 5.3,
# valkey-py), by pool class.
_NAMES_COMMAND: dict[type, tuple[str, ...]] = {}


def speaks(client: Any, key: Any) -> bool:
    """Whether :func:`get` reads ``key`` exactly as ``client.get`` would."""
    return (
        type(key) is str
        and key.isascii()
        and getattr(client, "connection", True) is None  # not a single-connection client
        and getattr(client.connection_pool, "cache", None) is None  # no client-side cache
        and "GET" not in getattr(client, "response_callbacks", {"GET": None})
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
    try:
        return conn.retry.call_with_retry(
            lambda: _round_trip(conn, command), lambda _error: conn.disconnect()
        )
    finally:
        pool.release(conn)


def _round_trip(conn: Any, command: bytes) -> Any:
    """Send ``command`` on ``conn`` and read its reply; on any error the connection
    disconnects itself (redis-py's own ``send_packed_command`` and ``read_response``)."""
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
