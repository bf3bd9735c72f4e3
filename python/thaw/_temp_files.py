"""Temporary files and directories the snapshot phase made with Python's
tempfile helpers in a host directory, kept for every container restored
from the snapshot.

A runtime container's temporary directory (TMPDIR, where tempfile puts
them by default) is in its own /dev/shm, which the snapshot copies and
every restored container gets as it was: those are each container's own,
as in a runtime whose containers have filesystems of their own. But one
made elsewhere — dir="/tmp", a TMPDIR of the image's — is in the host's
filesystem, which thaw's containers share: one object for all restored
containers. The first to end would remove it (its exit runs the
TemporaryDirectory's finalizer), or the first to close the file would
delete it, and every later container would find it gone. So their
automatic removal is switched off before the checkpoint: the snapshot
phase never removes them either (it is killed after its checkpoint), and
they stay as long as the snapshot needs them. An explicit
TemporaryDirectory.cleanup() still removes the directory."""

import gc
import os
import sys

# The container's own /dev/shm: saved with the snapshot, one per container.
OWN = "/dev/shm"


def in_own_dev_shm(path):
    """Whether a path is on the container's own /dev/shm (a host path bound
    there, such as a THAW_HOME in the host's /dev/shm, is on another
    filesystem: the host's, which containers share). None when it is gone
    or no path."""
    try:
        real = os.path.realpath(path)
        if not real.startswith(OWN + "/"):
            return False
        return os.stat(real).st_dev == os.stat(OWN).st_dev
    except (TypeError, ValueError, OSError):  # a TemporaryFile's fd number; gone already
        return None


def _shared(path):
    """Whether a path is in the host's filesystem, which containers share."""
    return in_own_dev_shm(path) is False


def keep_snapshot_temp_files():
    """Switch off the automatic removal of the tempfile objects alive now;
    what was kept, one line each ("/tmp/tmpab12 (TemporaryDirectory)")."""
    tempfile = sys.modules.get("tempfile")
    if tempfile is None:  # nothing made any
        return []
    directory, wrapper = tempfile.TemporaryDirectory, tempfile._TemporaryFileWrapper
    kinds = {}  # type -> which of the two it is, or None
    kept = []
    for obj in gc.get_objects():
        t = type(obj)
        kind = kinds.get(t, False)
        if kind is False:
            kind = kinds[t] = (directory if issubclass(t, directory) else
                               wrapper if issubclass(t, wrapper) else None)
        if kind is None or not _shared(getattr(obj, "name", None)):
            continue
        if kind is directory:
            finalizer = getattr(obj, "_finalizer", None)
            if finalizer is not None and finalizer.detach() is not None:
                kept.append(f"{obj.name} (TemporaryDirectory)")
        elif kind is wrapper:
            closer = getattr(obj, "_closer", None)
            if closer is None or closer.close_called:
                continue
            # Python 3.12 adds delete_on_close beside delete.
            if getattr(closer, "delete", False) or getattr(closer, "delete_on_close", False):
                closer.delete = False
                if hasattr(closer, "delete_on_close"):
                    closer.delete_on_close = False
                kept.append(f"{obj.name} (NamedTemporaryFile)")
    return kept
