"""A function whose global scope opens a UDP socket bound to a port the
kernel chose (as a metrics or discovery client does): the snapshot holds
it, and each restored container, or copy of the live template, has a
working socket, on a port of its own when another holds the first one."""
import socket

import thaw

app = thaw.App("e2e-udp")

SOCK = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
SOCK.bind(("127.0.0.1", 0))
SOCK.settimeout(20)


@app.function(enable_memory_snapshot=True, scaledown_window=2)
def echo(text: str):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.sendto(text.encode(), SOCK.getsockname())
        data, sender = SOCK.recvfrom(1024)
        assert sender[1] == client.getsockname()[1]
    return data.decode()
