"""A class whose @enter(snap=False) raises on demand, to tell the function's
own errors from a snapshot's: with $E2E_DIR/always_fail present it raises in
every container (a bug in the user's code); with $E2E_DIR/fail_if_old it
raises only in a process whose global scope ran more than a second ago,
which after a restore is always the case (the snapshot's state is old)."""
import os
import time

import thaw

E2E_DIR = os.environ["E2E_DIR"]
image = thaw.Image.debian_slim().env({"E2E_DIR": E2E_DIR})
app = thaw.App("e2e-enter-fails", image=image)
LOADED_AT = time.time()


@app.cls(enable_memory_snapshot=True)
class Service:
    @thaw.enter(snap=False)
    def connect(self):
        if os.path.exists(os.path.join(E2E_DIR, "always_fail")):
            raise ConnectionError("the database is down")
        if os.path.exists(os.path.join(E2E_DIR, "fail_if_old")) and time.time() - LOADED_AT > 1.0:
            raise RuntimeError("state from the snapshot is stale")

    @thaw.method()
    def ping(self):
        return "pong"
