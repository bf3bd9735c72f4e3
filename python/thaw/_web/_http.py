"""Responses and request fields, as the runtime exchanges them (docs/runtime-
protocol.md, "Web requests")."""

import base64
import collections.abc
import dataclasses
import datetime
import decimal
import enum
import json
import pathlib
import types
import uuid


def _response(status, headers, body):
    return {"status": int(status),
            "headers": [[_text(k), _text(v)] for k, v in headers],
            "body_b64": base64.b64encode(bytes(body)).decode("ascii")}


def _text(s):
    """A header name or value as the str the runtime writes back as UTF-8:
    bytes (ASGI, raw_headers) that are UTF-8 keep their bytes that way; any
    others are read as latin-1, which maps every byte."""
    if not isinstance(s, (bytes, bytearray)):
        return str(s)
    try:
        return bytes(s).decode("utf-8")
    except UnicodeDecodeError:
        return bytes(s).decode("latin-1")


def _raw(s):
    # The runtime hands over the request's bytes decoded as UTF-8 (its JSON
    # needs valid UTF-8): encoding them again gives the bytes back.
    return str(s).encode("utf-8")


def _native(s):
    # PEP 3333's "native strings": each byte of the request as one latin-1 char.
    return _raw(s).decode("latin-1")


def _json_response(status, value, headers=()):
    return _response(status, [["content-type", "application/json"], *headers], _json_bytes(value))


def _json_bytes(value):
    # As FastAPI's JSONResponse: compact, UTF-8, and no NaN (not JSON).
    return json.dumps(value, default=_jsonable, ensure_ascii=False, allow_nan=False,
                      separators=(",", ":")).encode("utf-8")


def _body(request):
    return base64.b64decode(request.get("body_b64") or "")


def _header(request, name):
    """The value of a request header (repeats joined with ","), or None."""
    values = [v for k, v in request.get("headers") or () if k.lower() == name]
    return ",".join(values) if values else None


def _address(pair):
    return (str(pair[0]), int(pair[1])) if pair else None


def _jsonable(o):
    """json.dumps's default: what FastAPI's jsonable_encoder makes of the
    common types that JSON lacks."""
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return dataclasses.asdict(o)
    for name in ("model_dump", "dict"):   # pydantic v2, v1
        method = getattr(o, name, None)
        if callable(method):
            return method()
    if isinstance(o, (set, frozenset, types.GeneratorType, collections.abc.KeysView,
                      collections.abc.ValuesView)):
        return list(o)
    if isinstance(o, (bytes, bytearray, memoryview)):
        try:
            return bytes(o).decode("utf-8")
        except UnicodeDecodeError:
            return bytes(o).decode("latin-1")
    if isinstance(o, enum.Enum):
        return o.value
    if isinstance(o, (datetime.date, datetime.time)):
        return o.isoformat()
    if isinstance(o, datetime.timedelta):
        return o.total_seconds()
    if isinstance(o, decimal.Decimal):
        return int(o) if o.as_tuple().exponent >= 0 else float(o)
    if isinstance(o, (uuid.UUID, pathlib.PurePath)):
        return str(o)
    if callable(getattr(o, "tolist", None)):   # numpy arrays and scalars
        return o.tolist()
    if hasattr(o, "__dict__") and not isinstance(o, type):
        return {k: v for k, v in vars(o).items() if not k.startswith("_")}
    raise TypeError(f"thaw: the web endpoint returned a {type(o).__name__}, which cannot be "
                    "encoded as JSON (return a dict, list, str, number, dataclass or model, "
                    "or a Response)")
