"""A server started in @enter(snap=True) on a port the kernel chose, or on
a unix socket in a directory of the host's /tmp: its listening socket is
in the snapshot, and on the host's network (or its /tmp) only one
container at a time can bind that address again. One in the container's
own temporary directory is each container's own."""
import http.server
import os
import socket
import socketserver
import tempfile
import threading
import time
import urllib.request

import thaw as modal

app = modal.App("e2e-listening")


class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = socket.gethostname().encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@app.cls(enable_memory_snapshot=True)
class LocalServer:
    @modal.enter(snap=True)
    def start(self):
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @modal.method()
    def ask(self, hold):
        time.sleep(hold)
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/", timeout=10) as r:
            answer = r.read().decode()
        return answer == socket.gethostname()


class UnixHello(socketserver.StreamRequestHandler):
    def handle(self):
        self.wfile.write(socket.gethostname().encode())


def serve_unix(where):
    """A server on a unix socket in a new directory of `where` (None: the
    temporary directory); its path."""
    path = os.path.join(tempfile.mkdtemp(prefix="e2e-listening-", dir=where), "server")
    server = socketserver.ThreadingUnixStreamServer(path, UnixHello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return path


def ask_unix(path, hold):
    time.sleep(hold)
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(path)
        answer = s.recv(256).decode()
    return answer == socket.gethostname()


@app.cls(enable_memory_snapshot=True)
class UnixServer:
    @modal.enter(snap=True)
    def start(self):
        self.path = serve_unix(None)

    @modal.method()
    def ask(self, hold):
        return ask_unix(self.path, hold)


@app.cls(enable_memory_snapshot=True)
class HostUnixServer:
    @modal.enter(snap=True)
    def start(self):
        self.path = serve_unix("/tmp")

    @modal.method()
    def ask(self, hold):
        return ask_unix(self.path, hold)
