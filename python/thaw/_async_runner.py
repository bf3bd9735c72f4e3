"""Runs the coroutines and async generators of `async def` functions, methods
and lifecycle hooks inside a worker, on one event loop in a thread of its own
(started on first use), so that async inputs of a @concurrent function share
it as they would in Modal. The caller blocks until the result is there; a
signal (the worker's timeout alarm, SIGTERM) interrupts that wait, and the
work on the loop is then cancelled."""

import asyncio
import concurrent.futures
import inspect
import threading

_lock = threading.Lock()
_loop = None


def _get_loop():
    global _loop
    with _lock:
        if _loop is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="thaw-asyncio", daemon=True).start()
            _loop = loop
        return _loop


async def _collect(agen):
    return [item async for item in agen]


def _run(coro):
    """Run coro on the loop and wait for its result; an exception here (a
    signal's, while waiting) cancels it there."""
    future = asyncio.run_coroutine_threadsafe(coro, _get_loop())
    try:
        if threading.current_thread() is threading.main_thread():
            return future.result()
        # Another thread (a @concurrent input's) is interrupted by an
        # exception set on it (the worker's timeout, a cancel), which Python
        # raises only between its own instructions, never inside a blocking
        # wait: wait in short steps.
        while True:
            try:
                return future.result(timeout=0.05)
            except concurrent.futures.TimeoutError:
                if future.done():
                    raise  # the coroutine's own TimeoutError
    except BaseException:
        future.cancel()
        raise


def resolve(value):
    """value itself, or what it stands for when it is a coroutine (its
    result) or an async generator (its items, as a list)."""
    if inspect.isasyncgen(value):
        value = _collect(value)
    elif not inspect.iscoroutine(value):
        return value
    return _run(value)


def iterate(agen):
    """The items of an async generator, one by one, as a plain iterator (for
    streaming them as they come). Closing the iterator closes the generator."""
    try:
        while True:
            try:
                item = _run(agen.__anext__())
            except StopAsyncIteration:
                return
            yield item
    finally:
        close = getattr(agen, "aclose", None)  # an async iterator may have none
        if close is not None:
            _run(close())
