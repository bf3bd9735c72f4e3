"""A function whose global scope holds what the engine refuses to
checkpoint (an io_uring instance): its deploy records a failed snapshot
creation and it cold-starts."""
import ctypes

import thaw

app = thaw.App("e2e-unsnappable")

_IO_URING_SETUP = 425  # x86-64
_params = ctypes.create_string_buffer(120)  # struct io_uring_params, zeroed
RING = ctypes.CDLL(None, use_errno=True).syscall(_IO_URING_SETUP, 8, _params)
assert RING >= 0, f"io_uring_setup: errno {ctypes.get_errno()}"


@app.function(enable_memory_snapshot=True)
def ping():
    return "pong"
