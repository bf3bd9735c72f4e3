"""Containers that serve a bounded number of inputs."""
import os

import thaw

app = thaw.App("e2e-single-use")


@app.function(enable_memory_snapshot=True, single_use_containers=True)
def once(_):
    return os.environ["THAW_CONTAINER_ID"]


@app.function(enable_memory_snapshot=True, max_inputs=2)
def twice(_):
    return os.environ["THAW_CONTAINER_ID"]


@app.function(enable_memory_snapshot=True, single_use_containers=True, min_containers=1)
def kept(_):
    return os.environ["THAW_CONTAINER_ID"]
