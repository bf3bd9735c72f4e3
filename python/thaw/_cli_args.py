"""Command-line arguments of `thaw run` entries: `--name value` options made
from a function's signature and converted by its type hints, as Modal's
`modal run` does: str, int, float, bool (`--flag` / `--no-flag`),
datetime.datetime (ISO 8601: 2024-05-01, 2024-05-01T12:30:00, ...), each
also as Optional[X] or X | None, and unannotated or Any as the text given.

Type hints are resolved with typing.get_type_hints, so that annotations
written as strings (`from __future__ import annotations`) convert like any
other; one that cannot be evaluated falls back to its text ("int",
"Optional[int]", "datetime.datetime"). A parameter of another type is only
refused when a value is given for it: entries whose other parameters are
given on the command line still run.
"""

import argparse
import datetime
import inspect
import re
import types
import typing

from .exception import InvalidError

_ANY = object()  # no annotation, or Any: the text as given

# Annotations as text (unevaluated) -> the type they name.
_NAMED = {
    "str": str, "int": int, "float": float, "bool": bool,
    "datetime": datetime.datetime, "datetime.datetime": datetime.datetime,
    "Any": _ANY, "typing.Any": _ANY,
}
_SUPPORTED = (str, int, float, bool, datetime.datetime)
_OPTIONAL_TEXT = (r"(?:typing\.)?Optional\[\s*([\w.]+)\s*\]", r"([\w.]+)\s*\|\s*None",
                  r"None\s*\|\s*([\w.]+)", r"(?:typing\.)?Union\[\s*([\w.]+)\s*,\s*None\s*\]")


class Param(typing.NamedTuple):
    name: str
    type: object     # one of _SUPPORTED, _ANY, or the annotation we cannot convert
    default: object  # inspect.Parameter.empty when required


def _unwrap_optional(t):
    """X for Optional[X] / Union[X, None] / X | None; t otherwise."""
    if typing.get_origin(t) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(t) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return t


def _from_text(text):
    text = text.strip()
    for pat in _OPTIONAL_TEXT:
        m = re.fullmatch(pat, text)
        if m:
            text = m.group(1)
            break
    return _NAMED.get(text, text)


def normalize(t):
    if t is None or t is inspect.Parameter.empty or t is typing.Any:
        return _ANY
    if isinstance(t, str):
        return _from_text(t)
    return _unwrap_optional(t)


def _hints(f):
    """The evaluated type hints of f; {} when they cannot all be evaluated
    (each parameter then falls back to its annotation's text)."""
    try:
        return typing.get_type_hints(f)
    except Exception:  # noqa: BLE001 - a name only the container imports, a typo
        return {}


def params_of(f, skip_first=False):
    """The parameters of f that can be given as options (not *args, **kwargs),
    with their types resolved; skip_first drops `self`."""
    sig = inspect.signature(f)
    hints = _hints(f)
    out = []
    for i, p in enumerate(sig.parameters.values()):
        if skip_first and i == 0:
            continue
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        out.append(make_param(p.name, hints.get(p.name, p.annotation), p.default))
    return out


def make_param(name, annotation, default=inspect.Parameter.empty):
    t = normalize(annotation)
    if t is _ANY and default is not inspect.Parameter.empty and type(default) in _SUPPORTED:
        t = type(default)  # `n=3` unannotated: an int, as thaw always took it
    return Param(name, t, default)


def type_name(t):
    """How a parameter's type is shown (introspection, errors)."""
    if t is _ANY:
        return None
    if t is datetime.datetime:
        return "datetime"
    return getattr(t, "__name__", None) or str(t)


def _parse_datetime(text):
    try:
        return datetime.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date and time in ISO 8601 format (e.g. 2024-05-01, "
            f"2024-05-01T12:30:00 or '2024-05-01 12:30:00')") from None


def _converter(param):
    t = param.type
    if t is _ANY or t is str:
        return str
    if t is int or t is float:
        def convert(text):
            try:
                return t(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"{text!r} is not {'an int' if t is int else 'a float'}") \
                    from None
        return convert
    if t is datetime.datetime:
        return _parse_datetime

    def refuse(text):
        raise argparse.ArgumentTypeError(
            f"its type {t!r} cannot be given on the command line (thaw run converts str, int, "
            f"float, bool, datetime.datetime and Optional of them); leave it out, or pass it from "
            f"a @app.local_entrypoint()")
    return refuse


def _negative_values_joined(argv, takes_value):
    """argv with `--flag -1e3` as `--flag=-1e3`: argparse takes a value that
    starts with '-' for an option unless it looks like `-1` or `-.5`."""
    out = []
    i = 0
    while i < len(argv):
        if argv[i] in takes_value and i + 1 < len(argv) and argv[i + 1].startswith("-"):
            try:
                float(argv[i + 1])
            except ValueError:
                pass
            else:
                out.append(f"{argv[i]}={argv[i + 1]}")
                i += 2
                continue
        out.append(argv[i])
        i += 1
    return out


def parse_kwargs(params, argv, prog="entrypoint"):
    """Keyword arguments from `--name value` style argv for params (a list of
    Param; None: any argument is refused). Errors exit through argparse
    (status 2) with the option named."""
    # No prefixes (`--verb` for `--verbose`): a parameter added later would
    # change what an old command line means. click, behind `modal run`,
    # takes none either.
    p = argparse.ArgumentParser(prog=prog, add_help=True, allow_abbrev=False)
    takes_value = set()
    for param in params or ():
        flag = "--" + param.name.replace("_", "-")
        required = param.default is inspect.Parameter.empty
        if param.type is bool:
            p.add_argument(flag, dest=param.name, action=argparse.BooleanOptionalAction,
                           required=required)
        else:
            takes_value.add(flag)
            p.add_argument(flag, dest=param.name, required=required, type=_converter(param),
                           metavar=(type_name(param.type) or "TEXT").upper())
    ns, rest = p.parse_known_args(_negative_values_joined(list(argv), takes_value))
    if rest:
        raise InvalidError(f"unexpected arguments: {' '.join(rest)}")
    return {k: v for k, v in vars(ns).items() if v is not None}
