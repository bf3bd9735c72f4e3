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

import inspect
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


def _annotations(fn):
    try:
        return typing.get_type_hints(fn, include_extras=True)
    except Exception:
        return {}   # unresolvable strings: only the parameters' defaults tell then


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
    fn = inspect.unwrap(getattr(target, "__func__", target))
    hints = _annotations(fn)
    for p in sig.parameters.values():
        if p.default is not p.empty and not isinstance(p.default, type) and _from_framework(p.default):
            return True   # Depends(), Query(), Header(), Body(), ...
        ann = hints.get(p.name, p.annotation)
        if ann is p.empty or isinstance(ann, str):
            continue
        for t in _types_in(ann):
            if t is not None and _from_framework(t):
                return True   # Request, BackgroundTasks, UploadFile, Annotated[.., Header()]
    return False


def endpoint_app(target, options):
    """The FastAPI app that serves `target` at "/" (and, with docs=True,
    its OpenAPI schema at /openapi.json and pages at /docs and /redoc)."""
    try:
        from fastapi import FastAPI
        from fastapi.middleware.cors import CORSMiddleware
    except ImportError as e:
        raise RuntimeError(
            f"thaw: {getattr(target, '__qualname__', target)} has parameters only FastAPI "
            f"understands (Request, Depends, Header, ...) but FastAPI cannot be imported ({e}); "
            "install it (Debian: apt-get install python3-fastapi)") from e
    docs = bool(options.get("docs"))
    app = FastAPI(openapi_url="/openapi.json" if docs else None,
                  docs_url="/docs" if docs else None, redoc_url="/redoc" if docs else None)
    app.add_middleware(CORSMiddleware, allow_origins=["*"], allow_credentials=True,
                       allow_methods=["*"], allow_headers=["*"])
    app.add_api_route("/", target, methods=[str(options.get("method") or "GET").upper()])
    return app
