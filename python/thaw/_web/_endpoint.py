"""@fastapi_endpoint / @web_endpoint: what FastAPI does around an endpoint
function (CORS, status codes, results)."""

from .. import _async_runner
from ._http import _header, _json_response, _response, _text
from ._params import _bind, _parameters


# FastAPI's CORSMiddleware with allow_methods=["*"] answers preflights with these.
_CORS_METHODS = "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT"


def _endpoint(options, target, request):
    preflight = _cors_preflight(request)
    if preflight is not None:
        return preflight
    method = str(request.get("method") or "GET").upper()
    allowed = str(options.get("method") or "GET").upper()
    # HEAD is answered as GET (the runtime drops the body), as most servers do.
    if method == allowed or (method == "HEAD" and allowed == "GET"):
        response = _call_endpoint(target, request)
    else:
        response = _json_response(405, {"detail": "Method Not Allowed"}, [["allow", allowed]])
    return _with_cors(response, request)


def _cors_preflight(request):
    """Modal's endpoints allow any origin, method and header, with
    credentials; this is the answer its middleware gives to a preflight."""
    origin = _header(request, "origin")
    if (str(request.get("method")).upper() != "OPTIONS" or origin is None
            or _header(request, "access-control-request-method") is None):
        return None
    headers = [["access-control-allow-origin", origin], ["vary", "Origin"],
               ["access-control-allow-methods", _CORS_METHODS],
               ["access-control-max-age", "600"], ["access-control-allow-credentials", "true"]]
    wanted = _header(request, "access-control-request-headers")
    if wanted:
        headers.append(["access-control-allow-headers", wanted])
    headers.append(["content-type", "text/plain; charset=utf-8"])
    return _response(200, headers, b"OK")


def _with_cors(response, request):
    origin = _header(request, "origin")
    if origin is None:
        return response
    # With credentials allowed, a browser rejects "*" on a request that
    # carries cookies, so the origin is echoed back then (as Starlette does).
    explicit = _header(request, "cookie") is not None
    ours = {"access-control-allow-origin": origin if explicit else "*",
            "access-control-allow-credentials": "true"}
    headers = [h for h in response["headers"] if h[0].lower() not in ours]
    headers += [[k, v] for k, v in ours.items()]
    if explicit:
        headers.append(["vary", "Origin"])
    return dict(response, headers=headers)


def _call_endpoint(target, request):
    params = _parameters(target)
    args, kwargs, errors = _bind(params, request)
    if errors:
        return _json_response(422, {"detail": errors})
    try:
        value = _async_runner.resolve(target(*args, **kwargs))
    except Exception as e:
        if not _is_http_exception(e):
            raise
        headers = getattr(e, "headers", None)
        return _json_response(e.status_code, {"detail": e.detail},
                              _header_items(headers) if headers else ())
    return _result_response(value)


def _is_http_exception(e):
    # fastapi.HTTPException and starlette's: status_code and detail.
    return isinstance(getattr(e, "status_code", None), int) and hasattr(e, "detail")


# -- results -------------------------------------------------------------


def _result_response(value):
    if _is_response_like(value):
        if hasattr(value, "body_iterator"):
            # A StreamingResponse: passed on piece by piece (whole() reads it
            # whole for a caller that takes no stream).
            head = _response(value.status_code, _response_headers(value), b"")
            return {"status": head["status"], "headers": head["headers"],
                    "stream": _pieces(value.body_iterator)}
        return _response(value.status_code, _response_headers(value), bytes(value.body))
    return _json_response(200, value)


def _is_response_like(value):
    # A starlette/FastAPI Response (Response, JSONResponse, HTMLResponse,
    # StreamingResponse...), which FastAPI sends as it is.
    return isinstance(getattr(value, "status_code", None), int) and (
        isinstance(getattr(value, "body", None), (bytes, bytearray, memoryview))
        or hasattr(value, "body_iterator"))


def _response_headers(resp):
    raw = getattr(resp, "raw_headers", None)
    if raw is not None:   # starlette's: includes content-type
        return [[_text(k), _text(v)] for k, v in raw]
    headers = _header_items(getattr(resp, "headers", None) or {})
    media_type = getattr(resp, "media_type", None)
    if media_type and not any(k.lower() == "content-type" for k, _ in headers):
        if media_type.startswith("text/") and "charset" not in media_type:
            media_type += "; charset=utf-8"
        headers.append(["content-type", media_type])
    return headers


def _header_items(headers):
    items = headers.items() if hasattr(headers, "items") else headers
    return [[_text(k), _text(v)] for k, v in items]


def _pieces(chunks):
    """A StreamingResponse's body, piece by piece (its iterator may be async:
    it runs on the worker's event loop)."""
    it = _async_runner.iterate(chunks) if hasattr(chunks, "__aiter__") else iter(chunks)
    for c in it:
        yield c.encode("utf-8") if isinstance(c, str) else bytes(c)
