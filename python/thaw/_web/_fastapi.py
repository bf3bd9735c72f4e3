"""@fastapi_endpoint functions that need FastAPI itself: served by a real
FastAPI app, built as Modal builds it (one route, "/", for the decorator's
method, behind a CORS middleware that allows everything).

The standard-library path (_endpoint, _params) covers what most endpoint
functions use: query parameters, a JSON body, pydantic-style models. A
parameter typed as one of FastAPI's own classes (`request: Request`,
`background_tasks: BackgroundTasks`, `response: Response`, `UploadFile`)
or given one of its markers (`Depends(...)`, `Header()`, `Query(...)`,
`Body(embed=True)`, `Form()`, `Cookie()`, also inside `Annotated[...]`)
means the user's code imported FastAPI and relies on what only FastAPI
does; so does `docs=True`. Such a function is served by FastAPI, exactly
as in Modal, and never by an imitation of it."""

import functools
import inspect
import re
import typing

_FRAMEWORKS = ("fastapi", "starlette")


def _from_framework(obj):
    """Whether obj is a class, or an instance of a class, defined by FastAPI
    or Starlette (looked up by module name: this must not import them)."""
    cls = obj if isinstance(obj, type) else type(obj)
    for c in getattr(cls, "__mro__", (cls,)):
        if str(getattr(c, "__module__", "")).split(".")[0] in _FRAMEWORKS:
            return True
    return False


# FastAPI's classes a parameter may be typed as, by name: for an annotation
# that cannot be resolved (a string naming what is not importable here).
_CLASS_NAMES = {"Request", "WebSocket", "HTTPConnection", "BackgroundTasks", "Response",
                "UploadFile", "SecurityScopes"}
_MARKERS = ("Depends(", "Security(", "Header(", "Query(", "Path(", "Body(", "Form(", "File(", "Cookie(")


def _function(target):
    """The Python function whose signature and globals describe target (a
    function, a bound method, a functools.partial, an object with __call__)."""
    while isinstance(target, functools.partial):
        target = target.func
    if not inspect.isroutine(target) and callable(target):
        target = type(target).__call__
    return inspect.unwrap(getattr(target, "__func__", target))


def _resolve(fn, ann):
    """ann, evaluated against fn's globals when it is a string; the string
    itself when it cannot be."""
    if not isinstance(ann, str):
        return ann
    try:
        return eval(ann, dict(getattr(fn, "__globals__", {})), {})  # noqa: S307 - the user's own annotation
    except Exception:
        return ann


def _string_names_fastapi(text):
    words = set(re.findall(r"[A-Za-z_][A-Za-z_0-9]*", text))
    return bool(words & _CLASS_NAMES) or any(m in text for m in _MARKERS)


def _types_in(ann):
    """ann and what it is made of: Annotated's type and metadata, Optional's
    and Union's members."""
    out = [ann]
    for arg in typing.get_args(ann):
        out.extend(_types_in(arg))
    meta = getattr(ann, "__metadata__", None)
    if meta:
        out.extend(meta)
    return out


def needs_fastapi(target, options):
    """Whether the endpoint function `target` must be served by FastAPI."""
    if options.get("docs"):
        return True
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return False
    fn = _function(target)
    for p in sig.parameters.values():
        if p.default is not p.empty and not isinstance(p.default, type) and _from_framework(p.default):
            return True   # Depends(), Query(), Header(), Body(), ...
        if p.annotation is p.empty:
            continue
        # Each on its own: one that cannot be resolved must not hide the others.
        ann = _resolve(fn, p.annotation)
        if isinstance(ann, str):
            if _string_names_fastapi(ann):
                return True
            continue
        for t in _types_in(ann):
            if isinstance(t, typing.ForwardRef):   # a string inside Optional[...]
                t = _resolve(fn, t.__forward_arg__)
            if isinstance(t, str):
                if _string_names_fastapi(t):
                    return True
                continue
            if t is not None and _from_framework(t):
                return True   # Request, BackgroundTasks, UploadFile, Annotated[.., Header()]
    return False


def endpoint_app(target, options):
    """The FastAPI app that serves `target` at "/" (and, with docs=True,
    its OpenAPI schema at /openapi.json and pages at /docs and /redoc)."""
    docs = bool(options.get("docs"))
    try:
        from fastapi import FastAPI
        from fastapi.middleware.cors import CORSMiddleware
    except ImportError as e:
        why = ("asks for docs=True, which FastAPI serves," if docs else
               "has parameters only FastAPI understands (Request, Depends, Header, ...)")
        raise RuntimeError(
            f"thaw: {getattr(target, '__qualname__', target)} {why} but FastAPI cannot be "
            f"imported in its container ({e}); install it (Debian: apt-get install python3-fastapi)") from e
    app = FastAPI(openapi_url="/openapi.json" if docs else None,
                  docs_url="/docs" if docs else None, redoc_url="/redoc" if docs else None)
    app.add_middleware(CORSMiddleware, allow_origins=["*"], allow_credentials=True,
                       allow_methods=["*"], allow_headers=["*"])
    method = str(options.get("method") or "GET").upper()
    # HEAD answered as GET, as thaw's other endpoints answer it (FastAPI's
    # route alone would say 405).
    app.add_api_route("/", target, methods=[method])
    if method == "GET":
        # Out of the schema: one route with both methods gives both the
        # same operation id, which FastAPI warns about.
        app.add_api_route("/", target, methods=["HEAD"], include_in_schema=False)
    return app
