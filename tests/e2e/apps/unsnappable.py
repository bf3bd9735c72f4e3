"""A function whose global scope holds what the engine refuses to
checkpoint (an inotify instance): its deploy records a failed snapshot
creation and it cold-starts."""
import ctypes

import thaw

app = thaw.App("e2e-unsnappable")

INOTIFY_FD = ctypes.CDLL(None, use_errno=True).inotify_init1(0)
assert INOTIFY_FD >= 0, ctypes.get_errno()


@app.function(enable_memory_snapshot=True)
def ping():
    return "pong"
