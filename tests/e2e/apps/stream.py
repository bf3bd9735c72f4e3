"""Generators whose values must reach the caller while they still run."""
import os
import time

import thaw

app = thaw.App("e2e-stream")


def _wait_for(path, seconds=30):
    # The caller creates `path` once it holds the value before: a generator
    # whose values came only when it ended would wait here in vain.
    deadline = time.monotonic() + seconds
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@app.function(enable_memory_snapshot=True)
def handshake(d):
    yield "first"
    yield "second" if _wait_for(os.path.join(d, "got-first")) else "not streamed"


@app.function(enable_memory_snapshot=True, max_containers=1, timeout=600)
def endless():
    # One container, and a timeout far beyond the test's patience: the next
    # call is served only if a consumer that stops cancels this one.
    i = 0
    while True:
        yield i
        i += 1
        time.sleep(0.001)


@app.cls(enable_memory_snapshot=True, max_containers=1)
@thaw.concurrent(max_inputs=4)
class Busy:
    @thaw.method()
    def big(self, n):
        # More than every socket buffer on the way holds: the values wait
        # in the runtime while the caller does something else.
        for i in range(n):
            yield str(i) * (1 << 20)

    @thaw.method()
    def ping(self):
        return "pong"
