"""Unit tests of the thaw Python SDK. No thaw runtime is needed: workers are
driven over a socketpair, and client calls go to tests/unit_py/fake_runtime.py.

Run:  cd <repo> && PYTHONPATH=python /usr/bin/python3 -m pytest -q tests/unit_py
"""

import concurrent.futures
import io
import json
import os
import socket
import subprocess
import threading
import time
import warnings
from pathlib import Path

import pytest

import thaw
import thaw as modal
from thaw import _loader, _packages, _protocol, _worker
from thaw.volume import FileEntryType
from thaw.exception import (DeprecatedWarning, FunctionTimeoutError, InvalidError,
                            MissingPackageError, NotFoundError, UnsupportedWarning)

from conftest import PY, REPO

EXAMPLES = REPO / "examples" / "modal_style"

# Apps defined inside test functions are meant for .local() and the config only.
pytestmark = pytest.mark.filterwarnings(
    "ignore:thaw. function '.*' is not defined at the module's global scope")


def _warnings_of(fn):
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        result = fn()
    return result, [str(w.message) for w in rec], rec


# ====================================================================== framing
def test_framing_roundtrip_over_socketpair():
    a, b = socket.socketpair()
    msg = {"type": "call", "id": 3, "args": _protocol.dump_payload((1, "x", [2.5]))}
    _protocol.send_msg(a, msg)
    plain = _protocol.encode({"type": "bye"})
    assert plain[:4] == len(plain[4:]).to_bytes(4, "little")
    # The pickle goes after the JSON text: the length word flagged, then
    # the bytes' total, the text (saying where they go), the bytes.
    raw = _protocol.encode(msg)
    n = int.from_bytes(raw[:4], "little")
    assert n & 0x80000000 and int.from_bytes(raw[4:8], "little") == len(msg["args"])
    text = json.loads(raw[8:8 + (n & 0x7FFFFFFF)])
    assert text == {"type": "call", "id": 3, "args": None, "$blobs": [["/args", len(msg["args"])]]}
    assert raw[8 + (n & 0x7FFFFFFF):] == msg["args"]
    got = _protocol.recv_msg(b)
    assert got == msg
    assert _protocol.load_payload(got["args"]) == (1, "x", [2.5])
    a.close()
    assert _protocol.recv_msg(b) is None  # clean end of stream


def test_framing_large_payload_and_split_writes():
    a, b = socket.socketpair()
    big = {"blob": _protocol.dump_payload(b"x" * 3_000_000)}
    data = _protocol.encode(big)

    def writer():
        for i in range(0, len(data), 7777):  # arbitrary split points
            a.sendall(data[i:i + 7777])
    t = threading.Thread(target=writer)
    t.start()
    got = _protocol.recv_msg(b)
    t.join()
    assert _protocol.load_payload(got["blob"]) == b"x" * 3_000_000


def test_framing_bytes_anywhere_in_a_message_and_base64_payloads():
    a, b = socket.socketpair()
    msg = {"values": [b"one", {"a/b~c": b"", "n": 1}], "x": {"y": bytearray(b"two")}, "s": "text"}
    _protocol.send_msg(a, msg)
    assert _protocol.recv_msg(b) == {"values": [b"one", {"a/b~c": b"", "n": 1}], "x": {"y": b"two"}, "s": "text"}
    # A result kept on disk as JSON text holds its payload as base64.
    import base64
    assert _protocol.load_payload(base64.b64encode(_protocol.dump_payload([1, 2])).decode()) == [1, 2]


@pytest.mark.parametrize("where,extra,error", [
    (None, b"abc", r"it has no .\$blobs. saying"),
    ([["/v", 5]], b"abc", "more than the bytes sent"),
    ([["/v", 1]], b"abc", "2 bytes sent that no"),
    ([["/nowhere/deeper", 3]], b"abc", "leads nowhere"),
    ([["v", 3]], b"abc", "not a JSON pointer"),
    ([["/s", 3]], b"abc", "names a value"),
    ([["/l/-1", 3]], b"abc", "leads nowhere"),
])
def test_framing_refuses_bytes_that_do_not_add_up(where, extra, error):
    a, b = socket.socketpair()
    text = {"v": None, "s": "text", "l": [None]}
    if where is not None:
        text["$blobs"] = where
    body = json.dumps(text).encode()
    a.sendall((len(body) | 0x80000000).to_bytes(4, "little") + len(extra).to_bytes(4, "little") + body + extra)
    with pytest.raises(_protocol.ProtocolError, match=error):
        _protocol.recv_msg(b)


def test_framing_is_strict_json_with_non_finite_floats_as_strings():
    # The runtime's parser (like JSON itself) has no NaN: a function's NaN
    # loss must not break the channel.
    msg = {"value_json": [float("nan"), {"x": float("inf")}, -float("inf"), 1.5], "t": 0.25}
    body = _protocol.encode(msg)[4:].decode()
    assert "NaN," not in body and "Infinity}" not in body
    assert json.loads(body, parse_constant=lambda c: pytest.fail(f"bare {c} in {body}")) == {
        "value_json": ["NaN", {"x": "Infinity"}, "-Infinity", 1.5], "t": 0.25}


def _connected(tmp_path):
    """A listening socket, a SocketConnection to it, and its accepted end."""
    path = str(tmp_path / "s.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    conn = _protocol.SocketConnection(path)
    peer, _ = srv.accept()
    return srv, conn, peer


def test_socket_connection_reads_frames_across_chunks_and_timeouts(tmp_path):
    srv, conn, peer = _connected(tmp_path)
    big = {"blob": _protocol.dump_payload(b"y" * 5_000_000)}
    data = _protocol.encode(big) + _protocol.encode({"n": 2})
    peer.sendall(data[:1000])  # half a frame, then nothing for a while
    with pytest.raises((socket.timeout, TimeoutError)):
        conn.recv(timeout=0.05)
    sender = threading.Thread(target=lambda: (peer.sendall(data[1000:]), peer.close()))
    sender.start()
    assert _protocol.load_payload(conn.recv(timeout=10)["blob"]) == b"y" * 5_000_000
    assert conn.recv(timeout=10) == {"n": 2}
    sender.join()
    assert conn.recv(timeout=10) is None
    conn.close()
    srv.close()


def test_socket_connection_polls_with_timeout_zero(tmp_path):
    # FunctionCall.get(timeout=0) polls: a non-blocking socket's EAGAIN is
    # "nothing yet", not a failed connection.
    srv, conn, peer = _connected(tmp_path)
    with pytest.raises(TimeoutError):
        conn.recv(timeout=0)
    data = _protocol.encode({"n": 1})
    peer.sendall(data[:3])  # part of a header
    with pytest.raises(TimeoutError):
        conn.recv(timeout=0)
    peer.sendall(data[3:])
    assert conn.recv(timeout=10) == {"n": 1}
    peer.close()
    conn.close()
    srv.close()


def test_a_result_over_the_message_limit_fails_its_call_not_the_channel(monkeypatch):
    # It used to end the worker ("control channel error"), and the caller
    # learnt only that the container had exited.
    monkeypatch.setattr(_protocol, "MAX_FRAME", 1000)
    a, b = socket.socketpair()
    w = _worker.Worker(_protocol.Channel(a.fileno()), env={})
    w._answer({}, {"type": "result", "id": 7, "ok": True, "payload": b"x" * 5000})
    reply = _protocol.recv_msg(b)
    assert reply["id"] == 7 and reply["ok"] is False
    assert "result is 5" in reply["error"] and "over thaw's limit" in reply["error"], reply
    w.send({"type": "result", "id": 8, "ok": True})  # the channel goes on
    assert _protocol.recv_msg(b)["id"] == 8
    a.close()
    b.close()


def test_framing_rejects_non_object_and_truncated():
    a, b = socket.socketpair()
    body = b"[1,2]"
    a.sendall(len(body).to_bytes(4, "little") + body)
    with pytest.raises(_protocol.ProtocolError):
        _protocol.recv_msg(b)
    a.sendall((10).to_bytes(4, "little") + b"{}")
    a.close()
    with pytest.raises(_protocol.ProtocolError):
        _protocol.recv_msg(b)


# ====================================================================== decorators
def test_function_config_is_json_and_normalised():
    app = modal.App("cfg-app")
    vol = modal.Volume.from_name("cfg-vol", create_if_missing=True)

    @app.function(gpu="a10g", enable_memory_snapshot=True, timeout=60, cpu=(1.0, 2.0),
                  memory=512, min_containers=1, max_containers=4, scaledown_window=30,
                  retries=2, volumes={"/data": vol}, env={"A": "1"},
                  secrets=[modal.Secret.from_dict({"TOKEN": "t"})],
                  experimental_options={"enable_gpu_snapshot": True})
    def f(x):
        return x

    cfg = f.config
    json.dumps(cfg)  # JSON-able
    assert cfg["kind"] == "function" and cfg["name"] == "f"
    assert cfg["gpu"] == "A10G"
    assert cfg["enable_memory_snapshot"] is True and cfg["enable_gpu_snapshot"] is True
    assert cfg["timeout"] == 60 and cfg["startup_timeout"] == 60
    assert cfg["cpu"] == {"request": 1.0, "limit": 2.0}
    assert cfg["memory"] == {"request": 512}
    assert (cfg["min_containers"], cfg["max_containers"], cfg["scaledown_window"]) == (1, 4, 30)
    assert cfg["retries"]["max_retries"] == 2
    assert cfg["volumes"] == {"/data": "cfg-vol"}
    assert cfg["env"] == {"A": "1"}
    assert cfg["unsupported"] == {}
    assert cfg["is_generator"] is False
    assert f.local(5) == 5 and f(6) == 6
    assert app.registered_functions == {"f": f}


def test_defaults_and_names():
    app = modal.App()  # unnamed: takes the file's stem

    @app.function
    def plain():
        return 1

    @app.function(name="renamed")
    def other():
        return 2

    assert app.name == Path(__file__).stem
    assert plain.config["timeout"] == 300 and "gpu" not in plain.config  # nulls left out
    assert None not in plain.config.values()
    assert plain.config["enable_memory_snapshot"] is False
    assert set(app.registered_functions) == {"plain", "renamed"}


def test_gpu_spellings():
    app = modal.App("gpus")
    for spec, want in [("A100", "A100"), ("h100:2", "H100:2"), ("A100-80GB", "A100-80GB"),
                       ("any", "ANY"), (modal.gpu.A100(size="80GB", count=2), "A100-80GB:2"),
                       (["H100", "a100"], ["H100", "A100"])]:
        fn = app.function(gpu=spec, name=f"g{abs(hash(str(spec)))}")(lambda: None)
        assert fn.config["gpu"] == want
    with pytest.raises(InvalidError):
        app.function(gpu="not a gpu!", name="bad")(lambda: None)


@pytest.mark.parametrize("param,value", [
    ("region", "us-east"),
    ("cloud", "aws"),
    ("block_network", True),
    ("ephemeral_disk", 1024),
    ("nonpreemptible", True),
    ("some_future_option", 1),
])
def test_unsupported_parameter_warns_naming_it(param, value):
    app = modal.App("warn-app")

    def define():
        @app.function(**{param: value})
        def f():
            return 1
        return f
    f, messages, rec = _warnings_of(define)
    hits = [m for m in messages if f"{param}=" in m]
    assert hits, messages
    assert "not supported" in hits[0]
    assert any(issubclass(w.category, UnsupportedWarning) for w in rec)
    assert rec[0].filename == __file__  # attributed to the user's line
    assert param in f.config["unsupported"]


def test_default_values_of_unsupported_parameters_are_silent():
    app = modal.App("silent-app")

    def define():
        @app.function(block_network=False, region=None, cloud=None, nonpreemptible=False,
                      network_file_systems={}, include_source=True, serialized=False)
        def f():
            return 1
        return f
    f, messages, _ = _warnings_of(define)
    assert [m for m in messages if "global scope" not in m] == []
    assert f.config["unsupported"] == {}


def test_unknown_experimental_options_warn():
    app = modal.App("ser-app")

    def define():
        return app.function(experimental_options={"foo": 1})(lambda: 1)
    f, messages, _ = _warnings_of(define)
    assert any("experimental_options['foo']" in m for m in messages)


def test_deprecated_names_map_to_current_ones():
    app = modal.App("old-names")

    def define():
        return app.function(concurrency_limit=3, keep_warm=1, container_idle_timeout=20,
                            name="old")(lambda: 1)
    f, messages, rec = _warnings_of(define)
    assert f.config["max_containers"] == 3
    assert f.config["min_containers"] == 1
    assert f.config["scaledown_window"] == 20
    assert any(issubclass(w.category, DeprecatedWarning) for w in rec)
    assert any("concurrency_limit=" in m and "max_containers=" in m for m in messages)


def test_allow_concurrent_inputs_is_honoured_as_concurrent():
    # Modal 1.x still runs N inputs per container for its deprecated
    # allow_concurrent_inputs=N (code written for Modal uses it, e.g. on an
    # @asgi_app); thaw did not, and ran one input at a time.
    app = modal.App("old-concurrency")

    def define():
        return app.function(allow_concurrent_inputs=8, name="web")(lambda: 1)
    f, messages, rec = _warnings_of(define)
    assert f.config["max_concurrent_inputs"] == 8
    assert "allow_concurrent_inputs" not in f.config["unsupported"]
    assert any(issubclass(w.category, DeprecatedWarning) for w in rec)
    assert any("allow_concurrent_inputs=" in m and "@concurrent(max_inputs=8)" in m
               for m in messages)

    @app.cls(allow_concurrent_inputs=3)
    class C:
        @modal.method()
        def m(self):
            return 1
    assert C.config["max_concurrent_inputs"] == 3

    def both():
        return app.function(allow_concurrent_inputs=8, name="both")(
            modal.concurrent(max_inputs=2)(lambda: 1))
    f, messages, _ = _warnings_of(both)
    assert f.config["max_concurrent_inputs"] == 2
    assert any("ignored" in m for m in messages)
    with pytest.raises(InvalidError):
        app.function(allow_concurrent_inputs=0, name="zero")(lambda: 1)


def test_read_only_volumes_are_in_the_config():
    app = modal.App("ro-volumes")
    vol = modal.Volume.from_name("data")
    ro = vol.read_only()
    assert ro.name == "data" and ro._read_only and not vol._read_only
    assert repr(ro) == "Volume('data').read_only()"
    f = app.function(volumes={"/ro": ro, "/rw": vol}, name="f")(lambda: 1)
    assert f.config["volumes"] == {"/ro": "data", "/rw": "data"}
    assert f.config["read_only_volumes"] == ["/ro"]
    g = app.function(volumes={"/rw": vol}, name="g")(lambda: 1)
    assert "read_only_volumes" not in g.config  # unchanged configs, unchanged snapshot keys

    @app.cls(volumes={"/ro": ro})
    class C:
        @modal.method()
        def m(self):
            return 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # mounted as given: nothing to warn about
        opts = C.with_options(volumes={"/ro": ro, "/rw": vol})
    assert opts._options["volumes"] == {"/ro": {"name": "data", "read_only": True}, "/rw": "data"}
    # A later handle's read-write mount at the same path replaces it.
    assert opts.with_options(volumes={"/ro": vol})._options["volumes"]["/ro"] == "data"


def test_modal_exception_names_code_may_catch_exist():
    import thaw.exception as exc
    for name in ("AlreadyExistsError", "AuthError", "ConflictError", "SerializationError",
                 "DeserializationError", "InternalFailure", "InternalError", "VersionError",
                 "ClientClosed"):
        cls = getattr(exc, name)
        assert issubclass(cls, exc.Error), name
    try:
        raise KeyError("x")
    except exc.AlreadyExistsError:
        raise AssertionError("caught the wrong exception")
    except KeyError:
        pass


def test_invalid_values_raise():
    app = modal.App("invalid")
    with pytest.raises(InvalidError):
        app.function(timeout=-1, name="a")(lambda: 1)
    with pytest.raises(InvalidError):
        app.function(min_containers=5, max_containers=2, name="b")(lambda: 1)
    with pytest.raises(InvalidError):
        app.function(volumes={"relative/path": modal.Volume.from_name("v")}, name="c")(lambda: 1)
    with pytest.raises(InvalidError):
        modal.Volume.from_name("../escape")


def test_snap_true_requires_enable_memory_snapshot():
    app = modal.App("snapcheck")
    with pytest.raises(InvalidError, match="enable_memory_snapshot=True"):
        @app.cls()
        class C:
            @modal.enter(snap=True)
            def load(self):
                pass


def test_class_config_lists_methods_and_hooks():
    app = modal.App("clscfg")

    @app.cls(enable_memory_snapshot=True, gpu="A100", max_containers=2)
    class Model:
        @modal.enter(snap=True)
        def load(self):
            pass

        @modal.enter(snap=False)
        def setup(self):
            pass

        @modal.exit()
        def close(self):
            pass

        @modal.method()
        def predict(self, x):
            return x

        @modal.method()
        def stream(self, n):
            yield from range(n)

        def helper(self):
            return "not a method"

    cfg = Model.config
    json.dumps(cfg)
    assert cfg["kind"] == "class"
    assert cfg["lifecycle"] == {"enter_snap": ["load"], "enter": ["setup"], "exit": ["close"]}
    assert cfg["methods"] == {"predict": {"is_generator": False, "batched": False},
                              "stream": {"is_generator": True, "batched": False}}
    assert app.registered_classes == {"Model": Model}
    spec = Model.spec()
    assert spec["methods"] == ["predict", "stream"]
    assert len(spec["config_sha256"]) == 64


# ====================================================================== .local()
def test_local_runs_enter_hooks_once_in_lifecycle_order():
    app = modal.App("order")
    events = []

    @app.cls(enable_memory_snapshot=True)
    class Svc:
        @modal.enter()
        def post_a(self):
            events.append("enter(snap=False) post_a")

        @modal.enter(snap=True)
        def pre_a(self):
            events.append("enter(snap=True) pre_a")

        @modal.enter(snap=True)
        def pre_b(self):
            events.append("enter(snap=True) pre_b")

        @modal.exit()
        def bye(self):
            events.append("exit")

        @modal.method()
        def run(self, x):
            events.append(f"run {x}")
            return self.helper(x)

        def helper(self, x):
            return x * 2

    obj = Svc()
    assert events == []  # nothing runs until a local call
    assert obj.run.local(3) == 6
    assert obj.run.local(4) == 8
    assert events == ["enter(snap=True) pre_a", "enter(snap=True) pre_b",
                      "enter(snap=False) post_a", "run 3", "run 4"]
    Svc().run.local(1)  # a new instance enters again
    assert events.count("enter(snap=True) pre_a") == 2


def test_methods_are_plain_methods_inside_the_class():
    app = modal.App("inner")

    @app.cls()
    class K:
        @modal.enter()
        def setup(self):
            self.base = 10

        @modal.method()
        def add(self, x):
            return self.base + x

        @modal.method()
        def twice(self, x):
            return self.add(x) + self.add(x)  # calls the method directly

    assert K().twice.local(1) == 22


def test_class_parameters_local():
    app = modal.App("params")

    @app.cls()
    class P:
        size: int = modal.parameter(default=3)
        name: str = modal.parameter()

        @modal.method()
        def describe(self):
            return f"{self.name}:{self.size}"

    assert P(name="a").describe.local() == "a:3"
    assert P(name="b", size=5).describe.local() == "b:5"
    with pytest.raises(InvalidError):
        P(size=1)  # name is required
    with pytest.raises(InvalidError):
        P(name="x", colour="red")
    # Types are checked, as Modal does for str, int, bool and bytes.
    with pytest.raises(InvalidError, match="parameter 'name' is str, got int 123"):
        P(name=123)
    with pytest.raises(InvalidError, match="parameter 'size' is int, got bool"):
        P(name="x", size=True)


def test_parameter_values_the_runtime_cannot_tell_apart_are_not_routed():
    """Routed values are compared as JSON: a float (2.0 is 2) or an integer
    beyond 64 bits (the runtime reads it as a float) is not routed; those
    instances use the shared pool, as a class without parameter fields."""
    from thaw._functions import class_params, param_json, param_value
    app = modal.App("params-json")

    @app.cls()
    class P:
        size: int = modal.parameter(default=3)
        b: bytes = modal.parameter(default=b"")

    assert class_params(P, {"kwargs": {"size": 2**64 - 1}}) == {"size": 2**64 - 1, "b": {"__bytes__": ""}}
    assert class_params(P, {"kwargs": {"size": -2**63}})["size"] == -2**63
    assert class_params(P, {"kwargs": {"size": 2**64}}) is None
    assert class_params(P, {"kwargs": {"size": -2**63 - 1}}) is None
    assert class_params(P, {"kwargs": {"size": 2.0}}) is None
    assert param_value(param_json(b"\x00hi")) == b"\x00hi"
    assert param_json(True) is True


# ====================================================================== import thaw as modal
EMBEDDER_SOURCE = '''
import thaw as modal

app = modal.App("embedder-test")
image = modal.Image.debian_slim(python_version="3.11").pip_install("torch", "numpy")

with image.imports():
    import torch

EVENTS = ["global"]
device = "cpu"


def build_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))


@app.cls(enable_memory_snapshot=True, gpu="a10g")
class Embedder:
    @modal.enter(snap=True)
    def load(self):
        EVENTS.append("load")
        self.model = build_model()

    @modal.enter(snap=False)
    def setup(self):
        EVENTS.append("setup")
        self.model.to(device)

    @modal.method()
    def run(self, x):
        EVENTS.append("run")
        with torch.no_grad():
            return self.model(torch.tensor(x, dtype=torch.float32)).tolist()

    @modal.method()
    def events(self):
        return list(EVENTS)

    @modal.exit()
    def done(self):
        import os
        path = os.environ.get("EXIT_MARKER")
        if path:
            open(path, "w").write("exit ran")


@app.local_entrypoint()
def main():
    print(Embedder().run.remote([[1.0] * 8]))
'''


def test_import_thaw_as_modal_runs_the_embedder_pattern(write_app):
    path = write_app("embedder_pattern", EMBEDDER_SOURCE)
    mod = _loader.load_app_module(path)
    Embedder = mod.Embedder
    assert isinstance(Embedder, modal.Cls)
    out = Embedder().run.local([[1.0] * 8])
    assert len(out) == 1 and len(out[0]) == 4
    assert mod.EVENTS == ["global", "load", "setup", "run"]
    assert mod.app.registered_entrypoints["main"].name == "main"
    assert Embedder.config["gpu"] == "A10G"


def test_modal_names_exist():
    for name in ["App", "Image", "Volume", "Secret", "method", "enter", "exit", "Cls",
                 "Function", "gpu", "Retries", "concurrent", "batched", "parameter",
                 "is_local", "FunctionCall", "exception", "enable_output"]:
        assert hasattr(modal, name), name
    assert modal.is_local()
    with pytest.raises(AttributeError, match="thaw does not provide modal.Sandbox"):
        modal.Sandbox  # noqa: B018


def test_example_files_load_and_run_locally():
    mod = _loader.load_app_module(EXAMPLES / "embedder.py")
    vecs = mod.Embedder().run.local(["hello world", "thaw"])
    assert len(vecs) == 2 and len(vecs[0]) == 384
    assert abs(sum(v * v for v in vecs[0]) - 1.0) < 1e-4  # normalised
    hello = _loader.load_app_module(EXAMPLES / "hello.py")
    assert hello.hello.local("t").startswith("hello t from torch")
    assert hello.hello.config["enable_memory_snapshot"] is True


# ====================================================================== Image
def test_image_is_immutable_and_described():
    base = modal.Image.debian_slim()
    img = base.pip_install("torch==1.13", ["numpy"]).apt_install("git").env({"X": "1"})
    assert base.describe()["pip"] == []
    d = img.describe()
    assert d["pip"] == ["torch==1.13", "numpy"] and d["apt"] == ["git"]
    assert d["env"] == {"X": "1"}
    assert len(img.sha256) == 64 and img.sha256 != base.sha256


def test_image_check_names_the_debian_package(monkeypatch):
    real = _packages.module_available
    monkeypatch.setattr(_packages, "module_available",
                        lambda m: False if m in ("sklearn", "transformers") else real(m))
    img = modal.Image.debian_slim().pip_install("torch", "scikit-learn>=1.0", "transformers")
    with pytest.raises(MissingPackageError) as ei:
        img.check()
    text = str(ei.value)
    assert "scikit-learn" in text and "'sklearn'" in text
    assert "apt-get install -y python3-sklearn" in text
    assert "Debian 12 does not package 'transformers'" in text
    assert "torch" not in text.replace("transformers", "")  # torch is present


def test_a_failed_image_import_says_where_functions_run_once():
    img = modal.Image.debian_slim().pip_install("transformers")
    with pytest.raises(MissingPackageError) as ei:
        with img.imports():
            raise ModuleNotFoundError("No module named 'transformers'", name="transformers")
    text = str(ei.value)
    assert text.count("host's") == 1 and ".." not in text, text
    assert text.endswith("Debian 12 does not package 'transformers': make 'transformers' importable for "
                         "/usr/bin/python3 some other way, or remove it from the Image."), text


def test_image_check_passes_for_host_packages_and_warns_on_versions():
    img = modal.Image.debian_slim().pip_install("torch", "numpy>=99")
    warns = img.check()
    assert any("numpy>=99" in w for w in warns)


def test_image_check_apt_packages():
    img = modal.Image.debian_slim().apt_install("definitely-not-a-debian-package-xyz")
    errors, _ = img.problems()
    if Path("/var/lib/dpkg/status").exists():
        assert errors and "apt-get install -y definitely-not-a-debian-package-xyz" in errors[0]


def test_image_imports_raises_clear_error():
    img = modal.Image.debian_slim().pip_install("scikit-learn")
    with pytest.raises(MissingPackageError, match="python3-definitely-missing-mod"):
        with img.imports():
            exec("import definitely_missing_mod")
    with pytest.raises(ImportError):  # MissingPackageError is an ImportError
        with img.imports():
            __import__("definitely_missing_mod")


def test_package_mapping():
    assert _packages.Requirement("scikit-learn==1.2").module == "sklearn"
    assert _packages.Requirement("torch").module == "torch"
    assert _packages.Requirement("torch").debian == "python3-torch"
    assert _packages.Requirement("Pillow").module == "PIL"
    assert _packages.Requirement("opencv-python-headless").debian == "python3-opencv"
    assert _packages.Requirement("transformers[torch]>=4").debian is None
    assert _packages.Requirement("git+https://x/y.git").name is None
    assert _packages.version_satisfies("1.13.0a0", ">=", "1.13")
    assert not _packages.version_satisfies("1.13.1", "<", "1.13")
    assert _packages.version_satisfies("2.1.3", "~=", "2.1")
    assert _packages.version_satisfies("1.24.2", "==", "1.24.*")


def test_python_version_mismatch_warns():
    _, messages, _ = _warnings_of(lambda: modal.Image.debian_slim(python_version="3.9"))
    assert any("python_version='3.9'" in m for m in messages)
    _, messages, _ = _warnings_of(lambda: modal.Image.debian_slim(python_version="3.1"))
    assert any("python_version='3.1'" in m for m in messages)
    _, messages, _ = _warnings_of(lambda: modal.Image.debian_slim(python_version="3.11"))
    assert messages == []


def test_unsupported_image_steps_warn():
    _, messages, _ = _warnings_of(
        lambda: modal.Image.debian_slim().run_commands("echo hi").from_registry("x:1"))
    assert any("run_commands" in m and "not supported" in m for m in messages)


# ====================================================================== Volume / Secret
def test_volume_directories(tmp_path):
    vol = modal.Volume.from_name("data", create_if_missing=True)
    assert vol.path == tmp_path / "thaw-home" / "volumes" / "data"
    assert not vol.exists()
    vol.ensure()
    assert vol.path.is_dir()
    (vol.path / "a.txt").write_text("x")
    [entry] = vol.listdir()
    assert (entry.path, entry.type, entry.size) == ("a.txt", FileEntryType.FILE, 1)
    assert vol.commit() is None and vol.reload() is None
    assert "bind-mounted" in modal.Volume.commit.__doc__
    with pytest.raises(NotFoundError, match="create it with `thaw volume create missing`.*create_if_missing"):
        modal.Volume.from_name("missing").ensure()


def test_volume_file_helpers(tmp_path):
    vol = modal.Volume.from_name("files", create_if_missing=True)
    with pytest.raises(NotFoundError, match="thaw volume create files"):
        vol.listdir()
    vol.ensure()
    local = tmp_path / "local"
    (local / "sub").mkdir(parents=True)
    (local / "sub" / "w.bin").write_bytes(b"weights")
    (local / "cfg.json").write_text("{}")
    with vol.batch_upload() as batch:
        batch.put_directory(local, "/model")
        batch.put_file(io.BytesIO(b"hello"), "/greeting.txt")
    entries = {e.path: e for e in vol.listdir(recursive=True)}
    assert set(entries) == {"greeting.txt", "model", "model/cfg.json", "model/sub", "model/sub/w.bin"}
    assert entries["model/sub"].type == FileEntryType.DIRECTORY and entries["model/sub/w.bin"].size == 7
    assert [e.path for e in vol.listdir("/model")] == ["model/cfg.json", "model/sub"]
    assert [e.path for e in vol.iterdir("/model/sub/w.bin")] == ["model/sub/w.bin"]
    with pytest.raises(FileExistsError, match="greeting.txt"):
        with vol.batch_upload() as batch:
            batch.put_file(io.BytesIO(b"again"), "greeting.txt")
    assert b"".join(vol.read_file("greeting.txt")) == b"hello"
    with vol.batch_upload(force=True) as batch:
        batch.put_file(io.BytesIO(b"again"), "greeting.txt")
    out = io.BytesIO()
    assert vol.read_file_into_fileobj("greeting.txt", out) == 5 and out.getvalue() == b"again"
    vol.copy_files(["model/sub/w.bin"], "copy.bin")
    with pytest.raises(InvalidError, match="recursive"):
        vol.copy_files(["model"], "model2")
    vol.copy_files(["model"], "model2", recursive=True)
    assert (vol.path / "copy.bin").read_bytes() == b"weights"
    assert (vol.path / "model2" / "sub" / "w.bin").read_bytes() == b"weights"
    with pytest.raises(InvalidError, match="outside"):
        vol.listdir("../..")
    vol.remove_file("model2", recursive=True)
    assert not (vol.path / "model2").exists()


def test_secrets(tmp_path, monkeypatch):
    assert modal.Secret.from_dict({"A": "1"}).resolve() == {"A": "1"}
    home = tmp_path / "thaw-home" / "secrets"
    home.mkdir(parents=True)
    (home / "api.env").write_text("KEY=s3cr3t-value\n# comment\nexport OTHER='q'\n")
    assert modal.Secret.from_name("api").resolve() == {"KEY": "s3cr3t-value", "OTHER": "q"}
    monkeypatch.setenv("THAW_SECRET_HF_TOKEN", '{"HF_TOKEN": "hf"}')
    assert modal.Secret.from_name("hf-token").resolve() == {"HF_TOKEN": "hf"}
    monkeypatch.setenv("MY_PASSWORD", "pw")
    s = modal.Secret.from_name("db", required_keys=["MY_PASSWORD"])
    assert s.resolve() == {"MY_PASSWORD": "pw"}
    # Each error names the command that fixes it.
    with pytest.raises(NotFoundError, match=r"nothere' not found: create it with `thaw secret create nothere"):
        modal.Secret.from_name("nothere").resolve()
    with pytest.raises(NotFoundError, match=r"lacks required keys: NOPE \(it has: KEY, OTHER\); add "
                                            r"them with `thaw secret create api KEY=VALUE ... --force`"):
        modal.Secret.from_name("api", required_keys=["NOPE"]).resolve()
    d = modal.Secret.from_name("api").describe()
    assert d["keys"] == ["KEY", "OTHER"] and "s3cr3t-value" not in json.dumps(d)


# ====================================================================== introspection
def test_introspect_prints_only_json(write_app, tmp_path):
    (tmp_path / "helpers.py").write_text("def double(x):\n    return 2 * x\n")
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("VALUE = 1\n")
    path = write_app("introspect_app", '''
        import thaw as modal
        import helpers
        import pkg
        print("noise on stdout from the app's global scope")

        app = modal.App("intro", image=modal.Image.debian_slim().env({"MODE": "prod"}))
        vol = modal.Volume.from_name("intro-data", create_if_missing=True)

        @app.function(enable_memory_snapshot=True, volumes={"/data": vol},
                      secrets=[modal.Secret.from_dict({"TOKEN": "s3cret"})], env={"E": "1"})
        def f(x):
            return helpers.double(x)

        @app.cls(enable_memory_snapshot=True, gpu="H100")
        class C:
            @modal.enter(snap=True)
            def load(self):
                pass

            @modal.method()
            def m(self):
                return 1

        @app.local_entrypoint()
        def main(n: int = 1):
            print(f.remote(n))
    ''')
    r = subprocess.run([PY, "-m", "thaw._introspect", str(path)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)  # the whole of stdout is one JSON document
    assert "noise" in r.stderr
    assert out["app"] == "intro"
    assert out["app_file"] == str(path)
    assert out["file"] == str(path)
    assert set(out["functions"]) == {"f", "C"}  # classes too, with their kind
    assert out["functions"]["f"]["kind"] == "function"
    assert out["functions"]["C"]["kind"] == "class"
    f = out["functions"]["f"]
    assert f["config"]["enable_memory_snapshot"] is True
    assert f["volumes"] == {"/data": "intro-data"}
    assert f["env"] == {"MODE": "prod", "TOKEN": "s3cret", "E": "1"}
    assert f["config"]["secrets"][0]["keys"] == ["TOKEN"]
    assert "s3cret" not in json.dumps(f["config"])
    assert f["image"]["env"] == {"MODE": "prod"}
    assert out["functions"]["C"]["methods"] == ["m"]
    assert out["functions"]["C"]["config"]["lifecycle"]["enter_snap"] == ["load"]
    assert out["entrypoints"] == ["main"]
    assert out["local_entrypoints"] == [
        {"name": "main", "parameters": [{"name": "main" and "n", "type": "int",
                                         "required": False}]}]
    assert out["volumes"] == {"intro-data": "/data"}
    vol_dir = Path(out["volume_dirs"]["intro-data"])
    assert vol_dir.is_dir() and vol_dir.parent.parent == tmp_path / "thaw-home"
    assert out["local_modules"] == [str(tmp_path / "helpers.py"),
                                    str(tmp_path / "pkg" / "__init__.py")]
    rels = [m["relpath"] for m in out["local_module_files"]]
    assert rels == ["helpers.py", "pkg/__init__.py"]
    assert out["python"] == out["python_version"] and out["python"].startswith("3.")
    assert out["thaw_version"] == thaw.__version__
    assert len(out["code_sha256"]) == 64

    # a change in a local module changes code_sha256
    (tmp_path / "helpers.py").write_text("def double(x):\n    return x + x\n")
    r2 = subprocess.run([PY, "-m", "thaw._introspect", str(path)], capture_output=True,
                        text=True, timeout=60)
    assert json.loads(r2.stdout)["code_sha256"] != out["code_sha256"]


def test_introspect_fails_clearly_on_missing_package(write_app):
    path = write_app("missing_pkg_app", '''
        import thaw as modal
        app = modal.App("missing", image=modal.Image.debian_slim().pip_install("transformers"))

        @app.function()
        def f():
            return 1
    ''')
    r = subprocess.run([PY, "-m", "thaw._introspect", str(path)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1 and r.stdout == ""
    assert "transformers" in r.stderr and "Debian 12 does not package" in r.stderr


def test_introspect_reports_missing_import_with_debian_hint(write_app):
    path = write_app("bad_import_app", '''
        import thaw as modal
        import some_uninstalled_thing
        app = modal.App("bad")
    ''')
    r = subprocess.run([PY, "-m", "thaw._introspect", str(path)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1 and r.stdout == ""
    assert "python3-some-uninstalled-thing" in r.stderr


# ====================================================================== worker loop
WORKER_APP = '''
import os
import random
import sys
import time
import thaw as modal

LOG = os.environ.get("HOOK_LOG")


def record(event):
    if LOG:
        with open(LOG, "a") as f:
            f.write(event + "\\n")


record("global")
app = modal.App("worker-test")


@app.cls(enable_memory_snapshot=True, timeout=2)
class Svc:
    @modal.enter(snap=True)
    def load(self):
        record("enter(snap=True)")
        self.loaded = True

    @modal.enter(snap=False)
    def setup(self):
        record("enter(snap=False)")

    @modal.exit()
    def close(self):
        record("exit")

    @modal.method()
    def hello(self, name, punct="!"):
        record("call")
        return f"hello {name}{punct}"

    @modal.method()
    def env(self, key):
        return os.environ.get(key)

    @modal.method()
    def rand(self):
        out = [random.random()]
        if "numpy" in sys.modules:
            import numpy
            out.append(float(numpy.random.rand()))
        if "torch" in sys.modules:
            import torch
            out.append(float(torch.rand(1)))
        return out

    @modal.method()
    def boom(self):
        raise ValueError("bad input")

    @modal.method()
    def ids(self):
        return [modal.current_input_id(), modal.current_function_call_id()]

    @modal.method()
    def nan(self):
        return [float("nan"), float("inf"), 1.0]

    @modal.method()
    def slow(self, s):
        time.sleep(s)
        return "done"

    @modal.method()
    def swallow(self):
        try:
            time.sleep(10)
        except modal.exception.InputCancellation:
            return "swallowed"

    @modal.method()
    def gen(self, n):
        for i in range(n):
            yield i * i


@app.function()
def add(a, b):
    return a + b


@app.function()
@modal.concurrent(max_inputs=4)
def nap(s):
    time.sleep(s)
    return s


@app.function(timeout=1)
@modal.concurrent(max_inputs=2)
def spin(kind, path=None):
    """Past its timeout in Python code ("loop"), in a native call ("sleep"),
    or catching InputCancellation and returning ("swallow")."""
    if kind == "quick":
        return "quick"
    try:
        if kind == "sleep":
            time.sleep(6)
        t = time.monotonic()
        while time.monotonic() - t < 30:
            pass
    except modal.exception.InputCancellation:
        with open(path, "a") as f:
            f.write(kind + " ")
        if kind == "swallow":
            return "swallowed"
        raise
    return "done"


@app.function(timeout=1)
@modal.concurrent(max_inputs=2)
async def aspin(path):
    import asyncio
    try:
        await asyncio.sleep(5)
    except asyncio.CancelledError:
        with open(path, "a") as f:
            f.write("cancelled ")
        raise
    with open(path, "a") as f:
        f.write("finished ")
'''


def test_worker_snapshot_lifecycle_and_calls(write_app, worker, tmp_path):
    path = write_app("worker_app", WORKER_APP)
    log = tmp_path / "hooks.log"
    w = worker(path, "Svc", snapshot=True, env={"HOOK_LOG": str(log)})
    ready = w.recv()
    assert ready["type"] == "snapshot_ready" and ready["warnings"] == []
    # at the snapshot point only the global scope and snap=True hooks have run
    assert log.read_text().split() == ["global", "enter(snap=True)"]
    w.start(env={"GREETING": "restored-env"}, seed=11)
    assert log.read_text().splitlines() == ["global", "enter(snap=True)", "enter(snap=False)"]
    assert w.value("bob", method="hello", punct="?") == "hello bob?"
    assert w.value("GREETING", method="env") == "restored-env"
    assert w.value(3, method="gen") == [0, 1, 4]

    reply = w.call(method="boom")
    assert reply["ok"] is False and "ValueError: bad input" in reply["error"]
    assert "raise ValueError" in reply["traceback"]
    exc = _protocol.load_payload(reply["exception"])
    assert isinstance(exc, ValueError)

    reply = w.call(method="nope")
    assert not reply["ok"] and "no @method() named 'nope'" in reply["error"]

    msg, rc = w.shutdown()
    assert msg == {"type": "bye"} and rc == 0
    assert log.read_text().splitlines() == [
        "global", "enter(snap=True)", "enter(snap=False)", "call", "exit"]


def test_worker_without_snapshot_runs_all_enter_hooks_at_start(write_app, worker, tmp_path):
    path = write_app("worker_app_nosnap", WORKER_APP)
    log = tmp_path / "hooks.log"
    w = worker(path, "Svc", snapshot=False, env={"HOOK_LOG": str(log)})
    w.start(restored=False)
    assert log.read_text().split() == ["global", "enter(snap=True)", "enter(snap=False)"]
    assert w.value("x", method="hello") == "hello x!"


def test_worker_plain_function_and_json_args(write_app, worker):
    path = write_app("worker_app_fn", WORKER_APP)
    w = worker(path, "add", snapshot=True)
    assert w.recv()["type"] == "snapshot_ready"
    w.start()
    assert w.value(2, 3) == 5
    w.send({"type": "call", "id": 9, "method": None, "args_json": [40, 2],
            "kwargs_json": {}, "result_format": "json"})
    reply = w.recv()
    assert reply["ok"] and reply["id"] == 9 and reply["value_json"] == 42


def test_worker_input_ids_are_unique_across_containers(write_app, worker):
    path = write_app("worker_app_ids", WORKER_APP)
    seen = []
    for container in ("c0ffee000001", "c0ffee000002"):
        w = worker(path, "Svc", snapshot=False)
        w.start(restored=False, env={"THAW_CONTAINER_ID": container})
        for call_id in (1, 2):  # the runtime numbers each container's calls from 1
            reply = w.call(method="ids", call_id=call_id)
            seen.append(_protocol.load_payload(reply["value"]))
    inputs = [i for i, _ in seen]
    assert len(set(inputs)) == 4 and all(i.startswith("in-c0ffee00000") for i in inputs)
    assert [c for _, c in seen] == ["fc-" + i[3:] for i in inputs]


MODAL_ENV_APP = '''
import os
import thaw as modal

app = modal.App("modal-env")
AT_IMPORT = {k: os.environ.get(k) for k in ("MODAL_IS_REMOTE", "MODAL_TASK_ID")}


@app.function(enable_memory_snapshot=True)
def where():
    return {"import": AT_IMPORT, "now": {k: os.environ.get(k) for k in
            ("MODAL_IS_REMOTE", "MODAL_TASK_ID", "MODAL_ENVIRONMENT")}}
'''


def test_worker_sets_modals_container_variables(write_app, worker):
    # Code written for Modal tells where it runs by MODAL_IS_REMOTE and
    # MODAL_TASK_ID (Modal's guide, "Environment variables"); after a
    # restore the task id is the new container's.
    path = write_app("modal_env_app", MODAL_ENV_APP)
    w = worker(path, "where", snapshot=True, env={"THAW_CONTAINER_ID": "5a9000000001",
                                                  "MODAL_IS_REMOTE": "0"})
    assert w.recv()["type"] == "snapshot_ready"
    w.start(env={"THAW_CONTAINER_ID": "4e5700000002"})
    got = _protocol.load_payload(w.call()["value"])
    assert got == {"import": {"MODAL_IS_REMOTE": "1", "MODAL_TASK_ID": "ta-5a9000000001"},
                   "now": {"MODAL_IS_REMOTE": "1", "MODAL_TASK_ID": "ta-4e5700000002",
                           "MODAL_ENVIRONMENT": "main"}}


def test_worker_json_result_with_nan_stays_valid_json(write_app, worker):
    path = write_app("worker_app_nan", WORKER_APP)
    w = worker(path, "Svc", snapshot=False)
    w.start(restored=False)
    w.send({"type": "call", "id": 5, "method": "nan", "args_json": [], "kwargs_json": {},
            "result_format": "json"})
    reply = w.recv()
    assert reply["ok"] and reply["value_json"] == ["NaN", "Infinity", 1.0]


def test_worker_enforces_timeout(write_app, worker):
    path = write_app("worker_app_timeout", WORKER_APP)
    w = worker(path, "Svc", snapshot=False)
    w.start(restored=False)
    t = time.monotonic()
    reply = w.call((10,), method="slow")
    assert time.monotonic() - t < 8
    assert not reply["ok"] and reply["error"].startswith("FunctionTimeoutError")
    assert isinstance(_protocol.load_payload(reply["exception"]), FunctionTimeoutError)
    assert w.value(0, method="slow") == "done"  # the container still serves


def test_worker_concurrent_inputs(write_app, worker):
    path = write_app("worker_app_conc", WORKER_APP)
    w = worker(path, "nap", snapshot=False)
    w.start(restored=False)
    t = time.monotonic()
    for i in range(4):
        w.send({"type": "call", "id": i, "method": None, "args": _protocol.dump_payload((0.6,)),
                "kwargs": _protocol.dump_payload({})})
    ids = sorted(w.recv()["id"] for _ in range(4))
    assert ids == [0, 1, 2, 3]
    assert time.monotonic() - t < 2.0  # 4 × 0.6 s in parallel


def test_worker_interrupts_a_concurrent_input_past_its_timeout(write_app, worker, tmp_path):
    path = write_app("worker_app_spin", WORKER_APP)
    caught = tmp_path / "caught"
    w = worker(path, "spin", snapshot=False)
    w.start(restored=False)

    def call(i, kind):
        w.send({"type": "call", "id": i, "method": None,
                "args": _protocol.dump_payload((kind, str(caught))),
                "kwargs": _protocol.dump_payload({})})

    # Python code is interrupted (InputCancellation, as in Modal): the
    # container keeps serving, its slot free again.
    t = time.monotonic()
    call(1, "loop")
    reply = w.recv()
    assert reply["id"] == 1 and reply["error"].startswith("FunctionTimeoutError"), reply
    assert not reply.get("leaving") and time.monotonic() - t < 10
    # Saying the function's timeout (it said "timeout of None s").
    assert "exceeded its timeout of 1 s" in reply["error"], reply
    assert "of 1 s" in str(_protocol.load_payload(reply["exception"])), reply
    call(2, "quick")
    assert _protocol.load_payload(w.recv()["value"]) == "quick"
    # Code that catches it and returns has timed out all the same.
    call(3, "swallow")
    reply = w.recv()
    assert reply["id"] == 3 and reply["error"].startswith("FunctionTimeoutError"), reply
    assert caught.read_text().split() == ["loop", "swallow"]
    # One in a native call cannot be interrupted: the container takes no
    # more inputs (the runtime stops it once the others are done).
    call(4, "sleep")
    reply = w.recv()
    assert reply["id"] == 4 and reply["error"].startswith("FunctionTimeoutError"), reply
    assert reply.get("leaving") is True


def test_a_timeout_that_loses_the_race_to_answer_does_not_make_the_container_leave():
    """expire decides an input is stuck in native code just as it ends: the
    input's own reply goes (without "leaving"), so the container must not
    leave after it (the runtime would send it another call)."""
    import threading
    from thaw._worker import Worker
    w = Worker.__new__(Worker)
    w.answer_lock, w.leaving, sent = threading.Lock(), None, []
    w.send = sent.append
    call = {}
    w._answer(call, {"id": 1, "ok": True})  # the input ended first
    w._answer(call, {"id": 1, "ok": False, "leaving": True}, leaving="stuck in native code")
    assert sent == [{"id": 1, "ok": True}] and w.leaving is None
    call = {}
    w._answer(call, {"id": 2, "ok": False, "leaving": True}, leaving="stuck in native code")
    assert sent[-1]["leaving"] is True and w.leaving == "stuck in native code"


def test_worker_cancels_an_async_concurrent_input_past_its_timeout(write_app, worker, tmp_path):
    path = write_app("worker_app_aspin", WORKER_APP)
    caught = tmp_path / "caught"
    w = worker(path, "aspin", snapshot=False)
    w.start(restored=False)
    w.send({"type": "call", "id": 1, "method": None, "args": _protocol.dump_payload((str(caught),)),
            "kwargs": _protocol.dump_payload({})})
    reply = w.recv()
    assert reply["error"].startswith("FunctionTimeoutError") and not reply.get("leaving"), reply
    time.sleep(0.5)
    assert caught.read_text().split() == ["cancelled"]


def test_worker_timeout_is_final_even_when_the_code_catches_it(write_app, worker):
    path = write_app("worker_app_swallow", WORKER_APP)
    w = worker(path, "Svc", snapshot=False)
    w.start(restored=False)
    reply = w.call(method="swallow")
    assert not reply["ok"] and reply["error"].startswith("FunctionTimeoutError"), reply
    assert w.value(0, method="slow") == "done"


def test_worker_reseeds_after_restore(write_app, worker):
    path = write_app("worker_app_seed", WORKER_APP.replace(
        'record("global")', 'record("global")\nimport numpy, torch\nrandom.seed(0)'))
    draws = []
    for seed in (101, 202, 101):
        w = worker(path, "Svc", snapshot=True)
        assert w.recv()["type"] == "snapshot_ready"
        w.start(seed=seed)
        draws.append(w.value(method="rand"))
        w.shutdown()
    assert len(draws[0]) == 3  # random, numpy, torch all reseeded
    assert all(a != b for a, b in zip(draws[0], draws[1]))
    assert draws[0] == draws[2]


def test_worker_warns_when_cuda_initialized_in_snapshot_phase(write_app, worker):
    path = write_app("worker_app_cuda", '''
        import thaw as modal
        import torch
        app = modal.App("cuda-warn")

        @app.cls(enable_memory_snapshot=True, gpu="A10G")
        class G:
            @modal.enter(snap=True)
            def load(self):
                torch.cuda.is_initialized = lambda: True  # as if torch.cuda had been used

            @modal.method()
            def f(self):
                return 1
    ''')
    w = worker(path, "G", snapshot=True)
    msg = w.recv()
    assert msg["type"] == "snapshot_ready"
    assert len(msg["warnings"]) == 1
    text = msg["warnings"][0]
    assert "CUDA was initialized during the snapshot phase" in text
    assert "move CUDA use to @enter(snap=False)" in text


def test_worker_warns_when_the_cuda_driver_was_initialized(write_app, worker):
    """cuInit opens /dev/nvidiactl: that, not libcuda being loaded, is what
    makes the process cache "no GPU" in a snapshot phase without one."""
    path = write_app("worker_app_cuinit", '''
        import thaw as modal
        app = modal.App("cuinit-warn")

        @app.cls(enable_memory_snapshot=True, gpu="A10G")
        class G:
            @modal.enter(snap=True)
            def load(self):
                import sys  # the worker runs as python -m thaw._worker
                sys.modules["__main__"].nvidia_device_fds = lambda: ["/dev/nvidiactl open"]  # as if cuInit had run

            @modal.method()
            def f(self):
                return 1
    ''')
    w = worker(path, "G", snapshot=True)
    msg = w.recv()
    assert msg["type"] == "snapshot_ready"
    assert len(msg["warnings"]) == 1, msg["warnings"]
    assert "the CUDA driver was initialized (the process has /dev/nvidiactl open)" in msg["warnings"][0]


def test_worker_warns_when_the_cuda_driver_started_its_threads(write_app, worker):
    """cuInit with no GPU visible leaves no device open, only the driver's
    threads (seen on an H100): a thread named like them is enough."""
    path = write_app("worker_app_cudathread", '''
        import ctypes, threading
        import thaw as modal
        app = modal.App("cudathread-warn")
        libc = ctypes.CDLL(None)

        def park(ev):
            libc.prctl(15, b"cuda-EvtHandlr", 0, 0, 0)  # PR_SET_NAME, as the driver names it
            ev.wait()

        @app.cls(enable_memory_snapshot=True, gpu="A10G")
        class G:
            @modal.enter(snap=True)
            def load(self):
                self.ev = threading.Event()
                threading.Thread(target=park, args=(self.ev,), daemon=True).start()
                import time
                time.sleep(0.2)

            @modal.method()
            def f(self):
                return 1
    ''')
    w = worker(path, "G", snapshot=True)
    msg = w.recv()
    assert msg["type"] == "snapshot_ready"
    assert len(msg["warnings"]) == 1, msg["warnings"]
    assert "the CUDA driver was initialized (the process has thread cuda-EvtHandlr)" in msg["warnings"][0]


def test_worker_does_not_warn_for_libcuda_merely_loaded(write_app, worker, tmp_path):
    """torch 2.x maps libcuda at import without initializing CUDA; a snapshot
    of such a process sees the GPU after the restore (seen on an H100)."""
    lib = tmp_path / "libcuda.so.1"
    lib.write_bytes(b"\0" * 4096)
    path = write_app("worker_app_libcuda", f'''
        import mmap
        import thaw as modal
        app = modal.App("libcuda-loaded")
        _f = open({str(lib)!r}, "rb")
        _m = mmap.mmap(_f.fileno(), 4096, prot=mmap.PROT_READ)  # shows in /proc/self/maps

        @app.function(enable_memory_snapshot=True, gpu="A10G")
        def f():
            return 1
    ''')
    w = worker(path, "f", snapshot=True)
    msg = w.recv()
    assert msg["type"] == "snapshot_ready"
    assert msg["warnings"] == [], msg["warnings"]


def test_nvidia_device_fds_reads_the_fd_links(tmp_path):
    from thaw._worker import nvidia_device_fds
    (tmp_path / "3").symlink_to("/dev/nvidiactl")
    (tmp_path / "4").symlink_to("/dev/nvidia0")
    (tmp_path / "5").symlink_to("/dev/null")
    (tmp_path / "6").symlink_to("/dev/nvidiactl")
    assert nvidia_device_fds(str(tmp_path)) == ["/dev/nvidia0 open", "/dev/nvidiactl open"]
    assert nvidia_device_fds(str(tmp_path / "missing")) == []


def test_worker_reports_import_failure(write_app, worker):
    path = write_app("worker_app_broken", '''
        import thaw as modal
        app = modal.App("broken")
        raise RuntimeError("global scope exploded")
    ''')
    w = worker(path, "f", snapshot=True)
    msg = w.recv()
    assert msg["type"] == "failed" and msg["stage"] == "import"
    assert "global scope exploded" in msg["error"] and "RuntimeError" in msg["traceback"]
    assert w.proc.wait(30) == 1


def test_worker_reports_missing_image_package(write_app, worker):
    path = write_app("worker_app_image", '''
        import thaw as modal
        app = modal.App("img", image=modal.Image.debian_slim().pip_install("scikit-image"))

        @app.function()
        def f():
            return 1
    ''')
    w = worker(path, "f", snapshot=True)
    msg = w.recv()
    if msg["type"] == "snapshot_ready":
        pytest.skip("scikit-image is installed on this host")
    assert msg["type"] == "failed" and msg["stage"] == "image"
    assert "apt-get install -y python3-skimage" in msg["error"]


def test_worker_reports_unknown_target_and_enter_failure(write_app, worker):
    path = write_app("worker_app_enter", '''
        import thaw as modal
        app = modal.App("enterfail")

        @app.cls(enable_memory_snapshot=True)
        class E:
            @modal.enter(snap=True)
            def load(self):
                raise OSError("weights missing")

            @modal.method()
            def f(self):
                return 1
    ''')
    w = worker(path, "Nope", snapshot=True)
    msg = w.recv()
    assert msg["type"] == "failed" and msg["stage"] == "find" and "E" in msg["error"]
    w2 = worker(path, "E", snapshot=True)
    msg = w2.recv()
    assert msg["type"] == "failed" and msg["stage"] == "enter_snap"
    assert "weights missing" in msg["error"]


def test_worker_class_parameters(write_app, worker):
    path = write_app("worker_app_params", '''
        import thaw as modal
        app = modal.App("params")

        @app.cls(enable_memory_snapshot=True)
        class P:
            size: int = modal.parameter(default=1)

            @modal.enter(snap=True)
            def load(self):
                self.table = list(range(self.size))

            @modal.method()
            def n(self):
                return len(self.table)
    ''')
    from thaw._functions import PARAMS_KEY
    w = worker(path, "P", snapshot=True)
    assert w.recv()["type"] == "snapshot_ready"
    w.start()
    assert w.value(method="n") == 1
    assert w.value(method="n", **{PARAMS_KEY: {"args": (), "kwargs": {"size": 5}}}) == 5


def test_parameter_types_are_in_the_config():
    """The runtime checks a call's values against them before it starts
    anything (runtime/class_params.cpp)."""
    ns = {}
    exec("from __future__ import annotations\n"
         "import thaw as modal\n"
         "app = modal.App('typed')\n"
         "@app.cls()\n"
         "class P:\n"
         "    size: int = modal.parameter(default=3)\n"
         "    name: str = modal.parameter()\n"
         "    blob: bytes = modal.parameter(default=b'')\n"
         "    flag: bool = modal.parameter(default=False)\n"
         "    other: list = modal.parameter(default=None)\n"
         "    @modal.method()\n"
         "    def m(self):\n"
         "        pass\n", ns)
    params = ns["P"].spec()["config"]["parameters"]
    assert {k: v.get("type") for k, v in params.items()} == \
        {"size": "int", "name": "str", "blob": "bytes", "flag": "bool", "other": None}
    assert params["name"] == {"required": True, "type": "str"}


def test_worker_refuses_routed_values_that_make_no_instance(write_app, worker):
    """A container for a set of values that does not make an instance fails
    to start, so no snapshot is taken of it (the runtime refuses such values
    first; this is for a config from an older SDK, without types)."""
    path = write_app("worker_app_bad_params", '''
        import thaw as modal
        app = modal.App("params")

        @app.cls(enable_memory_snapshot=True)
        class P:
            size: int = modal.parameter(default=1)

            @modal.method()
            def n(self):
                return self.size
    ''')
    w = worker(path, "P", snapshot=True, env={"THAW_CLASS_PARAMS": '{"size": "big"}'})
    msg = w.recv()
    assert msg["type"] == "failed" and msg["stage"] == "enter", msg
    assert "parameter 'size' is int, got str 'big'" in msg["error"], msg


# ====================================================================== client ↔ runtime
CLIENT_APP = '''
import os
import thaw as modal

app = modal.App("client-test")


class Custom(Exception):
    pass


@app.function(retries=modal.Retries(max_retries=2, initial_delay=0.0, backoff_coefficient=1.0))
def flaky(counter_file):
    n = int(open(counter_file).read()) if os.path.exists(counter_file) else 0
    open(counter_file, "w").write(str(n + 1))
    if n < 2:
        raise RuntimeError(f"attempt {n} fails")
    return f"ok after {n + 1} attempts"


@app.function()
def square(x: int):
    return x * x


@app.function()
def fail():
    raise KeyError("missing thing")


@app.function()
def sleepy(s):
    import time
    time.sleep(s)
    return s


@app.function()
def count(n):
    yield from range(n)


@app.cls()
class Greeter:
    greeting: str = modal.parameter(default="hi")

    @modal.method()
    def greet(self, name):
        return f"{self.greeting} {name}"


@app.local_entrypoint()
def main(x: int = 3, shout: bool = False):
    out = square.remote(x)
    print("RESULT", out if not shout else str(out) + "!")
'''


def test_remote_spawn_map_through_runtime(write_app, runtime, tmp_path):
    path = write_app("client_app", CLIENT_APP)
    mod = _loader.load_app_module(path)
    with mod.app.run():
        assert mod.square.remote(7) == 49
        call = mod.square.spawn(8)
        assert call.get(timeout=60) == 64
        assert list(mod.square.map(range(5))) == [0, 1, 4, 9, 16]
        assert sorted(mod.square.map([1, 2, 3], order_outputs=False)) == [1, 4, 9]
        assert list(mod.square.starmap([(2,), (3,)])) == [4, 9]
        assert list(mod.count.remote_gen(4)) == [0, 1, 2, 3]
        with pytest.raises(InvalidError, match="remote_gen"):
            mod.count.remote(2)
        with pytest.raises(InvalidError, match="not a generator"):
            list(mod.square.remote_gen(2))
        with pytest.raises(KeyError, match="missing thing"):
            mod.fail.remote()
        results = list(mod.fail.map([()] * 0))
        assert results == []
        assert mod.Greeter().greet.remote("ann") == "hi ann"
        assert mod.Greeter(greeting="yo").greet.remote("bo") == "yo bo"
    calls = [e["msg"] for e in runtime.events() if e["event"] == "request"]
    assert all(c["mode"] == "ephemeral" and c["app_file"] == str(path) for c in calls
               if c["type"] in ("call", "spawn"))
    assert [c["type"] for c in calls[:3]] == ["call", "spawn", "get"]
    assert calls[0] == {"type": "call", "app": "client-test", "function": "square",
                        "method": None, "mode": "ephemeral", "app_file": str(path)}


SELF_CALLS_APP = '''
import os
import thaw as modal

app = modal.App("self-calls")


@app.cls()
class Model:
    k: int = modal.parameter(default=1)

    @modal.method()
    def helper(self, x):
        return {"v": x * self.k, "pid": os.getpid()}

    @modal.method()
    def outer(self, x):
        me = os.getpid()
        remote = self.helper.remote(x)
        return {"direct": self.helper(x)["v"], "local": self.helper.local(x)["v"],
                "remote": remote["v"], "remote_elsewhere": remote["pid"] != me,
                "spawn": self.helper.spawn(x).get(timeout=60)["v"],
                "map": [r["v"] for r in self.helper.map([1, 2])]}
'''


def test_a_method_calls_its_class_s_other_methods_through_self(write_app, runtime):
    # Modal gives `self.other` the calling surface of the instance's method
    # (its `_modal_functions`): .remote()/.spawn()/.map() run in a container
    # of the same class and parameters, .local() and a plain call here.
    # Here `outer` runs locally; its self.helper.remote() goes to the runtime.
    path = write_app("self_calls_app", SELF_CALLS_APP)
    runtime.apps["self-calls"] = str(path)  # deployed: calls from its containers land there
    mod = _loader.load_app_module(path)
    assert mod.Model(k=3).outer.local(2) == {"direct": 6, "local": 6, "remote": 6,
                                             "remote_elsewhere": True, "spawn": 6, "map": [3, 6]}
    # (From a container too: tests/e2e, test_a_method_calls_other_methods_through_self.)
    # A user instance made outside thaw keeps plain methods.
    plain = mod.Model.get_user_cls()()
    assert not hasattr(plain.helper, "remote")


def test_remote_exception_keeps_type_and_remote_traceback(write_app, runtime):
    path = write_app("client_app_exc", CLIENT_APP)
    mod = _loader.load_app_module(path)
    with mod.app.run():
        with pytest.raises(KeyError) as ei:
            mod.fail.remote()
    notes = "".join(getattr(ei.value, "__notes__", []))
    assert "Remote traceback" in notes and 'raise KeyError("missing thing")' in notes


def test_the_client_leaves_retries_to_the_runtime(write_app, runtime, tmp_path):
    # retries= is honoured by the runtime for every caller (tests/e2e); a
    # client retrying as well would run a failing call 9 times, not 3. The
    # fake runtime does not retry, so the first failure comes back.
    path = write_app("client_app_retry", CLIENT_APP)
    mod = _loader.load_app_module(path)
    counter = tmp_path / "counter"
    with mod.app.run():
        with pytest.raises(RuntimeError, match="attempt 0 fails"):
            mod.flaky.remote(str(counter))
    assert counter.read_text() == "1"


def test_spawn_get_timeout(write_app, runtime):
    path = write_app("client_app_spawn", CLIENT_APP)
    mod = _loader.load_app_module(path)
    with mod.app.run():
        mod.sleepy.remote(0)  # start the container first
        call = mod.sleepy.spawn(1.5)
        with pytest.raises(thaw.exception.TimeoutError):
            call.get(timeout=0.2)
        with pytest.raises(thaw.exception.TimeoutError):
            call.get(timeout=0)  # polls; the call goes on
        assert call.get(timeout=30) == 1.5


def test_arguments_over_the_message_limit_are_refused_clearly(write_app, runtime, monkeypatch):
    path = write_app("client_app_large", CLIENT_APP)
    mod = _loader.load_app_module(path)
    with mod.app.run():
        assert mod.sleepy.remote(0) == 0
        monkeypatch.setattr(_protocol, "MAX_FRAME", 100_000)
        with pytest.raises(thaw.exception.InvalidError, match=r"arguments are \d+ bytes once pickled, over "
                                                              r"thaw's limit .* through a Volume"):
            mod.sleepy.remote(b"x" * 200_000)
        assert mod.sleepy.remote(0) == 0  # its connection was not spoilt


def test_deployed_lookup_and_not_found(write_app, runtime):
    path = write_app("client_app_deployed", CLIENT_APP)
    runtime.apps["client-test"] = str(path)
    assert modal.Function.from_name("client-test", "square").remote(9) == 81
    greeter = modal.Cls.from_name("client-test", "Greeter")
    assert greeter().greet.remote("dee") == "hi dee"
    with pytest.raises(NotFoundError, match="thaw deploy"):
        modal.Function.from_name("not-deployed", "square").remote(1)
    calls = [e["msg"] for e in runtime.events() if e["event"] == "request"]
    assert {"type": "lookup", "app": "client-test", "function": "square", "method": None,
            "mode": None, "app_file": None} in calls
    assert any(c["type"] == "call" and c["mode"] == "deployed" and c["app_file"] is None
               for c in calls)
    snaps = [e for e in runtime.events() if e["event"] == "snapshot_ready"]
    assert snaps  # deployed containers went through the snapshot point


def test_entrypoint_runs_in_ephemeral_mode(write_app, runtime):
    path = write_app("client_app_entry", CLIENT_APP)
    r = subprocess.run([PY, "-m", "thaw._entrypoint", str(path), "main", "--x", "5",
                        "--shout"], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "RESULT 25!"
    r = subprocess.run([PY, "-m", "thaw._entrypoint", f"{path}::square", "--x", "4"],
                       capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "16"
    r = subprocess.run([PY, "-m", "thaw._entrypoint", str(path), "nothing"],
                       capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert r.returncode == 1 and "no entrypoint, function or method named 'nothing'" in r.stderr
    calls = [e["msg"] for e in runtime.events() if e["event"] == "request"]
    assert calls and all(c["mode"] == "ephemeral" and c["app_file"] == str(path)
                         for c in calls)


def test_entrypoint_runs_the_modal_style_embedder(runtime):
    r = subprocess.run([PY, "-m", "thaw._entrypoint", str(EXAMPLES / "embedder.py")],
                       capture_output=True, text=True, timeout=180, env=dict(os.environ))
    assert r.returncode == 0, r.stderr
    assert "2 embeddings of width 384" in r.stdout and "similarity:" in r.stdout


def test_client_starts_thaw_serve_when_no_socket(write_app, tmp_path, monkeypatch):
    path = write_app("client_app_serve", CLIENT_APP)
    fake_bin = tmp_path / "fake-thaw"
    fake_bin.write_text(f"#!/bin/sh\nexec {PY} {Path(__file__).parent / 'fake_runtime.py'} "
                        f"\"$@\"\n")
    fake_bin.chmod(0o755)
    log = tmp_path / "serve.log"
    env = dict(os.environ, THAW_BIN=str(fake_bin), FAKE_THAW_LOG=str(log),
               FAKE_THAW_APPS=f"client-test={path}")
    env.pop("THAW_RUNTIME_SOCKET", None)
    code = ("import thaw; f = thaw.Function.from_name('client-test', 'square'); "
            "print(f.remote(12)); print(f.remote(3))")
    r = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["144", "9"]
    events = [json.loads(line)["event"] for line in log.read_text().splitlines()]
    assert events.count("serve") == 1  # started once per process
    assert events[-1] == "terminated"  # and stopped at exit


def test_thaw_binary_resolution(monkeypatch, tmp_path):
    from thaw import _client
    monkeypatch.setenv("THAW_BIN", "/opt/custom/thaw")
    assert _client.thaw_binary() == "/opt/custom/thaw"
    monkeypatch.delenv("THAW_BIN")
    repo_bin = REPO / "build" / "thaw"
    if os.access(repo_bin, os.X_OK):
        assert _client.thaw_binary() == str(repo_bin)


def _one_reply_server(path, replies, closed, runs=3):
    """A runtime that answers one call per connection, then closes it
    (setting `closed`); a reply of None closes without answering."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(8)
    served = []

    def serve():
        for r in range(runs):
            conn, _ = srv.accept()
            with conn:
                msg = _protocol.recv_msg(conn)
                if msg is None:
                    continue
                served.append(msg["id"])
                if replies[len(served) - 1] is not None:
                    _protocol.send_msg(conn, {"type": "result", "id": msg["id"], "ok": True,
                                              "value": _protocol.dump_payload(replies[len(served) - 1])})
            closed.set()
    threading.Thread(target=serve, daemon=True).start()
    return srv, served


def test_client_does_not_reuse_an_idle_connection_the_runtime_closed(tmp_path, monkeypatch):
    """The kept idle connection was closed by the runtime: the next call
    goes on a new one (the closed one is seen before anything is sent)."""
    path = str(tmp_path / "oneshot.sock")
    closed = threading.Event()
    srv, served = _one_reply_server(path, [1, 2, 3], closed)
    monkeypatch.setenv("THAW_RUNTIME_SOCKET", path)
    f = modal.Function.from_name("any", "f")
    f._found = True  # no lookup: this server only answers calls
    assert f.remote() == 1
    assert closed.wait(10)
    assert f.remote() == 2
    assert len(served) == 2
    srv.close()


def test_a_call_whose_runtime_went_away_is_not_sent_again(tmp_path, monkeypatch):
    """On a kept connection, the runtime reads the second call and goes
    away before answering (it died while the call ran): the call may have
    run, so it fails, saying so; it was sent again (and ran twice) when the
    connection had been reused."""
    path = str(tmp_path / "dies.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(8)
    served = []

    def serve():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                while (msg := _protocol.recv_msg(conn)) is not None:
                    served.append(msg["id"])
                    if len(served) == 2:
                        break  # read, then gone without a word
                    _protocol.send_msg(conn, {"type": "result", "id": msg["id"], "ok": True,
                                              "value": _protocol.dump_payload(len(served))})
    threading.Thread(target=serve, daemon=True).start()
    monkeypatch.setenv("THAW_RUNTIME_SOCKET", path)
    f = modal.Function.from_name("any", "f")
    f._found = True
    assert f.remote() == 1
    with pytest.raises(modal.exception.ConnectionError, match="may have run in part or in full"):
        f.remote()
    assert len(served) == 2
    srv.close()


# ====================================================================== which App a file is
def _pick_in_subprocess(app_file, code):
    """Runs code with `module` loaded from app_file (a fresh interpreter: app
    modules are imported by path, once per process)."""
    script = ("import json, sys\nfrom thaw import _loader\n"
              f"module = _loader.load_app_module({str(app_file)!r})\n" + code)
    cp = subprocess.run([PY, "-c", script], cwd=app_file.parent, capture_output=True, text=True,
                        env=dict(os.environ, PYTHONPATH=str(REPO / "python")), timeout=60)
    assert cp.returncode == 0, cp.stderr
    return cp.stdout.strip()


def test_the_app_global_wins_over_an_imported_app_and_includes_it(write_app):
    write_app("lib_app", """
        import thaw as modal
        lib = modal.App("lib")

        @lib.function()
        def util(x):
            return x
    """)
    main = write_app("main_app", """
        import thaw as modal
        from lib_app import lib, util
        app = modal.App("main")
        app.include(lib)

        @app.function()
        def orig(x):
            return util.remote(x)
    """)
    out = _pick_in_subprocess(main, "a = _loader.pick_app(module)\n"
                                    "print(json.dumps([a.name, sorted(a.registered_functions),"
                                    " module.util._app_name_for_call()]))")
    assert json.loads(out) == ["main", ["orig", "util"], "main"]


def test_an_app_not_named_app_is_picked_over_imported_ones_and_ambiguity_is_an_error(write_app):
    write_app("lib2_app", """
        import thaw as modal
        lib = modal.App("lib2")
    """)
    own = write_app("own_app", """
        import thaw as modal
        from lib2_app import lib
        mine = modal.App("mine")
    """)
    assert _pick_in_subprocess(own, "print(_loader.pick_app(module).name)") == "mine"
    two = write_app("two_apps", """
        import thaw as modal
        first = modal.App("first")
        second = modal.App("second")
    """)
    out = _pick_in_subprocess(two, "try:\n    _loader.pick_app(module)\n"
                                   "except Exception as e:\n    print(type(e).__name__, e)\n")
    assert out.startswith("InvalidError") and "'first', 'second'" in out and "`app`" in out
    assert _pick_in_subprocess(two, "print(_loader.pick_app(module, 'second').name)") == "second"


# ====================================================================== async
ASYNC_APP = '''
import asyncio
import thaw as modal

app = modal.App("async-test")


@app.function()
async def double(x):
    await asyncio.sleep(0.01)
    return 2 * x


@app.function()
async def ticks(n):
    for i in range(n):
        await asyncio.sleep(0)
        yield i


@app.cls()
class Conn:
    @modal.enter()
    async def open(self):
        await asyncio.sleep(0)
        self.state_ = "open"

    @modal.method()
    async def state(self):
        return self.state_
'''


def test_async_functions_hooks_and_aio_variants(write_app, runtime):
    import asyncio
    path = write_app("async_app", ASYNC_APP)
    mod = _loader.load_app_module(path)
    with mod.app.run():
        assert mod.double.remote(21) == 42
        assert list(mod.ticks.remote_gen(3)) == [0, 1, 2]
        with pytest.raises(InvalidError, match="remote_gen"):
            mod.ticks.remote(1)
        assert mod.Conn().state.remote() == "open"

        async def main():
            a = await mod.double.remote.aio(5)
            g = [x async for x in mod.ticks.remote_gen.aio(2)]
            m = [x async for x in mod.double.map.aio([1, 2, 3])]
            call = await mod.double.spawn.aio(4)
            s = await mod.Conn().state.remote.aio()
            both = await thaw.FunctionCall.gather.aio(call, await mod.double.spawn.aio(5))
            return a, g, m, await call.get.aio(), s, both
        assert asyncio.run(main()) == (10, [0, 1], [2, 4, 6], 8, "open", [8, 10])
        assert thaw.FunctionCall.gather(mod.double.spawn(1), mod.double.spawn(2)) == [2, 4]
    # .local() of an async function is its coroutine, as in Modal.
    assert asyncio.run(mod.double.local(3)) == 6


def test_the_worker_does_not_repeat_configuration_warnings(write_app, tmp_path):
    import fake_runtime
    path = write_app("warned_app", """
        import thaw as modal
        app = modal.App("warned")

        @app.function(region="us-east")
        def nightly():
            return 1
    """)
    # Where the app is run or deployed, the warning shows...
    cp = subprocess.run([PY, "-W", "always", "-c", f"import runpy; runpy.run_path({str(path)!r})"],
                        capture_output=True, text=True, timeout=60,
                        env=dict(os.environ, PYTHONPATH=str(REPO / "python")))
    assert "region" in cp.stderr, cp.stderr
    # ...but not again in every container.
    err = tmp_path / "worker.err"
    with open(err, "w") as f:
        proc, chan = fake_runtime.spawn_worker(path, "nightly", snapshot=False, stderr=f)
        chan.send({"type": "start", "restored": False, "env": {}, "seed": 1, "gpu_visible": False})
        assert chan.recv()["type"] == "ready"
        chan.send({"type": "shutdown"})
        chan.recv()
        proc.wait(timeout=30)
    assert "region" not in err.read_text(), err.read_text()


STREAM_APP = '''
import os, time
import thaw as modal

app = modal.App("stream-test")


def _wait_for(path):
    # The caller creates `path` once it has the value before: a generator
    # whose values came only at its end would wait here for 20 s.
    deadline = time.monotonic() + 20
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@app.function()
def handshake(d):
    yield "first"
    yield "second" if _wait_for(os.path.join(d, "got-first")) else "not streamed"
    raise ValueError("after two values")


@app.function()
async def ahandshake(d):
    import asyncio
    yield "first"
    for _ in range(2000):
        if os.path.exists(os.path.join(d, "got-first")):
            yield "second"
            return
        await asyncio.sleep(0.01)
    yield "not streamed"


@app.function()
def endless():
    i = 0
    while True:
        yield i
        i += 1


@app.function()
def square(x):
    return x * x
'''


def test_generators_stream_values_as_they_are_yielded(write_app, runtime, tmp_path):
    path = write_app("stream_app", STREAM_APP)
    mod = _loader.load_app_module(path)
    with mod.app.run():
        for name in ("handshake", "ahandshake"):
            d = tmp_path / name
            d.mkdir()
            got = []
            gen = getattr(mod, name).remote_gen(str(d))
            try:
                for v in gen:
                    got.append(v)
                    if v == "first":
                        (d / "got-first").touch()
            except ValueError as e:  # the generator's own exception, after its values
                got.append(str(e))
            expected = ["first", "second"] + (["after two values"] if name == "handshake" else [])
            assert got == expected, name
        # A consumer that stops early cancels the generator: its container
        # (one per function here) takes the next call.
        it = mod.endless.remote_gen()
        assert [next(it), next(it), next(it)] == [0, 1, 2]
        it.close()
        again = concurrent.futures.ThreadPoolExecutor(1).submit(lambda: next(mod.endless.remote_gen()))
        assert again.result(timeout=60) == 0
        assert mod.square.remote(7) == 49
        for how, call in [("map", lambda: mod.endless.map([1])),
                          ("spawn", lambda: mod.endless.spawn()),
                          ("starmap", lambda: mod.endless.starmap([()]))]:
            with pytest.raises(InvalidError, match=rf"cannot be called with \.{how}\(\)"):
                call()


def test_single_use_containers_and_max_inputs_are_config():
    app = modal.App("single-use")

    @app.function(single_use_containers=True)
    def one():
        return 1

    with pytest.warns(thaw.exception.DeprecatedWarning, match="single_use_containers"):
        @app.function(max_inputs=3)
        def three():
            return 3

    @app.function()
    def many():
        return 0

    assert one.config["max_inputs"] == 1 and one.config["unsupported"] == {}
    assert three.config["max_inputs"] == 3
    assert "max_inputs" not in many.config
    with pytest.raises(InvalidError, match="contradicts max_inputs=5"):
        app.function(single_use_containers=True, max_inputs=5)(lambda: 0)


# ====================================================================== Dict / Queue
def test_dict_semantics_and_persistence(tmp_path, monkeypatch):
    monkeypatch.setenv("THAW_HOME", str(tmp_path))
    with pytest.raises(thaw.exception.NotFoundError, match="create_if_missing=True"):
        modal.Dict.from_name("missing")["x"]
    d = modal.Dict.from_name("shared", create_if_missing=True)
    d["a"] = 1
    d[("t", 2)] = {"nested": [1, 2]}
    same = "".join(["x", "y"])
    d[("xy", "xy")] = "pair"
    assert d[("xy", same)] == "pair"  # equal keys, whatever objects they are made of
    del d[("xy", "xy")]
    assert d["a"] == 1 and d.get(("t", 2)) == {"nested": [1, 2]} and d.get("zz", 5) == 5
    assert "a" in d and "b" not in d and len(d) == 2
    assert d.put("a", 9, skip_if_exists=True) is False and d["a"] == 1
    assert d.put("b", 2, skip_if_exists=True) is True
    d.update({"c": 3}, e=5)
    d["a"] = 1  # an update keeps the key's place
    assert list(d.keys()) == ["a", ("t", 2), "b", "c", "e"]
    assert d.pop("c") == 3 and d.pop("c", None) is None
    with pytest.raises(KeyError):
        d["c"]
    del d["b"]
    # Another handle (another process would do the same) sees the same contents.
    other = modal.Dict.from_name("shared")
    assert dict(other.items()) == {"a": 1, ("t", 2): {"nested": [1, 2]}, "e": 5}
    other.clear()
    assert len(d) == 0
    modal.Dict.delete("shared")
    with pytest.raises(thaw.exception.NotFoundError):
        modal.Dict.from_name("shared").len()
    with pytest.raises(thaw.exception.NotFoundError, match="was deleted"):
        d["a"] = 1  # the handle that created it does not bring it back
    with modal.Dict.ephemeral({"k": "v"}) as e:
        assert e["k"] == "v"
        path = e._store.path
    assert not path.exists()


def test_queue_fifo_partitions_and_blocking(tmp_path, monkeypatch):
    import queue as q_mod
    monkeypatch.setenv("THAW_HOME", str(tmp_path))
    q = modal.Queue.from_name("jobs", create_if_missing=True)
    q.put(1)
    q.put_many([2, 3, {"x": 4}])
    q.put("p", partition="side")
    assert q.len() == 4 and q.len(partition="side") == 1 and q.len(total=True) == 5
    assert q.get() == 1 and q.get_many(2) == [2, 3]
    assert list(q.iterate()) == [{"x": 4}] and q.len() == 1  # iterate takes nothing, as in Modal
    assert q.get() == {"x": 4}
    with pytest.raises(q_mod.Empty):
        q.get(block=False)
    with pytest.raises(q_mod.Empty):
        q.get(timeout=0.05)
    assert q.get_many(3, block=False) == []
    assert q.get(partition="side") == "p"
    # A blocked get returns once another thread (or process) puts.
    threading.Timer(0.2, lambda: modal.Queue.from_name("jobs").put("late")).start()
    assert q.get(timeout=30) == "late"
    q.put_many([1, 2], partition="a")
    q.clear(all=True)
    assert q.len(total=True) == 0
    with pytest.raises(InvalidError):
        q.put(1, partition="")


QUEUE_WAITER = r"""
import asyncio, json, sys
import thaw
from thaw import _queue
# Looks so rare (10 min apart) that only a wake-up brings the values
# before the test gives up.
_queue._POLL_MIN_S = _queue._POLL_MAX_S = _queue._POLL_MAX_WOKEN_S = 600
q = thaw.Queue.from_name("wake", create_if_missing=True)
print("waiting", flush=True)
got = [q.get()]
print("waiting", flush=True)
got.append(asyncio.run(q.get.aio()))
print("waiting", flush=True)
got.append(q.get_many(5))
print(json.dumps(got), flush=True)
"""


def test_a_put_wakes_a_get_waiting_in_another_process(tmp_path, monkeypatch):
    monkeypatch.setenv("THAW_HOME", str(tmp_path))
    env = dict(os.environ, PYTHONPATH=str(REPO / "python"))
    waiter = subprocess.Popen(["/usr/bin/python3", "-c", QUEUE_WAITER], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        q = None
        for value in ("sync", "async", "many"):
            assert waiter.stdout.readline().strip() == "waiting", waiter.stderr.read()
            time.sleep(0.3)   # let it block in the wait, past its first look
            q = q or modal.Queue.from_name("wake")
            q.put(value) if value != "many" else q.put_many([1, 2])
        out, err = waiter.communicate(timeout=60)
    finally:
        waiter.kill()
    assert waiter.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1]) == ["sync", "async", [1, 2]]


def test_waiter_returns_on_a_signal_and_times_out_without_one(tmp_path):
    from thaw import _wakeup
    db = tmp_path / "q.db"
    with _wakeup.Waiter(db) as w:
        assert w.active
        assert w.wait(0.01) is False
        _wakeup.signal(db)
        assert w.wait(30) is True        # signalled before the wait began: at once
        assert w.wait(0.01) is False     # and only once
    # Without a directory to keep the signal file in, a Waiter only pauses.
    with _wakeup.Waiter(tmp_path / "gone" / "q.db") as w:
        assert not w.active and w.wait(0.01) is False
    _wakeup.signal(tmp_path / "gone" / "q.db")   # nothing to wake: no error


def test_dict_and_queue_aio(tmp_path, monkeypatch):
    import asyncio
    monkeypatch.setenv("THAW_HOME", str(tmp_path))

    async def main():
        d = modal.Dict.from_name("ad", create_if_missing=True)
        q = modal.Queue.from_name("aq", create_if_missing=True)
        await d.put.aio("k", 1)
        await q.put.aio("v")
        got = await d.get.aio("k"), await q.get.aio(), [k async for k in d.keys.aio()]
        # A get.aio given up on takes nothing: the value put afterwards stays.
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(q.get.aio(), 0.1)
        q.put("after")
        await asyncio.sleep(0.2)
        return got, q.get(block=False)
    assert asyncio.run(main()) == ((1, "v", ["k"]), "after")


def test_schedules_are_config_and_checked():
    app = modal.App("sched")

    @app.function(schedule=modal.Period(hours=1, minutes=30))
    def hourly():
        pass

    @app.function(schedule=modal.Cron("0 9 * * mon-fri"))
    def mornings():
        pass

    assert hourly.config["schedule"] == {"period_s": 5400.0}
    assert mornings.config["schedule"] == {"cron": "0 9 * * mon-fri", "timezone": "UTC"}
    with pytest.raises(InvalidError, match="no fixed length"):
        modal.Period(months=1)
    with pytest.raises(InvalidError, match="5 fields"):
        modal.Cron("0 9 * *")
    assert modal.Cron("@hourly").describe()["cron"] == "@hourly"
    with pytest.raises(InvalidError, match="takes arguments"):
        @app.function(schedule=modal.Period(days=1))
        def needs(x):
            pass
    assert modal.Cron("0 9 * * *", timezone="Europe/Paris").describe() == {"cron": "0 9 * * *",
                                                                            "timezone": "Europe/Paris"}
    with pytest.raises(InvalidError, match="unknown time zone; use an IANA name"):
        modal.Cron("0 9 * * *", timezone="Mars/Olympus_Mons")
    with pytest.raises(InvalidError, match="unknown time zone"):
        modal.Cron("0 9 * * *", timezone="../../etc/passwd")


def test_update_autoscaler_checks_its_settings_before_asking_the_runtime():
    app = thaw.App("autoscaler-checks")

    @app.function()
    def f():
        return 1

    @app.cls()
    class Model:
        @thaw.method()
        def run(self):
            return 1

    for target in (f, Model, Model()):
        for bad in ({"min_containers": -1}, {"max_containers": 0}, {"buffer_containers": 1.5},
                    {"min_containers": True}, {"scaledown_window": 0}, {"scaledown_window": "60"}):
            with pytest.raises(thaw.exception.InvalidError, match="update_autoscaler"):
                target.update_autoscaler(**bad)
        with pytest.raises(TypeError):
            target.update_autoscaler(timeout=3)   # not a scaling setting
    with pytest.warns(thaw.exception.DeprecatedWarning, match="keep_warm"):
        with pytest.raises(thaw.exception.InvalidError, match="min_containers=-2"):
            f.keep_warm(-2)
    with pytest.raises(thaw.exception.InvalidError, match="with_options"):
        Model.with_options(timeout=5).update_autoscaler(min_containers=1)


def test_async_gets_wait_without_holding_threads(tmp_path, monkeypatch):
    import asyncio
    monkeypatch.setenv("THAW_HOME", str(tmp_path))
    q = modal.Queue.from_name("many-waiters", create_if_missing=True)

    async def main():
        before = threading.active_count()
        waiters = [asyncio.ensure_future(q.get.aio(timeout=30)) for _ in range(20)]
        await asyncio.sleep(0.3)   # all of them waiting now
        during = threading.active_count()
        await asyncio.to_thread(q.put_many, list(range(20)))
        got = await asyncio.gather(*waiters)
        return before, during, sorted(got)

    before, during, got = asyncio.run(main())
    assert during == before, (before, during)   # no thread per waiting get
    assert got == list(range(20))


SIGNAL_ON_A_FULL_DISK = r"""
import pathlib, sys
from thaw import _wakeup
d = pathlib.Path(sys.argv[1])
try:
    with open(d / "filler", "wb") as f:
        while True:
            f.write(b"x" * 4096)
            f.flush()
except OSError:
    pass
_wakeup.signal(d / "q.db")   # no room for the signal file's counter
print("survived", flush=True)
"""


def test_a_put_on_a_full_disk_does_not_crash(tmp_path):
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(tiny)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (not root?)")
    try:
        cp = subprocess.run(["/usr/bin/python3", "-c", SIGNAL_ON_A_FULL_DISK, str(tiny)],
                            env=dict(os.environ, PYTHONPATH=str(REPO / "python")),
                            capture_output=True, text=True, timeout=60)
    finally:
        subprocess.run(["umount", str(tiny)], capture_output=True)
    assert cp.returncode == 0 and "survived" in cp.stdout, (cp.returncode, cp.stderr)
