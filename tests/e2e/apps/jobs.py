"""Spawned jobs whose results other processes read (FunctionCall.from_id)."""
import os
import time

import thaw

app = thaw.App("e2e-jobs")


@app.function(enable_memory_snapshot=True)
def job(x, go_file):
    # Runs until the test lets it finish, so "not ready yet" is certain.
    open(go_file + ".started", "w").close()
    while not os.path.exists(go_file):
        time.sleep(0.02)
    open(go_file + ".finished", "w").close()
    return x * 2


@app.function(enable_memory_snapshot=True)
def failing_job():
    raise ValueError("the job failed on purpose")
