"""Volume: a named directory in thaw's store, $THAW_HOME/volumes/<name>
(THAW_HOME defaults to /var/lib/thaw), bind-mounted by the runtime at the
paths a function asks for (`volumes={"/data": vol}`).
"""

import contextlib
import copy
import dataclasses
import enum
import os
import stat
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


class FileEntryType(enum.IntEnum):
    UNSPECIFIED = 0
    FILE = 1
    DIRECTORY = 2
    SYMLINK = 3
    FIFO = 4
    SOCKET = 5


@dataclasses.dataclass(frozen=True)
class FileEntry:
    """A file or directory in a Volume, as Modal's Volume.listdir gives it."""
    path: str
    type: FileEntryType
    mtime: int
    size: int


class _BatchUpload:
    def __init__(self, volume, force):
        self._volume, self._force, self._files = volume, force, []

    def put_file(self, local_file, remote_path, mode=None):
        """local_file: a path or a binary file object."""
        self._files.append((local_file, remote_path, mode))

    def put_directory(self, local_path, remote_path, recursive=True):
        base = Path(local_path)
        if not base.is_dir():
            raise FileNotFoundError(f"put_directory: {local_path} is not a directory")
        for p in sorted(base.rglob("*") if recursive else base.iterdir()):
            if p.is_file():
                self.put_file(p, f"{str(remote_path).rstrip('/')}/{p.relative_to(base)}")

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            return False
        targets = [(src, self._volume._resolve(dst), mode) for src, dst, mode in self._files]
        if not self._force:
            existing = [str(t.relative_to(self._volume.path.resolve())) for _, t, _ in targets if t.exists()]
            if existing:
                raise FileExistsError(f"Volume '{self._volume.name}' has {', '.join(existing)} "
                                      f"already; pass batch_upload(force=True) to overwrite")
        for src, target, mode in targets:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.upload-{uuid.uuid4().hex[:8]}")
            with open(tmp, "wb") as out:
                if hasattr(src, "read"):
                    shutil.copyfileobj(src, out)
                else:
                    with open(src, "rb") as f:
                        shutil.copyfileobj(f, out)
            if mode is not None:
                os.chmod(tmp, mode)
            os.replace(tmp, target)  # readers never see half a file
        return False


class Volume:
    """A persistent directory shared by function containers and the host."""

    def __init__(self, name, create_if_missing=False, _ephemeral=False):
        self.name = check_name("Volume", name)
        self.create_if_missing = bool(create_if_missing)
        self._ephemeral = _ephemeral
        self._read_only = False

    def read_only(self):
        """This Volume, mounted read-only where a function or class is given
        it (as Modal's: writes there fail with EROFS)."""
        ro = copy.copy(self)
        ro._read_only = True
        return ro

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
                f"Volume '{self.name}' does not exist ({self.path}): create it with "
                f"`thaw volume create {self.name}` (as with `modal volume create`), or pass "
                f"create_if_missing=True to Volume.from_name")
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

    # -- Modal's file helpers, on the host directory
    def _resolve(self, path):
        if not self.path.is_dir():
            raise NotFoundError(f"Volume '{self.name}' does not exist ({self.path}); create it "
                                f"(`thaw volume create {self.name}`, or create_if_missing=True)")
        p = (self.path / str(path).lstrip("/")).resolve()
        root = self.path.resolve()
        if p != root and root not in p.parents:
            raise InvalidError(f"path {path!r} is outside Volume '{self.name}'")
        return p

    def _entry(self, p):
        st = p.lstat()
        kind = (FileEntryType.SYMLINK if stat.S_ISLNK(st.st_mode) else
                FileEntryType.DIRECTORY if stat.S_ISDIR(st.st_mode) else
                FileEntryType.FILE if stat.S_ISREG(st.st_mode) else
                FileEntryType.FIFO if stat.S_ISFIFO(st.st_mode) else
                FileEntryType.SOCKET if stat.S_ISSOCK(st.st_mode) else FileEntryType.UNSPECIFIED)
        return FileEntry(path=str(p.relative_to(self.path.resolve())), type=kind,
                         mtime=int(st.st_mtime), size=st.st_size)

    def iterdir(self, path="/", *, recursive=True):
        """FileEntry for each file and directory under path (a file's own
        entry when path is a file), as Modal's Volume.iterdir."""
        base = self._resolve(path)
        if not base.exists():
            raise FileNotFoundError(f"Volume '{self.name}' has no {path!r}")
        if not base.is_dir():
            yield self._entry(base)
            return
        for p in sorted(base.rglob("*") if recursive else base.iterdir()):
            yield self._entry(p)

    def listdir(self, path="/", *, recursive=False):
        """A list of FileEntry (path relative to the Volume, type, mtime, size)."""
        return list(self.iterdir(path, recursive=recursive))

    def read_file(self, path):
        """The file's bytes, in chunks (an iterator, as Modal's)."""
        with open(self._resolve(path), "rb") as f:
            while chunk := f.read(1 << 20):
                yield chunk

    def read_file_into_fileobj(self, path, fileobj):
        """Writes the file into fileobj; returns how many bytes."""
        n = 0
        for chunk in self.read_file(path):
            fileobj.write(chunk)
            n += len(chunk)
        return n

    def remove_file(self, path, recursive=False):
        p = self._resolve(path)
        if p.is_dir():
            if not recursive:
                raise InvalidError(f"{path!r} is a directory; pass recursive=True")
            shutil.rmtree(p)
        else:
            p.unlink()

    def copy_files(self, src_paths, dst_path, recursive=False):
        """Copies files (and, with recursive=True, directories) inside the
        Volume; into dst_path when it is a directory."""
        dst = self._resolve(dst_path)
        root = self.path.resolve()
        for src in src_paths:
            s = self._resolve(src)
            target = dst / s.name if dst.is_dir() else dst
            # Checked as _resolve checks: a link a container made must not
            # lead a copy out of the volume.
            if target.is_symlink() or (target.resolve() != root and root not in target.resolve().parents):
                raise InvalidError(f"copy_files: {target} leads outside Volume '{self.name}'")
            if s.is_dir():
                if not recursive:
                    raise InvalidError(f"{src!r} is a directory; pass recursive=True")
                # Links are copied as links, never what they point to.
                shutil.copytree(s, target, symlinks=True, dirs_exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(s, target, follow_symlinks=False)

    def batch_upload(self, force=False):
        """A context manager whose put_file / put_directory copy local files
        into the Volume when the block ends, as Modal's; a file that exists
        is an error (FileExistsError) unless force=True."""
        return _BatchUpload(self, force)

    def describe(self):
        return {"name": self.name, "create_if_missing": self.create_if_missing,
                "path": str(self.path)}

    def __repr__(self):
        return f"Volume({self.name!r}){'.read_only()' if self._read_only else ''}"

    def __eq__(self, other):
        return isinstance(other, Volume) and other.name == self.name

    def __hash__(self):
        return hash(("Volume", self.name))
