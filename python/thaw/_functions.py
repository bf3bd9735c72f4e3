"""Function, Cls, their instances and method handles, and FunctionCall: the
objects @app.function / @app.cls return, with .remote(), .local(), .spawn(),
.map() and friends.
"""

import asyncio
import base64
import concurrent.futures
import copy
import hashlib
import inspect
import os

from . import _client, _state
from ._aio import aio_method
from ._batch import call_as_batch_of_one, check_params
from ._config import inputs_at_once, merge_options, options, sha256_json
from ._partial import ENTER_POST, ENTER_PRE, EXIT, METHOD, Parameter
from ._protocol import dump_payload, load_payload
from ._state import warn
from ._volume import thaw_home
from .exception import TimeoutError as ThawTimeoutError
from .exception import (ExecutionError, FunctionTimeoutError, InvalidError, NotFoundError,
                        RemoteError)

PARAMS_KEY = "__thaw_params__"  # class parameters ride inside the kwargs payload
MAP_PARALLELISM = 32


# ---------------------------------------------------------------- call routing
class _Target:
    """Where a remote call goes: app, function (or class) and method."""

    def __init__(self, owner, method=None, params=None):
        self.owner = owner          # a Function or a Cls
        self.method = method
        self.params = params        # (args, kwargs) of a class instance, or None

    @property
    def label(self):
        return f"{self.owner._app_name_for_call()}.{self.owner._name}" + \
            (f".{self.method}" if self.method else "")

    def message(self, args, kwargs):
        mode, app_file = self.owner._route()
        definition = self.owner._definition() if mode == "ephemeral" else None
        routed = None
        if self.params is not None:
            kwargs = {**kwargs, PARAMS_KEY: self.params}
            # As given (the runtime fills in the defaults): its containers.
            try:
                if not self.params.get("args"):
                    routed = {k: param_json(v) for k, v in self.params.get("kwargs", {}).items()}
            except TypeError:
                routed = None
        return {
            "type": "call",
            "id": _client.next_id(),
            "app": self.owner._app_name_for_call(),
            "function": self.owner._name,
            "method": self.method,
            "args": dump_payload(tuple(args)),
            "kwargs": dump_payload(dict(kwargs)),
            "mode": mode,
            "app_file": app_file,
            **({"definition": definition} if definition else {}),
            **({"options": self.owner._options} if self.owner._options else {}),
            **({"params": routed} if routed else {}),
        }


def _reply_error(reply, label):
    """The exception a failed result stands for."""
    tb = reply.get("traceback") or ""
    text = reply.get("error") or "unknown error"
    exc = None
    if reply.get("exception"):
        try:
            exc = load_payload(reply["exception"])
        except Exception:  # noqa: BLE001 - e.g. the class does not exist here
            exc = None
    # SystemExit or KeyboardInterrupt raised again here would end the caller
    # (sys.exit(0) in the function: the caller gone with status 0, no word).
    if isinstance(exc, BaseException) and not isinstance(exc, (SystemExit, KeyboardInterrupt, GeneratorExit)):
        if tb and hasattr(exc, "add_note"):
            exc.add_note(f"\nRemote traceback ({label}):\n{tb.rstrip()}")
        return exc
    # The runtime names the function in its own messages; say it once.
    if text.startswith(f"{label}: "):
        text = text[len(label) + 2:]
    if text.startswith("FunctionTimeoutError"):
        text = text[len("FunctionTimeoutError"):].lstrip(": ")
        return FunctionTimeoutError(text if label in text else f"{label}: {text}")
    if tb:
        # The runtime's own sentences ("the container of X failed to start:
        # ...") are not something the call raised.
        said = f"{label}: {text}" if text.startswith("the container of ") else f"{label} raised {text}"
        return RemoteError(f"{said}\n\nRemote traceback:\n{tb.rstrip()}")
    return ExecutionError(f"{label}: {text}")


def _value(reply, label):
    if reply.get("type") == "error":
        raise ExecutionError(f"{label}: {reply.get('error') or reply}")
    if reply.get("type") != "result":
        raise ExecutionError(f"{label}: unexpected reply from the runtime: {reply}")
    if reply.get("ok"):
        if "value" in reply and reply["value"] is not None:
            return load_payload(reply["value"])
        return reply.get("value_json")
    raise _reply_error(reply, label)


def _stream_remote(target, args, kwargs):
    """Run a generator remotely; yields its values as they arrive."""
    target.owner._ensure_found()
    msg = target.message(args, kwargs)
    msg["stream"] = True
    pending = _client.get_client().start(msg)
    for m in pending.stream():
        if m.get("type") == "yield":
            yield load_payload(m["value"])
            continue
        _value(m, target.label)  # raises what the generator raised
        if "streamed" not in m:  # the worker streams whatever a generator yields
            raise InvalidError(f"{target.label} is not a generator: use .remote()")


def _call_remote(target, args, kwargs):
    """Run one call remotely. (retries= is the runtime's: it runs a failed
    call again before replying, for every caller.)"""
    target.owner._ensure_found()
    reply = _client.get_client().request(target.message(args, kwargs))
    return _value(reply, target.label)


def _valid_call_id(s):
    """fc- and 24 lower-case hex digits, as the runtime makes them."""
    return len(s) == 27 and all(c in "0123456789abcdef" for c in s[3:])


class FunctionCall:
    """A spawned call; .get() waits for its result. Its object_id (`fc-…`)
    names it to any process using the same thaw home: FunctionCall.from_id."""

    def __init__(self, target, args, kwargs):
        self._target = target
        self._args, self._kwargs = args, kwargs
        target.owner._ensure_found()
        msg = target.message(args, kwargs)
        self._pending, self._reply = _client.get_client().spawn(msg)
        if self._reply is not None and self._reply.get("type") == "error":
            raise ExecutionError(f"{target.label}: {self._reply.get('error')}")
        call_id = self._pending.call_id if self._pending is not None else None
        self.object_id = call_id or f"fc-{msg['id']}"
        self._by_id = False

    @classmethod
    def from_id(cls, function_call_id, client=None):
        """A handle on a call spawned by any process (its `object_id`); the
        runtime keeps results for 7 days."""
        if not isinstance(function_call_id, str) or not function_call_id.startswith("fc-"):
            raise InvalidError(f"FunctionCall.from_id({function_call_id!r}): a function call id "
                               f"is a string like 'fc-…' (FunctionCall.object_id)")
        fc = cls.__new__(cls)
        fc._target = None
        fc._pending, fc._reply = None, None
        fc.object_id = function_call_id
        fc._by_id = True
        return fc

    @aio_method
    def get(self, timeout=None):
        """The call's result. Raises thaw.exception.TimeoutError if it is not
        ready within timeout seconds (call get() again later; 0 polls), and
        the call's own exception if it failed."""
        if self._by_id:
            return self._get_by_id(timeout)
        try:
            reply = self._reply if self._pending is None else self._pending.wait(timeout)
        except ThawTimeoutError:
            raise ThawTimeoutError(f"{self._target.label}: function call {self.object_id}: no result "
                                   f"within {timeout} s (it is still running; call get() again "
                                   f"later)") from None
        return _value(reply, self._target.label)

    def _get_by_id(self, timeout):
        label = f"function call {self.object_id}"
        if self._reply is None:
            msg = {"type": "get", "id": _client.next_id(), "call_id": self.object_id}
            if timeout is not None:
                msg["timeout"] = max(float(timeout), 0.0)
            reply = _client.get_client().request(msg)
            if reply.get("type") == "timeout":
                raise ThawTimeoutError(f"{label}: no result within {timeout} s (it is still "
                                           f"running; call get() again later)")
            if reply.get("type") == "error" and reply.get("kind") == "not_found":
                raise NotFoundError(reply.get("error"))
            self._reply = reply
        return _value(self._reply, label)

    def num_inputs(self):
        return 1

    def get_call_graph(self):
        return []

    @aio_method
    def cancel(self, terminate_containers=False):
        """Cancel the call: one still queued never runs; a running one is
        answered as cancelled at once, and the container running it takes no
        more inputs and is stopped once its other inputs are done (so its
        code stops too; terminate_containers makes no difference here). A
        later get() raises ExecutionError saying it was cancelled."""
        if not self.object_id.startswith("fc-") or not _valid_call_id(self.object_id):
            # A runtime without call ids (older): stop waiting, as before.
            if self._pending is not None:
                self._pending.cancel()
            return
        reply = _client.get_client().request(
            {"type": "cancel", "id": _client.next_id(), "call_id": self.object_id})
        if reply.get("type") == "error":
            if reply.get("kind") == "not_found":
                raise NotFoundError(reply.get("error"))
            raise ExecutionError(f"function call {self.object_id}: {reply.get('error')}")

    class _Gather:
        """FunctionCall.gather(*calls): their results, in order; its .aio
        awaits them together."""

        def __call__(self, *calls):
            return [c.get() for c in calls]

        async def aio(self, *calls):
            return list(await asyncio.gather(*(c.get.aio() for c in calls)))

    gather = _Gather()


def _map(target, iterators, kwargs, order_outputs, return_exceptions, local_fn=None):
    inputs = list(zip(*iterators))
    if not inputs:
        return
    if local_fn is None:
        target.owner._ensure_found()
        _client.get_client()  # start the runtime from this thread, not a pool thread

        def run(args):
            return _call_remote(target, args, kwargs)
    else:
        def run(args):
            return local_fn(*args, **kwargs)
    cfg = {**(target.owner._config or {}), **((target.owner._options or {}).get("config") or {})}
    width = MAP_PARALLELISM
    if cfg.get("max_containers"):
        width = min(width, cfg["max_containers"] * inputs_at_once(cfg))
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=min(width, len(inputs)))
    try:
        futures = [pool.submit(run, a) for a in inputs]
        seq = futures if order_outputs else concurrent.futures.as_completed(futures)
        for fut in seq:
            try:
                yield fut.result()
            except Exception as e:  # noqa: BLE001
                if return_exceptions:
                    yield e
                else:
                    raise
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


class _Callable:
    """The calling surface shared by Function and class method handles."""

    def _target(self):
        raise NotImplementedError

    def _local_callable(self):
        raise NotImplementedError

    def _is_generator(self):
        return False

    @aio_method
    def remote(self, *args, **kwargs):
        """Run the call in a container of the app and return its result."""
        self._target().owner._ensure_found()  # a from_name() handle learns what it calls
        if self._is_generator():
            raise InvalidError(f"{self._target().label} is a generator: use .remote_gen()")
        return _call_remote(self._target(), args, kwargs)

    @aio_method(iterates=True)
    def remote_gen(self, *args, **kwargs):
        """Run a generator remotely and yield its values as it yields them."""
        return _stream_remote(self._target(), args, kwargs)

    def _refuse_generator(self, how):
        self._target().owner._ensure_found()
        if self._is_generator():
            raise InvalidError(f"{self._target().label} is a generator: it cannot be called with "
                               f".{how}(); use .remote_gen()")

    def local(self, *args, **kwargs):
        """Run the call in this process (for a class: on a local instance whose
        @enter hooks have run)."""
        return self._local_callable()(*args, **kwargs)

    @aio_method
    def spawn(self, *args, **kwargs):
        """Start the call and return a FunctionCall whose .get() gives the result."""
        self._refuse_generator("spawn")
        return FunctionCall(self._target(), args, kwargs)

    @aio_method(iterates=True)
    def map(self, *input_iterators, kwargs={}, order_outputs=True,  # noqa: B006 - Modal's API
            return_exceptions=False, wrap_returned_exceptions=True):
        """Call once per input (one input = one item from each iterator), in
        parallel; yields the results (in input order unless order_outputs=False)."""
        self._refuse_generator("map")
        return _map(self._target(), input_iterators, kwargs, order_outputs, return_exceptions)

    @aio_method(iterates=True)
    def starmap(self, input_iterator, *, kwargs={}, order_outputs=True,  # noqa: B006
                return_exceptions=False, wrap_returned_exceptions=True):
        """Like map, with each input an iterable of arguments."""
        self._refuse_generator("starmap")
        items = [tuple(x) for x in input_iterator]
        cols = list(zip(*items)) if items else []
        return _map(self._target(), cols, kwargs, order_outputs, return_exceptions)

    @aio_method
    def for_each(self, *input_iterators, kwargs={}, ignore_exceptions=False):  # noqa: B006
        """map() for side effects: waits for all calls, returns None."""
        self._refuse_generator("for_each")
        for _ in _map(self._target(), input_iterators, kwargs, True, ignore_exceptions):
            pass

    @aio_method
    def spawn_map(self, *input_iterators, kwargs={}):  # noqa: B006
        """Start a call per input and return without waiting."""
        self._refuse_generator("spawn_map")
        for args in zip(*input_iterators):
            FunctionCall(self._target(), args, kwargs)

    def __call__(self, *args, **kwargs):
        return self.local(*args, **kwargs)


class _Object:
    """What Function and Cls share: name, app, config, routing."""

    _options = None  # Cls.with_options & co: overrides of the deployed configuration

    def _init_common(self, name, app, config, image, secrets, volumes, app_name=None,
                     from_name=False):
        self._name = name
        self._app = app
        self._config = config
        self._image = image
        self._secrets = list(secrets or [])
        self._volumes = dict(volumes or {})
        self._app_name = app_name
        self._from_name = from_name
        self._found = not from_name

    def _app_name_for_call(self):
        if self._app_name:
            return self._app_name
        return self._app.name if self._app is not None else None

    def _route(self):
        """(mode, app_file) for a call."""
        if self._from_name:
            return "deployed", None
        if _state.mode == "ephemeral":
            return "ephemeral", _state.app_file or (self._app._file if self._app else None)
        return "deployed", None

    def _query(self, kind, **fields):
        """A request about this function to the runtime (`lookup`, `stats`),
        routed as a call would be: an ephemeral app's carries its file and
        definition."""
        mode, app_file = self._route()
        msg = {"type": kind, **fields, "app": self._app_name_for_call(), "function": self._name, "mode": mode}
        if app_file:
            msg["app_file"] = app_file
        definition = self._definition() if mode == "ephemeral" else None
        if definition:
            msg["definition"] = definition
        return _client.get_client().request(msg)

    def _ensure_found(self):
        if self._found:
            return
        reply = _client.get_client().request(
            {"type": "lookup", "app": self._app_name, "function": self._name})
        if reply.get("type") != "found":
            raise NotFoundError(reply.get("error") or
                                f"thaw: {self._app_name}.{self._name} is not deployed: run "
                                f"`thaw deploy app.py`")
        self._found = True
        config = reply.get("config")
        if self._config is None and isinstance(config, dict):
            self._config = config  # the deployed definition's
            if isinstance(self, Cls) and not self._methods:
                self._methods = dict(config.get("methods") or {})

    def _web_url(self, method, default_segment):
        """`thaw serve --http`'s URL of the endpoint (the function, or the
        class's `method`), asked of the runtime; None when it is not one."""
        def web_of(config):
            if method is None:
                return config.get("web_endpoint")
            return ((config.get("methods") or {}).get(method) or {}).get("web_endpoint")
        # A local definition says itself whether it is an endpoint: no runtime needed.
        if self._config is not None and not web_of(self._config):
            return None
        reply = self._query("lookup")
        if reply.get("type") != "found":
            raise NotFoundError(reply.get("error") or f"thaw: {self._name} is not deployed")
        web = web_of(self._config if self._config is not None else (reply.get("config") or {}))
        if not web:
            return None
        if not reply.get("web_url"):
            warn("thaw: the runtime serves no web endpoints (start it with `thaw serve --http "
                 "PORT`); get_web_url() returns None")
            return None
        return f"{reply['web_url']}/{web.get('label') or default_segment}"

    def hydrate(self, client=None):
        """Check that a from_name() object exists (a no-op for local definitions)."""
        self._ensure_found()
        return self

    @property
    def config(self):
        """This function's or class's configuration as a JSON-able dict."""
        if self._config is None:
            raise InvalidError(f"{self._name} was looked up with from_name(); its config "
                               f"lives in the deployed app.json")
        return self._config

    @property
    def object_id(self):
        return f"fu-{self._app_name_for_call()}-{self._name}"

    def with_options(self, **kwargs):
        warn(f"thaw: {self._name}.with_options({', '.join(kwargs)}) is not supported: "
             f"containers run with the configuration the app was deployed with")
        return self

    def with_concurrency(self, **kwargs):
        return self.with_options(**kwargs)

    def with_batching(self, **kwargs):
        return self.with_options(**kwargs)

    def update_autoscaler(self, *, min_containers=None, max_containers=None, buffer_containers=None,
                          scaledown_window=None):
        """Change how the deployed function (or class) scales, while it runs.
        Settings not given keep their value: the decorator's, or an earlier
        update's. Every runtime sharing THAW_HOME applies them (`thaw serve`
        starts the containers a raised min_containers asks for); the next
        `thaw deploy` of the app resets them to the decorator's, as in Modal."""
        where = f"{self._name}.update_autoscaler"
        settings = {}
        for name, value, low in (("min_containers", min_containers, 0), ("max_containers", max_containers, 1),
                                 ("buffer_containers", buffer_containers, 0)):
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 1000:
                raise InvalidError(f"{where}({name}={value!r}): an integer from {low} to 1000")
            settings[name] = value
        if scaledown_window is not None:
            if isinstance(scaledown_window, bool) or not isinstance(scaledown_window, (int, float)) \
                    or not scaledown_window > 0:
                raise InvalidError(f"{where}(scaledown_window={scaledown_window!r}): seconds, more than 0")
            settings["scaledown_window"] = scaledown_window
        if self._options:
            raise InvalidError(f"{where}(): a handle made by with_options() & co scales with the "
                               f"settings it was given; update the class itself")
        mode, app_file = self._route()
        msg = {"type": "autoscaler", "app": self._app_name_for_call(), "function": self._name,
               "mode": mode, "settings": settings}
        if app_file:
            msg["app_file"] = app_file
        reply = _client.get_client().request(msg)
        if reply.get("type") != "updated":
            error = reply.get("error") or f"thaw: {where}() failed"
            if error.startswith("update_autoscaler:"):
                raise InvalidError(error)
            raise NotFoundError(error)

    @aio_method
    def get_current_stats(self):
        """A FunctionStats: `backlog`, the inputs waiting for a container,
        and `num_total_runners`, the containers up or starting, in the
        runtime this process calls through (the `thaw serve` at
        THAW_RUNTIME_SOCKET, else the one this process started). Raises
        NotFoundError when the function is not deployed (or not in the
        running app)."""
        from ._stats import current_stats
        return current_stats(self)

    def keep_warm(self, warm_pool_size):
        """Modal's old name for update_autoscaler(min_containers=warm_pool_size)."""
        from .exception import DeprecatedWarning
        warn("thaw: keep_warm() is Modal's old name for update_autoscaler(min_containers=...)",
             DeprecatedWarning)
        self.update_autoscaler(min_containers=warm_pool_size)

    def _env(self):
        """The environment of this function's containers: Image.env, then
        secrets, then env= (later ones win; None removes a variable)."""
        env = dict(self._image.env_vars) if self._image is not None else {}
        for s in self._secrets:
            env.update(s.resolve())
        env.update((self._config or {}).get("env", {}))
        return {k: v for k, v in env.items() if v is not None}

    def _spec_common(self):
        """The introspection entry (secrets resolved)."""
        config = dict(self._config)
        config["secrets"] = [s.describe(resolve=True) for s in self._secrets]
        image = self._image.describe()
        serialized = None
        if self._is_serialized():
            # In the config, so that the snapshot key changes with what the
            # containers load (a closure's values, not only the file's text).
            payload, sha = self._serialized()
            config["serialized_sha256"] = sha
            serialized = {"sha256": sha, "path": str(_serialized_path(sha)), "bytes": len(payload)}
        return {
            "name": self._name,
            "config": config,
            "config_sha256": sha256_json(config),
            "image": image,
            "image_sha256": sha256_json(image),
            "env": self._env(),
            "volumes": {p: v.name for p, v in sorted(self._volumes.items())},
            **({"serialized_function": serialized} if serialized else {}),
        }

    # -- serialized=True: the function or class object itself goes to its
    # containers (cloudpickled), which load it instead of importing the app
    # file and finding it by name, so it need not be at global scope.
    def _is_serialized(self):
        local = getattr(self, "_raw_f", None) or getattr(self, "_user_cls", None)
        return local is not None and bool((self._config or {}).get("serialized"))

    def _serialized(self):
        """(payload, sha256) of this object as its containers load it;
        pickled once, on first use (not at decoration: globals the function
        uses may be defined after it, as in a script)."""
        cached = self.__dict__.get("_serialized_cache")
        if cached is None:
            ship = copy.copy(self)
            ship.__dict__.pop("_serialized_cache", None)
            ship.__dict__.pop("_definition_cache", None)
            # Not the App (every other function with it) nor the secrets'
            # values: containers get their environment from the runtime, and
            # calls made in them name the app.
            ship._app_name = self._app_name_for_call()
            ship._app = None
            ship._secrets = []
            ship._options = None  # handles' options reach containers from the runtime
            try:
                payload = dump_payload(ship)
            except Exception as e:  # noqa: BLE001 - whatever the function holds
                raise InvalidError(f"{self._name}: serialized=True could not pickle it: "
                                   f"{type(e).__name__}: {e}") from e
            cached = self._serialized_cache = (payload, hashlib.sha256(payload).hexdigest())
        return cached

    def _write_serialized(self):
        """Store the payload where the runtime's containers read it
        ($THAW_HOME/serialized/<sha256>.pkl; named by content, so written
        once and never changed), held for as long as this process runs."""
        from ._serialized_files import hold
        payload, sha = self._serialized()
        path = _serialized_path(sha)
        hold(path, payload)
        return path

    def _definition(self):
        """For a call to an ephemeral app: the introspection entry of a
        serialized function, which the runtime cannot find by importing the
        app file (defined in a function, or under `if __name__ ==
        "__main__":`); None for others."""
        if not self._is_serialized():
            return None
        cached = self.__dict__.get("_definition_cache")
        if cached is None:
            self._write_serialized()
            cached = self._definition_cache = self.spec()
        if self._route()[1] is None:
            # No app file (a notebook, the REPL): its containers work where
            # the caller does, as they would in the app file's directory.
            return {**cached, "cwd": os.getcwd()}
        return cached


def _serialized_path(sha):
    return thaw_home() / "serialized" / f"{sha}.pkl"


# ---------------------------------------------------------------- functions
class Function(_Object, _Callable):
    """A function registered with @app.function (or looked up by from_name)."""

    def __init__(self, raw_f=None, *, name, app=None, config=None, image=None, secrets=(),
                 volumes=None, app_name=None, from_name=False, batched=False):
        self._raw_f = raw_f
        self._batched = batched
        self._init_common(name, app, config, image, secrets, volumes, app_name, from_name)
        if raw_f is not None:
            self.__name__ = getattr(raw_f, "__name__", name)
            self.__qualname__ = getattr(raw_f, "__qualname__", name)
            self.__doc__ = getattr(raw_f, "__doc__", None)
            self.__module__ = getattr(raw_f, "__module__", None)
            self.__wrapped__ = raw_f

    @staticmethod
    def from_name(app_name, name, *, namespace=None, environment_name=None, client=None):
        """A handle on function `name` of the deployed app `app_name`."""
        if "." in name:
            cls_name, method = name.split(".", 1)
            return getattr(Cls.from_name(app_name, cls_name)(), method)
        return Function(name=name, app_name=app_name, from_name=True)

    lookup = from_name

    def _target(self):
        return _Target(self)

    def _is_generator(self):
        return bool(self._config and self._config.get("is_generator"))

    def _local_callable(self):
        if self._raw_f is None:
            raise InvalidError(f"{self._name} was looked up with from_name(); it has no local "
                               f"code to run with .local()")
        if self._batched:
            return lambda *a, **kw: call_as_batch_of_one(self._raw_f, a, kw)
        return self._raw_f

    def get_raw_f(self):
        return self._raw_f

    def get_web_url(self):
        """The URL this web endpoint answers at (`thaw serve --http`), or
        None for a function that is not one."""
        return self._web_url(None, self._name)

    @property
    def info(self):
        return {"name": self._name, "app": self._app_name_for_call()}

    def spec(self):
        d = {"kind": "function", "qualname": getattr(self._raw_f, "__qualname__", self._name)}
        d.update(self._spec_common())
        return d

    def __repr__(self):
        return f"<thaw.Function {self._app_name_for_call()}.{self._name}>"


# ---------------------------------------------------------------- classes
class Cls(_Object):
    """A class registered with @app.cls (or looked up by from_name). Calling it
    gives an instance handle whose methods have .remote(), .local(), ..."""

    def __init__(self, user_cls=None, *, name, app=None, config=None, image=None, secrets=(),
                 volumes=None, app_name=None, from_name=False, methods=None, lifecycle=None,
                 parameters=None):
        self._user_cls = user_cls
        self._methods = dict(methods or {})      # name → {"is_generator": bool, "batched": bool}
        self._lifecycle = lifecycle or {ENTER_PRE: [], ENTER_POST: [], EXIT: []}
        self._parameters = dict(parameters or {})  # name → Parameter
        self._init_common(name, app, config, image, secrets, volumes, app_name, from_name)
        if user_cls is not None:
            self.__name__ = user_cls.__name__
            self.__qualname__ = user_cls.__qualname__
            self.__doc__ = user_cls.__doc__
            self.__module__ = user_cls.__module__
            self.__wrapped__ = user_cls

    @staticmethod
    def from_name(app_name, name, *, namespace=None, environment_name=None, client=None):
        """A handle on class `name` of the deployed app `app_name`."""
        return Cls(name=name, app_name=app_name, from_name=True)

    lookup = from_name

    def __call__(self, *args, **kwargs):
        return Obj(self, args, kwargs)

    # -- handles with other settings (Modal's Cls.with_options & co). Each
    # has containers of its own; settings that change what the snapshot
    # phase sees (gpu, env, secrets, volumes) get a snapshot of their own.
    def with_options(self, **kwargs):
        """A handle whose containers run with these settings instead of the
        deployed ones: cpu, memory, gpu, env, secrets, volumes, retries,
        max_containers, buffer_containers, scaledown_window, timeout."""
        return self._with(options(f"{self._name}", kwargs))

    def with_concurrency(self, *, max_inputs, target_inputs=None):
        """A handle whose containers take up to max_inputs inputs at once."""
        if isinstance(max_inputs, bool) or not isinstance(max_inputs, int) or max_inputs < 1:
            raise InvalidError(f"{self._name}.with_concurrency(max_inputs={max_inputs!r}): a "
                               f"positive integer")
        if any(m.get("batched") for m in self._methods.values()):
            raise InvalidError(f"{self._name}.with_concurrency(): the class has a @batched method, "
                               f"and @batched cannot be combined with @concurrent")
        return self._with({"config": {"max_concurrent_inputs": max_inputs,
                                      "target_concurrent_inputs": target_inputs}})

    def with_batching(self, *, max_batch_size, wait_ms):
        """A handle whose @batched method gathers batches of these limits."""
        check_params(max_batch_size, wait_ms)
        if self._user_cls is not None and not any(m.get("batched") for m in self._methods.values()):
            raise InvalidError(f"{self._name}.with_batching(): the class has no @batched method "
                               f"(a batched method takes lists; decorate it with @thaw.batched)")
        return self._with({"config": {"batched": {"max_batch_size": max_batch_size,
                                                  "wait_ms": wait_ms}}})

    def _with(self, opts):
        new = copy.copy(self)
        new._options = merge_options(self._options, opts)
        return new

    def get_user_cls(self):
        return self._user_cls

    # -- used by Obj and by the worker
    def _new_instance(self, args=(), kwargs=None):
        """A user-class instance (no hooks run). With thaw.parameter fields the
        arguments must be keywords naming them."""
        kwargs = dict(kwargs or {})
        if self._user_cls is None:
            raise InvalidError(f"{self._name} was looked up with from_name(); it has no local "
                               f"code")
        if not self._parameters:
            return _with_handle(self._user_cls(*args, **kwargs), self, args, kwargs)
        if args:
            raise InvalidError(f"{self._name}(...) takes its parameters as keywords "
                               f"({', '.join(self._parameters)})")
        obj = self._user_cls.__new__(self._user_cls)
        for pname, p in self._parameters.items():
            if pname in kwargs:
                value = kwargs.pop(pname)
                _check_parameter_type(self._name, pname, p, value)
            elif p.has_default:
                value = p.default
            else:
                raise InvalidError(f"{self._name}(...) is missing the parameter {pname!r}")
            object.__setattr__(obj, pname, value)
        if kwargs:
            raise InvalidError(f"{self._name}(...) has no parameter(s) {', '.join(kwargs)}")
        return _with_handle(obj, self, (), {p: getattr(obj, p) for p in self._parameters})

    def _run_hooks(self, instance, kind):
        for hook in self._lifecycle[kind]:
            getattr(instance, hook)()

    def spec(self):
        d = {"kind": "class", "qualname": getattr(self._user_cls, "__qualname__", self._name),
             "methods": sorted(self._methods)}
        d.update(self._spec_common())
        return d

    def __repr__(self):
        return f"<thaw.Cls {self._app_name_for_call()}.{self._name}>"


class Obj:
    """An instance handle: `Embedder()` (parameters, if any, in the call)."""

    def __init__(self, cls, args, kwargs):
        self._cls = cls
        self._args, self._kwargs = tuple(args), dict(kwargs)
        self._instance = None
        self._entered = False
        if cls._user_cls is not None and cls._parameters:
            cls._new_instance(args, kwargs)  # check the parameters now, as Modal does

    def _params(self):
        if not self._args and not self._kwargs:
            return None
        return {"args": self._args, "kwargs": self._kwargs}

    def _local_instance(self, enter=True):
        if self._instance is None:
            self._instance = self._cls._new_instance(self._args, self._kwargs)
        if enter and not self._entered:
            self._entered = True
            self._cls._run_hooks(self._instance, ENTER_PRE)
            self._cls._run_hooks(self._instance, ENTER_POST)
        return self._instance

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        cls = self.__dict__.get("_cls")
        if cls is None:
            raise AttributeError(name)
        if name in cls._methods or (cls._from_name and not name.startswith("_")):
            return _BoundMethod(self, name)
        if cls._user_cls is None:
            raise AttributeError(name)
        return getattr(self._local_instance(enter=False), name)

    def update_autoscaler(self, **kwargs):
        """The class's update_autoscaler (Modal has it on instances): every
        instance of a class shares its containers here."""
        self._cls.update_autoscaler(**kwargs)

    def keep_warm(self, warm_pool_size):
        self._cls.keep_warm(warm_pool_size)

    def __repr__(self):
        return f"<thaw.Obj {self._cls._name}>"


class _BoundMethod(_Callable):
    """`Embedder().run`: one method of an instance handle."""

    def __init__(self, obj, name):
        self._obj = obj
        self._method = name

    def _target(self):
        return _Target(self._obj._cls, self._method, self._obj._params())

    def _is_generator(self):
        m = self._obj._cls._methods.get(self._method)
        return bool(m and m.get("is_generator"))

    def get_web_url(self):
        """The URL of this method's web endpoint (`thaw serve --http`), or None."""
        cls = self._obj._cls
        return cls._web_url(self._method, f"{cls._name}.{self._method}")

    def _local_callable(self):
        instance = self._obj._local_instance(enter=True)
        fn = unwrap_method(getattr(instance, self._method))
        if self._obj._cls._methods.get(self._method, {}).get("batched"):
            return lambda *a, **kw: call_as_batch_of_one(fn, a, kw)
        return fn

    def __repr__(self):
        return f"<thaw method {self._obj._cls._name}.{self._method}>"


class _InstanceHandle:
    """What an instance thaw made knows of itself (`_thaw_handle`): its class
    and the arguments it was made with, so that `self.other` in its methods
    can call through an instance handle, as Modal's `_modal_functions` do."""

    def __init__(self, cls, args, kwargs):
        self.cls, self.args, self.kwargs = cls, tuple(args), dict(kwargs)
        self._obj = None

    def method(self, bound, name):
        if name not in self.cls._methods:
            return bound
        return _InstanceMethod(self, bound, name)

    def obj(self):
        if self._obj is None:
            self._obj = Obj(self.cls, self.args, self.kwargs)
        return self._obj


def _with_handle(instance, cls, args, kwargs):
    try:
        object.__setattr__(instance, "_thaw_handle", _InstanceHandle(cls, args, kwargs))
    except (AttributeError, TypeError):  # __slots__ and the like: plain methods only
        pass
    return instance


class _InstanceMethod:
    """`self.other` inside a method: calling it calls the method on this
    instance, `.local()` too; `.remote()`, `.spawn()`, `.map()`... call it in
    a container of this instance's class and parameters, as in Modal."""

    def __init__(self, handle, bound, name):
        self._thaw_bound = bound
        self._handle = handle
        self._name = name
        self.__name__ = name
        self.__doc__ = getattr(bound, "__doc__", None)
        self.__wrapped__ = bound

    def __call__(self, *args, **kwargs):
        return self._thaw_bound(*args, **kwargs)

    def local(self, *args, **kwargs):
        if self._handle.cls._methods.get(self._name, {}).get("batched"):
            return call_as_batch_of_one(self._thaw_bound, args, kwargs)
        return self._thaw_bound(*args, **kwargs)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(_BoundMethod(self._handle.obj(), self._name), name)

    def __repr__(self):
        return f"<thaw method {self._handle.cls._name}.{self._name} of an instance>"


def unwrap_method(fn):
    """The plain bound method behind `instance.method` (what the worker and
    .local() call and inspect)."""
    return getattr(fn, "_thaw_bound", fn) if isinstance(fn, _InstanceMethod) else fn


# The types Modal allows for parameters; others are not checked.
_PARAMETER_TYPES = (str, int, bool, bytes)


def param_json(value):
    """A parameter value as the runtime tells sets of values apart (JSON;
    bytes as {"__bytes__": base64}); TypeError for another type."""
    if isinstance(value, bytes):
        return {"__bytes__": base64.b64encode(value).decode()}
    # JSON cannot tell 2.0 from 2, and the runtime reads integers beyond 64
    # bits as floats (2**64 and 2**64 + 1 alike): such values are not routed.
    if isinstance(value, float):
        raise TypeError("a float")
    if isinstance(value, int) and not isinstance(value, bool) and not -2**63 <= value < 2**64:
        raise TypeError("an integer beyond 64 bits")
    if value is None or isinstance(value, (str, int, bool)):
        return value
    raise TypeError(f"a {type(value).__name__}")


def param_value(encoded):
    """param_json's inverse."""
    if isinstance(encoded, dict) and set(encoded) == {"__bytes__"}:
        return base64.b64decode(encoded["__bytes__"])
    return encoded


def class_params(cls, params):
    """The full set of values (defaults filled in, as param_json) an
    instance of cls with `params` ({"args", "kwargs"}, or None) has, as the
    runtime routes it (runtime/class_params.h); None when the class has no
    thaw.parameter fields or the values cannot be told apart this way."""
    parameters = cls._parameters
    if not parameters:
        return None
    params = params or {}
    kwargs = dict(params.get("kwargs") or {})
    if params.get("args"):
        return None
    try:
        full = {}
        for name, p in parameters.items():
            if name in kwargs:
                full[name] = param_json(kwargs.pop(name))
            elif p.has_default:
                full[name] = param_json(p.default)
            else:
                return None
    except TypeError:
        return None
    return None if kwargs else full


def parameter_type(p):
    """The type a parameter's annotation names (str, int, bool or bytes), or
    None for another (or no) annotation: such values are not checked."""
    ann = getattr(p, "annotation", None)
    if isinstance(ann, str):  # `from __future__ import annotations`
        ann = {t.__name__: t for t in _PARAMETER_TYPES}.get(ann)
    return ann if ann in _PARAMETER_TYPES else None


def _check_parameter_type(cls_name, pname, p, value):
    ann = parameter_type(p)
    if ann is None:
        return
    # bool is an int in Python, not for a parameter (nor the reverse).
    ok = isinstance(value, ann) and (ann is bool or not isinstance(value, bool))
    if not ok:
        raise InvalidError(f"{cls_name}(...): parameter {pname!r} is {ann.__name__}, got "
                           f"{type(value).__name__} {value!r}")


def collect_class_members(user_cls, where):
    """(methods, lifecycle, parameters) of a user class, in definition order
    (base classes first)."""
    from ._partial import BATCHED, WEB, PartialFunction
    entries = {}
    for klass in reversed(inspect.getmro(user_cls)):
        if klass is object:
            continue
        for name, value in vars(klass).items():
            if isinstance(value, PartialFunction):
                entries[name] = value
            elif name in entries:
                del entries[name]  # overridden by an undecorated attribute
    methods = {}
    lifecycle = {ENTER_PRE: [], ENTER_POST: [], EXIT: []}
    for name, pf in entries.items():
        if pf.flags & {METHOD, BATCHED, WEB}:
            batched = False
            if BATCHED in pf.flags:
                batched = {"max_batch_size": pf.params["max_batch_size"],
                           "wait_ms": pf.params["wait_ms"]}
            methods[name] = {"is_generator": bool(pf.params.get("is_generator")),
                             "batched": batched}
            if pf.params.get("web"):
                methods[name]["web_endpoint"] = pf.params["web"]
        for kind in (ENTER_PRE, ENTER_POST, EXIT):
            if kind in pf.flags:
                lifecycle[kind].append(name)
    parameters = {}
    for klass in reversed(inspect.getmro(user_cls)):
        annotations = vars(klass).get("__annotations__", {})
        for name, value in vars(klass).items():
            if isinstance(value, Parameter):
                value.annotation = annotations.get(name)
                parameters[name] = value
    for name in parameters:
        try:
            delattr(user_cls, name)  # instances get the value; the class keeps no marker
        except AttributeError:
            pass
    return methods, lifecycle, parameters
