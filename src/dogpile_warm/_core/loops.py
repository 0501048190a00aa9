"""Where asyncio meets threads: blocking calls leave the event loop, coroutines go to it.

A decorated ``async def`` runs on its caller's event loop, while backend
calls (pymemcache, redis-py, file locks) block. Three crossings:

- :class:`OffLoop` runs a blocking call in a thread pool of its own and
  awaits it, so an awaiting caller never blocks its loop on a backend;
- :func:`in_thread` runs blocking work (a warm run, a ``refresh``) in a
  thread of its own with the running loop as that work's *home loop*;
- :func:`result_of` is how blocking code gets a coroutine's result: on the
  home loop when there is one (so the coroutine may use the application's
  loop-bound clients), else with :func:`asyncio.run` in the current thread.

Threads and tasks carry the caller's :mod:`contextvars` context, so a call
budget or a key being computed (see :mod:`dogpile_warm._core.locks`) stays
known on both sides.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import inspect
import threading
from collections.abc import Callable, Coroutine, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from . import forks

__all__ = [
    "OffLoop",
    "check_may_wait",
    "home_loop",
    "in_thread",
    "is_async_function",
    "loop_running_here",
    "result_of",
]

_T = TypeVar("_T")

# Seconds between checks, while a thread waits for a coroutine, that its loop still exists.
_LOOP_CHECK = 1.0

# The loop that coroutines met by blocking code in this context run on.
home_loop: contextvars.ContextVar[asyncio.AbstractEventLoop | None] = contextvars.ContextVar(
    "dogpile_warm_home_loop", default=None
)


def loop_running_here() -> asyncio.AbstractEventLoop | None:
    """The event loop running in this thread, if any."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class OffLoop:
    """Runs blocking calls in threads of its own, awaited from a loop.

    ``workers`` threads serve most calls; a lock's calls (``pin=`` a key) go
    to one of ``lock_threads`` single threads chosen by the key, so that a
    lock is always taken and released by the same thread: some locks only
    work that way (dbm's file lock, a thread-local Redis lock). Pools start
    on first use, are replaced in a forked child (their threads do not exist
    there) and are shut down by :meth:`close`. Each call runs in a copy of
    the awaiting task's context (or in ``context``).
    """

    def __init__(self, workers: int = 32, lock_threads: int = 8) -> None:
        self.workers = workers
        self.lock_threads = lock_threads
        self._lock = forks.new_lock()
        self._forget_pools()
        forks.after_fork_in_child(self, OffLoop._forget_pools)

    def _forget_pools(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._pinned: list[ThreadPoolExecutor | None] = [None] * self.lock_threads

    async def run(
        self,
        fn: Callable[..., _T],
        *args: Any,
        context: contextvars.Context | None = None,
        pin: Hashable | None = None,
        if_abandoned: Callable[[], Any] | None = None,
    ) -> _T:
        """``fn(*args)``, run in a thread while the caller's loop goes on.

        ``pin``: run it in the one thread of that key. ``if_abandoned()`` is
        called, in that thread once ``fn`` has returned, when the awaiter is
        cancelled meanwhile (a lock taken for a task no longer there).
        """
        ctx = contextvars.copy_context() if context is None else context
        future = self._executor(pin).submit(ctx.run, fn, *args)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            if if_abandoned is not None:
                future.add_done_callback(lambda _: if_abandoned())
            raise

    async def call(self, blocking: bool, fn: Callable[..., _T], *args: Any) -> _T:
        """``fn(*args)``: off the loop if ``blocking`` (a store's backend that may block),
        else at once, without suspending."""
        if not blocking:
            return fn(*args)
        return await self.run(fn, *args)

    def fire(self, fn: Callable[[], Any], pin: Hashable | None = None) -> None:
        """Run ``fn()`` in a thread without waiting for it (a lock release in a
        ``finally`` that must happen even when its task is being cancelled)."""
        self._executor(pin).submit(fn)

    def _executor(self, pin: Hashable | None = None) -> ThreadPoolExecutor:
        if pin is None:
            pool = self._pool
            if pool is None:
                with self._lock:
                    pool = self._pool
                    if pool is None:
                        pool = self._pool = ThreadPoolExecutor(
                            self.workers, thread_name_prefix="dogpile_warm-io"
                        )
            return pool
        slot = hash(pin) % self.lock_threads
        pinned = self._pinned[slot]
        if pinned is None:
            with self._lock:
                pinned = self._pinned[slot]
                if pinned is None:
                    pinned = self._pinned[slot] = ThreadPoolExecutor(
                        1, thread_name_prefix=f"dogpile_warm-io-lock{slot}"
                    )
        return pinned

    def close(self) -> None:
        """Wait for the calls under way and stop the pools (later calls start new ones)."""
        with self._lock:
            pools = [self._pool, *self._pinned]
            self._forget_pools()
        for pool in pools:
            if pool is not None:
                pool.shutdown(wait=True)


async def in_thread(fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    """``fn(*args, **kwargs)`` in a new thread, with the running loop as its home loop; awaited.

    A thread per call rather than a pool: the work may wait for coroutines on
    this loop that themselves await more such work, and a bounded pool could
    then fill with waiters and stall. Cancelling the awaiter leaves the work
    running to its end.
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[_T] = loop.create_future()
    ctx = contextvars.copy_context()
    ctx.run(home_loop.set, loop)

    def settle(result: Any, error: BaseException | None) -> None:
        if done.done():  # the awaiter was cancelled
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)

    def run() -> None:
        try:
            result, error = ctx.run(fn, *args, **kwargs), None
        except BaseException as exc:  # handed to the awaiter, as asyncio.to_thread does
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody is waiting
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name="dogpile_warm-bridge", daemon=True).start()
    return await done


def result_of(coroutine: Coroutine[Any, Any, _T], name: str) -> _T:
    """What ``coroutine`` (the computation of ``name``) returns, from blocking code.

    On the context's home loop when one is running in another thread (this
    thread waits); else with :func:`asyncio.run` when no loop runs in this
    thread. Called from the thread of a running loop it cannot wait without
    blocking that loop forever: ``RuntimeError``, naming the awaitable to use.
    """
    loop = home_loop.get()
    here = loop_running_here()
    if loop is not None and loop is not here and loop.is_running():
        return _on_loop(loop, coroutine)
    try:
        check_may_wait(name)
    except RuntimeError:
        coroutine.close()
        raise
    return asyncio.run(coroutine)


def check_may_wait(name: str) -> None:
    """``RuntimeError`` if this thread runs an event loop, where blocking code cannot wait
    for ``name``'s coroutine (checked before it takes a lock it would then hold for ever)."""
    if loop_running_here() is not None:
        raise RuntimeError(
            f"{name} is an async function and this thread runs an event loop: "
            "await its a* companion (awarm, arefresh) or the engine's awarm_* instead"
        )


def is_async_function(fn: Any) -> bool:
    """Whether calling ``fn`` gives a coroutine: an ``async def``, one under decorators
    that kept ``__wrapped__`` (functools.wraps), or an object whose ``__call__`` is one."""
    if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(inspect.unwrap(fn)):
        return True
    if inspect.isroutine(fn) or isinstance(fn, type):
        return False
    return inspect.iscoroutinefunction(inspect.getattr_static(type(fn), "__call__", None))


def _on_loop(loop: asyncio.AbstractEventLoop, coroutine: Coroutine[Any, Any, _T]) -> _T:
    """Run ``coroutine`` as a task of ``loop`` (running in another thread) in this
    thread's context, and wait for its result."""
    ctx = contextvars.copy_context()
    waiter: concurrent.futures.Future[_T] = concurrent.futures.Future()

    def transfer(task: asyncio.Task[_T]) -> None:
        if task.cancelled():
            waiter.set_exception(RuntimeError("the computation was cancelled on its loop"))
        elif (error := task.exception()) is not None:
            waiter.set_exception(error)
        else:
            waiter.set_result(task.result())

    def start() -> None:
        task = loop.create_task(coroutine, context=ctx)
        task.add_done_callback(transfer)

    loop.call_soon_threadsafe(start)
    while True:
        try:
            return waiter.result(timeout=_LOOP_CHECK)
        except concurrent.futures.TimeoutError:
            if loop.is_closed():  # it closed with the task unfinished: nothing will finish it
                coroutine.close()
                raise RuntimeError("the event loop computing the value closed") from None
