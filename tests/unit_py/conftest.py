"""Fixtures for the SDK's unit tests (no thaw runtime needed).

Run:  cd <repo> && PYTHONPATH=python /usr/bin/python3 -m pytest -q tests/unit_py
"""

import os
import select
import sys
import textwrap
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "python"))
sys.path.insert(0, str(HERE))

import fake_runtime  # noqa: E402
from thaw import _client, _state  # noqa: E402

PY = "/usr/bin/python3"


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Every test: its own THAW_HOME, no runtime socket, a fresh client and mode."""
    monkeypatch.setenv("THAW_HOME", str(tmp_path / "thaw-home"))
    monkeypatch.delenv("THAW_RUNTIME_SOCKET", raising=False)
    monkeypatch.delenv("THAW_APP_MODE", raising=False)
    monkeypatch.setenv("PYTHONPATH", str(REPO / "python"))
    _client.reset_client()
    saved = (_state.mode, _state.app_file, _state.in_container)
    _state.mode, _state.app_file, _state.in_container = None, None, False
    yield
    _client.reset_client()
    _state.mode, _state.app_file, _state.in_container = saved


@pytest.fixture
def write_app(tmp_path):
    """write_app(name, source) → path of a new app file (dedented)."""
    def write(name, source):
        p = tmp_path / f"{name}.py"
        p.write_text(textwrap.dedent(source))
        return p
    return write


class WorkerHandle:
    """A worker subprocess and the runtime's end of its control channel."""

    def __init__(self, app_file, function, snapshot=True, env=None):
        self.proc, self.chan = fake_runtime.spawn_worker(app_file, function, snapshot=snapshot,
                                                         env=env)

    def recv(self, timeout=60):
        r, _, _ = select.select([self.chan.fd], [], [], timeout)
        if not r:
            self.kill()
            raise AssertionError(f"worker sent nothing within {timeout} s")
        return self.chan.recv()

    def send(self, msg):
        self.chan.send(msg)

    def start(self, env=None, seed=7, restored=True):
        self.send({"type": "start", "restored": restored, "env": env or {}, "seed": seed,
                   "gpu_visible": False})
        msg = self.recv()
        assert msg["type"] == "ready", msg
        return msg

    def call(self, args=(), kwargs=None, method=None, call_id=1):
        from thaw._protocol import dump_payload
        self.send({"type": "call", "id": call_id, "method": method,
                   "args": dump_payload(tuple(args)), "kwargs": dump_payload(kwargs or {})})
        return self.recv()

    def value(self, *args, method=None, **kwargs):
        from thaw._protocol import load_payload
        reply = self.call(args, kwargs, method=method)
        assert reply["ok"], reply
        return load_payload(reply["value"])

    def shutdown(self):
        self.send({"type": "shutdown"})
        msg = self.recv()
        rc = self.proc.wait(30)
        return msg, rc

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def worker():
    """worker(app_file, function, snapshot=True, env=None) → WorkerHandle (killed after)."""
    made = []

    def make(app_file, function, snapshot=True, env=None):
        w = WorkerHandle(app_file, function, snapshot=snapshot, env=env)
        made.append(w)
        return w
    yield make
    for w in made:
        w.kill()


@pytest.fixture
def runtime(tmp_path, monkeypatch):
    """A fake runtime on a unix socket, with THAW_RUNTIME_SOCKET pointing at it.
    runtime.apps maps deployed app names to files; runtime.events() reads its log."""
    sock = str(tmp_path / "rt.sock")
    log = tmp_path / "rt.log"
    rt = fake_runtime.FakeRuntime(sock, {}, log_path=str(log)).start()
    monkeypatch.setenv("THAW_RUNTIME_SOCKET", sock)

    def events():
        import json
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines()]
    rt.events = events
    yield rt
    _client.reset_client()
    rt.stop()


def env_without_socket():
    e = dict(os.environ)
    e.pop("THAW_RUNTIME_SOCKET", None)
    return e
