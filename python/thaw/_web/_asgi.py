"""@asgi_app: the app on the worker's one event loop, its lifespan startup run
once."""

import asyncio
import sys
import traceback
from urllib.parse import unquote

from .. import _async_runner
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
    scope = _asgi_scope(entry, request)
    status, headers, body = _async_runner._run(_asgi_exchange(entry.app, scope, _body(request)))
    return _response(status, headers, body)


async def _asgi_exchange(app, scope, body):
    """Run the app for one request; (status, headers, body) of its answer."""
    response = {"start": None, "chunks": [], "complete": False}
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
        kind = message["type"]
        if kind == "http.response.start":
            if response["start"] is not None:
                raise RuntimeError("thaw: the ASGI app sent 'http.response.start' twice")
            response["start"] = message
        elif kind == "http.response.body":
            if response["start"] is None:
                raise RuntimeError("thaw: the ASGI app sent 'http.response.body' before "
                                   "'http.response.start'")
            if response["complete"]:
                raise RuntimeError("thaw: the ASGI app sent 'http.response.body' after the "
                                   "response was complete")
            response["chunks"].append(bytes(message.get("body", b"")))
            if not message.get("more_body", False):
                response["complete"] = True
                finished.set()
        else:
            raise RuntimeError(f"thaw: unexpected ASGI message {kind!r} for an HTTP request")

    try:
        await app(scope, receive, send)
    except Exception:
        if not response["complete"]:
            raise
        # The answer was out (Starlette's error middleware sends a 500 and then
        # raises): as uvicorn does, it stands and the error is logged.
        traceback.print_exc(file=sys.stderr)
    finally:
        finished.set()   # wakes a receive() still waiting
    start = response["start"]
    if start is None:
        raise RuntimeError("thaw: the ASGI app returned without sending a response")
    if not response["complete"]:
        raise RuntimeError("thaw: the ASGI app returned before its response was complete "
                           "(the last 'http.response.body' must have more_body False)")
    return int(start["status"]), list(start.get("headers") or ()), b"".join(response["chunks"])
