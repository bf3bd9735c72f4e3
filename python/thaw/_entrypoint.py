"""`python3 -m thaw._entrypoint app.py [ENTRY] [--arg value ...]`: what
`thaw run app.py[::ENTRY]` runs on the caller's side.

Imports the app in "ephemeral" mode (every .remote() sends mode "ephemeral"
and the app file, so the runtime builds containers from this file and takes
no snapshots), then runs ENTRY:
  - a @app.local_entrypoint() by name (the only one when ENTRY is omitted);
  - or a function name: calls it with .remote() and prints the result;
  - or Class.method: calls Class().method.remote() and prints the result.
Arguments after ENTRY become keyword arguments (`--name value`, `--flag`,
`--no-flag`), converted by the parameter's type hint as `modal run` does
(thaw._cli_args); for Class.method, the class's thaw.parameter()s are
options too, as in Modal.
"""

import asyncio
import inspect
import os
import sys
import traceback
import typing

from . import _state
from ._cli_args import make_param, params_of, parse_kwargs
from ._functions import Cls
from ._loader import load_app_module, pick_app
from .exception import Error, InvalidError


def _choices(app):
    return (sorted(app._local_entrypoints) + sorted(app._functions)
            + [f"{c}.{m}" for c, cls in sorted(app._classes.items()) for m in sorted(cls._methods)])


class Entry(typing.NamedTuple):
    label: str
    local: bool        # a local entrypoint (runs here) or a remote call
    params: list       # its options (thaw._cli_args.Param); None: unknown, none taken
    call: typing.Callable  # kwargs -> its result


def _remote(fn):
    return fn.remote_gen if fn._is_generator() else fn.remote


def _params_or_none(f, skip_first=False):
    try:
        return params_of(f, skip_first)
    except (ValueError, TypeError):  # no signature to read (a builtin, a C callable)
        return None


def _method_entry(cls, label, mname):
    """Class.method: the class's parameters and the method's, pooled, as
    `modal run file.py::Class.method` takes them."""
    cls_params = [make_param(name, getattr(p, "annotation", None),
                             p.default if p.has_default else inspect.Parameter.empty)
                  for name, p in cls._parameters.items()]
    raw = inspect.unwrap(getattr(cls._user_cls, mname, None) or (lambda self: None))
    method_params = _params_or_none(getattr(raw, "raw_f", raw), skip_first=True)
    if method_params is not None:
        clash = {p.name for p in cls_params} & {p.name for p in method_params}
        if clash:
            raise InvalidError(f"thaw: {label}: {', '.join(sorted(clash))} is both a parameter of "
                               f"the class and of the method; run it from a @app.local_entrypoint()")
    names = {p.name for p in cls_params}

    def call(kwargs):
        obj = cls(**{k: kwargs.pop(k) for k in list(kwargs) if k in names})
        return getattr(obj, mname).remote(**kwargs)
    return Entry(label, False, cls_params + (method_params or []), call)


def resolve(app, entry):
    """The Entry for ENTRY (or the default one)."""
    if not entry:
        if len(app._local_entrypoints) == 1:
            entry = next(iter(app._local_entrypoints))
        elif not app._local_entrypoints and len(app._functions) == 1:
            entry = next(iter(app._functions))
        else:
            raise InvalidError(f"thaw: say which entrypoint to run (app.py::NAME); this app has: "
                               f"{', '.join(_choices(app)) or 'nothing to run'}")
    if entry in app._local_entrypoints:
        raw = app._local_entrypoints[entry].raw_f
        return Entry(entry, True, _params_or_none(raw), lambda kwargs: raw(**kwargs))
    if entry in app._functions:
        fn = app._functions[entry]
        return Entry(entry, False, _params_or_none(fn.get_raw_f()), lambda kwargs: _remote(fn)(**kwargs))
    if "." in entry:
        cname, mname = entry.split(".", 1)
        cls = app._classes.get(cname)
        if isinstance(cls, Cls) and mname in cls._methods:
            return _method_entry(cls, entry, mname)
    raise InvalidError(f"thaw: app '{app.name}' has no entrypoint, function or method named "
                       f"{entry!r} (it has: {', '.join(_choices(app)) or 'nothing'})")


def run(app_file, entry=None, argv=(), app_name=None):
    app_file = os.path.abspath(app_file)
    _state.mode = "ephemeral"
    _state.app_file = app_file
    os.environ["THAW_APP_MODE"] = "ephemeral"
    module = load_app_module(app_file)
    app = pick_app(module, app_name)
    for vol in app._all_volumes().values():
        vol.ensure()
    e = resolve(app, entry)
    kwargs = parse_kwargs(e.params, list(argv), prog=f"thaw run {os.path.basename(app_file)}::{e.label}")
    result = e.call(kwargs)
    if inspect.iscoroutine(result):
        result = asyncio.run(result)
    if not e.local:
        if inspect.isgenerator(result):
            result = list(result)
        if result is not None:
            print(result)
    return 0


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    app_file, rest = argv[0], argv[1:]
    entry = None
    if "::" in app_file:
        app_file, entry = app_file.split("::", 1)
    if entry is None and rest and not rest[0].startswith("-"):
        entry, rest = rest[0], rest[1:]
    if rest and rest[0] == "--":
        rest = rest[1:]
    try:
        return run(app_file, entry or None, rest)
    except Error as e:
        if getattr(e, "__notes__", None):
            traceback.print_exc()
        else:
            print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return 1
    except SystemExit:
        raise
    except KeyboardInterrupt:
        # `thaw run` cancels the calls in flight and says so: no traceback.
        print("Interrupted.", file=sys.stderr)
        return 130
    except BaseException:  # noqa: BLE001
        traceback.print_exc()
        return 1


if __name__ == "__main__":
    sys.exit(main())
