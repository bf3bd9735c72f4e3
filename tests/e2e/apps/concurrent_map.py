"""A function taking three inputs at once per container."""
import os
import time

import thaw

app = thaw.App("e2e-concurrent-map")


@app.function(enable_memory_snapshot=True)
@thaw.concurrent(max_inputs=3)
def where(_):
    time.sleep(0.5)
    return os.environ["THAW_CONTAINER_ID"]
