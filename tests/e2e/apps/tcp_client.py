"""A function whose global scope connects to a server (as a database or
cache client does): the snapshot is taken with the connection closed, as
Modal's are, and a restored container finds it dropped and reconnects."""
import os
import socket

import thaw

PORT = int(os.environ.get("E2E_TCP_PORT", "0"))
app = thaw.App("e2e-tcp", image=thaw.Image.debian_slim().env({"E2E_TCP_PORT": str(PORT)}))

CONN = None
if not thaw.is_local():
    CONN = socket.create_connection(("127.0.0.1", PORT))


def ask(conn):
    conn.sendall(b"ping\n")
    return conn.recv(100).decode().strip()


@app.function(enable_memory_snapshot=True, scaledown_window=2)
def query():
    global CONN
    try:
        return "same connection: " + ask(CONN)
    except OSError as e:
        CONN = socket.create_connection(("127.0.0.1", PORT))
        return f"reconnected after {type(e).__name__}: " + ask(CONN)
