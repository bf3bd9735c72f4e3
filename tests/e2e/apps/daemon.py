"""A function whose global scope starts a daemon (a double fork: the
daemon leaves its parent and the container's init adopts it). The snapshot
holds the function's own processes only: deploy says the daemon is left
out, and restored containers run without it."""
import os
import time

import thaw

app = thaw.App("e2e-daemon")

if not thaw.is_local():
    kid = os.fork()
    if kid == 0:
        os.setsid()
        if os.fork() == 0:
            os.execvp("sleep", ["sleep", "1000"])
        os._exit(0)
    os.waitpid(kid, 0)
    time.sleep(0.1)  # let the daemon exec


@app.function(enable_memory_snapshot=True)
def ping():
    return "pong"
