"""A function whose global scope holds what the engine refuses to
checkpoint (a UDP socket): its deploy records a failed snapshot creation
and it cold-starts."""
import socket

import thaw

app = thaw.App("e2e-unsnappable")

UDP = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)


@app.function(enable_memory_snapshot=True)
def ping():
    return "pong"
