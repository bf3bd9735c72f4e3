"""A plain function whose global scope is what the snapshot holds.

The global scope appends a line to $E2E_DIR/global_runs each time it runs,
so a test can tell a restore (no new line) from a cold start (a new line).
$E2E_DIR comes from the test's environment at deploy time and reaches the
container through Image.env.
"""
import gc
import os
import random
import socket
import time

import thaw

E2E_DIR = os.environ["E2E_DIR"]
image = thaw.Image.debian_slim().env({"E2E_DIR": E2E_DIR})
app = thaw.App("e2e-plain", image=image)

with open(os.path.join(E2E_DIR, "global_runs"), "a") as f:
    f.write(f"{os.getpid()}\n")
LOADED_AT = time.time()
TABLE = [i * i for i in range(200_000)]  # some state worth keeping


@app.function(enable_memory_snapshot=True)
def square(x, sleep=0.0):
    time.sleep(sleep)
    return {
        "value": x * x,
        "table_ok": TABLE[x] == x * x,
        "container": socket.gethostname(),
        "random": random.random(),
        "loaded_at": LOADED_AT,
        # objects the snapshot holds are out of the collector's reach
        "frozen": gc.get_freeze_count(),
    }


@app.local_entrypoint()
def main():
    r = square.remote(12)
    print(f"square(12) = {r['value']} in container {r['container']}")
