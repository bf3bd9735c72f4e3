"""Web endpoints end to end: an app with @fastapi_endpoint, @web_endpoint,
@wsgi_app, @asgi_app and a class's endpoint method is deployed (with memory
snapshots), `thaw serve --http` serves it, and real HTTP requests reach
real containers: arguments from the query and the body, FastAPI's status
codes (405, 422), an app's own status, headers and paths, errors as 500,
and the SDK's get_web_url().

Run with Debian's python:  /usr/bin/python3 -m pytest tests/e2e/test_web.py
"""
import http.client
import json
import re
import socket
import time
import urllib.error
import urllib.request

import pytest

from test_functions import APPS, RESTORING, thaw  # noqa: F401 - the fixture


def request(url, method="GET", body=None, headers=None, timeout=120):
    """(status, headers, body bytes) of one request; HTTP errors too."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def serve_http(thaw):  # noqa: F811 - the fixture from test_functions
    """`thaw serve --http` on a port the kernel picks: (socket, base URL)."""
    sock = thaw.serve("--http", "127.0.0.1:0")
    deadline = time.monotonic() + 30
    while not (m := re.search(r"Serving web endpoints at (http://[0-9.:]+)/", thaw.serve_log())):
        assert time.monotonic() < deadline, thaw.serve_log()
        time.sleep(0.05)
    return sock, m.group(1)


@pytest.fixture
def web(thaw):  # noqa: F811 - the fixture from test_functions
    out = thaw.deploy(APPS / "web.py").stdout
    # Deploy lists where each endpoint will answer.
    assert "  square: web endpoint at http://ADDRESS/e2e-web/square while" in out, out
    assert "  echo: web endpoint at http://ADDRESS/e2e-web/echo-body while" in out, out
    assert "  Model.predict: web endpoint at http://ADDRESS/e2e-web/Model.predict while" in out, out
    thaw.sock, thaw.base = serve_http(thaw)
    return thaw


def test_fastapi_style_endpoints_take_query_and_body(web):
    base = web.base + "/e2e-web"
    st, hd, body = request(f"{base}/square?x=7&scale=2&loud=true")
    assert st == 200, body
    assert hd["content-type"] == "application/json"
    got = json.loads(body)
    assert got["square"] == 98.0 and got["loud"] is True
    # The function has a memory snapshot: the container was restored.
    assert RESTORING in web.serve_log()
    st, _, body = request(f"{base}/square?scale=2")
    assert st == 422, body
    assert json.loads(body)["detail"][0]["loc"] == ["query", "x"]
    st, _, body = request(f"{base}/square?x=seven")
    assert st == 422, body
    st, hd, _ = request(f"{base}/square?x=1", method="POST", body=b"")
    assert st == 405
    st, _, body = request(f"{base}/echo-body", method="POST", body=json.dumps({"a": [1, 2]}).encode(),
                          headers={"Content-Type": "application/json"})
    assert st == 200 and json.loads(body) == {"got": {"a": [1, 2]}}, body
    # A label replaces the name in the URL.
    assert request(f"{base}/echo", method="POST", body=b"{}")[0] == 404


def test_a_class_method_endpoint_runs_on_the_restored_instance(web):
    st, _, body = request(f"{web.base}/e2e-web/Model.predict?x=5")
    assert st == 200, body
    assert json.loads(body)["y"] == 15
    assert request(f"{web.base}/e2e-web/Model.plain")[0] == 404  # not a web endpoint


def test_errors_and_unknown_paths(web):
    st, _, body = request(f"{web.base}/e2e-web/boom")
    assert st == 500 and body == b"Internal Server Error"
    deadline = time.monotonic() + 10
    while "boom on purpose" not in web.serve_log():
        assert time.monotonic() < deadline, web.serve_log()
        time.sleep(0.05)
    for path, why in (("/e2e-web/nothing", "has no web endpoint 'nothing'"),
                      ("/no-such-app/square", "not deployed"),
                      ("/e2e-web/square/below", "no such path"),
                      ("/", "web endpoints are at")):
        st, _, body = request(web.base + path)
        assert st == 404 and why in json.loads(body)["detail"], (path, body)


def test_wsgi_app_gets_its_path_headers_and_body(web):
    st, hd, body = request(f"{web.base}/e2e-web/wsgi/some/where%20else?q=1&r=2", method="PUT",
                           body=b"hello", headers={"X-Custom": "yes"})
    assert st == 201, body
    assert hd["X-App"] == "wsgi"
    assert json.loads(body) == {"script": "/e2e-web/wsgi", "path": "/some/where else", "query": "q=1&r=2",
                                "method": "PUT", "custom": "yes", "body": "hello"}


def test_asgi_app_keeps_its_state_between_requests(web):
    first = json.loads(request(f"{web.base}/e2e-web/asgi/x", method="POST", body=b"one")[2])
    second = json.loads(request(f"{web.base}/e2e-web/asgi/y")[2])
    assert first["path"] == "/x" and first["root"] == "/e2e-web/asgi" and first["body"] == "one"
    assert first["started"] is True, "the lifespan startup ran first"
    assert second["path"] == "/y" and second["method"] == "GET"
    if second["pid"] == first["pid"]:  # the same container: the same app object
        assert second["requests"] == first["requests"] + 1


def test_get_web_url_names_the_served_address(web):
    got = web.client(
        "import json, thaw\n"
        "f = thaw.Function.from_name('e2e-web', 'square')\n"
        "e = thaw.Function.from_name('e2e-web', 'echo')\n"
        "m = thaw.Cls.from_name('e2e-web', 'Model')()\n"
        "print(json.dumps([f.get_web_url(), e.get_web_url(), m.predict.get_web_url(), m.plain.get_web_url()]))\n",
        web.sock)
    base = web.base + "/e2e-web"
    assert got == [f"{base}/square", f"{base}/echo-body", f"{base}/Model.predict", None]
    st, _, body = request(got[0] + "?x=3")
    assert st == 200 and json.loads(body)["square"] == 9.0


def test_real_fastapi_and_flask_apps(thaw):  # noqa: F811 - the fixture from test_functions
    thaw.deploy(APPS / "web_frameworks.py")
    base = serve_http(thaw)[1] + "/e2e-web-frameworks"
    st, _, body = request(f"{base}/fastapi_app/items/7?q=hi")
    assert st == 200, body
    assert json.loads(body) == {"item_id": 7, "q": "hi", "started": True}
    assert RESTORING in thaw.serve_log()
    st, _, body = request(f"{base}/fastapi_app/items/404")
    assert st == 404 and json.loads(body) == {"detail": "no such item"}
    st, _, body = request(f"{base}/fastapi_app/items/seven")
    assert st == 422, body
    st, _, body = request(f"{base}/fastapi_app/items", method="POST",
                          body=json.dumps({"name": "pen", "price": 1.5}).encode(),
                          headers={"Content-Type": "application/json"})
    assert st == 200 and json.loads(body) == {"name": "pen", "doubled": 3.0}, body
    # A StreamingResponse, of an ASGI app or of an endpoint, reaches the
    # client piece by piece.
    host, _, port_text = base[len("http://"):].split("/")[0].partition(":")
    for path in ("fastapi_app/tokens", "stream_tokens"):
        flag = thaw.tmp / f"next-token-{path.replace('/', '-')}"
        conn = http.client.HTTPConnection(host, int(port_text), timeout=30)
        conn.request("GET", f"/e2e-web-frameworks/{path}?flag={flag}")
        resp = conn.getresponse()
        assert resp.status == 200 and resp.getheader("transfer-encoding") == "chunked", path
        assert resp.readline() == b"token-1\n", path
        flag.touch()
        assert resp.read() == b"token-2\n", path
        conn.close()
    # An endpoint whose parameters only FastAPI understands is served by
    # FastAPI, with its docs beside it (docs=True).
    ran = []
    for n in range(1, 51):
        st, _, body = request(f"{base}/whoami?times={n + 1}", method="POST",
                              body=json.dumps({"name": "ab", "price": 1}).encode(),
                              headers={"Content-Type": "application/json", "X-Caller": "e2e"})
        assert st == 200, body
        got = json.loads(body)
        ran.append(got.pop("background_ran"))
        assert got == {"who": "E2E", "name": "ab" * (n + 1), "url": "/e2e-web-frameworks/whoami/",
                       "client": "127.0.0.1"}, body
        # The background task of a request runs after its answer: the
        # first answer cannot count its own; a later one sees it ran.
        if ran[-1] >= 1:
            break
        time.sleep(0.1)
    assert ran[0] == 0 and ran[-1] >= 1, ran
    st, _, body = request(f"{base}/whoami", method="POST", body=b"{}",
                          headers={"Content-Type": "application/json"})
    assert st == 422 and "name" in body.decode(), body
    st, _, body = request(f"{base}/whoami/openapi.json")
    assert st == 200 and "/" in json.loads(body)["paths"], body
    assert request(f"{base}/whoami/docs")[0] == 200
    assert request(f"{base}/stream_tokens/docs")[0] == 404   # no docs=True
    # A sync endpoint past its timeout: 504, and its container, whose thread
    # may still run it, takes no more requests.
    st, _, body = request(f"{base}/slow?seconds=0")
    assert st == 200, body
    first = json.loads(body)["container"]
    assert request(f"{base}/slow?seconds=30")[0] == 504
    st, _, body = request(f"{base}/slow?seconds=0")
    assert st == 200 and json.loads(body)["container"] != first, body
    st, _, body = request(f"{base}/flask/hello/world", headers={"User-Agent": "e2e"})
    assert st == 200, body
    assert json.loads(body) == {"greeting": "hello world", "root": "/e2e-web-frameworks/flask", "agent": "e2e"}
    st, hd, body = request(f"{base}/flask/form", method="POST", body=b"word=thaw",
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert st == 202 and body == b"THAW" and hd["X-Flask"] == "1", (st, hd, body)
    assert request(f"{base}/flask/nowhere")[0] == 404


def raw(base, data, read=True):
    """Sends bytes as they are on a new connection; the answer's bytes."""
    host, port = base[len("http://"):].split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(data)
        if not read:
            return b""
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def test_malformed_requests_are_refused_and_the_server_goes_on(web):
    for data, status in ((b"POST /a/b HTTP/1.1\r\nTransfer-Encoding: \xff\r\n\r\n", b"501"),
                         (b"GET /%ff/x HTTP/1.1\r\nConnection: close\r\n\r\n", b"404"),
                         (b"GET / HTTP/1.1\r\nBad Header : 1\r\n\r\n", b"400"),
                         (b"POST /e2e-web/echo-body HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n", b"413"),
                         (b"NOT HTTP\r\n\r\n", b"400")):
        answer = raw(web.base, data)
        assert answer.startswith(b"HTTP/1.1 " + status), (data, answer)
    st, _, body = request(f"{web.base}/e2e-web/square?x=2")
    assert st == 200 and json.loads(body)["square"] == 4.0, body


def read_answer(f):
    """(status, headers, body) of the next answer on a connection's reader."""
    status = int(f.readline().split()[1])
    headers = {}
    while (line := f.readline()) not in (b"\r\n", b""):
        k, _, v = line.decode().partition(":")
        headers[k.strip().lower()] = v.strip()
    if headers.get("transfer-encoding") == "chunked":
        body = b""
        while size := int(f.readline(), 16):
            body += f.read(size)
            f.readline()
        f.readline()
    else:
        body = f.read(int(headers.get("content-length", 0)))
    return status, headers, body


def test_a_connection_is_kept_for_more_requests(web):
    host, port = web.base[len("http://"):].split(":")
    with socket.create_connection((host, int(port)), timeout=60) as s:
        f = s.makefile("rb")
        # Two requests sent at once (pipelined): an endpoint's answer, then
        # an ASGI app's answer in two pieces (chunked); then a 404, and one
        # that asks for the close.
        s.sendall(b"GET /e2e-web/square?x=3 HTTP/1.1\r\nHost: t\r\n\r\n"
                  b"POST /e2e-web/asgi/p HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi")
        st, hd, body = read_answer(f)
        assert st == 200 and json.loads(body)["square"] == 9.0 and hd["connection"] == "keep-alive", (st, hd, body)
        st, hd, body = read_answer(f)
        assert st == 200 and hd["transfer-encoding"] == "chunked" and hd["connection"] == "keep-alive", hd
        assert json.loads(body)["body"] == "hi", body
        s.sendall(b"GET /e2e-web/nowhere HTTP/1.1\r\n\r\n")
        assert read_answer(f)[0] == 404
        s.sendall(b"GET /e2e-web/square?x=4 HTTP/1.1\r\nConnection: close\r\n\r\n")
        st, hd, body = read_answer(f)
        assert st == 200 and json.loads(body)["square"] == 16.0 and hd["connection"] == "close"
        assert f.read() == b""   # closed, as asked
    # What clients do: http.client keeps its one socket for every request.
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    socks = []
    for x in range(3):
        conn.request("GET", f"/e2e-web/square?x={x}")
        resp = conn.getresponse()
        assert resp.status == 200 and json.loads(resp.read())["square"] == x * x
        socks.append(conn.sock)
    assert socks[0] is not None and socks.count(socks[0]) == 3
    conn.close()


def test_serve_stops_while_a_client_sends_nothing(web):
    host, port = web.base[len("http://"):].split(":")
    idle = socket.create_connection((host, int(port)), timeout=30)
    idle.sendall(b"GET /e2e-web/square?x=1 HTTP/1.1\r\n")  # and never the rest
    t = time.monotonic()
    web.stop_serve()
    # Not a speed check: without the shutdown of open connections this took
    # the 30 s request deadline.
    assert time.monotonic() - t < 15
    idle.close()


def test_proxy_auth_tokens_guard_an_endpoint(web):
    url = f"{web.base}/e2e-web/private"
    st, hd, body = request(url)
    assert st == 401 and "thaw proxy-auth create" in json.loads(body)["detail"], body
    out = web.run("proxy-auth", "create", "--name", "e2e").stdout
    key = re.search(r"^Modal-Key: (wk-[0-9a-f]+)$", out, re.M).group(1)
    secret = re.search(r"^Modal-Secret: (ws-[0-9a-f]+)$", out, re.M).group(1)
    st, _, body = request(url, headers={"Modal-Key": key, "Modal-Secret": secret})
    assert st == 200 and json.loads(body) == {"private": "ok"}, body
    wrong = secret[:-1] + ("1" if secret[-1] == "0" else "0")
    assert request(url, headers={"Modal-Key": key, "Modal-Secret": wrong})[0] == 401
    listed = web.run("proxy-auth", "ls").stdout
    assert key in listed and "e2e" in listed and secret not in listed
    assert secret not in (web.home / "proxy-auth-tokens.json").read_text()
    web.run("proxy-auth", "rm", key)
    assert request(url, headers={"Modal-Key": key, "Modal-Secret": secret})[0] == 401
    # Endpoints without requires_proxy_auth take no token.
    assert request(f"{web.base}/e2e-web/square?x=1")[0] == 200


def test_bad_http_addresses_are_refused_clearly(thaw):  # noqa: F811 - the fixture from test_functions
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    for address, message in ((f"127.0.0.1:{port}", "bind (is another server on that port?)"),
                              ("localhost:80", "'localhost' is not an IPv4 address"),
                              ("99999", "a port from 0 to 65535")):
        cp = thaw.run("serve", "--socket", thaw.tmp / "bad.sock", "--http", address, check=False)
        assert cp.returncode != 0 and f"--http {address}: " in cp.stderr and message in cp.stderr, cp.stderr
    taken.close()


def test_a_web_server_function_gets_every_request_below_its_url(thaw):  # noqa: F811
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    thaw.env["E2E_WEB_SERVER_PORT"] = str(port)
    thaw.deploy(APPS / "web_server.py")
    thaw.serving_socket, base = serve_http(thaw)
    url = f"{base}/e2e-web-server/echo_server"
    st, hd, body = request(f"{url}/some/path?q=1&r=two")
    assert st == 200 and hd["x-server"] == "echo", body
    first = json.loads(body)
    assert first["method"] == "GET" and first["path"] == "/some/path?q=1&r=two", first
    assert first["forwarded_for"] == "127.0.0.1", first
    st, _, body = request(url, method="POST", body=b"payload")
    second = json.loads(body)
    assert st == 201 and second["path"] == "/" and second["body"] == "payload", second
    # The function ran once: the same server answered both.
    assert second["server"] == first["server"]
    assert RESTORING in thaw.serve_log()
    # An answer that comes in pieces (server-sent events) is passed on as it
    # comes: the first event arrives while the server still holds the second.
    flag = thaw.tmp / "send-the-second-event"
    host, _, port_text = base[len("http://"):].partition(":")
    conn = http.client.HTTPConnection(host, int(port_text), timeout=30)
    conn.request("GET", f"/e2e-web-server/echo_server/events?flag={flag}")
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("transfer-encoding") == "chunked"
    assert resp.getheader("content-type") == "text/event-stream"
    assert resp.readline() == b"data: one\n"
    flag.touch()
    assert resp.read() == b"\ndata: two\n\n"
    conn.close()
    # A client that leaves while the stream is silent frees the container
    # (one request at a time): the next request is answered, not held up.
    conn = http.client.HTTPConnection(host, int(port_text), timeout=30)
    conn.request("GET", f"/e2e-web-server/echo_server/events?flag={thaw.tmp / 'never'}")
    resp = conn.getresponse()
    assert resp.readline() == b"data: one\n"
    resp.close()  # the response holds the socket too
    conn.close()
    st, _, body = request(f"{url}/after", timeout=30)
    assert st == 200 and json.loads(body)["path"] == "/after", body
    # Its server dies: the request finding it gone is answered 502 and its
    # container leaves; the next request gets a new container and server.
    assert request(f"{url}/?die=1")[0] == 200
    time.sleep(0.5)
    st, _, body = request(url)
    assert st == 502 and b"stopped answering" in body, body
    st, _, body = request(url)
    assert st == 200 and json.loads(body)["server"] != first["server"], body
    # Not a function to call: that would start its server a second time.
    err = thaw.client("""
import json, thaw
try:
    thaw.Function.from_name("e2e-web-server", "echo_server").remote()
    print(json.dumps(None))
except Exception as e:
    print(json.dumps(str(e)))
""", thaw.serving_socket)
    assert "reached over HTTP" in err, err
    thaw.stop_serve()
    # The server was the container's: it stopped with it, and nothing
    # listens on the port (SO_REUSEADDR: closed connections may linger).
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen()
    thaw.assert_containers_gone()

