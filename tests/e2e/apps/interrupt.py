"""A call that runs long enough to be interrupted (Ctrl-C on `thaw run` or
`thaw call`). `sleeper` (and SlowStart's @enter) writes its container's id (the hostname) to
$E2E_DIR/started once it runs, so a test knows when to interrupt and which
container's cgroups and processes must be gone afterwards."""
import os
import signal
import socket
import time

import thaw

E2E_DIR = os.environ["E2E_DIR"]
app = thaw.App("e2e-interrupt", image=thaw.Image.debian_slim().env({"E2E_DIR": E2E_DIR}))


def started():
    with open(os.path.join(E2E_DIR, "started.tmp"), "w") as f:
        f.write(socket.gethostname())
    os.rename(os.path.join(E2E_DIR, "started.tmp"), os.path.join(E2E_DIR, "started"))


@app.function(timeout=300)
def sleeper(seconds: float = 120):
    started()
    time.sleep(seconds)
    return "woke up"


@app.cls(timeout=300)
class SlowStart:
    """Interrupted while its container starts (in @enter), before any call runs."""

    @thaw.enter()
    def load(self):
        started()
        time.sleep(120)

    @thaw.method()
    def go(self):
        return "started"


@app.local_entrypoint()
def main(stubborn: bool = False):
    if stubborn:
        # Ctrl-C no longer reaches this process: only a second one ends `thaw run`.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        sleeper.spawn()
        time.sleep(600)
    print(sleeper.remote())
