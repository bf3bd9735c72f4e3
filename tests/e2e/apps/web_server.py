"""@web_server: the function starts a server process of its own on a port;
`thaw serve --http` forwards requests for its URL to it. The port comes from
the test (E2E_WEB_SERVER_PORT), kept in the image's env for the container."""
import os
import subprocess
import sys

import thaw

PORT = int(os.environ["E2E_WEB_SERVER_PORT"])
image = thaw.Image.debian_slim().env({"E2E_WEB_SERVER_PORT": str(PORT)})
app = thaw.App("e2e-web-server", image=image)

SERVER = r'''
import http.server, json, os, sys, threading, time

SERVER_ID = os.urandom(6).hex()  # pids repeat across containers' namespaces


class Echo(http.server.BaseHTTPRequestHandler):
    def events(self):
        # Server-sent events without a length: the second waits for the
        # test's flag file, so it can only pass if the first came on its own.
        flag = self.path.split("flag=", 1)[1]
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.end_headers()
        self.wfile.write(b"data: one\n\n")
        self.wfile.flush()
        deadline = time.monotonic() + 300  # past the test's read timeout
        while not os.path.exists(flag) and time.monotonic() < deadline:
            time.sleep(0.02)
        self.wfile.write(b"data: two\n\n")
        self.wfile.flush()

    def answer(self):
        if self.path.startswith("/events"):
            return self.events()
        n = int(self.headers.get("content-length") or 0)
        body = json.dumps({"method": self.command, "path": self.path, "server": SERVER_ID,
                           "body": self.rfile.read(n).decode(),
                           "forwarded_for": self.headers.get("x-forwarded-for")}).encode()
        self.send_response(201 if self.command == "POST" else 200)
        self.send_header("content-type", "application/json")
        self.send_header("x-server", "echo")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        if "die=1" in self.path:  # the server crashes after this answer
            threading.Thread(target=lambda: (time.sleep(0.2), os._exit(1))).start()
    do_GET = do_POST = do_PUT = answer
    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Echo).serve_forever()
'''


@app.function(enable_memory_snapshot=True)
@thaw.web_server(PORT, startup_timeout=20)
def echo_server():
    subprocess.Popen([sys.executable, "-c", SERVER, str(PORT)])
