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
import functools
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from . import forks

__all__ = ["OffLoop", "home_loop", "in_thread", "loop_running_here", "result_of"]

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
    """Runs blocking calls in ``workers`` threads of its own, awaited from a loop.

    The pool starts on first use, is replaced in a forked child (its threads
    do not exist there) and is shut down by :meth:`close`. Each call runs in a
    copy of the awaiting task's context (or in ``context``).
    """

    def __init__(self, workers: int = 32) -> None:
        self.workers = workers
        self._lock = forks.new_lock()
        self._pool: ThreadPoolExecutor | None = None
        forks.after_fork_in_child(self, OffLoop._forget_pool)

    def _forget_pool(self) -> None:
        self._pool = None

    async def run(
        self,
        fn: Callable[..., _T],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> _T:
        """``fn(*args)``, run in the pool while the caller's loop goes on."""
        ctx = contextvars.copy_context() if context is None else context
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor(), functools.partial(ctx.run, fn, *args))

    async def call(self, blocking: bool, fn: Callable[..., _T], *args: Any) -> _T:
        """``fn(*args)``: off the loop if ``blocking`` (a store's backend that may block),
        else at once, without suspending."""
        if not blocking:
            return fn(*args)
        return await self.run(fn, *args)

    def fire(self, fn: Callable[[], Any]) -> None:
        """Run ``fn()`` in the pool without waiting for it (a lock release in a
        ``finally`` that must happen even when its task is being cancelled)."""
        self._executor().submit(fn)

    def _executor(self) -> ThreadPoolExecutor:
        pool = self._pool
        if pool is None:
            with self._lock:
                pool = self._pool
                if pool is None:
                    pool = self._pool = ThreadPoolExecutor(
                        self.workers, thread_name_prefix="dogpile_warm-io"
                    )
        return pool

    def close(self) -> None:
        """Wait for the calls under way and stop the pool (a later call starts a new one)."""
        with self._lock:
            pool, self._pool = self._pool, None
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
    if here is None:
        return asyncio.run(coroutine)
    coroutine.close()
    raise RuntimeError(
        f"{name} is an async function and this thread runs an event loop: "
        "await its a* companion (awarm, arefresh) or the engine's awarm_* instead"
    )


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
