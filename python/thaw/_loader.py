"""Loading an app file the same way everywhere (worker, introspection,
entrypoint): as a module named after the file's stem, with the file's
directory first on sys.path, so that objects pickled on one side unpickle on
the other."""

import hashlib
import importlib.util
import sys
from pathlib import Path

from . import _packages, _state
from .exception import InvalidError, MissingPackageError


def module_name_for(path):
    stem = Path(path).stem
    existing = sys.modules.get(stem)
    if existing is not None and getattr(existing, "__file__", None) != str(path):
        return f"_thaw_app_{stem}"  # the stem is taken (e.g. a stdlib module's name)
    if not stem.isidentifier():
        return f"_thaw_app_{abs(hash(stem))}"
    return stem


def missing_module_error(e):
    """A MissingPackageError explaining a ModuleNotFoundError from app code."""
    name = getattr(e, "name", None)
    if not name:
        return None
    if _packages.module_available(name.split(".")[0]):
        return None  # a submodule or a local module: not a package problem
    err = MissingPackageError(
        f"thaw: the app imports '{name}', which the host's Python ({sys.executable}) does not "
        f"have; thaw runs functions with the host's Python: "
        f"{_packages.debian_advice(module=name)}.")
    err.name = name
    return err


def load_app_module(path):
    """Import the app file at path and return its module."""
    path = Path(path).resolve()
    if not path.is_file():
        raise InvalidError(f"thaw: app file {path} does not exist")
    app_dir = str(path.parent)
    if app_dir not in sys.path:
        sys.path.insert(0, app_dir)
    name = module_name_for(path)
    if name in sys.modules:
        return sys.modules[name]
    _state.app_file = str(path)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except ModuleNotFoundError as e:
        del sys.modules[name]
        err = missing_module_error(e)
        if err is not None:
            raise err from e
        raise
    except BaseException:
        del sys.modules[name]
        raise
    return module


def find_apps(module):
    """The App objects an app module defines (its globals first)."""
    from ._app import App
    apps = [v for v in vars(module).values() if isinstance(v, App)]
    seen = {id(a) for a in apps}
    for a in App._all:
        if id(a) not in seen and a._file == getattr(module, "__file__", None):
            apps.append(a)
            seen.add(id(a))
    unique = []
    for a in apps:
        if a not in unique:
            unique.append(a)
    return unique


def pick_app(module, name=None):
    """The App a file stands for: the one named `name`; else, as Modal does,
    the global named `app`; else the one App created in this file (Apps it
    imports from other files are included, not picked)."""
    apps = find_apps(module)
    if name:
        apps = [a for a in apps if a.name == name]
    if not apps:
        raise InvalidError(f"thaw: {module.__file__} defines no thaw.App"
                           + (f" named {name!r}" if name else ""))
    if name or len(apps) == 1:
        return apps[0]
    from ._app import App
    if isinstance(getattr(module, "app", None), App):
        return module.app
    own = [a for a in apps if a._file == getattr(module, "__file__", None)]
    if len(own) == 1:
        return own[0]
    names = ", ".join(repr(a.name) for a in (own or apps))
    raise InvalidError(f"thaw: {module.__file__} has several Apps ({names}) and none is the "
                       f"global `app`: name the one to run or deploy `app`")


def local_modules(app_file):
    """The modules loaded from files under the app file's directory (not the
    app file, not installed packages, not thaw itself), sorted by path."""
    app_file = Path(app_file).resolve()
    root = app_file.parent
    out = {}
    for mod_name, mod in list(sys.modules.items()):
        f = getattr(mod, "__file__", None)
        if not f:
            continue
        try:
            p = Path(f).resolve()
        except (OSError, RuntimeError):
            continue
        if p == app_file or root not in p.parents or p.suffix != ".py":
            continue
        rel = p.relative_to(root)
        parts = set(rel.parts)
        if parts & {"site-packages", "dist-packages", "__pycache__"} or \
                str(p).startswith(_state.PACKAGE_DIR):
            continue
        out[str(rel)] = {"module": mod_name, "path": str(p), "relpath": str(rel),
                         "sha256": file_sha256(p)}
    return [out[k] for k in sorted(out)]


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def code_sha256(app_file, modules):
    """A digest of the app file and its local modules (paths and contents)."""
    h = hashlib.sha256()
    h.update(b"app\0" + file_sha256(app_file).encode() + b"\0")
    for m in modules:
        h.update(m["relpath"].encode() + b"\0" + m["sha256"].encode() + b"\0")
    return h.hexdigest()
