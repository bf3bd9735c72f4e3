"""Functions with pool settings: min_containers (kept warm by `thaw serve`),
max_containers (calls wait for a container), scaledown_window."""
import socket
import time

import thaw

app = thaw.App("e2e-pool")


@app.function(enable_memory_snapshot=True, min_containers=2, scaledown_window=1)
def warm():
    return socket.gethostname()


@app.function(max_containers=1, scaledown_window=1)
def one_at_a_time(i):
    time.sleep(0.3)
    return socket.gethostname()
