"""A class whose @enter(snap=True) leaves, for a moment, a connection its
listener has not accepted yet (the server's accept loop runs in a thread
that gets to it a little later): a state the checkpoint refuses but that
passes by itself, so the snapshot is taken on a later attempt."""
import os
import socket
import threading
import time

import thaw

app = thaw.App("e2e-passing-state")


@app.cls(enable_memory_snapshot=True, scaledown_window=2)
class Server:
    @thaw.enter(snap=True)
    def start(self):
        name = f"\0e2e-passing-state-{os.getpid()}"
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(name)
        self.listener.listen(1)
        self.client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.client.connect(name)
        self.client.sendall(b"sent before the snapshot")
        self.accepted = threading.Event()

        def accept_later():
            time.sleep(0.3)
            self.conn, _ = self.listener.accept()
            self.accepted.set()

        threading.Thread(target=accept_later, daemon=True).start()

    @thaw.method()
    def read(self):
        assert self.accepted.wait(10)
        return self.conn.recv(100).decode()
