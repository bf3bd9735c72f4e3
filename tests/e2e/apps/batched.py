"""@batched functions: inputs gathered into lists in the container."""
import os

import thaw

app = thaw.App("e2e-batched")


@app.function(enable_memory_snapshot=True, max_containers=1)
@thaw.batched(max_batch_size=4, wait_ms=3000)
def add(xs: list, ys: list) -> list:
    return [{"sum": x + y, "batch": len(xs), "pid": os.getpid()} for x, y in zip(xs, ys)]


@app.function(enable_memory_snapshot=True)
@thaw.batched(max_batch_size=2, wait_ms=5000)
def short(xs):
    return xs[:1]  # one output for the whole batch: an error for each input


@app.cls(enable_memory_snapshot=True, max_containers=1)
class Scaler:
    factor: int = thaw.parameter(default=1)

    @thaw.batched(max_batch_size=3, wait_ms=1000)
    async def scale(self, xs):
        return [[x * self.factor, len(xs)] for x in xs]
