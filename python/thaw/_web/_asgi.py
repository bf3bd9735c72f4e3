"""@asgi_app: the app on the worker's one event loop, its lifespan startup run
once."""

import asyncio
import queue
import sys
import traceback
from urllib.parse import unquote

from .. import _async_runner, _state
from ._http import _address, _body, _raw, _response


# -- ASGI ----------------------------------------------------------------

_ASGI_VERSION = {"version": "3.0", "spec_version": "2.3"}


class _AsgiApp:
    """An ASGI app, its lifespan state, and the task that runs its lifespan.

    It runs on the worker's event loop (thaw._async_runner): the same loop
    for every request, and the one async @enter hooks ran on, so objects an
    app or a hook made bound to a loop (clients, pools) keep working, as in
    Modal, whose user code has one event loop too."""

    def __init__(self, target):
        self.target = target
        self.app = target()
        if not callable(self.app):
            raise TypeError(f"thaw: the @asgi_app function returned {type(self.app).__name__}, "
                            "not an ASGI app (an async callable(scope, receive, send))")
        self.state = {}
        self.loop = _async_runner._get_loop()
        self.lifespan_task = None
        _async_runner._run(self._startup())

    async def _startup(self):
        queue = asyncio.Queue()
        started = asyncio.get_running_loop().create_future()
        received = False

        async def receive():
            nonlocal received
            received = True
            return await queue.get()

        async def send(message):
            if started.done():
                return   # shutdown messages: the container never shuts the app down
            if message["type"] == "lifespan.startup.complete":
                started.set_result(None)
            elif message["type"] == "lifespan.startup.failed":
                started.set_exception(RuntimeError(
                    "thaw: the ASGI app's lifespan startup failed: " + str(message.get("message", ""))))

        async def run():
            try:
                await self.app({"type": "lifespan", "asgi": dict(_ASGI_VERSION),
                                "state": self.state}, receive, send)
            except Exception as e:
                if started.done():
                    return
                if not received:
                    # Apps without lifespan support raise on its scope: servers go on.
                    started.set_result(None)
                else:
                    traceback.print_exc(file=sys.stderr)
                    started.set_exception(RuntimeError(
                        f"thaw: the ASGI app's lifespan startup raised {type(e).__name__}: {e}"))
            if not started.done():
                started.set_result(None)   # it returned without answering: no lifespan

        self.lifespan_task = asyncio.ensure_future(run())   # kept: a task only weakly held may vanish
        # It waits for a lifespan.shutdown that never comes (the container
        # just ends): no "Task was destroyed but it is pending!" at exit.
        self.lifespan_task._log_destroy_pending = False
        await queue.put({"type": "lifespan.startup"})
        await started


def _asgi_scope(entry, request):
    raw_path = _raw(request.get("path") or "/")
    return {
        "type": "http",
        "asgi": dict(_ASGI_VERSION),
        "http_version": "1.1",
        "method": str(request.get("method") or "GET").upper(),
        "scheme": request.get("scheme") or "http",
        # Below root_path, as WSGI's PATH_INFO. Starlette 0.33+ and Django
        # would take a full path too (they strip root_path when it is there),
        # but older Starlette routes on scope["path"] as it is: this suits both.
        "path": unquote(raw_path.decode("utf-8")),
        "raw_path": raw_path,
        "query_string": _raw(request.get("query") or ""),
        "root_path": unquote((request.get("root_path") or "").rstrip("/")),
        "headers": [(_raw(k).lower(), _raw(v)) for k, v in request.get("headers") or ()],
        "client": _address(request.get("client")),
        "server": _address(request.get("server")),
        # Each request gets a shallow copy of what the lifespan stored.
        "state": dict(entry.state),
    }


def _asgi_call(entry, request):
    """The app's answer: whole when its body came in one message, else
    {"status", "headers", "stream"} passing each body message on as it
    comes (a StreamingResponse, server-sent events). It is the answer once
    its last body message is out: what the app does after that (a
    BackgroundTask) goes on on the loop, as behind any ASGI server, and
    neither delays the answer nor counts against the call's timeout."""
    scope = _asgi_scope(entry, request)
    events = queue.Queue()  # from the loop's thread to this one
    # The input's id, for the app's code: on the loop in the task's
    # context, and in the threads FastAPI runs sync code in (anyio copies
    # the context into them).
    input_id = _state.current_input_id()

    async def exchange():
        _state.set_context_input_id(input_id)
        await _asgi_exchange(entry.app, scope, _body(request), lambda *ev: events.put(ev))

    future = asyncio.run_coroutine_threadsafe(exchange(), entry.loop)
    future.add_done_callback(lambda f: events.put(("done",)))
    try:
        start, first = None, []
        while True:
            ev = events.get()
            if ev[0] == "start":
                start = ev[1]
            elif ev[0] == "body":
                first.append(ev[1])
                if ev[2]:  # more_body: the rest follows as it comes
                    return {**_response(int(start["status"]), list(start.get("headers") or ()), b""),
                            "stream": _pieces(first, events, future), "stop": future.cancel}
                return _response(int(start["status"]), list(start.get("headers") or ()),
                                 b"".join(first))
            else:  # done before a complete answer: the app's error (or its silence)
                future.result()
                raise RuntimeError("thaw: the ASGI app ended without a complete response")
    except BaseException:
        future.cancel()  # a timeout's alarm while waiting: the app stops too
        raise


def _pieces(first, events, future):
    """The body messages after the first: yielded as they come, until the
    last. Closed before it (the client went away), the app's task is
    cancelled."""
    complete = False
    try:
        yield from first
        while True:
            ev = events.get()
            if ev[0] == "body":
                yield ev[1]
                if not ev[2]:
                    complete = True
                    return
            elif ev[0] == "done":
                future.result()
                raise RuntimeError("thaw: the ASGI app ended before its response was complete")
    finally:
        if not complete and not future.done():
            future.cancel()


async def _asgi_exchange(app, scope, body, emit):
    """Run the app for one request; emit(("start", message)) and then
    emit(("body", bytes, more_body)) for each part of its answer, as the
    app sends them. Raises what the app raised before its answer was
    complete, or when it broke the protocol."""
    started = complete = False
    finished = asyncio.Event()
    request_sent = False

    async def receive():
        nonlocal request_sent
        if not request_sent:
            request_sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        # Apps listen for the client going away while they answer (Starlette's
        # StreamingResponse does): it goes once the answer is complete.
        await finished.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        nonlocal started, complete
        kind = message["type"]
        if kind == "http.response.start":
            if started:
                raise RuntimeError("thaw: the ASGI app sent 'http.response.start' twice")
            started = True
            emit("start", message)
        elif kind == "http.response.body":
            if not started:
                raise RuntimeError("thaw: the ASGI app sent 'http.response.body' before "
                                   "'http.response.start'")
            if complete:
                raise RuntimeError("thaw: the ASGI app sent 'http.response.body' after the "
                                   "response was complete")
            more = bool(message.get("more_body", False))
            emit("body", bytes(message.get("body", b"")), more)
            if not more:
                complete = True
                finished.set()
        else:
            raise RuntimeError(f"thaw: unexpected ASGI message {kind!r} for an HTTP request")

    try:
        await app(scope, receive, send)
    except Exception:
        if not complete:
            raise
        # The answer was out (Starlette's error middleware sends a 500 and then
        # raises): as uvicorn does, it stands and the error is logged.
        traceback.print_exc(file=sys.stderr)
    finally:
        finished.set()   # wakes a receive() still waiting
    if not started:
        raise RuntimeError("thaw: the ASGI app returned without sending a response")
    if not complete:
        raise RuntimeError("thaw: the ASGI app returned before its response was complete "
                           "(the last 'http.response.body' must have more_body False)")
