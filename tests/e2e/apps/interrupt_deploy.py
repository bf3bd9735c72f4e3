"""A deploy that can be interrupted: the snapshot phase of SlowSnapshot
writes its container's id (the hostname) to $E2E_DIR/started, then sleeps,
so a test knows when to interrupt `thaw deploy` and which container's
cgroups and processes must be gone afterwards."""
import os
import socket
import time

import thaw

E2E_DIR = os.environ["E2E_DIR"]
app = thaw.App("e2e-interrupt-deploy", image=thaw.Image.debian_slim().env({"E2E_DIR": E2E_DIR}))


@app.cls(enable_memory_snapshot=True)
class SlowSnapshot:
    @thaw.enter(snap=True)
    def load(self):
        with open(os.path.join(E2E_DIR, "started.tmp"), "w") as f:
            f.write(socket.gethostname())
        os.rename(os.path.join(E2E_DIR, "started.tmp"), os.path.join(E2E_DIR, "started"))
        time.sleep(120)

    @thaw.method()
    def go(self):
        return "ready"
