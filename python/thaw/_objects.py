"""Where Dict and Queue keep their contents: one SQLite database per object
under $THAW_HOME/objects/<kind>/<name>.db, shared by the host and every
function container (which see the host's filesystem and get THAW_HOME).

A connection is opened per operation and closed at once, so that no
snapshot ever holds one open: a snapshot with an open database would be
refused at restore as soon as the database changed."""

import contextlib
import os
import sqlite3
import urllib.parse
import uuid

from ._state import warn
from ._volume import check_name, thaw_home
from ._wakeup import signal_path
from .exception import NotFoundError

_BUSY_TIMEOUT_S = 60


def object_path(kind, name):
    return thaw_home() / "objects" / kind / f"{name}.db"


class Store:
    """One named object's database."""

    def __init__(self, kind, label, name, schema, create_if_missing):
        self.kind, self.label = kind, label
        self.name = check_name(label, name)
        self.schema = schema
        self.create_if_missing = bool(create_if_missing)
        self.found = False  # this handle has used the object: if it goes, it was deleted

    @property
    def path(self):
        return object_path(self.kind, self.name)

    def exists(self):
        return self.path.exists()

    def create(self):
        """Creates the database if it is missing (atomically: built under a
        temporary name, then linked into place)."""
        if self.path.exists():
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.name}.{uuid.uuid4().hex}.tmp")
        conn = sqlite3.connect(tmp)
        try:
            conn.execute("PRAGMA auto_vacuum=FULL")  # taken values give their space back
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(self.schema)
            conn.commit()
        finally:
            conn.close()
        try:
            os.link(tmp, self.path)  # fails if another process won the race: theirs stands
        except FileExistsError:
            pass
        finally:
            tmp.unlink()

    @contextlib.contextmanager
    def connect(self, write=False):
        """A connection for one operation; with write=True inside a
        transaction that takes the write lock at once (so a read followed by
        a delete cannot race another process)."""
        if not self.path.exists():
            if self.found:
                raise NotFoundError(f"{self.label} '{self.name}' was deleted (look it up again with "
                                    f"{self.label}.from_name to use a new one)")
            if not self.create_if_missing:
                raise NotFoundError(f"{self.label} '{self.name}' not found: create it with "
                                    f"{self.label}.from_name({self.name!r}, create_if_missing=True)")
            self.create()
        # mode=rw: one deleted since the check above is not made again, empty.
        try:
            conn = sqlite3.connect(f"file:{urllib.parse.quote(str(self.path))}?mode=rw", uri=True,
                                   timeout=_BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.OperationalError:
            if self.path.exists():
                raise
            raise NotFoundError(f"{self.label} '{self.name}' was deleted") from None
        self.found = True
        try:
            if write:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            else:
                yield conn
        finally:
            conn.close()

    def delete(self):
        if not self.path.exists():
            raise NotFoundError(f"{self.label} '{self.name}' not found")
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{self.path}{suffix}")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(signal_path(self.path))   # a Queue's (thaw._wakeup)


class NamedObject:
    """What Dict and Queue share: a name, its Store, and Modal's class
    methods to look one up, make a temporary one, or delete one."""

    _kind = _label = _schema = _id_prefix = None  # set by each subclass

    def __init__(self, name, create_if_missing=False):
        self._store = Store(self._kind, self._label, name, self._schema, create_if_missing)

    @classmethod
    def from_name(cls, name, *, environment_name=None, create_if_missing=False, client=None):
        """The object called `name` (created on first use if create_if_missing)."""
        if environment_name is not None:
            warn(f"thaw: {cls._label}.from_name(environment_name={environment_name!r}) is "
                 "ignored: thaw has a single environment per THAW_HOME")
        return cls(name, create_if_missing=create_if_missing)

    @classmethod
    def lookup(cls, name, **kwargs):
        return cls.from_name(name, **kwargs)

    @classmethod
    def delete(cls, name, *, environment_name=None, client=None):
        """Delete the object called `name` and its contents."""
        cls(name)._store.delete()

    @classmethod
    @contextlib.contextmanager
    def _temporary(cls):
        obj = cls(f"ephemeral-{uuid.uuid4().hex[:12]}", create_if_missing=True)
        try:
            yield obj
        finally:
            with contextlib.suppress(Exception):
                obj._store.delete()

    @property
    def name(self):
        return self._store.name

    @property
    def object_id(self):
        return f"{self._id_prefix}-{self.name}"

    def hydrate(self, client=None):
        with self._store.connect():
            pass
        return self

    def __repr__(self):
        return f"{self._label}({self.name!r})"
