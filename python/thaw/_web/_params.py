"""An endpoint function's parameters from the query string and the JSON body,
converted by their annotations as FastAPI does."""

import collections.abc
import dataclasses
import enum
import inspect
import json
import types
import typing
from urllib.parse import parse_qs

from ._http import _body


# -- parameters ----------------------------------------------------------

_MISSING = object()
_SIMPLE_TYPES = (str, int, float, bool, bytes)


class _Invalid(Exception):
    """A value that does not fit its parameter: one FastAPI error entry."""

    def __init__(self, type_, msg, value=None, loc=()):
        super().__init__(msg)
        self.type, self.msg, self.input, self.loc = type_, msg, value, list(loc)

    def entry(self, loc):
        return {"type": self.type, "loc": list(loc) + self.loc, "msg": self.msg, "input": self.input}


@dataclasses.dataclass
class _Param:
    name: str
    positional_only: bool
    annotation: object      # resolved; inspect.Parameter.empty when there is none
    default: object         # _MISSING when the parameter is required
    source: str             # "query" | "query_list" | "body"


def _parameters(target):
    hints = _type_hints(target)
    params = []
    for p in inspect.signature(target).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue   # FastAPI ignores *args and **kwargs too
        ann = hints.get(p.name, p.annotation)
        if isinstance(ann, str):
            ann = _eval_annotation(target, p.name, ann)
        ann = _unwrap_annotated(ann)
        default = _MISSING if p.default is p.empty else p.default
        params.append(_Param(p.name, p.kind == p.POSITIONAL_ONLY, ann, default, _source(ann)))
    return params


def _user_function(target):
    fn = getattr(target, "__func__", target)
    if not (inspect.isfunction(fn) or inspect.ismethod(fn)) and hasattr(fn, "__call__"):
        fn = getattr(fn, "__call__")
    return inspect.unwrap(getattr(fn, "__func__", fn))


def _type_hints(target):
    # Resolves string annotations (`from __future__ import annotations`);
    # one that cannot be resolved makes get_type_hints fail for all, so
    # each is then tried on its own (_eval_annotation).
    try:
        return typing.get_type_hints(_user_function(target))
    except Exception:
        return {}


def _eval_annotation(target, name, text):
    fn = _user_function(target)
    try:
        return eval(text, dict(getattr(fn, "__globals__", {})), {})  # noqa: S307 - the user's own annotation
    except Exception as e:
        raise TypeError(f"thaw: cannot resolve the annotation {text!r} of parameter {name!r} of "
                        f"{getattr(fn, '__qualname__', fn)} ({type(e).__name__}: {e}); a web "
                        "endpoint needs its parameters' types to read them from the request") from e


def _unwrap_annotated(ann):
    while typing.get_origin(ann) is typing.Annotated:
        ann = typing.get_args(ann)[0]
    return ann


def _union_members(ann):
    """The members of a Union / `X | Y` (None left out), or None if ann is
    not one."""
    if typing.get_origin(ann) in (typing.Union, types.UnionType):
        return [a for a in typing.get_args(ann) if a is not type(None)]
    return None


def _is_simple(ann):
    """Whether a parameter of this type is read from the query string (FastAPI:
    a "scalar" type)."""
    if ann is inspect.Parameter.empty or ann is typing.Any:
        return True
    members = _union_members(ann)
    if members is not None:
        return all(_is_simple(a) for a in members)
    if typing.get_origin(ann) is typing.Literal:
        return True
    return isinstance(ann, type) and (ann in _SIMPLE_TYPES or issubclass(ann, enum.Enum))


def _list_item(ann):
    """The item type of list[X] / List[X] / Optional[list[X]] with a simple X
    (read as a repeated query parameter), else None."""
    members = _union_members(ann)
    if members is not None:
        ann = members[0] if len(members) == 1 else None
    if typing.get_origin(ann) in (list, set, frozenset, tuple, collections.abc.Sequence):
        args = typing.get_args(ann)
        if len(args) == 1 and _is_simple(args[0]) and args[0] is not typing.Any:
            return args[0]
    return None


def _as_container(ann, items):
    """items (a list) as the container type that ann (list[X], set[X], tuple[X]
    or an Optional of one) names."""
    members = _union_members(ann)
    origin = typing.get_origin(members[0] if members else ann)
    return origin(items) if origin in (set, frozenset, tuple) else items


def _source(ann):
    if _is_simple(ann):
        return "query"
    if _list_item(ann) is not None:
        return "query_list"
    return "body"


def _bind(params, request):
    """(args, kwargs, FastAPI-shaped errors) for a call of the endpoint."""
    query = parse_qs(request.get("query") or "", keep_blank_values=True)
    body_params = [p for p in params if p.source == "body"]
    body = _MISSING
    if body_params:
        raw = _body(request)
        if raw.strip():
            try:
                body = json.loads(raw)
            except ValueError as e:
                return (), {}, [{"type": "json_invalid", "loc": ["body", getattr(e, "pos", 0)],
                                 "msg": "JSON decode error", "input": {},
                                 "ctx": {"error": getattr(e, "msg", str(e))}}]
        if len(body_params) > 1 and body is not _MISSING and not isinstance(body, dict):
            return (), {}, [_Invalid("model_attributes_type", "Input should be a valid "
                                     "dictionary or object to extract fields from", body).entry(["body"])]
    args, kwargs, errors = [], {}, []
    for p in params:
        try:
            if p.source == "body":
                value = _body_value(p, body, single=len(body_params) == 1)
            else:
                value = _query_value(p, query)
        except _Invalid as e:
            errors.append(e.entry(_loc(p, len(body_params) == 1)))
            continue
        if p.positional_only:
            args.append(value)
        else:
            kwargs[p.name] = value
    return args, kwargs, errors


def _loc(p, single_body):
    if p.source != "body":
        return ["query", p.name]
    return ["body"] if single_body else ["body", p.name]


def _missing(p):
    if p.default is _MISSING:
        raise _Invalid("missing", "Field required")
    return p.default


def _query_value(p, query):
    values = query.get(p.name)
    if values is None:
        return _missing(p)
    if p.source == "query_list":
        item = _list_item(p.annotation)
        converted = []
        for i, v in enumerate(values):
            try:
                converted.append(_from_string(item, v))
            except _Invalid as e:
                e.loc = [i] + e.loc
                raise
        return _as_container(p.annotation, converted)
    return _from_string(p.annotation, values[-1])   # the last one wins, as in FastAPI


def _body_value(p, body, single):
    if single:
        value = body
    elif body is _MISSING:
        value = _MISSING
    else:
        value = body.get(p.name, _MISSING)
    if value is _MISSING:
        return _missing(p)
    return _from_json(p.annotation, value)


# -- conversions ---------------------------------------------------------

_TRUE = {"1", "on", "t", "true", "y", "yes"}
_FALSE = {"0", "off", "f", "false", "n", "no"}


def _from_string(ann, raw):
    """A query string value converted to `ann` (messages as pydantic's)."""
    if ann in (inspect.Parameter.empty, typing.Any, str, object):
        return raw
    members = _union_members(ann)
    if members is not None:
        # pydantic prefers an exact match: a string stays one if str is allowed.
        if str in members:
            return raw
        error = None
        for member in members:
            try:
                return _from_string(member, raw)
            except _Invalid as e:
                error = error or e
        raise error or _Invalid("value_error", "Input should not be None", raw)
    if typing.get_origin(ann) is typing.Literal:
        for choice in typing.get_args(ann):
            if str(choice) == raw or (isinstance(choice, enum.Enum) and str(choice.value) == raw):
                return choice
        raise _Invalid("literal_error", "Input should be " + _choices(typing.get_args(ann)), raw)
    if ann is bool:
        lowered = raw.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise _Invalid("bool_parsing", "Input should be a valid boolean, unable to interpret input", raw)
    if ann is int:
        try:
            return int(raw)
        except ValueError:
            raise _Invalid("int_parsing", "Input should be a valid integer, unable to parse "
                           "string as an integer", raw) from None
    if ann is float:
        try:
            return float(raw)
        except ValueError:
            raise _Invalid("float_parsing", "Input should be a valid number, unable to parse "
                           "string as a number", raw) from None
    if ann is bytes:
        return raw.encode("utf-8")
    if isinstance(ann, type) and issubclass(ann, enum.Enum):
        for member in ann:
            if str(member.value) == raw:
                return member
        raise _Invalid("enum", "Input should be " + _choices([m.value for m in ann]), raw)
    return raw


def _choices(values):
    quoted = [repr(v) for v in values]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


def _from_json(ann, value):
    """A JSON body value converted to `ann`: containers checked, dataclasses
    and pydantic-like models built from objects."""
    if ann in (inspect.Parameter.empty, typing.Any, object):
        return value
    members = _union_members(ann)
    if members is not None:
        if value is None and type(None) in typing.get_args(ann):
            return None
        error = None
        for member in members:
            try:
                return _from_json(member, value)
            except _Invalid as e:
                error = error or e
        raise error or _Invalid("none_required", "Input should be None", value)
    origin = typing.get_origin(ann) or ann
    args = typing.get_args(ann)
    if origin in (dict, collections.abc.Mapping, collections.abc.MutableMapping):
        if not isinstance(value, dict):
            raise _Invalid("dict_type", "Input should be a valid dictionary", value)
        if len(args) == 2:
            return {k: _item(args[1], v, k) for k, v in value.items()}
        return value
    if origin in (list, set, frozenset, tuple, collections.abc.Sequence):
        if not isinstance(value, list):
            raise _Invalid("list_type", "Input should be a valid list", value)
        if len(args) == 1 or (origin is tuple and len(args) == 2 and args[1] is Ellipsis):
            value = [_item(args[0], v, i) for i, v in enumerate(value)]
        return origin(value) if origin in (set, frozenset, tuple) else value
    if typing.get_origin(ann) is typing.Literal or ann in _SIMPLE_TYPES or (
            isinstance(ann, type) and issubclass(ann, enum.Enum)):
        return _simple_from_json(ann, value)
    if isinstance(ann, type):
        return _build(ann, value)
    return value


def _item(ann, value, key):
    try:
        return _from_json(ann, value)
    except _Invalid as e:
        e.loc = [key] + e.loc
        raise


def _simple_from_json(ann, value):
    if isinstance(value, str):
        return _from_string(ann, value)
    if ann is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if ann is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(ann, type) and issubclass(ann, enum.Enum):
        try:
            return ann(value)
        except ValueError:
            raise _Invalid("enum", "Input should be " + _choices([m.value for m in ann]),
                           value) from None
    if typing.get_origin(ann) is typing.Literal:
        if value in typing.get_args(ann):
            return value
        raise _Invalid("literal_error", "Input should be " + _choices(typing.get_args(ann)), value)
    if type(value) is ann:
        return value
    names = {str: "a valid string", int: "a valid integer", float: "a valid number",
             bool: "a valid boolean", bytes: "a valid string"}
    raise _Invalid(f"{ann.__name__}_type", f"Input should be {names.get(ann, ann.__name__)}", value)


def _build(cls, value):
    """An instance of a model class from a JSON value: pydantic's
    model_validate when there is one, else cls(**object) (dataclasses and
    plain classes), fields of a dataclass converted by their types."""
    if isinstance(value, cls):
        return value
    validate = getattr(cls, "model_validate", None) or getattr(cls, "parse_obj", None)
    if callable(validate):
        try:
            return validate(value)
        except ValueError as e:   # pydantic's ValidationError is a ValueError
            raise _model_error(e, value) from None
    if not isinstance(value, dict):
        raise _Invalid("model_attributes_type", "Input should be a valid dictionary or object to "
                       "extract fields from", value)
    if dataclasses.is_dataclass(cls):
        value = _dataclass_fields(cls, value)
    try:
        return cls(**value)
    except TypeError as e:
        # e.g. a missing or unexpected field: the client's mistake, not the code's.
        raise _Invalid("value_error", f"Value error, {e}", value) from None


def _dataclass_fields(cls, value):
    try:
        hints = typing.get_type_hints(cls)
    except Exception:
        hints = {}
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    return {k: _item(hints[k], v, k) if k in hints and k in names else v for k, v in value.items()}


def _model_error(e, value):
    errors = getattr(e, "errors", None)
    if callable(errors):
        try:
            first = errors()[0]
            return _Invalid(first.get("type", "value_error"), first.get("msg", str(e)),
                            first.get("input", value), list(first.get("loc", ())))
        except Exception:
            pass
    return _Invalid("value_error", f"Value error, {e}", value)
