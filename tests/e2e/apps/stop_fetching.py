"""thaw.experimental.stop_fetching_inputs(): a container that asks for no
more inputs gets none, and is stopped with its @exit hooks."""
import os
import socket

import thaw
import thaw.experimental

E2E_DIR = os.environ["E2E_DIR"]
app = thaw.App("e2e-stop-fetching", image=thaw.Image.debian_slim().env({"E2E_DIR": E2E_DIR}))


@app.cls(enable_memory_snapshot=True, scaledown_window=60)
class Worker:
    @thaw.method()
    def work(self, stop):
        if stop:
            thaw.experimental.stop_fetching_inputs()
        return {"container": socket.gethostname(),
                "concurrency": thaw.experimental.get_local_input_concurrency()}

    @thaw.exit()
    def bye(self):
        with open(os.path.join(E2E_DIR, "exits"), "a") as f:
            f.write(socket.gethostname() + "\n")
