"""A stand-in for the C++ runtime, in Python, for the SDK's unit tests.

It speaks the client protocol on a unix socket and drives real workers
(`python3 -m thaw._worker`) over a control socketpair installed as fd 3,
exactly as docs/runtime-protocol.md describes — without checkpointing: a
"snapshot" container sends snapshot_ready, then simply gets its start
message (restored: true, a fresh seed) in the same process.

Run as a fake `thaw` binary:  fake_runtime.py serve --socket PATH
Deployed apps come from $FAKE_THAW_APPS: "name=/path/app.py,name2=/path2.py".
$FAKE_THAW_LOG, if set, is a file that gets one JSON line per event.
"""

import concurrent.futures
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "python"))

from thaw._protocol import Channel, recv_msg, send_msg  # noqa: E402

PY = "/usr/bin/python3"


def spawn_worker(app_file, function, snapshot=False, env=None, app=None, stderr=None):
    """Start a worker with a control socketpair as its fd 3. Returns (proc, chan)."""
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    child_fd = child.fileno()

    def preexec():
        os.dup2(child_fd, 3)
        os.set_inheritable(3, True)

    wenv = dict(os.environ)
    wenv.update(env or {})
    wenv.update({
        "THAW_CONTROL_FD": "3",
        "THAW_APP_FILE": str(app_file),
        "THAW_FUNCTION": function,
        "PYTHONPATH": str(REPO / "python") + os.pathsep + wenv.get("PYTHONPATH", ""),
    })
    if app:
        wenv["THAW_APP"] = app
    wenv.pop("THAW_SNAPSHOT", None)
    if snapshot:
        wenv["THAW_SNAPSHOT"] = "1"
    proc = subprocess.Popen([PY, "-m", "thaw._worker"], env=wenv, close_fds=False,
                            preexec_fn=preexec, stdin=subprocess.DEVNULL, stderr=stderr)
    child.close()
    proc._sock = parent  # keep it open
    return proc, Channel(parent.fileno())


class Container:
    def __init__(self, app_file, function, snapshot, seed, log):
        self.proc, self.chan = spawn_worker(app_file, function, snapshot=snapshot)
        self.lock = threading.Lock()
        self.log = log
        if snapshot:
            first = self.chan.recv()
            log({"event": "snapshot_ready", "function": function, "msg": first})
            if first is None or first.get("type") != "snapshot_ready":
                raise RuntimeError(f"worker did not reach the snapshot point: {first}")
        self.chan.send({"type": "start", "restored": snapshot, "env": {}, "seed": seed,
                        "gpu_visible": False})
        ready = self.chan.recv()
        if ready is None or ready.get("type") != "ready":
            raise RuntimeError(f"worker failed to start: {ready}")

    def call(self, msg, on_yield=None):
        with self.lock:
            self.chan.send({"type": "call", "id": msg["id"], "method": msg.get("method"),
                            "args": msg.get("args"), "kwargs": msg.get("kwargs"),
                            "stream": bool(msg.get("stream") and on_yield)})
            reading = True
            while True:
                reply = self.chan.recv()
                if reply is None or reply.get("type") != "yield":
                    return reply
                if not reading:
                    continue
                try:
                    on_yield(reply)
                except OSError:  # the client went away: as the runtime does
                    reading = False
                    self.chan.send({"type": "cancel", "id": msg["id"]})

    def stop(self):
        try:
            self.chan.send({"type": "shutdown"})
            self.chan.recv()
        except OSError:
            pass
        self.proc.wait(30)


class FakeRuntime:
    def __init__(self, socket_path, apps=None, log_path=None):
        self.socket_path = socket_path
        self.apps = dict(apps or {})
        self.log_path = log_path
        self.containers = {}
        self.lock = threading.Lock()
        self.seed = 1000
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(socket_path)
        self.server.listen(64)
        self.threads = []
        self.stopping = False

    def log(self, event):
        if self.log_path:
            with open(self.log_path, "a") as f:
                f.write(json.dumps(event) + "\n")

    def container(self, app_file, function, snapshot):
        key = (app_file, function)
        with self.lock:
            c = self.containers.get(key)
            if c is None:
                self.seed += 1
                c = Container(app_file, function, snapshot, self.seed, self.log)
                self.containers[key] = c
            return c

    def handle(self, conn):
        spawned = {}  # id → Future of the result (per connection)
        with conn:
            while True:
                try:
                    msg = recv_msg(conn)
                except OSError:
                    return
                if msg is None:
                    return
                self.log({"event": "request", "msg": {k: msg.get(k) for k in
                                                      ("type", "app", "function", "method",
                                                       "mode", "app_file")}})
                if msg["type"] == "lookup":
                    if msg["app"] in self.apps:
                        reply = {"type": "found", "app": msg["app"], "function": msg["function"]}
                    else:
                        reply = {"type": "error",
                                 "error": f"app '{msg['app']}' is not deployed: run "
                                          f"`thaw deploy app.py`"}
                elif msg["type"] == "call":
                    reply = self.call(msg, lambda y, i=msg["id"]: send_msg(conn, {**y, "id": i}))
                elif msg["type"] == "spawn":
                    fut = concurrent.futures.Future()
                    spawned[msg["id"]] = fut
                    threading.Thread(target=lambda m=msg, f=fut: f.set_result(self.call(m)),
                                     daemon=True).start()
                    reply = {"type": "spawned", "id": msg["id"]}
                elif msg["type"] == "get":
                    fut = spawned.pop(msg["id"], None)
                    reply = fut.result() if fut else {"type": "error", "id": msg["id"],
                                                      "error": "no such spawned call"}
                else:
                    reply = {"type": "error", "error": f"unknown request {msg['type']}"}
                try:
                    send_msg(conn, reply)
                except OSError:
                    return  # the client went away

    def call(self, msg, on_yield=None):
        if msg.get("mode") == "ephemeral":
            app_file, snapshot = msg.get("app_file"), False
        else:
            app_file, snapshot = self.apps.get(msg["app"]), True
        if not app_file:
            return {"type": "result", "id": msg["id"], "ok": False,
                    "error": f"app '{msg['app']}' is not deployed"}
        try:
            c = self.container(app_file, msg["function"], snapshot)
        except RuntimeError as e:
            return {"type": "result", "id": msg["id"], "ok": False, "error": str(e)}
        reply = c.call(msg, on_yield)
        reply["id"] = msg["id"]
        return reply

    def serve_forever(self):
        while not self.stopping:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            t = threading.Thread(target=self.handle, args=(conn,), daemon=True)
            t.start()
            self.threads.append(t)

    def start(self):
        t = threading.Thread(target=self.serve_forever, daemon=True)
        t.start()
        return self

    def stop(self):
        self.stopping = True
        try:
            self.server.close()
        except OSError:
            pass
        for c in list(self.containers.values()):
            c.stop()
        self.containers.clear()


def main(argv):
    if len(argv) < 3 or argv[0] != "serve" or argv[1] != "--socket":
        print("usage: fake_runtime.py serve --socket PATH", file=sys.stderr)
        return 2
    apps = {}
    for item in filter(None, os.environ.get("FAKE_THAW_APPS", "").split(",")):
        name, path = item.split("=", 1)
        apps[name] = path
    rt = FakeRuntime(argv[2], apps, os.environ.get("FAKE_THAW_LOG"))
    rt.log({"event": "serve", "pid": os.getpid()})
    import signal
    signal.signal(signal.SIGTERM, lambda *a: (rt.log({"event": "terminated"}), rt.stop(),
                                              os._exit(0)))
    rt.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
