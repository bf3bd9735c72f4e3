"""Volume: a named directory in thaw's store, $THAW_HOME/volumes/<name>
(THAW_HOME defaults to /var/lib/thaw), bind-mounted by the runtime at the
paths a function asks for (`volumes={"/data": vol}`).
"""

import contextlib
import os
import re
import shutil
import uuid
from pathlib import Path

from ._state import warn
from .exception import InvalidError, NotFoundError

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def thaw_home():
    return Path(os.environ.get("THAW_HOME") or "/var/lib/thaw")


def check_name(kind, name):
    if not isinstance(name, str) or not _NAME_RE.match(name) or name in (".", ".."):
        raise InvalidError(f"invalid {kind} name {name!r}: use letters, digits, '.', '-' and "
                           f"'_' (at most 64, starting with a letter or digit)")
    return name


class Volume:
    """A persistent directory shared by function containers and the host."""

    def __init__(self, name, create_if_missing=False, _ephemeral=False):
        self.name = check_name("Volume", name)
        self.create_if_missing = bool(create_if_missing)
        self._ephemeral = _ephemeral

    @staticmethod
    def from_name(name, *, environment_name=None, create_if_missing=False, version=None,
                  client=None, create_options=None):
        """The Volume called `name`. It is created (as an empty directory) when
        an app using it is deployed or run, if create_if_missing is true;
        otherwise it must exist by then."""
        if environment_name is not None:
            warn(f"thaw: Volume.from_name(environment_name={environment_name!r}) is ignored: "
                 "thaw has a single environment per THAW_HOME")
        if version is not None:
            warn(f"thaw: Volume.from_name(version={version!r}) is ignored: thaw volumes are "
                 "plain directories with no format versions")
        return Volume(name, create_if_missing=create_if_missing)

    lookup = from_name
    persisted = from_name

    @staticmethod
    @contextlib.contextmanager
    def ephemeral(**kwargs):
        """A Volume that exists for the duration of the `with` block."""
        vol = Volume(f"ephemeral-{uuid.uuid4().hex[:12]}", create_if_missing=True, _ephemeral=True)
        vol.ensure()
        try:
            yield vol
        finally:
            shutil.rmtree(vol.path, ignore_errors=True)

    @property
    def path(self):
        """The directory holding the Volume's files on the host."""
        return thaw_home() / "volumes" / self.name

    @property
    def object_id(self):
        return f"vo-{self.name}"

    def exists(self):
        return self.path.is_dir()

    def ensure(self):
        """Create the directory if allowed; raise NotFoundError if it is missing
        and create_if_missing is false. Returns the path."""
        if self.path.is_dir():
            return self.path
        if not self.create_if_missing:
            raise NotFoundError(
                f"Volume '{self.name}' does not exist ({self.path}); pass "
                f"create_if_missing=True to Volume.from_name or create the directory")
        self.path.mkdir(parents=True, exist_ok=True)
        return self.path

    hydrate = ensure

    def commit(self):
        """A no-op. A thaw Volume is a plain host directory bind-mounted into
        containers, so writes are visible everywhere as soon as they are made;
        there is nothing to upload. (Modal needs commit() to persist changes.)"""
        return None

    def reload(self):
        """A no-op. Containers see the Volume's directory itself through a bind
        mount, so other containers' writes are already visible; there is
        nothing to fetch. (Modal needs reload() to see others' commits.)"""
        return None

    # -- a few of Modal's file helpers, on the host directory
    def _resolve(self, path):
        p = (self.path / str(path).lstrip("/")).resolve()
        root = self.path.resolve()
        if p != root and root not in p.parents:
            raise InvalidError(f"path {path!r} is outside Volume '{self.name}'")
        return p

    def listdir(self, path="/", recursive=False):
        base = self._resolve(path)
        it = base.rglob("*") if recursive else base.iterdir()
        return sorted(str(p.relative_to(self.path.resolve())) for p in it)

    def read_file(self, path):
        yield self._resolve(path).read_bytes()

    def remove_file(self, path, recursive=False):
        p = self._resolve(path)
        if p.is_dir():
            if not recursive:
                raise InvalidError(f"{path!r} is a directory; pass recursive=True")
            shutil.rmtree(p)
        else:
            p.unlink()

    def describe(self):
        return {"name": self.name, "create_if_missing": self.create_if_missing,
                "path": str(self.path)}

    def __repr__(self):
        return f"Volume({self.name!r})"

    def __eq__(self, other):
        return isinstance(other, Volume) and other.name == self.name

    def __hash__(self):
        return hash(("Volume", self.name))
