"""Wake-ups for a Queue's waiters, across processes and containers.

A `get` on an empty queue finds a new value by looking again, after pauses;
a value put meanwhile waited for the next look. Now each queue has a signal
file (`.<name>.put` beside its database) holding a 32-bit counter. A
writer, after its commit, adds 1 to the counter and wakes the futex on it
in one atomic step (FUTEX_WAKE_OP); a waiter reads the counter before it
looks, and if the queue is empty sleeps in FUTEX_WAIT on that value, which
returns at once if a put came in between. A futex on a shared file mapping
is keyed by the file's inode and offset, so it reaches every process that
maps the file: containers see the store through bind mounts of the same
inodes. A coroutine's wait watches the counter from the event loop instead
(no thread is held).

Looks go on as a fallback. The mapping lives only while one `get` waits:
a memory snapshot taken while a thread waits in `get` holds it, and the
file changes with every put, so restoring that snapshot is refused (its
container cold-starts). (inotify would do too, but closing an inotify
descriptor waits for an RCU grace period: ~6 ms per `get` here.)"""

import contextlib
import ctypes
import ctypes.util
import errno
import mmap
import os
import platform
import time

_SYS_FUTEX = {"x86_64": 202, "aarch64": 98}.get(platform.machine())
_FUTEX_WAIT, _FUTEX_WAKE_OP = 0, 5
_WAKE_ALL = 0x7fffffff
# FUTEX_OP(FUTEX_OP_ADD, 1, FUTEX_OP_CMP_GE, 0): add 1 to the word, and wake
# its waiters whatever it held.
_ADD_ONE_WAKE_ALL = (1 << 28) | (5 << 24) | (1 << 12) | 0
# How often a coroutine's wait looks at the counter: from 2 ms, slowing to
# 20 ms while nothing comes (an idle waiter wakes its loop 50 times a second).
_ASYNC_CHECK_S, _ASYNC_CHECK_MAX_S = 0.002, 0.02


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def _libc():
    if _SYS_FUTEX is None:
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.syscall.restype = ctypes.c_long
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _libc()


def signal_path(db_path):
    return db_path.with_name(f".{db_path.stem}.put")


class _Counter:
    """The signal file's counter, mapped shared (4 bytes)."""

    def __init__(self, path, owner_of=None):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            # Usable by whoever may use the queue: the database's owner and mode.
            if owner_of is not None:
                with contextlib.suppress(OSError):
                    st = os.stat(owner_of)
                    os.fchmod(fd, st.st_mode & 0o666)
                    os.fchown(fd, st.st_uid, st.st_gid)
        except FileExistsError:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        try:
            # Written, not ftruncated: a hole would be allocated by the first
            # store through the mapping, and on a full disk that is SIGBUS.
            if os.fstat(fd).st_size < 4:
                os.pwrite(fd, b"\0\0\0\0", 0)
            self._map = mmap.mmap(fd, 4)
        finally:
            os.close(fd)
        self._word = ctypes.c_uint32.from_buffer(self._map)

    @property
    def address(self):
        return ctypes.addressof(self._word)

    @property
    def value(self):
        return self._word.value

    def bump(self):
        self._word.value = (self._word.value + 1) & 0xffffffff

    def close(self):
        del self._word   # the buffer export, which would keep the map open
        self._map.close()


def signal(db_path):
    """Wakes the waiters of the object stored at db_path."""
    if _LIBC is None:
        return
    # A directory gone with its queue, a full disk, no permission: no wake-up,
    # and the waiters' looks find the value.
    with contextlib.suppress(OSError, ValueError):
        counter = _Counter(signal_path(db_path), owner_of=db_path)
        try:
            addr = ctypes.c_void_p(counter.address)
            if _LIBC.syscall(_SYS_FUTEX, addr, _FUTEX_WAKE_OP, _WAKE_ALL, ctypes.c_long(_WAKE_ALL), addr,
                             _ADD_ONE_WAKE_ALL) < 0:
                counter.bump()   # no FUTEX_WAKE_OP: a changed counter still ends waits at their next look
        finally:
            counter.close()


class Waiter:
    """Sleeps until the object at db_path is signalled, or a pause ends. Made
    before the first look, so that a value put after that look wakes it.
    `woken` says whether a wake-up has come yet (only then do the looks
    slow down: where none can come, they are the only way)."""

    def __init__(self, db_path):
        self._counter = None
        self.woken = False
        if _LIBC is None:
            return
        with contextlib.suppress(OSError, ValueError):  # no directory yet: the look says why
            self._counter = _Counter(signal_path(db_path), owner_of=db_path)
            self._seen = self._counter.value

    @property
    def active(self):
        """Whether a put can wake it (else each wait is a plain pause)."""
        return self._counter is not None

    def _changed(self):
        value = self._counter.value
        if value == self._seen:
            return False
        self._seen = value
        self.woken = True
        return True

    def wait(self, timeout):
        """Returns when a put came since the last wait began (True), or after
        timeout s (False). A signal to the process ends it early too."""
        if not self.active:
            time.sleep(timeout)
            return False
        if self._changed():
            return True   # a put between the look and now
        deadline = time.monotonic() + timeout
        ts = _Timespec(int(timeout), int((timeout - int(timeout)) * 1e9))
        r = _LIBC.syscall(_SYS_FUTEX, ctypes.c_void_p(self._counter.address), _FUTEX_WAIT,
                          ctypes.c_uint32(self._seen), ctypes.byref(ts), None, 0)
        if r == 0 or ctypes.get_errno() in (errno.EAGAIN, errno.EINTR):
            return self._changed()
        if ctypes.get_errno() != errno.ETIMEDOUT:
            # A futex that does not work here: the pause, not a spin.
            time.sleep(max(0.0, deadline - time.monotonic()))
        return False

    async def wait_async(self, timeout):
        """wait() for a coroutine, on the event loop: it looks at the counter
        (a read of shared memory) every 2 to 20 ms, and holds no thread."""
        import asyncio
        if not self.active:
            await asyncio.sleep(timeout)
            return False
        deadline = time.monotonic() + timeout
        check = _ASYNC_CHECK_S
        while True:
            if self._changed():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            await asyncio.sleep(min(check, left))
            check = min(check * 1.5, _ASYNC_CHECK_MAX_S)

    def close(self):
        if self._counter is not None:
            self._counter.close()
            self._counter = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
