"""memcached's ``get`` of one key, spoken on a pymemcache client's own connection.

A hit on memcached is one ``get``. pymemcache's ``Client.get`` is general:
it checks and prefixes keys as lists, reads lines and values through helper
functions and answers a dict, Python work that one round trip and one
unpickle do not need (``benchmarks/memcached_hit.py`` measures both).
:func:`get` does the same exchange in one function, and is what
:class:`~dogpile_warm._backends.memcached.PyMemcacheBackend` reads one key with.

It uses the client's socket, connection, timeouts and serde, and answers as
``Client.get`` does: the same value, pymemcache's exception for an error
reply, ``MemcacheUnexpectedCloseError`` for a connection the server closed;
on any error it closes the connection (the next command opens a new one).
It is stricter with replies memcached never sends (another key's value,
bytes after ``END``, a header of other length): ``MemcacheUnknownError``,
where ``Client.get`` raises a ``KeyError`` or ``ValueError`` or leaves the
bytes for the next command. Whatever :func:`speaks` turns down (a key
pymemcache would refuse or change, another client class, a key prefix,
``ignore_exc``, a ``Client.get`` that is not pymemcache's own: tracing such as
OpenTelemetry's wraps it) goes to ``Client.get`` itself.
"""

from __future__ import annotations

from typing import Any, NoReturn

from pymemcache.client.base import RECV_SIZE, Client
from pymemcache.exceptions import (
    MemcacheClientError,
    MemcacheServerError,
    MemcacheUnexpectedCloseError,
    MemcacheUnknownCommandError,
    MemcacheUnknownError,
)

from . import traits

__all__ = ["get", "speaks"]

_MAX_KEY_LENGTH = 250  # memcached's
_END = b"\r\nEND\r\n"  # what follows a value's bytes


# What Client.get goes through, as pymemcache defines it (None if something had
# replaced one before this import): get() would skip a replacement of either.
_OWN = traits.own_functions(Client, ("get", "_fetch_cmd"), "pymemcache")


def speaks(client: Any, key: Any) -> bool:
    """Whether :func:`get` reads ``key`` as ``client.get`` would: a plain pymemcache
    ``Client`` whose ``get`` is pymemcache's own (checked on every call: tracing may
    wrap it later), without a key prefix or ``ignore_exc``, and a key it sends
    unchanged (ASCII, printable, no space, at most 250 characters)."""
    return (
        type(client) is Client
        and _OWN is not None
        and Client.get is _OWN[0]
        and Client._fetch_cmd is _OWN[1]
        and not client.key_prefix
        and not client.ignore_exc  # whose Client.get answers None for an error
        and type(key) is str
        and len(key) <= _MAX_KEY_LENGTH
        and key.isascii()
        and key.isprintable()
        and " " not in key
    )


def get(client: Client, key: str) -> Any:
    """``client.get(key)`` for a key :func:`speaks` accepts: the value, deserialized by
    the client's serde, or None if memcached has none."""
    sent = key.encode("ascii")
    sock = client.sock
    if sock is None:
        client._connect()
        sock = client.sock
    try:
        sock.sendall(b"get " + sent + b"\r\n")
        buf = b""
        while (line_end := buf.find(b"\r\n")) < 0:
            buf += _received(sock, RECV_SIZE)
        if line_end == 3 and buf.startswith(b"END"):
            if len(buf) != 5:
                raise MemcacheUnknownError(buf[:32])
            return None
        header = buf[:line_end].split()
        if len(header) != 4 or header[0] != b"VALUE" or header[1] != sent:
            _raise_error(buf[:line_end])
        flags, size = int(header[2]), int(header[3])
        start = line_end + 2
        end = start + size + len(_END)
        if len(buf) < end:
            buf = _rest(sock, buf, end)
        if len(buf) != end or buf[end - len(_END) :] != _END:
            raise MemcacheUnknownError(buf[:32])
        return client.serde.deserialize(key, buf[start : end - len(_END)], flags)
    except Exception:
        client.close()
        raise


def _received(sock: Any, size: int) -> bytes:
    """Up to ``size`` bytes from ``sock``; raises if the server closed the connection."""
    chunk: bytes = sock.recv(size)
    if not chunk:
        raise MemcacheUnexpectedCloseError()
    return chunk


def _rest(sock: Any, buf: bytes, size: int) -> bytes:
    """``buf`` and what follows it on ``sock``, ``size`` bytes in all, copied once."""
    whole = bytearray(size)
    whole[: len(buf)] = buf
    view = memoryview(whole)
    got = len(buf)
    while got < size:
        count = sock.recv_into(view[got:])
        if not count:
            raise MemcacheUnexpectedCloseError()
        got += count
    return bytes(whole)


def _raise_error(line: bytes) -> NoReturn:
    """Raise what pymemcache raises for ``line``, a reply that is not a value."""
    if line.startswith(b"ERROR"):
        raise MemcacheUnknownCommandError(b"get")
    if line.startswith(b"CLIENT_ERROR"):
        raise MemcacheClientError(line[line.find(b" ") + 1 :])
    if line.startswith(b"SERVER_ERROR"):
        raise MemcacheServerError(line[line.find(b" ") + 1 :])
    raise MemcacheUnknownError(line[:32])
