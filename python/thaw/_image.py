"""Image: a description of the environment a function expects.

There is no image registry or builder in thaw: functions run with the host's
/usr/bin/python3 and its packages. An Image therefore *describes* and
*checks*: pip_install/apt_install name packages that must be present on the
host (Image.check, run by the worker before any hook and by `thaw deploy`
through thaw._introspect), env() is applied to the function's environment,
workdir() is the worker's working directory, and the whole description goes
into the snapshot key. Steps that would change an image (run_commands,
run_function, from_registry, ...) are recorded and warned about, never
silently dropped.
"""

import contextlib
import copy
import hashlib
import json
import os
import sys
from pathlib import Path

from . import _packages
from ._state import warn
from .exception import InvalidError, MissingPackageError

HOST_PYTHON = f"{sys.version_info[0]}.{sys.version_info[1]}"


def _flatten(items):
    out = []
    for it in items:
        if it is None:
            continue
        if isinstance(it, (list, tuple)):
            out.extend(_flatten(it))
        elif isinstance(it, str):
            if it.strip():
                out.append(it.strip())
        else:
            raise InvalidError(f"package names must be strings, got {it!r}")
    return out


def _tree_digest(path):
    """sha256 over (relative path, size, mtime) of every file under path (or
    of the file itself); what a missing path gives is still a digest."""
    h = hashlib.sha256()

    def add(rel, full):
        try:
            st = os.stat(full)
        except OSError:
            h.update(f"{rel}\0gone\n".encode())
            return
        h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())

    if not os.path.isdir(path):
        add(".", path)
        return h.hexdigest()
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            add(os.path.relpath(full, path), full)
    return h.hexdigest()


class Image:
    """An immutable environment description; every builder method returns a new Image."""

    def __init__(self, desc=None):
        self._desc = desc or {
            "base": "debian_slim",
            "python_version": None,
            "pip": [],
            "apt": [],
            "env": {},
            "workdir": None,
            "local_python_sources": [],
            "unsupported": [],
        }

    def _with(self, **changes):
        d = copy.deepcopy(self._desc)
        for k, v in changes.items():
            if isinstance(d.get(k), list) and isinstance(v, list):
                d[k] = d[k] + v
            elif isinstance(d.get(k), dict) and isinstance(v, dict):
                d[k] = {**d[k], **v}
            else:
                d[k] = v
        return Image(d)

    def _unsupported(self, step, why):
        warn(f"thaw: Image.{step} is not supported: {why}. It is recorded in the Image "
             f"description (and so in the snapshot key) but has no effect.")
        return self._with(unsupported=[step])

    # ------------------------------------------------------------ constructors
    @staticmethod
    def debian_slim(python_version=None, force_build=False):
        """The default image: Debian with Python. thaw runs the host's Debian 12
        /usr/bin/python3; a python_version other than the host's is warned about."""
        if python_version is not None:
            python_version = str(python_version)
            given = python_version.split(".")
            host = [str(x) for x in sys.version_info[:3]]
            if host[:len(given)] != given:
                warn(f"thaw: Image.debian_slim(python_version={python_version!r}) cannot be "
                     f"honoured: thaw runs functions with the host's Python {HOST_PYTHON} "
                     f"(/usr/bin/python3).")
        img = Image()
        img._desc["python_version"] = python_version
        return img

    @staticmethod
    def from_registry(tag, secret=None, *, setup_dockerfile_commands=(), force_build=False,
                      add_python=None, **kwargs):
        img = Image()
        img._desc["base"] = f"registry:{tag}"
        return img._unsupported(f"from_registry({tag!r})",
                                "thaw has no image registry and runs functions in the host's "
                                "environment")

    @staticmethod
    def from_dockerfile(path, **kwargs):
        img = Image()
        img._desc["base"] = f"dockerfile:{path}"
        return img._unsupported(f"from_dockerfile({str(path)!r})",
                                "thaw builds no images and runs functions in the host's "
                                "environment")

    @staticmethod
    def micromamba(python_version=None, force_build=False):
        img = Image()
        img._desc["base"] = "micromamba"
        return img._unsupported("micromamba()", "thaw runs functions with the host's Debian python")

    @staticmethod
    def from_aws_ecr(tag, secret=None, **kwargs):
        return Image.from_registry(tag)

    @staticmethod
    def from_gcp_artifact_registry(tag, secret=None, **kwargs):
        return Image.from_registry(tag)

    # ------------------------------------------------------------ packages
    def pip_install(self, *packages, find_links=None, index_url=None, extra_index_url=None,
                    pre=False, extra_options="", force_build=False, secrets=None, gpu=None):
        """Name Python packages the function needs. thaw installs nothing: each
        must be importable by the host's /usr/bin/python3 (checked by
        Image.check); the error for a missing one names its Debian package.
        Installer options (index_url, find_links, ...) therefore have no effect."""
        return self._with(pip=_flatten(packages))

    def uv_pip_install(self, *packages, requirements=None, **kwargs):
        pkgs = _flatten(packages)
        img = self._with(pip=pkgs)
        for r in _flatten([requirements] if isinstance(requirements, str) else requirements or []):
            img = img.pip_install_from_requirements(r)
        return img

    def pip_install_from_requirements(self, requirements_txt, find_links=None, **kwargs):
        pkgs = []
        for line in Path(requirements_txt).read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line and not line.startswith("-"):
                pkgs.append(line)
        return self._with(pip=pkgs)

    def pip_install_from_pyproject(self, pyproject_toml, optional_dependencies=(), **kwargs):
        import tomllib
        data = tomllib.loads(Path(pyproject_toml).read_text())
        project = data.get("project", {})
        pkgs = list(project.get("dependencies", []))
        for extra in optional_dependencies:
            pkgs += project.get("optional-dependencies", {}).get(extra, [])
        return self._with(pip=pkgs)

    def apt_install(self, *packages, force_build=False, secrets=None, gpu=None):
        """Name Debian packages the function needs; each must be installed on the
        host (checked by Image.check against dpkg's database)."""
        return self._with(apt=_flatten(packages))

    def poetry_install_from_file(self, *args, **kwargs):
        return self._unsupported("poetry_install_from_file()", "thaw installs no packages")

    # ------------------------------------------------------------ environment
    def env(self, vars):
        """Environment variables for the function's container (applied by the
        runtime to the worker's environment; in the snapshot key)."""
        if not isinstance(vars, dict):
            raise InvalidError("Image.env takes a dict of variable names to string values")
        clean = {}
        for k, v in vars.items():
            if not isinstance(k, str) or not k or "=" in k:
                raise InvalidError(f"Image.env: invalid variable name {k!r}")
            clean[k] = "" if v is None else str(v)
        return self._with(env=clean)

    def workdir(self, path):
        """The worker's working directory (it changes into it before importing the app)."""
        return self._with(workdir=str(path))

    def add_local_python_source(self, *modules, copy=False, ignore=()):
        """Honoured as a no-op: functions run on the host, where local modules
        are importable already (and the modules an app imports are in its
        snapshot key)."""
        return self._with(local_python_sources=_flatten(modules))

    def _local_path_step(self, step, kind, local_path, remote_path, ignore=()):
        """Modal puts the file or directory into the container at remote_path.
        Containers here see the host's filesystem, so the runtime binds the
        host's path there instead (read-only: as in Modal, what a container
        does to it never reaches the local copy)."""
        where = f"Image.{step}({str(local_path)!r}, {str(remote_path)!r})"
        local = os.path.realpath(os.path.expanduser(str(local_path)))
        is_kind = os.path.isdir if kind == "dir" else os.path.isfile
        if not is_kind(local):
            what = "directory" if kind == "dir" else "file"
            raise InvalidError(f"{where}: {local} is not a {what}" +
                               ("" if os.path.exists(local) else " (it does not exist)"))
        remote = str(remote_path)
        if not remote.startswith("/"):
            # As in Modal, which cannot know the image's workdir when it adds them.
            raise InvalidError(f"{where}: remote_path must be absolute (e.g. /root/"
                               f"{os.path.basename(local)})")
        if kind == "file" and remote.endswith("/"):
            remote += os.path.basename(local)
        remote = os.path.normpath(remote)
        if remote == "/":
            raise InvalidError(f"{where}: remote_path cannot be /: the container's root is the "
                               f"host's, which a bind mount there would hide")
        if remote == local or os.path.realpath(remote) == local:
            return self._with()  # already at that path on the host: nothing to do
        if ignore:
            warn(f"thaw: {where}: ignore= is not applied: the directory is bound into the "
                 f"container as it is on the host, every file included")
        return self._with(local_mounts=[{"kind": kind, "local": local, "remote": remote}])

    def add_local_dir(self, local_path, remote_path, *, copy=False, ignore=()):
        """The local directory at remote_path in the function's containers
        (bound read-only; copy= makes no difference, thaw builds no image)."""
        return self._local_path_step("add_local_dir", "dir", local_path, remote_path, ignore)

    def add_local_file(self, local_path, remote_path, *, copy=False):
        """The local file at remote_path (a path ending in / names a directory
        for it) in the function's containers, bound read-only."""
        return self._local_path_step("add_local_file", "file", local_path, remote_path)

    copy_local_dir = add_local_dir
    copy_local_file = add_local_file

    def run_commands(self, *commands, **kwargs):
        return self._unsupported(f"run_commands({', '.join(map(repr, _flatten(commands)))})",
                                 "thaw builds no images; run such commands on the host yourself")

    def run_function(self, raw_f, *args, **kwargs):
        name = getattr(raw_f, "__qualname__", repr(raw_f))
        return self._unsupported(f"run_function({name})",
                                 "thaw builds no images; do this work in @enter(snap=True) so "
                                 "its result lands in the memory snapshot")

    def dockerfile_commands(self, *commands, **kwargs):
        return self._unsupported("dockerfile_commands()", "thaw builds no images")

    def entrypoint(self, entrypoint_commands):
        return self._unsupported("entrypoint()", "the container's pid 1 is thaw's own init")

    def shell(self, *args, **kwargs):
        return self._unsupported("shell()", "thaw builds no images")

    def cmd(self, cmd):
        return self._unsupported("cmd()", "the worker is started by thaw")

    # ------------------------------------------------------------ use
    @contextlib.contextmanager
    def imports(self):
        """Run imports that the Image provides. With Modal they may fail locally;
        with thaw the local host *is* the function's environment, so a failed
        import raises MissingPackageError naming the Debian package to install."""
        try:
            yield
        except ImportError as e:
            raise self._import_error(e) from e

    def _import_error(self, e):
        module = getattr(e, "name", None) or ""
        pip = None
        top = module.split(".")[0]
        for spec in self._desc["pip"]:
            req = _packages.Requirement(spec)
            if req.name and req.module.split(".")[0] == top:
                pip = spec
                break
        advice = _packages.debian_advice(pip_name=pip, module=module if pip is None else None) \
            if module else "check that the package is installed for /usr/bin/python3"
        err = MissingPackageError(
            f"thaw: import failed inside `with image.imports()`: {e}. thaw runs functions "
            f"with the host's Python ({sys.executable}), not in a built image: {advice}.")
        err.name = module or None
        return err

    def problems(self):
        """(errors, warnings): a list of packages that are missing from the host,
        and of version constraints the host's packages do not meet."""
        errors, warnings_ = [], []
        for spec in self._desc["pip"]:
            req = _packages.Requirement(spec)
            if req.name is None:
                warnings_.append(f"pip requirement {spec!r} is not a package name; not checked")
                continue
            if not _packages.module_available(req.module):
                errors.append(f"pip package '{spec}' (module '{req.module}') is not importable: "
                              + _packages.debian_advice(pip_name=req.name))
                continue
            if req.constraints:
                have = _packages.installed_version(req)
                for op, ver in req.constraints:
                    ok = _packages.version_satisfies(have, op, ver) if have else None
                    if ok is False:
                        warnings_.append(f"pip package '{spec}': the host has {req.name} {have}")
        for pkg in self._desc["apt"]:
            if _packages.dpkg_installed(pkg) is False:
                errors.append(f"Debian package '{pkg}' is not installed: apt-get install -y {pkg}")
        return errors, warnings_

    def check(self):
        """Check that the host provides what this Image names. Raises
        MissingPackageError listing every missing package with the Debian
        package to install; returns the list of softer warnings (version
        constraints not met)."""
        errors, warnings_ = self.problems()
        if errors:
            lines = "\n  - ".join(errors)
            raise MissingPackageError(
                f"thaw: this host lacks packages the function's Image names (functions run "
                f"with the host's {sys.executable}):\n  - {lines}")
        return warnings_

    # ------------------------------------------------------------ description
    def describe(self):
        """The Image as a JSON-able dict (for app.json and the snapshot key).
        Local files and directories bound into containers carry a digest of
        their names, sizes and modification times, so that a snapshot made
        with other contents is not restored."""
        d = copy.deepcopy(self._desc)
        for m in d.get("local_mounts", []):
            m["digest"] = _tree_digest(m["local"])
        return d

    @property
    def env_vars(self):
        return dict(self._desc["env"])

    @property
    def sha256(self):
        return hashlib.sha256(json.dumps(self._desc, sort_keys=True,
                                         separators=(",", ":")).encode()).hexdigest()

    @property
    def object_id(self):
        return "im-" + self.sha256[:24]

    def __repr__(self):
        parts = [self._desc["base"]]
        if self._desc["pip"]:
            parts.append("pip=" + ",".join(self._desc["pip"]))
        if self._desc["apt"]:
            parts.append("apt=" + ",".join(self._desc["apt"]))
        return f"Image({'; '.join(parts)})"
