"""A class called through handles with other settings (Cls.with_options & co)."""
import os
import threading
import time

import thaw

app = thaw.App("e2e-options")

_lock = threading.Lock()
_running = [0]


@app.cls(enable_memory_snapshot=True, max_containers=1)
class Probe:
    @thaw.enter(snap=True)
    def load(self):
        self.snap_flavour = os.environ.get("FLAVOUR")

    @thaw.method()
    def info(self, sleep=0.0):
        with _lock:
            _running[0] += 1
            at_once = _running[0]
        time.sleep(sleep)
        with _lock:
            _running[0] -= 1
        return {"flavour": os.environ.get("FLAVOUR"), "snap_flavour": self.snap_flavour,
                "container": os.environ["THAW_CONTAINER_ID"], "at_once": at_once}
