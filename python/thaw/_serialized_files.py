"""Where serialized=True functions and classes wait for their containers:
$THAW_HOME/serialized/<sha256>.pkl, named by content, so written once.

The runtime sweeps away the pickles nothing uses (runtime/serialized_files.h):
one is used while an app's current version names it or a process holds a
shared flock on it. This process holds one on each pickle it writes or
reuses, for as long as it runs (its calls may start containers that load
it), and lets go at exit before the runtime it started sweeps.
"""

import fcntl
import os
import threading

_held = {}  # path → fd holding LOCK_SH
_lock = threading.Lock()


def hold(path, payload):
    """Make sure path holds payload, and hold it."""
    path = str(path)
    with _lock:
        if path in _held:
            return
        while True:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                _held[path] = _write(path, payload)
                return
            fcntl.flock(fd, fcntl.LOCK_SH)
            if _still_named(fd, path):
                _held[path] = fd
                return
            os.close(fd)  # swept between the open and the lock: write it again


def _still_named(fd, path):
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (named.st_dev, named.st_ino)


def _write(path, payload):
    """Written aside, held, then renamed into place: never visible unheld
    or half written."""
    directory, name = os.path.split(path)
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{name[:-len('.pkl')]}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view):]
        fcntl.flock(fd, fcntl.LOCK_SH)
        os.replace(tmp, path)
    except BaseException:
        os.close(fd)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return fd


def release_all():
    """Stop holding them (at exit): a sweep may take those no one else uses."""
    with _lock:
        fds = list(_held.values())
        _held.clear()
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass
