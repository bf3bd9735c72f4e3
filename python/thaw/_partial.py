"""Method and function decorators: enter, exit, method, concurrent, batched,
parameter, and the web decorators (served by `thaw serve --http`).

A decorated method stays a descriptor that gives the plain bound method on an
instance, so user code may call `self.other()` as usual; on an instance thaw
made, `self.other` also has `.remote()`, `.local()`, `.spawn()`, `.map()`...
as in Modal; @app.cls reads the flags to find lifecycle hooks and methods.
"""

import inspect

from ._batch import check_params, check_function
from ._state import warn
from .exception import InvalidError

ENTER_PRE = "enter_pre_snapshot"    # @enter(snap=True)
ENTER_POST = "enter_post_snapshot"  # @enter() / @enter(snap=False)
EXIT = "exit"
METHOD = "method"
CONCURRENT = "concurrent"
BATCHED = "batched"
WEB = "web"

_LIFECYCLE = {ENTER_PRE, ENTER_POST, EXIT}


class PartialFunction:
    """A function or class marked by one or more thaw decorators."""

    def __init__(self, raw_f, flags, params=None):
        self.raw_f = raw_f
        self.flags = frozenset(flags)
        self.params = dict(params or {})
        if self.flags & _LIFECYCLE and self.flags & {METHOD, WEB}:
            raise InvalidError(f"{getattr(raw_f, '__qualname__', raw_f)}: a lifecycle hook "
                               f"(@enter/@exit) cannot also be a @method")
        if BATCHED in self.flags and self.flags & {CONCURRENT, WEB}:
            other = "@concurrent" if CONCURRENT in self.flags else "a web endpoint decorator"
            raise InvalidError(f"{getattr(raw_f, '__qualname__', raw_f)}: @batched cannot be "
                               f"combined with {other} (a container runs one batch at a time, "
                               f"and a web request is one input)")
        if BATCHED in self.flags and self.params.get("is_generator"):
            raise InvalidError(f"{getattr(raw_f, '__qualname__', raw_f)}: @batched cannot be a "
                               f"generator (each input gets one output)")
        if len(self.flags & _LIFECYCLE) > 1:
            raise InvalidError(f"{getattr(raw_f, '__qualname__', raw_f)}: only one of "
                               f"@enter(snap=True), @enter(snap=False), @exit per method")

    def __get__(self, obj, objtype=None):
        if inspect.isclass(self.raw_f):
            return self.raw_f
        bound = self.raw_f.__get__(obj, objtype)
        if obj is not None and self.flags & {METHOD, WEB, BATCHED}:
            # An instance thaw made (a container's, or .local()'s) knows its
            # handle: `self.other.remote(x)` in a method calls through it, as
            # in Modal; `self.other(x)` still calls the method itself.
            handle = getattr(obj, "__dict__", {}).get("_thaw_handle")
            if handle is not None:
                return handle.method(bound, self.raw_f.__name__)
        return bound

    def __call__(self, *args, **kwargs):
        return self.raw_f(*args, **kwargs)

    def __repr__(self):
        return f"<thaw {'/'.join(sorted(self.flags))} {getattr(self.raw_f, '__qualname__', '?')}>"


def _apply(f, flags, params=None, name="decorator"):
    if isinstance(f, PartialFunction):
        return PartialFunction(f.raw_f, f.flags | set(flags), {**f.params, **(params or {})})
    if not callable(f):
        raise InvalidError(f"@{name} must decorate a function, got {f!r}")
    return PartialFunction(f, flags, params)


def _decorator_or_direct(arg, make, name):
    """Modal requires parentheses (@enter()); thaw also accepts @enter."""
    if arg is None:
        return make
    if callable(arg):
        return make(arg)
    raise InvalidError(f"@{name}() takes keyword arguments only")


def enter(_warn_parentheses_missing=None, *, snap=False):
    """Mark a method to run when a container starts. snap=True: before the
    memory snapshot (its effects are in the snapshot; no GPU is visible
    unless GPU snapshots are on). snap=False (default): after the restore,
    or at every cold start, before any input."""
    return _decorator_or_direct(
        _warn_parentheses_missing,
        lambda f: _apply(f, {ENTER_PRE if snap else ENTER_POST}, name="enter"), "enter")


def exit(_warn_parentheses_missing=None):  # noqa: A001 - Modal's name
    """Mark a method to run when the container shuts down."""
    return _decorator_or_direct(_warn_parentheses_missing,
                                lambda f: _apply(f, {EXIT}, name="exit"), "exit")


def method(_warn_parentheses_missing=None, *, is_generator=None):
    """Mark a method of an @app.cls class as callable remotely."""
    def make(f):
        raw = f.raw_f if isinstance(f, PartialFunction) else f
        gen = is_generator if is_generator is not None else (
            inspect.isgeneratorfunction(raw) or inspect.isasyncgenfunction(raw))
        return _apply(f, {METHOD}, {"is_generator": bool(gen)}, name="method")
    return _decorator_or_direct(_warn_parentheses_missing, make, "method")


def concurrent(_f=None, *, max_inputs, target_inputs=None):
    """Let one container serve up to max_inputs calls at once (in threads).
    Honoured by the worker; target_inputs (an autoscaling hint) is recorded."""
    if not isinstance(max_inputs, int) or max_inputs < 1:
        raise InvalidError("@concurrent(max_inputs=...) must be a positive integer")
    params = {"max_concurrent_inputs": max_inputs, "target_concurrent_inputs": target_inputs}
    return _decorator_or_direct(_f, lambda f: _apply(f, {CONCURRENT}, params, "concurrent"),
                                "concurrent")


def batched(_f=None, *, max_batch_size, wait_ms):
    """Dynamic batching: callers pass single inputs; a container gathers up
    to max_batch_size of them (waiting at most wait_ms after the first) into
    one call of the function with a list per argument, which returns a list
    with one output per input."""
    check_params(max_batch_size, wait_ms)

    def make(f):
        check_function(f.raw_f if isinstance(f, PartialFunction) else f)
        return _apply(f, {BATCHED}, {"max_batch_size": max_batch_size, "wait_ms": wait_ms},
                      "batched")
    return _decorator_or_direct(_f, make, "batched")


HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


ENDPOINT_KINDS = ("fastapi_endpoint", "web_endpoint")


def _fastapi_installed():
    # Looked for, not imported: importing FastAPI takes a quarter second.
    import importlib.util
    return importlib.util.find_spec("fastapi") is not None


def _check_label(where, label):
    if label is not None and (not isinstance(label, str) or not label
                              or any(c in label for c in "/?#% ")):
        raise InvalidError(f"{where}(label={label!r}): a label is one URL path segment "
                           f"(no '/', '?', '#', '%' or spaces)")


def _web(kind, takes_method):
    """Modal's web decorators. `thaw serve --http` serves them (docs/sdk.md,
    "Web endpoints"); the function stays callable with .remote() too."""
    def decorator(_f=None, *, method="GET", label=None, custom_domains=None, docs=False,
                  requires_proxy_auth=False, **rest):
        where = f"@{kind}"
        if kind == "web_endpoint":
            from .exception import DeprecatedWarning
            warn("thaw: @web_endpoint is Modal's old name for @fastapi_endpoint; served the same",
                 DeprecatedWarning)
        if rest:
            warn(f"thaw: {where}: {', '.join(sorted(rest))} not known; ignored")
        if not takes_method and method != "GET":
            raise InvalidError(f"{where} takes no method= (the app answers every method)")
        m = str(method).upper()
        if m not in HTTP_METHODS:
            raise InvalidError(f"{where}(method={method!r}): not an HTTP method "
                               f"(one of {', '.join(HTTP_METHODS)})")
        _check_label(where, label)
        if custom_domains:
            warn(f"thaw: {where}(custom_domains={custom_domains!r}) is not supported: thaw "
                 "serves on one address")
        if docs and not (kind in ENDPOINT_KINDS and _fastapi_installed()):
            why = ("FastAPI, which serves them, is not installed (Debian: python3-fastapi)"
                   if kind in ENDPOINT_KINDS else f"{where} serves what its app serves")
            warn(f"thaw: {where}(docs=True): no /docs page: {why}")
            docs = False
        web = {"kind": kind, "method": m if takes_method else None, "label": label,
               "requires_proxy_auth": True if requires_proxy_auth else None,
               "docs": True if docs else None}

        def make(f):
            return _apply(f, {WEB}, {"web": {k: v for k, v in web.items() if v is not None}}, kind)
        return _decorator_or_direct(_f, make, kind)
    decorator.__name__ = kind
    return decorator


def web_server(port, *, startup_timeout=5.0, label=None, custom_domains=None,
               requires_proxy_auth=False):
    """Modal's @web_server(port): the function starts a server listening on
    port (e.g. with subprocess.Popen) and `thaw serve --http` forwards the
    requests for its URL, and every path below it, to that server. The
    function runs once per container, at the first request; the port must
    accept connections within startup_timeout seconds after it returns."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise InvalidError(f"@web_server(port={port!r}): a TCP port number from 1 to 65535")
    if isinstance(startup_timeout, bool) or not isinstance(startup_timeout, (int, float)) \
            or startup_timeout <= 0:
        raise InvalidError(f"@web_server(startup_timeout={startup_timeout!r}): a positive number "
                           f"of seconds")
    _check_label("@web_server", label)
    if custom_domains:
        warn(f"thaw: @web_server(custom_domains={custom_domains!r}) is not supported: thaw "
             f"serves on one address")
    web = {"kind": "web_server", "port": port, "startup_timeout": float(startup_timeout),
           "label": label, "requires_proxy_auth": True if requires_proxy_auth else None}

    def make(f):
        return _apply(f, {WEB}, {"web": {k: v for k, v in web.items() if v is not None}},
                      "web_server")
    return make


web_endpoint = _web("web_endpoint", True)
fastapi_endpoint = _web("fastapi_endpoint", True)
asgi_app = _web("asgi_app", False)
wsgi_app = _web("wsgi_app", False)

_NO_DEFAULT = object()


class Parameter:
    """A class parameter (`x: int = thaw.parameter(default=1)`)."""

    def __init__(self, default=_NO_DEFAULT, init=True):
        self.default = default
        self.init = init

    @property
    def has_default(self):
        return self.default is not _NO_DEFAULT


def parameter(*, default=_NO_DEFAULT, init=True):
    """Declare a class parameter: `Model(size=3)` sets self.size. Each set of
    values has containers (and a memory snapshot) of its own, as in Modal:
    the runtime routes calls by their values (runtime/class_params.h)."""
    return Parameter(default, init)
