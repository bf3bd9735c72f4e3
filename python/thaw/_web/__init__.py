"""Serves one HTTP request (`thaw serve --http`) for a function under one of
Modal's web decorators, in the worker. The runtime parses HTTP and sends the
request as a dict; `handle` answers the response as a dict, which the runtime
writes (it sets Content-Length and Connection itself and drops the body of an
answer to HEAD).

- @fastapi_endpoint / @web_endpoint: Modal wraps the function in a FastAPI
  app (one route, "/", for one method, behind a CORS middleware that allows
  everything). Most need no FastAPI: the parts of it an endpoint
  function relies on are reproduced with the standard library: query
  parameters converted by their annotations, JSON body parameters, 422
  answers shaped as FastAPI's, HTTPException-like errors, JSON results.
  A function that needs FastAPI itself (a Request, Depends, Header()
  parameter; docs=True) is served by a real FastAPI app, built as Modal
  builds it (_fastapi).
- @wsgi_app: the app the function returns, called as PEP 3333 says.
- @asgi_app: the app the function returns, on the worker's one event loop
  (thaw._async_runner, which async functions and hooks share as in Modal),
  with the lifespan protocol's startup run once.
- @web_server(port): the function starts a server on the port, once per
  container; each request is forwarded to it.

Only the standard library, unless the function needs FastAPI: most workers
never import this module, and the user's image may not have FastAPI."""

from ._apps import _app_key, _cached_app
from . import _fastapi
from ._asgi import _AsgiApp, _asgi_call
from ._endpoint import _endpoint
from ._http import _json_response
from ._server import LeaveContainer, _started, _web_server_call, whole
from ._wsgi import _WsgiApp, _wsgi_call


__all__ = ["handle", "error_response", "may_outlive_its_call", "LeaveContainer", "whole"]

ENDPOINT_KINDS = ("fastapi_endpoint", "web_endpoint")
APP_KINDS = ("wsgi_app", "asgi_app", "web_server")


def handle(kind, options, target, request, apps):
    """Answer one HTTP request for `target` under the web decorator `kind`.

    kind: "fastapi_endpoint" | "web_endpoint" | "wsgi_app" | "asgi_app" |
        "web_server".
    options: the decorator's keyword arguments (e.g. {"method": "POST"},
        {"port": 8000, "startup_timeout": 5.0}).
    target: the user's callable (a function, or a bound method).
    request: {"method", "path" (below root_path, "/" at least), "query"
        (raw), "headers" ([[lower-case name, value], ...]), "body_b64",
        "root_path", "client" [host, port], "server" [host, port], "scheme"}.
    apps: a dict the caller keeps for the container's life; the apps of
        @wsgi_app/@asgi_app functions are made once and kept there, and
        whether a @web_server function has started its server.

    Returns {"status": int, "headers": [[name, value], ...], "body_b64": str},
    or for a @web_server answer that comes in pieces {"status", "headers",
    "stream": an iterator of bytes} (whole() reads it into the first form).
    An exception of the user's code (other than an HTTPException-like one of
    an endpoint) propagates: the caller answers 500. LeaveContainer (a
    @web_server whose server is broken) carries the response to send before
    the container leaves."""
    if kind in ENDPOINT_KINDS:
        options = options or {}
        # Decided once per function and container: False, or the FastAPI app.
        served_by = _cached_app("fastapi_endpoint", target, apps, lambda t: _fastapi.needs_fastapi(
            t, options) and _AsgiApp(lambda: _fastapi.endpoint_app(t, options)))
        if served_by:
            return _asgi_call(served_by, request)
        return _endpoint(options, target, request)
    if kind == "wsgi_app":
        return _wsgi_call(_cached_app(kind, target, apps, _WsgiApp), request)
    if kind == "asgi_app":
        return _asgi_call(_cached_app(kind, target, apps, _AsgiApp), request)
    if kind == "web_server":
        options = options or {}
        _started(target, int(options["port"]), float(options.get("startup_timeout", 5.0)), apps)
        return _web_server_call(target, options, request)
    raise ValueError(f"thaw: unknown kind of web endpoint {kind!r} (expected one of "
                     f"{', '.join(ENDPOINT_KINDS + APP_KINDS)})")


def may_outlive_its_call(kind, target, apps):
    """Whether the code of a request to target may go on after its call
    ended (a timeout, a cancel): an ASGI app's sync code runs in a thread
    the call's end cannot stop (FastAPI's thread pool). Such a container
    should take no more inputs then."""
    if kind == "asgi_app":
        return True
    if kind in ENDPOINT_KINDS:
        served_by = apps.get(_app_key("fastapi_endpoint", target))
        if not served_by:
            return False
        import inspect
        return not inspect.iscoroutinefunction(_fastapi._function(target))
    return False


def error_response(status, detail):
    """A response with FastAPI's JSON error body, {"detail": detail}."""
    return _json_response(status, {"detail": detail})
