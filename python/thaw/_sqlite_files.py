"""SQLite databases in the container's own /dev/shm that the snapshot
phase leaves open.

Each restored container gets its own copy of the container's /dev/shm, a
tmpfs of its own, with each file's inode number as it was (SQLite writes
only while the path names the inode it opened) but not the device number:
a filesystem's is the kernel's pick. SQLite finds the locks a process
already holds on a database by the file's device and inode, so in a
restored container a connection opened after the restore does not see
those of the connection kept from the snapshot: both could take the
write lock at once (an SQLAlchemy pool opening a second connection while
the first writes). No restore can give the device number back, so the
snapshot phase is told, with what to do instead."""

import os

from ._temp_files import in_own_dev_shm

HEADER = b"SQLite format 3\x00"


def open_sqlite_databases():
    """The paths of the SQLite databases in the container's own /dev/shm
    that this process holds open, sorted."""
    found = set()
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return []
    for name in fds:
        try:
            fd = int(name)
            path = os.readlink(f"/proc/self/fd/{name}")
            if path.endswith(" (deleted)") or not in_own_dev_shm(path):
                continue
            if os.pread(fd, len(HEADER), 0) == HEADER:
                found.add(path)
        except (OSError, ValueError):  # gone meanwhile, a directory, write-only
            continue
    return sorted(found)


def sqlite_warning(paths):
    return ("the snapshot phase leaves SQLite databases in the container's own temporary directory "
            "open: " + ", ".join(paths) + "; each restored container's copy has the file's inode "
            "number but not its device number, so a connection opened after the restore does not "
            "share the locks of the one kept from the snapshot (two could write at once); close "
            "them before @enter(snap=True) returns (SQLAlchemy: engine.dispose()) and connect after "
            "the restore, or keep to the one connection")
