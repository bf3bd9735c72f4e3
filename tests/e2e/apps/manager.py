"""A class whose snapshot phase starts a multiprocessing.Manager, as code
that shares a dict or a queue between worker processes does: a server
process listening on a unix path, and connections it accepted from the
function's process (one per proxy). The snapshot holds both ends of each
connection; a restored container's proxies answer at once."""
import multiprocessing
import time

import thaw

app = thaw.App("e2e-manager")


@app.cls(enable_memory_snapshot=True, scaledown_window=2)
class Shared:
    @thaw.enter(snap=True)
    def start(self):
        self.manager = multiprocessing.get_context("fork").Manager()
        self.table = self.manager.dict(loaded="in the snapshot")
        self.jobs = self.manager.Queue()
        self.jobs.put("queued in the snapshot")

    @thaw.method()
    def use(self, key, hold=0):
        time.sleep(hold)  # two containers at once: each its own Manager
        self.table[key] = len(self.table)
        return {"table": dict(self.table), "job": self.jobs.get(timeout=10), "address": self.manager.address}
