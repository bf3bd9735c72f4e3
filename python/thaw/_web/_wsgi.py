"""@wsgi_app: the app called as PEP 3333 says."""

import io
import sys
from urllib.parse import unquote_to_bytes

from ._http import _address, _body, _native, _raw, _response


# -- WSGI ----------------------------------------------------------------


class _WsgiApp:
    def __init__(self, target):
        self.target = target
        self.app = target()
        if not callable(self.app):
            raise TypeError(f"thaw: the @wsgi_app function returned {type(self.app).__name__}, "
                            "not a WSGI app (a callable(environ, start_response))")


def _wsgi_str(raw):
    # PEP 3333: paths are percent-decoded, and their bytes carried as latin-1.
    return unquote_to_bytes(_raw(raw)).decode("latin-1")


def _wsgi_environ(request, body):
    server = _address(request.get("server")) or ("localhost", 80)
    client = _address(request.get("client"))
    environ = {
        "REQUEST_METHOD": str(request.get("method") or "GET").upper(),
        "SCRIPT_NAME": _wsgi_str(request.get("root_path") or "").rstrip("/"),
        "PATH_INFO": _wsgi_str(request.get("path") or "/"),
        "QUERY_STRING": _native(request.get("query") or ""),
        "SERVER_NAME": server[0],
        "SERVER_PORT": str(server[1]),
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": request.get("scheme") or "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        # The whole body is there: reading wsgi.input to its end is safe.
        "wsgi.input_terminated": True,
    }
    if client:
        environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = client[0], str(client[1])
    has_length = False
    for name, value in request.get("headers") or ():
        name = name.lower()
        value = _native(value)
        if name == "content-type":
            environ["CONTENT_TYPE"] = value
        elif name == "content-length":
            has_length = True
        else:
            key = "HTTP_" + name.upper().replace("-", "_")
            environ[key] = f"{environ[key]},{value}" if key in environ else value
    if body or has_length:
        # The runtime has read the body (chunked or not): its length is known.
        environ["CONTENT_LENGTH"] = str(len(body))
    return environ


def _wsgi_call(entry, request):
    environ = _wsgi_environ(request, _body(request))
    started = {}          # status, headers; "sent" once a byte of the body is out
    chunks = []

    def write(data):
        if "status" not in started:
            raise AssertionError("thaw: the WSGI app wrote body data before calling start_response")
        add(data)

    def add(data):
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError(f"thaw: a WSGI app's body must be bytes, not {type(data).__name__}")
        if data:
            started["sent"] = True
            chunks.append(bytes(data))

    def start_response(status, headers, exc_info=None):
        if exc_info:
            try:
                if started.get("sent"):
                    # Too late to change the status: PEP 3333 says re-raise.
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None   # no reference cycle through the traceback
        elif "status" in started:
            raise AssertionError("thaw: the WSGI app called start_response twice without exc_info")
        started["status"], started["headers"] = status, list(headers)
        return write

    result = entry.app(environ, start_response)
    try:
        for data in result:
            add(data)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    if "status" not in started:
        raise RuntimeError("thaw: the WSGI app returned without calling start_response")
    return _response(_status_code(started["status"]), started["headers"], b"".join(chunks))


def _status_code(status):
    code = str(status).split(" ", 1)[0]
    if len(code) != 3 or not code.isdigit():
        raise ValueError(f"thaw: the WSGI app's status {status!r} does not begin with a "
                         "3-digit code")
    return int(code)
