"""A function whose container is killed (SIGKILL) in its global scope,
while the runtime's `start` waits unread on its control channel: the call
must say how the container ended, not that the channel was reset."""
import os
import signal
import time

import thaw

app = thaw.App("e2e-dies-starting")

if not thaw.is_local():
    time.sleep(1)  # the runtime's `start` is sent by now
    os.kill(os.getpid(), signal.SIGKILL)


@app.function()
def never():
    return "unreachable"
