"""A function whose global scope holds what the engine refuses to
checkpoint (a pidfd): its deploy records a failed snapshot creation and it
cold-starts."""
import os

import thaw

app = thaw.App("e2e-unsnappable")

PIDFD = os.pidfd_open(os.getpid())


@app.function(enable_memory_snapshot=True)
def ping():
    return "pong"
