"""@web_server(port): the function starts a server of its own (a subprocess,
a thread) listening on `port`; each HTTP request the runtime sends is
forwarded to it and its answer sent back.

The function runs once per container, at the first request (not in the
snapshot phase: a server's sockets and child processes belong to the
container that answers), then the port is waited for up to startup_timeout.
Containers share the host's network, so the server listens on the host's
port; the runtime keeps such a function to one container at a time."""

import base64
import http.client
import socket
import threading
import time

from ._http import _response

# Headers about one hop, not the request or answer (RFC 9110, 7.6.1); the
# runtime frames its own answer (Content-Length, Connection).
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer",
               "transfer-encoding", "upgrade", "content-length"}


def _started(target, port, startup_timeout, apps):
    """Runs the function once per container and waits for its port."""
    with apps.setdefault(("thaw._web", "lock"), threading.Lock()):
        if apps.get(("thaw._web", "web_server", port)):
            return
        target()
        deadline = time.monotonic() + startup_timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError as e:
                if time.monotonic() >= deadline:
                    raise RuntimeError(
                        f"@web_server({port}): nothing listens on port {port} "
                        f"{startup_timeout} s after the function returned ({e}); start the "
                        f"server in the function (e.g. subprocess.Popen) listening on "
                        f"0.0.0.0 or 127.0.0.1 port {port}, or give a longer "
                        f"startup_timeout=") from None
                time.sleep(0.05)
        apps[("thaw._web", "web_server", port)] = True


def _web_server_call(target, options, request):
    port = int(options["port"])
    body = base64.b64decode(request.get("body_b64") or "")
    path = request.get("path") or "/"
    if request.get("query"):
        path += "?" + request["query"]
    headers = {}
    for name, value in request.get("headers") or []:
        if name.lower() in _HOP_BY_HOP:
            continue
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    client = request.get("client") or ["", 0]
    headers["x-forwarded-for"] = client[0]
    headers["x-forwarded-proto"] = request.get("scheme") or "http"
    conn = http.client.HTTPConnection("127.0.0.1", port)
    try:
        conn.request(request["method"], path, body=body or None, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        out = [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP_BY_HOP]
        return _response(resp.status, out, data)
    finally:
        conn.close()
