"""thaw.Queue: Modal's distributed FIFO queue, kept in thaw's store and
shared by the host and every function container. Values are any picklable
objects (pickled as call arguments are: cloudpickle, when installed); a
queue has a default partition and any number of named ones, each its own
FIFO."""

import queue as _stdlib_queue
import time

from ._aio import aio_method
from ._objects import NamedObject
from ._protocol import dump_payload, load_payload
from ._wakeup import Waiter, signal
from .exception import InvalidError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS q (id INTEGER PRIMARY KEY AUTOINCREMENT, part TEXT NOT NULL, v BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS q_part ON q (part, id);
"""
# Looks at an empty queue, between wake-ups (thaw._wakeup): pauses growing
# to 0.1 s, and to 1 s as a fallback once wake-ups were seen to come.
_POLL_MIN_S, _POLL_MAX_S, _POLL_MAX_WOKEN_S = 0.005, 0.1, 1.0


def _partition(p):
    if p is None:
        return ""
    if not isinstance(p, str) or not p or len(p) > 64:
        raise InvalidError(f"Queue partition {p!r} must be a non-empty string of at most 64 characters")
    return p


class Queue(NamedObject):
    """A named queue in thaw's store. `get` on an empty queue waits until a
    value comes (a put wakes it: thaw._wakeup), or raises queue.Empty."""

    _kind, _label, _schema, _id_prefix = "queues", "Queue", _SCHEMA, "qu"
    _woken_before = False  # a wait of this handle was woken by a put (thaw._wakeup)

    @classmethod
    def ephemeral(cls, **kwargs):
        """A Queue that exists for the duration of the `with` block."""
        return cls._temporary()

    @aio_method
    def put(self, v, block=True, timeout=None, *, partition=None, partition_ttl=None):
        """Append v (thaw's queues have no size limit, so a put never waits)."""
        self.put_many([v], partition=partition)

    @aio_method
    def put_many(self, vs, block=True, timeout=None, *, partition=None, partition_ttl=None):
        part = _partition(partition)
        rows = [(part, dump_payload(v)) for v in vs]
        with self._store.connect(write=True) as c:
            c.executemany("INSERT INTO q (part, v) VALUES (?, ?)", rows)
        signal(self._store.path)  # committed: waiters may look now

    def _take(self, n, part):
        # Looking costs no write lock: the many polls of an empty queue do
        # not stand in the way of the puts.
        with self._store.connect() as c:
            if c.execute("SELECT 1 FROM q WHERE part = ? LIMIT 1", (part,)).fetchone() is None:
                return []
        with self._store.connect(write=True) as c:
            rows = c.execute("SELECT id, v FROM q WHERE part = ? ORDER BY id LIMIT ?", (part, n)).fetchall()
            if rows:
                c.execute("DELETE FROM q WHERE part = ? AND id <= ?", (part, rows[-1][0]))
        return [load_payload(v) for _, v in rows]

    def _polls(self, timeout, waiter):
        """Pauses between looks at an empty queue, until the timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = _POLL_MIN_S
        while True:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                pause = min(pause, left)
            yield pause
            # Fewer looks only where a wake-up was seen to come: where none
            # can (a store on another kernel, a signal file others cannot
            # write), looks are the only way.
            if waiter.woken:
                self._woken_before = True
            most = _POLL_MAX_WOKEN_S if self._woken_before else _POLL_MAX_S
            pause = min(pause * 2, most)

    # A wait begins with a look (which also makes the queue, where it is
    # made on first use), then a Waiter, then a look again: a value put
    # after the Waiter was made wakes it, one put before it is seen by the
    # second look.

    def _wait_take(self, n, block, timeout, partition):
        part = _partition(partition)
        got = self._take(n, part)
        if got or not block:
            return got
        with Waiter(self._store.path) as waiter:
            got = self._take(n, part)
            for pause in self._polls(timeout, waiter):
                if got:
                    break
                waiter.wait(pause)
                got = self._take(n, part)
        return got

    async def _wait_take_async(self, n, block, timeout, partition):
        # The take happens here, on the event loop (only the sleep is in a
        # thread): a cancelled await takes nothing, so no value is lost.
        part = _partition(partition)
        got = self._take(n, part)
        if got or not block:
            return got
        with Waiter(self._store.path) as waiter:
            got = self._take(n, part)
            for pause in self._polls(timeout, waiter):
                if got:
                    break
                await waiter.wait_async(pause)
                got = self._take(n, part)
        return got

    async def _get_async(self, block=True, timeout=None, *, partition=None):
        got = await self._wait_take_async(1, block, timeout, partition)
        if not got:
            raise _stdlib_queue.Empty()
        return got[0]

    async def _get_many_async(self, n_values, block=True, timeout=None, *, partition=None):
        return await self._wait_take_async(max(int(n_values), 1), block, timeout, partition)

    @aio_method(aio=_get_async)
    def get(self, block=True, timeout=None, *, partition=None):
        """The oldest value, removed. Empty queue: with block=True wait (up to
        timeout seconds, forever if None), then raise queue.Empty; with
        block=False raise queue.Empty at once."""
        got = self._wait_take(1, block, timeout, partition)
        if not got:
            raise _stdlib_queue.Empty()
        return got[0]

    @aio_method(aio=_get_many_async)
    def get_many(self, n_values, block=True, timeout=None, *, partition=None):
        """Up to n_values of the oldest values, removed; waits as get() does
        for the first one, and returns [] where get() would raise."""
        return self._wait_take(max(int(n_values), 1), block, timeout, partition)

    @aio_method
    def len(self, *, partition=None, total=False):
        with self._store.connect() as c:
            if total:
                return c.execute("SELECT COUNT(*) FROM q").fetchone()[0]
            return c.execute("SELECT COUNT(*) FROM q WHERE part = ?", (_partition(partition),)).fetchone()[0]

    def __len__(self):
        return self.len()

    @aio_method
    def clear(self, *, partition=None, all=False):  # noqa: A002 - Modal's name
        with self._store.connect(write=True) as c:
            if all:
                c.execute("DELETE FROM q")
            else:
                c.execute("DELETE FROM q WHERE part = ?", (_partition(partition),))

    @aio_method(iterates=True)
    def iterate(self, *, partition=None, item_poll_timeout=0.0):
        """The values in order without taking them (as Modal's iterate), and
        those put meanwhile, until none has come for item_poll_timeout s."""
        return self._iterate(_partition(partition), item_poll_timeout)

    def _next_after(self, part, last_id):
        with self._store.connect() as c:
            return c.execute("SELECT id, v FROM q WHERE part = ? AND id > ? ORDER BY id LIMIT 1",
                             (part, last_id)).fetchone()

    def _iterate(self, part, item_poll_timeout):
        last_id = 0
        while True:
            row = self._next_after(part, last_id)
            if row is None and item_poll_timeout > 0:
                with Waiter(self._store.path) as waiter:
                    row = self._next_after(part, last_id)
                    for pause in self._polls(item_poll_timeout, waiter):
                        if row is not None:
                            break
                        waiter.wait(pause)
                        row = self._next_after(part, last_id)
            if row is None:
                return
            last_id = row[0]
            yield load_payload(row[1])
