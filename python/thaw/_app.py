"""App: a named group of functions and classes, deployed and run together."""

import contextlib
import inspect
import os
import subprocess
import sys
from pathlib import Path

from . import _config, _state
from ._cli_args import params_of, type_name
from ._functions import Cls, Function, collect_class_members, param_json, parameter_type
from ._image import Image
from ._partial import (BATCHED, CONCURRENT, ENTER_POST, ENTER_PRE, EXIT, METHOD, WEB,
                       PartialFunction)
from ._secret import Secret
from ._state import warn
from ._volume import Volume
from .exception import InvalidError


def _caller_file(depth=2):
    """The file the App is defined in; None for code that has none (a
    notebook, the REPL, `python -c`, a script piped to `python -`, whose
    __file__ is "<stdin>")."""
    frame = sys._getframe(depth)
    while frame is not None:
        f = frame.f_globals.get("__file__")
        if f and str(Path(f).resolve()).startswith(_state.PACKAGE_DIR):
            frame = frame.f_back
            continue
        # The first frame outside thaw decides: a notebook's cell has no
        # __file__, though the frames that run it (IPython's) have theirs.
        return str(Path(f).resolve()) if f and Path(f).is_file() else None
    return None


def _serialized_unless_told(app, obj, kwargs):
    """Modal's notebook rule: a function or class defined in a __main__ that
    has no file (a notebook, the REPL) cannot be imported by its containers,
    so it is sent itself, as serialized=True does."""
    if app._file is None and getattr(obj, "__module__", None) == "__main__" and "serialized" not in kwargs:
        return {**kwargs, "serialized": True}
    return kwargs


class LocalEntrypoint:
    """A function run on the caller's machine by `thaw run app.py[::name]`."""

    def __init__(self, raw_f, app, name):
        self.raw_f = raw_f
        self.app = app
        self.name = name
        self.__name__ = raw_f.__name__
        self.__doc__ = raw_f.__doc__
        self.__wrapped__ = raw_f

    def __call__(self, *args, **kwargs):
        return self.raw_f(*args, **kwargs)

    def spec(self):
        # Typed as `thaw run` converts its options (string annotations too).
        params = [{"name": p.name, "type": type_name(p.type), "required": p.default is inspect._empty}
                  for p in params_of(self.raw_f)]
        return {"name": self.name, "parameters": params}



def _parameter_config(p):
    """A parameter in the config: its type (which the runtime checks the
    values of a call against before it starts anything), its default as
    text, and as the runtime compares sets of values
    (runtime/class_params.h), when it can."""
    t = parameter_type(p)
    typed = {"type": t.__name__} if t else {}
    if not p.has_default:
        return {"required": True, **typed}
    d = {"required": False, **typed, "default": repr(p.default)}
    try:
        d["default_json"] = param_json(p.default)
    except TypeError:
        pass
    return d

class App:
    """A group of functions and classes (Modal's App).

    App(name, image=, secrets=, volumes=): image, secrets and volumes are the
    defaults of every function and class of the app."""

    _all = []  # every App created in this process, in order
    _looked_up = None  # App.lookup(): the deployed version the handle describes (0: none yet)

    def __init__(self, name=None, *, image=None, secrets=(), volumes=None, tags=None,
                 include_source=None, **kwargs):
        if name is not None and not isinstance(name, str):
            raise InvalidError(f"App name must be a string, got {name!r}")
        if image is not None and not isinstance(image, Image):
            raise InvalidError(f"App(image=...) must be a thaw.Image, got {image!r}")
        self._name = name
        self.image = image
        self._secrets = list(secrets or [])
        for s in self._secrets:
            if not isinstance(s, Secret):
                raise InvalidError(f"App(secrets=...) must be a list of thaw.Secret, got {s!r}")
        self._volumes = {str(p): v for p, v in (volumes or {}).items()}
        self._functions = {}
        self._classes = {}
        self._local_entrypoints = {}
        self._file = _caller_file()
        if tags:
            warn(f"thaw: App(tags={tags!r}) is not supported: thaw keeps no tags")
        if include_source is False:
            warn("thaw: App(include_source=False) is not supported: the container always runs "
                 "the app file itself")
        for k in kwargs:
            warn(f"thaw: App({k}=...) is not supported: thaw does not know this parameter")
        App._all.append(self)

    # ------------------------------------------------------------ lookup
    @classmethod
    def lookup(cls, name, *, client=None, environment_name=None, create_if_missing=False):
        """A handle on the deployed app `name` (its current version):
        `registered_functions` and `registered_classes` hold from_name()
        handles of its functions and classes. NotFoundError when it is not
        deployed (or stopped); with create_if_missing=True an empty handle
        instead (a thaw app comes to exist by `thaw deploy`, not before)."""
        from ._lookup import lookup_app
        if environment_name is not None:
            warn(f"thaw: App.lookup(environment_name={environment_name!r}) is ignored: thaw has a "
                 f"single environment per THAW_HOME")
        return lookup_app(cls, name, create_if_missing)

    @classmethod
    def _handle(cls, name, *, version, functions):
        """An App that stands for a deployed one: not one a file defines, so
        not counted among this process's Apps (thaw run picks from those)."""
        from ._lookup import handles
        app = cls.__new__(cls)
        app._name = name
        app.image = None
        app._secrets, app._volumes, app._local_entrypoints = [], {}, {}
        app._functions, app._classes = handles(name, functions)
        app._file = None
        app._looked_up = version
        return app

    def _refuse_looked_up(self, what):
        if self._looked_up is not None:
            raise InvalidError(f"thaw: {what} on App.lookup({self._name!r}): that is a handle on "
                               f"the deployed app; define functions on the App in its file and "
                               f"`thaw deploy` it")

    # ------------------------------------------------------------ naming
    @property
    def name(self):
        """The app's name; an unnamed App takes its file's stem."""
        if self._name:
            return self._name
        return Path(self._file).stem if self._file else None

    @property
    def app_id(self):
        return f"ap-{self.name}"

    @property
    def description(self):
        return self.name

    # ------------------------------------------------------------ decorators
    def function(self, _warn_parentheses_missing=None, *, name=None, **kwargs):
        """Register a function (Modal's @app.function(...); every Modal
        parameter is accepted, see docs/sdk.md for what each does in thaw)."""
        kwargs_given = kwargs

        def decorate(f):
            flags, params = frozenset(), {}
            if isinstance(f, PartialFunction):
                flags, params, f = f.flags, f.params, f.raw_f
                if flags & {METHOD, ENTER_PRE, ENTER_POST, EXIT}:
                    raise InvalidError(f"{f.__qualname__}: @method/@enter/@exit belong to "
                                       f"methods of an @app.cls class, not to @app.function")
            if inspect.isclass(f):
                raise InvalidError(f"{f.__qualname__} is a class: use @app.cls()")
            if not callable(f):
                raise InvalidError(f"@app.function() must decorate a function, got {f!r}")
            fname = name or f.__name__
            kwargs = _serialized_unless_told(self, f, kwargs_given)
            if "<locals>" in getattr(f, "__qualname__", "") and not kwargs.get("serialized"):
                warn(f"thaw: function '{fname}' is not defined at the module's global scope; "
                     f"containers import the app file and find functions by name, so "
                     f"'{fname}' can only run with .local(). Use "
                     f"@app.function(serialized=True) to send the function itself")
            config, image, secrets, volumes = _config.build(
                "function", fname, kwargs, app=self, partial_params=params)
            if config["is_generator"] is None:
                config["is_generator"] = inspect.isgeneratorfunction(f) or inspect.isasyncgenfunction(f)
            if config.get("schedule") is not None:
                try:
                    inspect.signature(f).bind()
                except TypeError:
                    raise InvalidError(f"function '{fname}' has a schedule= but takes arguments: "
                                       f"a scheduled run passes none") from None
                except ValueError:
                    pass  # no signature to check (a builtin)
            _config.one_container_for_web_server(
                config, [(params.get("web") or {}).get("kind")], f"function '{fname}'")
            config = _config.finish(config)
            fn = Function(f, name=fname, app=self, config=config, image=image, secrets=secrets,
                          volumes=volumes, batched=BATCHED in flags)
            self._register(self._functions, fname, fn)
            return fn

        if _warn_parentheses_missing is not None:
            if callable(_warn_parentheses_missing):
                return decorate(_warn_parentheses_missing)
            raise InvalidError("@app.function() takes keyword arguments only")
        return decorate

    def cls(self, _warn_parentheses_missing=None, **kwargs):
        """Register a class whose methods are called remotely (Modal's @app.cls)."""
        def decorate(user_cls):
            kw = dict(kwargs)
            params = {}
            if isinstance(user_cls, PartialFunction):
                if user_cls.flags - {CONCURRENT, BATCHED, WEB}:
                    raise InvalidError(f"@app.cls() cannot take {user_cls!r}")
                params = user_cls.params
                user_cls = user_cls.raw_f
            if not inspect.isclass(user_cls):
                raise InvalidError(f"@app.cls() must decorate a class, got {user_cls!r}")
            kw = _serialized_unless_told(self, user_cls, kw)
            cname = kw.pop("name", None) or user_cls.__name__
            where = f"class '{cname}'"
            if "<locals>" in user_cls.__qualname__ and not kw.get("serialized"):
                warn(f"thaw: {where} is not defined at the module's global scope; containers "
                     f"import the app file and find classes by name, so its methods can only "
                     f"run with .local(). Use @app.cls(serialized=True) to send the class itself")
            for bad in ("schedule", "is_generator"):
                if bad in kw:
                    raise InvalidError(f"{where}: @app.cls() does not take {bad}=")
            methods, lifecycle, parameters = collect_class_members(user_cls, where)
            if lifecycle[ENTER_PRE] and not kw.get("enable_memory_snapshot") \
                    and not kw.get("checkpointing_enabled"):
                raise InvalidError("A class must have enable_memory_snapshot=True to use "
                                   "snap=True on its methods.")
            if parameters and user_cls.__init__ is not object.__init__:
                raise InvalidError(f"{where}: a class with thaw.parameter() fields cannot "
                                   f"define __init__")
            config, image, secrets, volumes = _config.build(
                "class", cname, kw, app=self, partial_params=params)
            config["is_generator"] = False
            batched = [m for m, info in methods.items() if info["batched"]]
            if batched and len(methods) > 1:
                raise InvalidError(f"{where}: a class with a @batched method cannot have other "
                                   f"methods (it has {', '.join(methods)}); its containers run "
                                   f"one batch at a time")
            if batched and config["max_concurrent_inputs"] > 1:
                raise InvalidError(f"{where}: @batched method {batched[0]} cannot be combined "
                                   f"with @concurrent on the class")
            if batched:
                config["batched"] = methods[batched[0]]["batched"]
            config["methods"] = methods
            _config.one_container_for_web_server(
                config, [(m.get("web_endpoint") or {}).get("kind") for m in methods.values()], where)
            config["lifecycle"] = {
                "enter_snap": lifecycle[ENTER_PRE],
                "enter": lifecycle[ENTER_POST],
                "exit": lifecycle[EXIT],
            }
            config["parameters"] = {p: _parameter_config(v) for p, v in parameters.items()}
            config = _config.finish(config)
            cls = Cls(user_cls, name=cname, app=self, config=config, image=image,
                      secrets=secrets, volumes=volumes, methods=methods, lifecycle=lifecycle,
                      parameters=parameters)
            self._register(self._classes, cname, cls)
            return cls

        if _warn_parentheses_missing is not None:
            if inspect.isclass(_warn_parentheses_missing) or \
                    isinstance(_warn_parentheses_missing, PartialFunction):
                return decorate(_warn_parentheses_missing)
            raise InvalidError("@app.cls() takes keyword arguments only")
        return decorate

    def local_entrypoint(self, _warn_parentheses_missing=None, *, name=None):
        """Register a function that `thaw run app.py[::name]` runs locally."""
        def decorate(f):
            ename = name or f.__name__
            ep = LocalEntrypoint(f, self, ename)
            self._register(self._local_entrypoints, ename, ep)
            return ep

        if _warn_parentheses_missing is not None:
            if callable(_warn_parentheses_missing):
                return decorate(_warn_parentheses_missing)
            raise InvalidError("@app.local_entrypoint() takes keyword arguments only")
        return decorate

    def _register(self, table, name, obj):
        self._refuse_looked_up(f"registering {name!r}")
        taken = name in self._functions or name in self._classes or \
            name in self._local_entrypoints
        if taken and table.get(name) is None:
            raise InvalidError(f"app '{self.name}' already has something called {name!r}")
        if name in table:
            warn(f"thaw: app '{self.name}' redefines {name!r}; the later definition wins")
        table[name] = obj

    # ------------------------------------------------------------ registries
    @property
    def registered_functions(self):
        return dict(self._functions)

    @property
    def registered_classes(self):
        return dict(self._classes)

    @property
    def registered_entrypoints(self):
        return dict(self._local_entrypoints)

    @property
    def registered_web_endpoints(self):
        return []

    def include(self, other_app):
        """Add another App's functions, classes and entrypoints to this one.
        As in Modal they become this App's: deployed with it, and called in it
        (a call of an included function from this App's containers must not go
        to the other App, which may not even be deployed)."""
        for table in ("_functions", "_classes", "_local_entrypoints"):
            for k, v in getattr(other_app, table).items():
                self._register(getattr(self, table), k, v)
                if getattr(v, "_app", None) is other_app:
                    v._app = self
        return self

    # ------------------------------------------------------------ running
    @contextlib.contextmanager
    def run(self, *, detach=False, interactive=False, environment_name=None, client=None,
            show_progress=None):
        """Run the app ephemerally for the `with` block: .remote() calls go to
        an ephemeral app built from this app's file (no memory snapshots);
        defined where there is no file (a notebook, the REPL), from its
        functions and classes themselves (serialized)."""
        self._refuse_looked_up("app.run()")
        if self._file is None:
            imported = [n for n, o in {**self._functions, **self._classes}.items() if not o._is_serialized()]
            if imported:
                raise InvalidError(f"thaw: app.run() of an app defined where there is no file (a notebook, "
                                   f"the REPL) sends its functions and classes themselves, but "
                                   f"{', '.join(sorted(imported))} come from a module: give them "
                                   f"serialized=True, or define the app in a file")
        saved = (_state.mode, _state.app_file)
        _state.mode, _state.app_file = "ephemeral", self._file
        try:
            yield self
        finally:
            _state.mode, _state.app_file = saved

    def deploy(self, *, name=None, environment_name=None, tag=None, client=None):
        """Deploy the app's file with `thaw deploy` (snapshots are created then)."""
        from ._client import thaw_binary
        self._refuse_looked_up("app.deploy()")
        if self._file is None:
            raise InvalidError("thaw: app.deploy() needs the app to be defined in a file")
        if name is not None and name != self.name:
            warn(f"thaw: app.deploy(name={name!r}) is ignored: the app is deployed as "
                 f"{self.name!r}")
        subprocess.run([thaw_binary(), "deploy", self._file], check=True,
                       env={**os.environ})
        return self

    # ------------------------------------------------------------ description
    def spec(self):
        """The app as JSON-able data (what thaw._introspect prints, less the
        module list)."""
        volumes = {}
        for obj in list(self._functions.values()) + list(self._classes.values()):
            for path, vol in sorted(obj._volumes.items()):
                volumes.setdefault(vol.name, path)
        functions = {n: f.spec() for n, f in self._functions.items()}
        functions.update((n, c.spec()) for n, c in self._classes.items())
        return {
            "app": self.name,
            "file": self._file,
            "app_file": self._file,
            "image": (self.image or Image.debian_slim()).describe(),
            "functions": functions,            # classes too, with "kind": "class"
            "entrypoints": list(self._local_entrypoints),
            "local_entrypoints": [ep.spec() for ep in self._local_entrypoints.values()],
            "volumes": volumes,
        }

    def _all_volumes(self):
        vols = {}
        for obj in list(self._functions.values()) + list(self._classes.values()):
            for vol in obj._volumes.values():
                vols[vol.name] = vol
        for vol in self._volumes.values():
            if isinstance(vol, Volume):
                vols[vol.name] = vol
        return vols

    def __repr__(self):
        return f"<thaw.App {self.name!r}>"


Stub = App
