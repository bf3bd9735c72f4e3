"""Modal's asynchronous variants of the calling methods: `await
f.remote.aio(x)`, `async for v in f.remote_gen.aio(x)`, `async for r in
f.map.aio(xs)`, `await call.get.aio()`. Each runs the blocking call on a
thread, so the caller's event loop goes on meanwhile."""

import asyncio
import functools


class aio_method:
    """Decorates a method so that `obj.method(...)` stays the blocking call and
    `obj.method.aio(...)` is its awaitable (iterates=False) or async-iterable
    (iterates=True, for methods that return an iterator) form."""

    def __init__(self, fn=None, *, iterates=False, aio=None):
        self._fn = fn
        self._iterates = iterates
        self._aio = aio  # an `async def (self, ...)` to use as .aio instead of a thread
        if fn is not None:
            functools.update_wrapper(self, fn)

    def __call__(self, fn):  # used as @aio_method(iterates=True)
        return aio_method(fn, iterates=self._iterates, aio=self._aio)

    def __get__(self, obj, objtype=None):
        if obj is None:
            return self._fn
        native = None if self._aio is None else self._aio.__get__(obj, objtype)
        return _BoundAio(self._fn.__get__(obj, objtype), self._iterates, native)


class _BoundAio:
    __slots__ = ("_call", "_iterates", "_native")

    def __init__(self, call, iterates, native=None):
        self._call = call
        self._iterates = iterates
        self._native = native

    def __call__(self, *args, **kwargs):
        return self._call(*args, **kwargs)

    def __getattr__(self, name):  # __name__, __doc__, __self__ of the bound method
        return getattr(self._call, name)

    def aio(self, *args, **kwargs):
        if self._native is not None:
            return self._native(*args, **kwargs)
        if self._iterates:
            return _iterate_in_thread(self._call, args, kwargs)
        return asyncio.to_thread(self._call, *args, **kwargs)


async def _iterate_in_thread(call, args, kwargs):
    done = object()
    it = iter(await asyncio.to_thread(call, *args, **kwargs))
    while True:
        item = await asyncio.to_thread(next, it, done)
        if item is done:
            return
        yield item
