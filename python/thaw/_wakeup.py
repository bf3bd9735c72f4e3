"""Wake-ups for a Queue's waiters, across processes and containers.

A `get` on an empty queue finds a new value by looking again, after pauses
growing to 0.1 s: a value put meanwhile waited for the next look. Now each
queue has a signal file (`.<name>.put` beside its database) holding a
32-bit counter. A writer, after its commit, changes the counter and wakes
the futex on it; a waiter reads the counter before it looks, and if the
queue is empty sleeps in FUTEX_WAIT on that value, which returns at once if
a put came in between. A futex on a shared file mapping is keyed by the
file's inode and offset, so it reaches every process that maps the file:
containers see the store through bind mounts of the same inodes.

Looks go on as a fallback, less often, where a wake-up works (and as
before where it cannot). The mapping lives only while one `get` waits, so
no memory snapshot holds it. (inotify would do too, but closing an inotify
descriptor waits for an RCU grace period: ~6 ms per `get` here.)"""

import contextlib
import ctypes
import ctypes.util
import errno
import mmap
import os

_SYS_FUTEX = 202  # x86-64
_FUTEX_WAIT, _FUTEX_WAKE = 0, 1
_WAKE_ALL = 0x7fffffff


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def _libc():
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

    def __init__(self, path):
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            # Never shrunk: a mapping past the end would fault (SIGBUS).
            if os.fstat(fd).st_size < 4:
                os.ftruncate(fd, 4)
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
    with contextlib.suppress(OSError, ValueError):   # a directory gone with its queue: no one waits
        counter = _Counter(signal_path(db_path))
        try:
            counter.bump()
            _LIBC.syscall(_SYS_FUTEX, ctypes.c_void_p(counter.address), _FUTEX_WAKE, _WAKE_ALL, None, None, 0)
        finally:
            counter.close()


class Waiter:
    """Sleeps until the object at db_path is signalled, or a pause ends. Made
    before the first look, so that a value put after that look wakes it."""

    def __init__(self, db_path):
        self._counter = None
        if _LIBC is None:
            return
        with contextlib.suppress(OSError, ValueError):  # no directory yet: the look says why
            self._counter = _Counter(signal_path(db_path))
            self._seen = self._counter.value

    @property
    def active(self):
        """Whether a put wakes it (else each wait is a plain pause)."""
        return self._counter is not None

    def wait(self, timeout):
        """Returns when a put came since the last wait began (True), or after
        timeout s (False). A signal to the process ends it early too."""
        if not self.active:
            if timeout > 0:
                _sleep(timeout)
            return False
        seen, self._seen = self._seen, self._counter.value
        if seen != self._seen:
            return True   # a put between the look and now
        ts = _Timespec(int(timeout), int((timeout - int(timeout)) * 1e9))
        r = _LIBC.syscall(_SYS_FUTEX, ctypes.c_void_p(self._counter.address), _FUTEX_WAIT,
                          ctypes.c_uint32(seen), ctypes.byref(ts), None, 0)
        if r == 0 or ctypes.get_errno() in (errno.EAGAIN, errno.EINTR):
            with contextlib.suppress(AttributeError):   # closed meanwhile (a cancelled await)
                self._seen = self._counter.value
            return True
        return False   # ETIMEDOUT

    async def wait_async(self, timeout):
        """wait() for a coroutine: in a thread, so the event loop goes on."""
        import asyncio
        if not self.active:
            await asyncio.sleep(timeout)
            return False
        return await asyncio.get_running_loop().run_in_executor(None, self.wait, timeout)

    def close(self):
        if self._counter is not None:
            self._counter.close()
            self._counter = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _sleep(seconds):
    import time
    time.sleep(seconds)
