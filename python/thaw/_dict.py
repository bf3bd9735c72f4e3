"""thaw.Dict: Modal's distributed dictionary, kept in thaw's store and
shared by the host and every function container. Keys and values are any
picklable objects; keys are compared by their pickle (as in Modal, where
keys are serialized too), made by plain pickle without its memo so that
equal keys give equal bytes; values are pickled as call arguments are
(cloudpickle, when installed). Iteration follows the order keys were first
set."""

import contextlib
import io
import pickle

from ._aio import aio_method
from ._objects import NamedObject
from ._protocol import dump_payload, load_payload

_SCHEMA = "CREATE TABLE IF NOT EXISTS kv (k BLOB PRIMARY KEY, v BLOB NOT NULL);"
_MISSING = object()


def _key(k):
    # Without the memo: ("x", "x") pickles the same whether its two strings
    # are one object or two equal ones.
    buf = io.BytesIO()
    p = pickle.Pickler(buf, protocol=4)
    p.fast = True
    p.dump(k)
    return buf.getvalue()


_UPSERT = "INSERT INTO kv (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v"


class Dict(NamedObject):
    """A named dictionary in thaw's store."""

    _kind, _label, _schema, _id_prefix = "dicts", "Dict", _SCHEMA, "di"

    @classmethod
    @contextlib.contextmanager
    def ephemeral(cls, data=None, **kwargs):
        """A Dict that exists for the duration of the `with` block."""
        with cls._temporary() as d:
            if data:
                d.update(data)
            yield d

    def info(self):
        return {"name": self.name, "path": str(self._store.path)}

    @aio_method
    def get(self, key, default=None):
        with self._store.connect() as c:
            row = c.execute("SELECT v FROM kv WHERE k = ?", (_key(key),)).fetchone()
        return default if row is None else load_payload(row[0])

    def __getitem__(self, key):
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value

    @aio_method
    def contains(self, key):
        with self._store.connect() as c:
            return c.execute("SELECT 1 FROM kv WHERE k = ?", (_key(key),)).fetchone() is not None

    def __contains__(self, key):
        return self.contains(key)

    @aio_method
    def len(self):
        with self._store.connect() as c:
            return c.execute("SELECT COUNT(*) FROM kv").fetchone()[0]

    def __len__(self):
        return self.len()

    @aio_method
    def put(self, key, value, *, skip_if_exists=False):
        """Set key to value; with skip_if_exists, only if the key is absent.
        Returns whether the value was written."""
        row = (_key(key), dump_payload(value))
        with self._store.connect(write=True) as c:
            if skip_if_exists:
                return c.execute("INSERT OR IGNORE INTO kv (k, v) VALUES (?, ?)", row).rowcount == 1
            c.execute(_UPSERT, row)
        return True

    def __setitem__(self, key, value):
        self.put(key, value)

    @aio_method
    def update(self, other=None, /, **kwargs):
        items = dict(other or {}, **kwargs)
        rows = [(_key(k), dump_payload(v)) for k, v in items.items()]
        with self._store.connect(write=True) as c:
            c.executemany(_UPSERT, rows)

    @aio_method
    def pop(self, key, default=_MISSING):
        """Remove key and return its value (KeyError if absent and no default)."""
        with self._store.connect(write=True) as c:
            row = c.execute("SELECT v FROM kv WHERE k = ?", (_key(key),)).fetchone()
            if row is not None:
                c.execute("DELETE FROM kv WHERE k = ?", (_key(key),))
        if row is None:
            if default is _MISSING:
                raise KeyError(key)
            return default
        return load_payload(row[0])

    def __delitem__(self, key):
        self.pop(key)

    @aio_method
    def clear(self):
        with self._store.connect(write=True) as c:
            c.execute("DELETE FROM kv")

    def _rows(self):
        with self._store.connect() as c:
            return c.execute("SELECT k, v FROM kv ORDER BY rowid").fetchall()

    @aio_method(iterates=True)
    def keys(self):
        return iter([pickle.loads(k) for k, _ in self._rows()])

    @aio_method(iterates=True)
    def values(self):
        return iter([load_payload(v) for _, v in self._rows()])

    @aio_method(iterates=True)
    def items(self):
        return iter([(pickle.loads(k), load_payload(v)) for k, v in self._rows()])

    def __iter__(self):
        return self.keys()

