"""Fork safety: a forked child starts with every lock of ours free and its own connections.

``os.fork()`` copies the memory of the whole process but only the thread that
called it. A lock that another thread (a warm worker, a refresh, the
scheduler) held at that moment stays held in the child forever, and a
client connection inherited from the parent is the same socket: replies
meant for one process are read by the other (gunicorn ``--preload``,
multiprocessing). So:

- every lock of dogpile_warm is made by :func:`new_lock` / :func:`new_rlock`,
  which re-initialises it in the child, as :mod:`logging` does with its
  handlers' locks;
- objects that own threads, pools or connections register a callback with
  :func:`after_fork_in_child`; it runs in the child, after the locks are
  free, in registration order; callbacks that start threads again
  (``restart=True``) run after every other one, so that a restarted thread
  never meets a part not yet reset.

Callbacks are held weakly through their owner, so registering costs nothing
once the owner is gone.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["after_fork_in_child", "new_lock", "new_rlock"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")

_locks: weakref.WeakSet[Any] = weakref.WeakSet()
# owner -> callbacks, resets and restarts; a WeakKeyDictionary keeps the
# insertion order of live owners.
_resets: weakref.WeakKeyDictionary[Any, list[Callable[[Any], None]]] = weakref.WeakKeyDictionary()
_restarts: weakref.WeakKeyDictionary[Any, list[Callable[[Any], None]]] = weakref.WeakKeyDictionary()
_registry_lock = threading.Lock()


def new_lock() -> threading.Lock:
    """A ``threading.Lock`` that a forked child finds released."""
    lock = threading.Lock()
    with _registry_lock:
        _locks.add(lock)
    return lock


def new_rlock() -> threading.RLock:
    """A ``threading.RLock`` that a forked child finds released."""
    lock = threading.RLock()
    with _registry_lock:
        _locks.add(lock)
    return lock


def after_fork_in_child(
    owner: _T, callback: Callable[[_T], None], *, restart: bool = False
) -> None:
    """Call ``callback(owner)`` in every child forked while ``owner`` is alive; with
    ``restart``, after every callback registered without it."""
    with _registry_lock:
        (_restarts if restart else _resets).setdefault(owner, []).append(callback)


def _reset_in_child() -> None:
    global _registry_lock
    # The registry's own lock first: the forking thread cannot hold it (fork
    # is never called from in here), but another thread may have.
    _registry_lock = threading.Lock()
    for lock in list(_locks):
        lock._at_fork_reinit()  # what logging and threading use for their own locks
    for registry in (_resets, _restarts):
        for owner, callbacks in list(registry.items()):
            for callback in callbacks:
                try:
                    callback(owner)
                except Exception:  # a child that cannot reset one part still runs
                    log.exception("resetting %r in forked process %d failed", owner, os.getpid())


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_in_child)
