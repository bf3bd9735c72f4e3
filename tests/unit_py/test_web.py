"""Unit tests of thaw._web: one HTTP request answered for a function under
Modal's web decorators (no runtime, no FastAPI: the apps are hand-written).

Run:  cd <repo> && PYTHONPATH=python /usr/bin/python3 -m pytest -q tests/unit_py/test_web.py
"""

import asyncio
import base64
import dataclasses
import json
import threading
import typing
from typing import Optional

import pytest

from thaw import _web


def made_apps(apps):
    """The apps kept in a cache (which also holds its lock)."""
    return [v for k, v in apps.items() if k != ("thaw._web", "lock")]


def req(method="GET", path="/", query="", headers=(), body=b"", root_path="/app/fn"):
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
        headers = [["content-type", "application/json"], *headers]
    return {"method": method, "path": path, "query": query, "headers": [list(h) for h in headers],
            "body_b64": base64.b64encode(body).decode(), "root_path": root_path,
            "client": ["127.0.0.1", 50123], "server": ["127.0.0.1", 8000], "scheme": "http"}


def body_of(resp):
    return base64.b64decode(resp["body_b64"])


def json_of(resp):
    return json.loads(body_of(resp))


def header(resp, name):
    values = [v for k, v in resp["headers"] if k.lower() == name]
    return values[-1] if values else None


def call(fn, request=None, method="GET", **kw):
    return _web.handle("fastapi_endpoint", {"method": method}, fn, request or req(**kw), {})


# ---------------------------------------------------------------------------
# @fastapi_endpoint / @web_endpoint


def typed(a: int, b: float, flag: bool, name: str = "anon", n: Optional[int] = None,
          tags: list[str] = None):
    return {"a": a, "b": b, "flag": flag, "name": name, "n": n, "tags": tags}


def test_query_parameters_are_converted_by_annotation():
    resp = call(typed, query="a=3&b=2.5&flag=yes&name=x%20y&tags=p&tags=q&extra=ignored")
    assert resp["status"] == 200
    assert header(resp, "content-type") == "application/json"
    assert json_of(resp) == {"a": 3, "b": 2.5, "flag": True, "name": "x y", "n": None,
                             "tags": ["p", "q"]}


def test_defaults_last_value_wins_and_bool_spellings():
    resp = call(typed, query="a=1&a=7&b=0&flag=off&n=4")
    assert json_of(resp) == {"a": 7, "b": 0.0, "flag": False, "name": "anon", "n": 4, "tags": None}


def test_unannotated_parameter_is_a_query_string():
    def f(x, y="d"):
        return [x, y]
    assert json_of(call(f, query="x=1")) == ["1", "d"]


def test_string_annotations_are_resolved():
    ns = {}
    exec("from __future__ import annotations\n"
         "def f(a: int, b: bool | None = None):\n    return [a, b]\n", ns)
    assert json_of(call(ns["f"], query="a=5&b=true")) == [5, True]


def test_missing_parameter_is_422_with_its_location():
    resp = call(typed, query="b=1&flag=1")
    assert resp["status"] == 422
    detail = json_of(resp)["detail"]
    assert detail == [{"type": "missing", "loc": ["query", "a"], "msg": "Field required",
                       "input": None}]


def test_bad_values_are_422_all_reported():
    resp = call(typed, query="a=three&b=x&flag=maybe")
    assert resp["status"] == 422
    detail = json_of(resp)["detail"]
    assert [(d["loc"], d["type"]) for d in detail] == [
        (["query", "a"], "int_parsing"), (["query", "b"], "float_parsing"),
        (["query", "flag"], "bool_parsing")]
    assert detail[0]["input"] == "three"


def test_wrong_method_is_405_with_allow():
    resp = call(typed, method="POST", query="a=1&b=1&flag=1")
    assert resp["status"] == 405
    assert json_of(resp) == {"detail": "Method Not Allowed"}
    assert header(resp, "allow") == "POST"


def test_head_is_answered_as_get():
    assert call(lambda: "hi", req(method="HEAD"))["status"] == 200


def test_default_method_is_get():
    resp = _web.handle("web_endpoint", {}, lambda: 1, req(method="POST"), {})
    assert resp["status"] == 405 and header(resp, "allow") == "GET"
    assert json_of(_web.handle("web_endpoint", {}, lambda: 1, req(), {})) == 1


def test_single_dict_body_parameter_gets_the_whole_body():
    def f(item: dict, q: int = 0):
        return {"item": item, "q": q}
    resp = call(f, method="POST", request=req("POST", body={"x": 1, "y": [2]}, query="q=9"))
    assert resp["status"] == 200
    assert json_of(resp) == {"item": {"x": 1, "y": [2]}, "q": 9}


def test_two_body_parameters_are_taken_by_name():
    def f(a: dict, b: list, c: typing.Dict[str, int] = None):
        return [a, b, c]
    resp = call(f, method="POST", request=req("POST", body={"a": {"k": 1}, "b": [1, 2]}))
    assert json_of(resp) == [{"k": 1}, [1, 2], None]
    resp = call(f, method="POST", request=req("POST", body={"a": {}}))
    assert resp["status"] == 422
    assert json_of(resp)["detail"][0]["loc"] == ["body", "b"]
    assert json_of(resp)["detail"][0]["type"] == "missing"


def test_body_errors():
    def f(item: dict):
        return item
    resp = call(f, method="POST", request=req("POST"))
    assert resp["status"] == 422 and json_of(resp)["detail"][0]["loc"] == ["body"]
    resp = call(f, method="POST", request=req("POST", body=b"{not json"))
    assert resp["status"] == 422 and json_of(resp)["detail"][0]["type"] == "json_invalid"
    resp = call(f, method="POST", request=req("POST", body=[1, 2]))
    assert resp["status"] == 422 and json_of(resp)["detail"][0]["type"] == "dict_type"


@dataclasses.dataclass
class Point:
    x: int
    y: int = 0


@dataclasses.dataclass
class Shape:
    name: str
    points: list[Point]


def test_dataclass_body_parameter_is_built():
    def f(shape: Shape):
        assert isinstance(shape.points[0], Point)
        return shape   # a dataclass result is encoded as a dict
    body = {"name": "tri", "points": [{"x": 1, "y": 2}, {"x": 3}]}
    resp = call(f, method="POST", request=req("POST", body=body))
    assert resp["status"] == 200
    assert json_of(resp) == {"name": "tri", "points": [{"x": 1, "y": 2}, {"x": 3, "y": 0}]}
    resp = call(f, method="POST", request=req("POST", body={"name": "tri"}))
    assert resp["status"] == 422 and json_of(resp)["detail"][0]["loc"] == ["body"]
    resp = call(f, method="POST", request=req("POST", body={"name": "t", "points": [{"x": "a"}]}))
    assert resp["status"] == 422
    assert json_of(resp)["detail"][0]["loc"] == ["body", "points", 0, "x"]


def test_model_like_class_uses_model_validate():
    class Model:
        def __init__(self, v):
            self.v = v

        @classmethod
        def model_validate(cls, value):
            if "v" not in value:
                raise ValueError("v is required")
            return cls(value["v"])

        def model_dump(self):
            return {"v": self.v}

    def f(m: Model):
        return m
    assert json_of(call(f, method="POST", request=req("POST", body={"v": 3}))) == {"v": 3}
    assert call(f, method="POST", request=req("POST", body={}))["status"] == 422


def test_async_endpoint():
    async def f(n: int):
        await asyncio.sleep(0)
        return {"double": n * 2}
    assert json_of(call(f, query="n=21")) == {"double": 42}


def test_http_exception_like_error_gives_its_status():
    class HTTPException(Exception):
        def __init__(self, status_code, detail=None, headers=None):
            self.status_code, self.detail, self.headers = status_code, detail, headers

    def f():
        raise HTTPException(404, "no such item", {"x-why": "gone"})
    resp = call(f)
    assert resp["status"] == 404
    assert json_of(resp) == {"detail": "no such item"}
    assert header(resp, "x-why") == "gone"


def test_plain_exception_propagates():
    def f():
        raise KeyError("boom")
    with pytest.raises(KeyError, match="boom"):
        call(f)

    async def g():
        raise ValueError("async boom")
    with pytest.raises(ValueError, match="async boom"):
        call(g)


def test_response_like_object_is_sent_as_is():
    class Response:
        status_code = 201
        body = b"<p>hi</p>"
        headers = {"content-type": "text/html", "x-a": "1"}

    resp = call(lambda: Response())
    assert resp["status"] == 201
    assert body_of(resp) == b"<p>hi</p>"
    assert header(resp, "content-type") == "text/html" and header(resp, "x-a") == "1"


def test_streaming_response_like_object():
    class StreamingResponse:
        status_code = 200
        media_type = "text/plain"

        def __init__(self):
            async def gen():
                yield "a"
                yield b"b"
            self.body_iterator = gen()
            self.headers = {}

    resp = call(lambda: StreamingResponse())
    assert list(resp["stream"]) == [b"a", b"b"]  # piece by piece, async iterator or not
    assert header(resp, "content-type") == "text/plain; charset=utf-8"
    assert body_of(_web.whole(call(lambda: StreamingResponse()))) == b"ab"


def test_bound_method_target():
    class Api:
        def __init__(self):
            self.prefix = "hello"

        def greet(self, name: str, times: int = 1):
            return " ".join([f"{self.prefix} {name}"] * times)

    assert json_of(call(Api().greet, query="name=bob&times=2")) == "hello bob hello bob"


def test_json_encoding_of_common_types():
    import datetime
    import decimal
    import enum

    class Color(enum.Enum):
        RED = "red"

    def f():
        return {"when": datetime.date(2024, 1, 2), "tags": {"a"}, "t": (1, 2), "c": Color.RED,
                "d": decimal.Decimal("1.5"), "raw": b"bytes", "none": None}
    assert json_of(call(f)) == {"when": "2024-01-02", "tags": ["a"], "t": [1, 2], "c": "red",
                                "d": 1.5, "raw": "bytes", "none": None}


def test_cors_like_modal():
    resp = call(lambda: 1, req(headers=[["origin", "https://x.example"]]))
    assert header(resp, "access-control-allow-origin") == "*"
    pre = call(lambda: 1, req("OPTIONS", headers=[["origin", "https://x.example"],
                                                  ["access-control-request-method", "GET"]]))
    assert pre["status"] == 200
    assert header(pre, "access-control-allow-origin") == "https://x.example"


def test_error_response():
    resp = _web.error_response(500, "Internal Server Error")
    assert resp["status"] == 500 and json_of(resp) == {"detail": "Internal Server Error"}
    assert header(resp, "content-type") == "application/json"


def test_unknown_kind():
    with pytest.raises(ValueError, match="unknown kind"):
        _web.handle("web_socket_thing", {}, lambda: 1, req(), {})


# ---------------------------------------------------------------------------
# @wsgi_app


def test_wsgi_app():
    made = []
    seen = []

    def factory():
        made.append(1)

        def app(environ, start_response):
            seen.append(environ)
            data = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            write = start_response("201 Created", [("Content-Type", "text/plain"),
                                                   ("X-Seen", environ["PATH_INFO"])])
            write(b"got:")
            return [data, b"!"]
        return app

    apps = {}
    request = req("PUT", path="/a%20b/c", query="q=1&r=%20", root_path="/app/wsgi",
                  headers=[["x-custom", "v1"], ["x-custom", "v2"], ["content-type", "text/plain"],
                           ["content-length", "5"]], body=b"hello")
    resp = _web.handle("wsgi_app", {}, factory, request, apps)
    assert resp["status"] == 201
    assert body_of(resp) == b"got:hello!"
    assert resp["headers"] == [["Content-Type", "text/plain"], ["X-Seen", "/a b/c"]]
    env = seen[0]
    assert env["REQUEST_METHOD"] == "PUT"
    assert env["SCRIPT_NAME"] == "/app/wsgi" and env["PATH_INFO"] == "/a b/c"
    assert env["QUERY_STRING"] == "q=1&r=%20"
    assert env["HTTP_X_CUSTOM"] == "v1,v2"
    assert env["CONTENT_TYPE"] == "text/plain" and env["CONTENT_LENGTH"] == "5"
    assert "HTTP_CONTENT_TYPE" not in env and "HTTP_CONTENT_LENGTH" not in env
    assert env["SERVER_NAME"] == "127.0.0.1" and env["SERVER_PORT"] == "8000"
    assert env["REMOTE_ADDR"] == "127.0.0.1" and env["wsgi.url_scheme"] == "http"
    assert env["wsgi.version"] == (1, 0) and env["SERVER_PROTOCOL"] == "HTTP/1.1"

    resp = _web.handle("wsgi_app", {}, factory, req(root_path="/app/wsgi"), apps)
    assert resp["status"] == 201 and body_of(resp) == b"got:!"
    assert made == [1]   # the factory ran once


def test_wsgi_close_exc_info_and_errors():
    closed = []

    class Result:
        def __iter__(self):
            yield b"x"

        def close(self):
            closed.append(1)

    def app(environ, start_response):
        start_response("200 OK", [])
        try:
            raise RuntimeError("late")
        except RuntimeError:
            import sys
            # Before any body byte is out, exc_info may replace the status.
            start_response("500 Internal Server Error", [("a", "b")], sys.exc_info())
        return Result()

    resp = _web.handle("wsgi_app", {}, lambda: app, req(), {})
    assert resp["status"] == 500 and body_of(resp) == b"x" and closed == [1]

    def silent(environ, start_response):
        return [b"x"]
    with pytest.raises(RuntimeError, match="start_response"):
        _web.handle("wsgi_app", {}, lambda: silent, req(), {})


def test_wsgi_app_of_a_bound_method_is_kept_per_instance():
    class Svc:
        def __init__(self):
            self.made = 0

        def web(self):
            self.made += 1
            def app(environ, start_response):
                start_response("200 OK", [])
                return [b"ok"]
            return app

    svc, apps = Svc(), {}
    for _ in range(2):
        assert _web.handle("wsgi_app", {}, svc.web, req(), apps)["status"] == 200
    assert svc.made == 1
    other = Svc()
    _web.handle("wsgi_app", {}, other.web, req(), apps)
    assert other.made == 1 and len(made_apps(apps)) == 2


# ---------------------------------------------------------------------------
# @asgi_app


def make_asgi_factory(made):
    def factory():
        made.append(1)
        app_state = {"requests": 0, "loops": set(), "scopes": []}

        async def app(scope, receive, send):
            if scope["type"] == "lifespan":
                message = await receive()
                assert message["type"] == "lifespan.startup"
                scope["state"]["db"] = "connected"
                app_state["lifespan_loop"] = asyncio.get_running_loop()
                await send({"type": "lifespan.startup.complete"})
                await receive()   # shutdown: never comes
                return
            app_state["requests"] += 1
            app_state["loops"].add(asyncio.get_running_loop())
            app_state["scopes"].append(scope)
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            await send({"type": "http.response.start", "status": 202,
                        "headers": [(b"content-type", b"text/plain"), (b"x-n", b"%d" % app_state["requests"])]})
            await send({"type": "http.response.body", "body": b"echo:", "more_body": True})
            await send({"type": "http.response.body",
                        "body": body + b"|" + scope["state"]["db"].encode()})
        app.app_state = app_state
        return app
    return factory


def test_asgi_app():
    made, apps = [], {}
    factory = make_asgi_factory(made)
    request = req("POST", path="/x%20y", query="a=1", root_path="/app/asgi",
                  headers=[["x-custom", "v"]], body=b"payload")
    # Its body comes in two messages: passed on as a stream, piece by piece.
    resp = _web.handle("asgi_app", {}, factory, request, apps)
    assert resp["status"] == 202
    assert list(resp["stream"]) == [b"echo:", b"payload|connected"]
    assert resp["headers"] == [["content-type", "text/plain"], ["x-n", "1"]]

    resp = _web.whole(_web.handle("asgi_app", {}, factory, req(root_path="/app/asgi"), apps))
    assert body_of(resp) == b"echo:|connected"
    assert header(resp, "x-n") == "2"   # the app's state persists between requests
    assert made == [1]

    (entry,) = made_apps(apps)
    state = entry.app.app_state
    assert state["requests"] == 2
    assert len(state["loops"]) == 1 and state["lifespan_loop"] in state["loops"]
    scope = state["scopes"][0]
    assert scope["type"] == "http" and scope["method"] == "POST"
    assert scope["asgi"]["version"] == "3.0"
    assert scope["root_path"] == "/app/asgi"
    assert scope["path"] == "/x y"   # below root_path, as PATH_INFO
    assert scope["raw_path"] == b"/x%20y"
    assert scope["query_string"] == b"a=1"
    assert (b"x-custom", b"v") in scope["headers"]
    assert scope["client"] == ("127.0.0.1", 50123) and scope["server"] == ("127.0.0.1", 8000)


def test_asgi_concurrent_first_requests_make_one_app():
    made, apps = [], {}
    factory = make_asgi_factory(made)
    results = []
    threads = [threading.Thread(target=lambda: results.append(
        _web.handle("asgi_app", {}, factory, req(), apps)["status"])) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert results == [202] * 4 and made == [1]


def test_asgi_app_without_lifespan_and_errors():
    async def app(scope, receive, send):
        if scope["type"] != "http":
            raise ValueError("only http")   # as apps without lifespan support do
        if scope["path"].endswith("/boom"):
            raise RuntimeError("app failed")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    apps = {}
    assert body_of(_web.handle("asgi_app", {}, lambda: app, req(), apps)) == b"ok"
    with pytest.raises(RuntimeError, match="app failed"):
        _web.handle("asgi_app", {}, lambda: app, req(path="/boom"), apps)


def test_asgi_lifespan_startup_failure_raises():
    async def app(scope, receive, send):
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no db"})

    with pytest.raises(RuntimeError, match="no db"):
        _web.handle("asgi_app", {}, lambda: app, req(), {})


def test_get_web_url_of_a_local_function_that_is_no_endpoint_needs_no_runtime(monkeypatch):
    import thaw
    monkeypatch.setenv("THAW_RUNTIME_SOCKET", "/nonexistent/runtime.sock")
    app = thaw.App("web-url-local")

    @app.function()
    def plain():
        return 1

    assert plain.get_web_url() is None


# ---------------------------------------------------------------------------
# @web_server


def test_web_server_starts_once_and_forwards_each_request():
    import http.server
    import socket
    import threading

    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            n = int(self.headers.get("content-length") or 0)
            seen.append((self.path, self.rfile.read(n), self.headers.get("connection"),
                         self.headers.get("x-forwarded-for")))
            self.send_response(202)
            self.send_header("x-answer", "yes")
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    servers = []

    def start():  # the user's function: starts the server, returns
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)

    apps = {}
    opts = {"port": port, "startup_timeout": 5.0}
    try:
        for i in range(2):
            resp = _web.handle("web_server", opts, start,
                               req("POST", path=f"/a/{i}", query="x=1", body=b"hi",
                                   headers=[["connection", "close"], ["x-custom", "1"]]), apps)
            assert resp["status"] == 202 and body_of(resp) == b"ok"
            assert header(resp, "x-answer") == "yes"
            assert header(resp, "content-length") is None  # the runtime frames the answer
        assert len(servers) == 1  # the function ran once for both requests
        assert [p for p, *_ in seen] == ["/a/0?x=1", "/a/1?x=1"]
        assert all(b == b"hi" and c != "close" and f == "127.0.0.1" for _, b, c, f in seen), seen
    finally:
        for srv in servers:
            srv.shutdown()
            srv.server_close()


def test_web_server_that_never_listens_is_an_error_naming_the_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(_web.LeaveContainer, match=f"nothing listens on port {port}") as e:
        _web.handle("web_server", {"port": port, "startup_timeout": 0.2}, lambda: None, req(), {})
    assert e.value.response["status"] == 503


def test_web_server_decorator_checks_its_arguments():
    import thaw
    from thaw.exception import InvalidError
    with pytest.raises(InvalidError, match="TCP port"):
        thaw.web_server(0)
    with pytest.raises(InvalidError, match="startup_timeout"):
        thaw.web_server(8000, startup_timeout=0)
    app = thaw.App("ws-unit")

    import warnings
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")

        @app.function(max_containers=3, min_containers=2, buffer_containers=1)
        @thaw.web_server(8000, label="ui")
        def ui():
            pass
    assert ui.config["web_endpoint"] == {"kind": "web_server", "port": 8000, "startup_timeout": 5.0,
                                         "label": "ui"}
    # One container at a time: the server holds a port of the host.
    assert (ui.config["max_containers"], ui.config["min_containers"],
            ui.config["buffer_containers"]) == (1, 1, 0)
    assert any("max_containers=3 is lowered to 1" in str(w.message) for w in rec)

    @app.function()
    @thaw.web_server(8001)
    def plain():
        pass
    assert plain.config["max_containers"] == 1


def _free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_web_server_refuses_a_port_someone_else_holds():
    import socket
    from thaw._web import LeaveContainer
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        ran = []
        with pytest.raises(LeaveContainer) as e:
            _web.handle("web_server", {"port": port, "startup_timeout": 0.3}, lambda: ran.append(1),
                        req(), {})
    assert e.value.response["status"] == 503 and "already taken" in str(e.value)
    assert ran == []  # the function never ran: its server could not have listened


def test_web_server_whose_function_fails_is_not_run_again():
    from thaw._web import LeaveContainer
    calls = []

    def broken():
        calls.append(1)
        raise OSError("no such binary")
    port, apps = _free_port(), {}  # one container's
    for _ in range(2):
        with pytest.raises(LeaveContainer, match="raised OSError: no such binary"):
            _web.handle("web_server", {"port": port, "startup_timeout": 1}, broken, req(), apps)
    assert calls == [1]


def test_web_server_forwarded_headers():
    from thaw._web._server import _forwarded_headers
    h = _forwarded_headers(req(headers=[["x-forwarded-for", "203.0.113.9"],
                                        ["x-forwarded-proto", "https"], ["cookie", "a=1"],
                                        ["cookie", "b=2"], ["modal-key", "k"], ["modal-secret", "s"],
                                        ["connection", "x-drop"], ["x-drop", "1"], ["x-keep", "2"]]))
    assert h["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
    assert h["x-forwarded-proto"] == "https"
    assert h["cookie"] == "a=1; b=2"
    assert "modal-key" not in h and "modal-secret" not in h and "x-drop" not in h
    assert h["x-keep"] == "2"


def _first_piece_then(rest):
    """An ASGI app factory: the app sends a head and a first piece of more to
    come, then awaits rest()."""
    def factory():
        async def app(scope, receive, send):
            if scope["type"] == "lifespan":
                raise RuntimeError("no lifespan here")
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"first", "more_body": True})
            await rest()
        return app
    return factory


def test_asgi_stream_closed_early_cancels_the_app():
    cancelled = threading.Event()

    async def wait_for_ever():
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
    resp = _web.handle("asgi_app", {}, _first_piece_then(wait_for_ever), req(), {})
    pieces = resp["stream"]
    assert next(pieces) == b"first"
    pieces.close()  # the client went away
    assert cancelled.wait(10)


def test_asgi_error_after_a_streamed_piece_ends_the_stream_with_it():
    async def break_down():
        raise ValueError("broke mid-answer")
    pieces = _web.handle("asgi_app", {}, _first_piece_then(break_down), req(), {})["stream"]
    assert next(pieces) == b"first"
    with pytest.raises(ValueError, match="broke mid-answer"):
        next(pieces)


def test_web_server_answers_without_a_body_never_stream():
    from thaw._web._server import _streams

    class Resp:
        def __init__(self, status, headers):
            self.status, self._h = status, headers

        def getheader(self, name):
            return self._h.get(name)
    assert _streams(Resp(200, {}))                                   # no length: read to the end
    assert _streams(Resp(200, {"content-type": "text/event-stream", "content-length": "9"}))
    assert not _streams(Resp(200, {"content-length": "9"}))
    for status in (103, 204, 304):
        assert not _streams(Resp(status, {}))

