"""Unit tests of @fastapi_endpoint functions that need FastAPI itself
(thaw._web._fastapi): with Debian's python3-fastapi, which scripts/test.sh
installs. Which functions go to FastAPI, and that what only FastAPI does
(Request, Depends, Header, aliased Query, BackgroundTasks, docs) works.

Run:  cd <repo> && PYTHONPATH=python /usr/bin/python3 -m pytest -q tests/unit_py/test_web_fastapi.py
"""

import dataclasses
import warnings
from typing import Optional

import pytest

from test_web import body_of, header, json_of, req
from thaw import _web
from thaw._web._fastapi import needs_fastapi

fastapi = pytest.importorskip("fastapi")


def serve(fn, request, apps, method="GET", **options):
    return _web.whole(_web.handle("fastapi_endpoint", {"method": method, **options}, fn, request, apps))


def served_by_fastapi(apps):
    return [v for k, v in apps.items() if k != ("thaw._web", "lock") and v]


# -- which functions need FastAPI -------------------------------------------


@dataclasses.dataclass
class Point:
    x: int
    y: int


def plain(a: int, b: Optional[str] = None, point: Point = None, tags: list[str] = None):
    return a


def with_request(request: fastapi.Request):
    return str(request.url)


def with_depends(x: int = fastapi.Depends(lambda: 1)):
    return x


def with_header(agent: Optional[str] = fastapi.Header(None)):
    return agent


def with_optional_background(tasks: Optional[fastapi.BackgroundTasks] = None):
    return 1


def with_string_annotation(request: "fastapi.Request"):
    return 1


def test_only_functions_that_use_fastapi_itself_need_it():
    assert not needs_fastapi(plain, {})
    for fn in (with_request, with_depends, with_header, with_optional_background, with_string_annotation):
        assert needs_fastapi(fn, {}), fn.__name__
    assert needs_fastapi(plain, {"docs": True})


def test_a_plain_function_stays_off_fastapi():
    apps = {}
    assert json_of(serve(plain, req(query="a=4"), apps)) == 4
    assert not served_by_fastapi(apps)


# -- what FastAPI does ------------------------------------------------------


def agent_upper(user_agent: str = fastapi.Header("none")):
    return user_agent.upper()


def whoami(request: fastapi.Request, who: str = fastapi.Depends(agent_upper),
           n: int = fastapi.Query(1, alias="times")):
    return {"path": request.url.path, "client": request.client.host, "who": who, "n": n,
            "query": str(request.query_params)}


def test_request_depends_header_and_aliased_query():
    apps = {}
    resp = serve(whoami, req(query="times=3", headers=[["user-agent", "curl"]]), apps)
    assert resp["status"] == 200, body_of(resp)
    # The Request sees the whole URL path: the endpoint's root_path and "/".
    assert json_of(resp) == {"path": "/app/fn/", "client": "127.0.0.1", "who": "CURL", "n": 3,
                             "query": "times=3"}
    assert len(served_by_fastapi(apps)) == 1
    # FastAPI's own validation error and method check.
    resp = serve(whoami, req(query="times=many"), apps)
    assert resp["status"] == 422 and json_of(resp)["detail"][0]["loc"] == ["query", "times"]
    assert serve(whoami, req(method="POST"), apps)["status"] == 405
    assert len(served_by_fastapi(apps)) == 1   # one app per function and container


def test_http_exception_and_response_class():
    def fn(request: fastapi.Request, x: int):
        if x < 0:
            raise fastapi.HTTPException(status_code=418, detail="negative", headers={"x-why": "sign"})
        return fastapi.responses.PlainTextResponse(f"x={x}", status_code=201)

    apps = {}
    resp = serve(fn, req(query="x=-1"), apps)
    assert resp["status"] == 418 and json_of(resp) == {"detail": "negative"}
    assert header(resp, "x-why") == "sign"
    resp = serve(fn, req(query="x=2"), apps)
    assert resp["status"] == 201 and body_of(resp) == b"x=2"


def test_cors_as_modal_allows_every_origin():
    apps = {}
    resp = serve(with_request, req(headers=[["origin", "https://site.example"]]), apps)
    assert header(resp, "access-control-allow-origin") == "*"
    resp = serve(with_request, req(method="OPTIONS", headers=[["origin", "https://site.example"],
                                                              ["access-control-request-method", "GET"]]), apps)
    assert resp["status"] == 200
    assert header(resp, "access-control-allow-origin") == "https://site.example"


def test_docs_are_served_beside_the_endpoint_only_when_asked():
    apps = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resp = serve(plain, req(path="/openapi.json"), apps, docs=True)
    assert resp["status"] == 200 and list(json_of(resp)["paths"]["/"]) == ["get"]
    assert not [w for w in caught if "Duplicate Operation ID" in str(w.message)], caught
    assert serve(plain, req(method="HEAD", query="a=1"), apps, docs=True)["status"] == 200
    assert serve(plain, req(path="/docs"), apps, docs=True)["status"] == 200
    assert serve(plain, req(query="a=1"), apps, docs=True)["status"] == 200
    assert serve(with_request, req(path="/docs"), {})["status"] == 404


def test_a_method_of_a_class_instance():
    class Model:
        def __init__(self):
            self.scale = 10

        def predict(self, request: fastapi.Request, x: int):
            return {"y": x * self.scale, "method": request.method}

    resp = serve(Model().predict, req(query="x=4"), {})
    assert json_of(resp) == {"y": 40, "method": "GET"}


def test_async_endpoint_with_request_body():
    async def echo(request: fastapi.Request):
        return {"got": (await request.body()).decode()}

    resp = serve(echo, req(method="PUT", body=b"hello"), {}, method="PUT")
    assert json_of(resp) == {"got": "hello"}


def test_a_background_task_neither_delays_the_answer_nor_is_dropped():
    import threading
    go, ran = threading.Event(), []

    def task():
        go.wait(30)   # until the test has its answer
        ran.append("done")

    def submit(tasks: fastapi.BackgroundTasks):
        tasks.add_task(task)
        return {"queued": True}

    resp = serve(submit, req(), {})
    assert json_of(resp) == {"queued": True} and ran == []
    go.set()
    for _ in range(3000):
        if ran:
            break
        threading.Event().wait(0.01)
    assert ran == ["done"]


def test_sync_code_in_fastapis_threads_sees_the_input_id():
    from thaw import _state

    def which(request: fastapi.Request):
        return {"input": _state.current_input_id()}

    async def which_async(request: fastapi.Request):
        return {"input": _state.current_input_id()}

    _state.set_input_id("in-test-7")
    try:
        assert json_of(serve(which, req(), {})) == {"input": "in-test-7"}
        assert json_of(serve(which_async, req(), {})) == {"input": "in-test-7"}
    finally:
        _state.set_input_id(None)


def test_head_is_answered_as_get_on_both_paths():
    assert serve(with_request, req(method="HEAD"), {})["status"] == 200
    assert serve(plain, req(method="HEAD", query="a=1"), {})["status"] == 200


def test_a_sync_fastapi_endpoint_may_outlive_its_call():
    async def quick(request: fastapi.Request):
        return 1

    for fn, expected in ((with_request, True), (quick, False), (plain, False)):
        apps = {}
        serve(fn, req(query="a=1"), apps)
        assert _web.may_outlive_its_call("fastapi_endpoint", fn, apps) is expected, fn.__name__
    assert _web.may_outlive_its_call("asgi_app", plain, {})
    assert not _web.may_outlive_its_call("wsgi_app", plain, {})


def test_detection_sees_through_partials_callables_and_unresolvable_hints():
    import functools

    def f(request: "fastapi.Request", other: "NotDefinedAnywhere"):
        return 1

    class Handler:
        def __call__(self, request: "Request"):   # noqa: F821 - a name only FastAPI's users import
            return 1

    def g(tasks: Optional["BackgroundTasks"] = None):   # noqa: F821
        return 1

    def h(x: int, y: "NotDefinedAnywhere" = 1):   # noqa: F821
        return 1

    assert needs_fastapi(f, {}) and needs_fastapi(functools.partial(f), {})
    assert needs_fastapi(Handler(), {}) and needs_fastapi(g, {})
    assert not needs_fastapi(h, {})
