"""A function with buffer_containers: `thaw serve` keeps one idle container
beyond the busy ones while calls are in flight. Each call blocks until the
test creates $E2E_DIR/release-<tag>, so the test decides how long the load
lasts."""
import os
import socket
import time

import thaw

E2E_DIR = os.environ["E2E_DIR"]
image = thaw.Image.debian_slim().env({"E2E_DIR": E2E_DIR})
app = thaw.App("e2e-buffer", image=image)


@app.function(enable_memory_snapshot=True, buffer_containers=1, scaledown_window=1)
def held(tag):
    release = os.path.join(E2E_DIR, f"release-{tag}")
    deadline = time.monotonic() + 120
    while not os.path.exists(release):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{release} never appeared")
        time.sleep(0.02)
    return socket.gethostname()
