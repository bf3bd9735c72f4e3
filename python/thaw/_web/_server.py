"""@web_server(port): the function starts a server of its own (a subprocess,
a thread) listening on `port`; each HTTP request the runtime sends is
forwarded to it and its answer sent back.

The function runs once per container, at the first request (not in the
snapshot phase: a server's sockets and child processes belong to the
container that answers), then the port is waited for up to startup_timeout.
Containers share the host's network, so the server listens on the host's
port: the port must be free before the function runs (else the requests
would reach whatever holds it), and the runtime keeps such a function to
one container at a time. A server that fails to start, or stops answering,
makes its container leave once the request is answered (LeaveContainer):
the next request gets a new container, as in Modal."""

import base64
import http.client
import socket
import threading
import time

from ._http import _json_response, _response
from .._async_runner import resolve

# Headers about one hop, not the request or answer (RFC 9110, 7.6.1); the
# runtime frames its own answer (Content-Length, Connection). The proxy
# auth token is thaw's, not the server's.
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer",
               "transfer-encoding", "upgrade", "content-length", "modal-key", "modal-secret"}
MAX_RESPONSE_BYTES = 64 << 20  # as the runtime's limit on request bodies


class LeaveContainer(Exception):
    """Answer `response`, then the container leaves (its server is broken)."""

    def __init__(self, response, reason):
        super().__init__(reason)
        self.response = response


def _listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def _failed(apps, port, status, why):
    """The start failed: this container answers so from now on, and leaves."""
    apps[("thaw._web", "web_server", port)] = why
    return LeaveContainer(_json_response(status, {"detail": why}), why)


def _started(target, port, startup_timeout, apps):
    """Runs the function once per container and waits for its port."""
    with apps.setdefault(("thaw._web", "lock"), threading.Lock()):
        state = apps.get(("thaw._web", "web_server", port))
        if state == "up":
            return
        if state is not None:  # a start failed before: this container is done
            raise LeaveContainer(_json_response(503, {"detail": state}), state)
        deadline = time.monotonic() + startup_timeout
        while _listening(port):
            # Someone else's (a container going away, another program):
            # requests must not reach it as if it were this function's.
            if time.monotonic() >= deadline:
                raise _failed(apps, port, 503,
                              f"@web_server({port}): port {port} of the host is already taken by "
                              f"another process, so this function's server cannot listen there; "
                              f"free it, or give the function another port")
            time.sleep(0.05)
        apps[("thaw._web", "web_server", port)] = "starting"
        try:
            resolve(target())
        except Exception as e:  # noqa: BLE001 - the container leaves; the log says why
            raise _failed(apps, port, 503, f"@web_server({port}): the function raised "
                                           f"{type(e).__name__}: {e}") from e
        except BaseException:  # its timeout's alarm: not "starting" for ever
            apps[("thaw._web", "web_server", port)] = (
                f"@web_server({port}): the function did not return within its timeout")
            raise
        deadline = time.monotonic() + startup_timeout
        while not _listening(port):
            if time.monotonic() >= deadline:
                raise _failed(apps, port, 503,
                              f"@web_server({port}): nothing listens on port {port} "
                              f"{startup_timeout} s after the function returned; start the server "
                              f"in the function (e.g. subprocess.Popen) listening on 0.0.0.0 or "
                              f"127.0.0.1 port {port}, or give a longer startup_timeout=")
            time.sleep(0.05)
        apps[("thaw._web", "web_server", port)] = "up"


def _forwarded_headers(request):
    headers = {}
    named = set()  # headers the request's Connection names are hop-by-hop too
    for name, value in request.get("headers") or []:
        if name.lower() == "connection":
            named.update(t.strip().lower() for t in value.split(","))
    for name, value in request.get("headers") or []:
        low = name.lower()
        if low in _HOP_BY_HOP or low in named:
            continue
        if low in headers:
            headers[low] += ("; " if low == "cookie" else ", ") + value
        else:
            headers[low] = value
    client = (request.get("client") or [""])[0]
    # Behind a reverse proxy the chain so far is kept, as proxies do.
    headers["x-forwarded-for"] = (f"{headers['x-forwarded-for']}, {client}"
                                  if headers.get("x-forwarded-for") else client)
    headers.setdefault("x-forwarded-proto", request.get("scheme") or "http")
    return headers


def _streams(resp):
    """An answer to pass on as it comes: one without a length (chunked, or
    read until the server closes) or server-sent events; never one that has
    no body (1xx, 204, 304)."""
    if resp.status < 200 or resp.status in (204, 304):
        return False
    return (resp.getheader("content-length") is None
            or (resp.getheader("content-type") or "").startswith("text/event-stream"))


def _stopper(conn):
    """Ends a read of conn's answer from another thread."""
    def stop():
        sock = conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
    return stop


def _pieces(conn, resp):
    try:
        while True:
            piece = resp.read1(64 << 10)
            if not piece:
                return
            yield piece
    finally:
        conn.close()


def _web_server_call(target, options, request):
    """The server's answer: {"status", "headers", "body_b64"}, or for one
    that comes in pieces {"status", "headers", "stream": iterator of bytes}."""
    port = int(options["port"])
    body = base64.b64decode(request.get("body_b64") or "")
    path = request.get("path") or "/"
    if request.get("query"):
        path += "?" + request["query"]
    conn = http.client.HTTPConnection("127.0.0.1", port)
    keep_open = False
    try:
        try:
            conn.putrequest(request["method"], path, skip_host=True, skip_accept_encoding=True)
            headers = _forwarded_headers(request)
            headers.setdefault("host", f"127.0.0.1:{port}")
            for k, v in headers.items():
                conn.putheader(k, v.encode("utf-8") if not v.isascii() else v)
            if body:
                conn.putheader("content-length", str(len(body)))
            conn.endheaders(body or None)
            resp = conn.getresponse()
        except ConnectionError as e:
            why = f"@web_server({port}): its server stopped answering ({e})"
            if _listening(port):  # one connection broke, not the server: stay
                return _json_response(502, {"detail": why})
            raise LeaveContainer(_json_response(502, {"detail": why}), why) from None
        out = [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP_BY_HOP]
        if _streams(resp) and request.get("method") != "HEAD":
            keep_open = True
            head = _response(resp.status, out, b"")
            return {"status": head["status"], "headers": head["headers"],
                    "stream": _pieces(conn, resp), "stop": _stopper(conn)}
        data = resp.read(MAX_RESPONSE_BYTES + 1)
        if len(data) > MAX_RESPONSE_BYTES:
            return _json_response(502, {"detail": f"@web_server({port}): the answer is larger "
                                                  f"than {MAX_RESPONSE_BYTES >> 20} MiB"})
        return _response(resp.status, out, data)
    finally:
        if not keep_open:
            conn.close()


def whole(response):
    """A streamed answer read whole (for a caller that takes no stream)."""
    if "stream" not in response:
        return response
    data = bytearray()
    for piece in response["stream"]:
        data += piece
        if len(data) > MAX_RESPONSE_BYTES:
            response["stream"].close()
            return _json_response(502, {"detail": f"the answer is larger than "
                                                  f"{MAX_RESPONSE_BYTES >> 20} MiB"})
    return _response(response["status"], response["headers"], bytes(data))
