"""App.lookup(name): a handle on a deployed app, made from what the runtime
reads of its current version, with a from_name() handle for each of its
functions and classes."""

from . import _client
from .exception import ExecutionError, InvalidError, NotFoundError


def lookup_app(app_type, name, create_if_missing):
    if not isinstance(name, str) or not name:
        raise InvalidError(f"App.lookup({name!r}): an app's name is a non-empty string")
    reply = _client.get_client().request({"type": "lookup_app", "id": _client.next_id(), "app": name})
    if reply.get("type") == "error":
        if reply.get("kind") != "not_found":
            raise InvalidError(f"App.lookup({name!r}): {reply.get('error')}")
        if not create_if_missing:
            raise NotFoundError(f"App.lookup({name!r}): {reply.get('error')} (or pass "
                                f"create_if_missing=True for an empty handle)")
        # A thaw app exists in the store only as a deployed version, made by
        # `thaw deploy`: the handle is empty until then, and stores nothing.
        return app_type._handle(name, version=0, functions={})
    if reply.get("type") != "found_app":
        raise ExecutionError(f"App.lookup({name!r}): unexpected reply from the runtime: {reply}")
    return app_type._handle(name, version=reply["version"], functions=reply.get("functions") or {})


def handles(app_name, functions):
    """({name: Function}, {name: Cls}) for the runtime's description of the
    app's functions and classes, as Function/Cls.from_name would make them,
    already found."""
    from ._functions import Cls, Function
    fns, classes = {}, {}
    for name, desc in sorted(functions.items()):
        config = desc.get("config") if isinstance(desc.get("config"), dict) else None
        if desc.get("kind") == "class":
            obj = Cls(name=name, app_name=app_name, from_name=True, config=config,
                      methods=(config or {}).get("methods") or {m: {} for m in desc.get("methods") or []})
            classes[name] = obj
        else:
            obj = Function(name=name, app_name=app_name, from_name=True, config=config)
            fns[name] = obj
        obj._found = True  # the runtime has just described it
    return fns, classes
