"""`python3 -m thaw._entrypoint app.py [ENTRY] [--arg value ...]`: what
`thaw run app.py[::ENTRY]` runs on the caller's side.

Imports the app in "ephemeral" mode (every .remote() sends mode "ephemeral"
and the app file, so the runtime builds containers from this file and takes
no snapshots), then runs ENTRY:
  - a @app.local_entrypoint() by name (the only one when ENTRY is omitted);
  - or a function name: calls it with .remote() and prints the result;
  - or Class.method: calls Class().method.remote() and prints the result.
Arguments after ENTRY become keyword arguments (`--name value`, `--flag`,
`--no-flag`), converted by the parameter's annotation (int, float, bool, str).
"""

import argparse
import asyncio
import inspect
import os
import sys
import traceback

from . import _state
from ._functions import Cls
from ._loader import load_app_module, pick_app
from .exception import Error, InvalidError


def _convert(ann, text):
    if ann is bool:
        return text.lower() in ("1", "true", "yes", "on")
    if ann in (int, float):
        return ann(text)
    return text


def parse_kwargs(sig, argv, prog="entrypoint"):
    """Keyword arguments from `--name value` style argv, for signature sig
    (None: any argument is refused)."""
    p = argparse.ArgumentParser(prog=prog, add_help=True)
    if sig is not None:
        for param in sig.parameters.values():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            ann = param.annotation if param.annotation is not inspect._empty else None
            if ann is None and param.default is not inspect._empty and param.default is not None:
                ann = type(param.default)
            flag = "--" + param.name.replace("_", "-")
            required = param.default is inspect._empty
            if ann is bool:
                p.add_argument(flag, dest=param.name, action=argparse.BooleanOptionalAction,
                               required=required)
            else:
                p.add_argument(flag, dest=param.name, required=required,
                               type=(lambda t, a=ann: _convert(a, t)))
    ns, rest = p.parse_known_args(argv)
    if rest:
        raise InvalidError(f"unexpected arguments: {' '.join(rest)}")
    return {k: v for k, v in vars(ns).items() if v is not None}


def _choices(app):
    return (sorted(app._local_entrypoints) + sorted(app._functions)
            + [f"{c}.{m}" for c, cls in sorted(app._classes.items()) for m in sorted(cls._methods)])


def resolve(app, entry):
    """(callable, runs_locally, label) for ENTRY (or the default one)."""
    if not entry:
        if len(app._local_entrypoints) == 1:
            ep = next(iter(app._local_entrypoints.values()))
            return ep.raw_f, True, ep.name
        if not app._local_entrypoints and len(app._functions) == 1:
            fn = next(iter(app._functions.values()))
            return fn.remote, False, fn._name
        raise InvalidError(f"thaw: say which entrypoint to run (app.py::NAME); this app has: "
                           f"{', '.join(_choices(app)) or 'nothing to run'}")
    if entry in app._local_entrypoints:
        return app._local_entrypoints[entry].raw_f, True, entry
    if entry in app._functions:
        fn = app._functions[entry]
        return (fn.remote_gen if fn._is_generator() else fn.remote), False, entry
    if "." in entry:
        cname, mname = entry.split(".", 1)
        cls = app._classes.get(cname)
        if isinstance(cls, Cls) and mname in cls._methods:
            return getattr(cls(), mname).remote, False, entry
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
    fn, local, label = resolve(app, entry)
    sig = inspect.signature(fn) if local else _signature(app, label)
    kwargs = parse_kwargs(sig, list(argv), prog=f"thaw run {os.path.basename(app_file)}::{label}")
    result = fn(**kwargs)
    if inspect.iscoroutine(result):
        result = asyncio.run(result)
    if not local:
        if inspect.isgenerator(result):
            result = list(result)
        if result is not None:
            print(result)
    return 0


def _signature(app, label):
    """The signature of a remote entry's raw function (less `self` for a method)."""
    try:
        if label in app._functions:
            return inspect.signature(app._functions[label].get_raw_f())
        cname, mname = label.split(".", 1)
        raw = getattr(app._classes[cname]._user_cls, mname)
        sig = inspect.signature(raw)
        return sig.replace(parameters=list(sig.parameters.values())[1:])
    except (KeyError, ValueError, TypeError, AttributeError):
        return None


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
    except BaseException:  # noqa: BLE001
        traceback.print_exc()
        return 1


if __name__ == "__main__":
    sys.exit(main())
