"""How values travel (call arguments and results, Dict and Queue values):
cloudpickle when installed, as Modal does; plain pickle otherwise, with
errors that say to install it. The calls themselves, through a real
runtime, are in tests/e2e (test_functions.py, cloudpickled.py)."""

import base64
import os
import pickle
import subprocess
import threading
import sys

import pytest

import thaw
from thaw import _protocol, _worker

from conftest import PY, REPO


def _closure(n):
    def add(x):
        return x + n
    return add


class _Local:
    pass


def test_cloudpickle_is_installed_where_the_tests_run():
    # Everything below that needs it would otherwise test the fallback only;
    # scripts/install-deps.sh installs it.
    assert _protocol.cloudpickle is not None, "apt-get install python3-cloudpickle"


def test_lambdas_closures_and_local_classes_round_trip():
    class Point:
        def __init__(self, x):
            self.x = x

        def norm(self):
            return abs(self.x)

    f, g, p = _protocol.load_payload(_protocol.dump_payload((lambda x: x * 3, _closure(5),
                                                             Point(-4))))
    assert f(2) == 6 and g(1) == 6 and p.norm() == 4
    # Loaded by plain pickle (the other side needs only cloudpickle importable).
    assert pickle.loads(_protocol.dump_payload(_closure(2)))(1) == 3
    # Base64 text (a spawned call's result kept on disk) is loaded too.
    text = base64.b64encode(_protocol.dump_payload(_closure(7))).decode()
    assert _protocol.load_payload(text)(1) == 8


def test_without_cloudpickle_an_unpicklable_argument_says_to_install_it(monkeypatch):
    monkeypatch.setattr(_protocol, "cloudpickle", None)
    assert _protocol.load_payload(_protocol.dump_payload({"a": [1, 2.5, b"x"]})) == {"a": [1, 2.5, b"x"]}
    assert _protocol.load_payload(_protocol.dump_payload(_closure)) is _closure  # by name
    with pytest.raises(pickle.PicklingError, match=r"<lambda>.*apt-get install python3-cloudpickle"):
        _protocol.dump_payload((lambda x: x,))
    # Plain pickle's AttributeError ("Can't pickle local object") too.
    with pytest.raises(pickle.PicklingError, match=r"local object.*apt-get install python3-cloudpickle"):
        _protocol.dump_payload(_closure(1))
    # What cloudpickle could not send either is left as it is.
    with pytest.raises(TypeError, match="cannot pickle '_thread.lock'"):
        _protocol.dump_payload(threading.Lock())


def test_without_cloudpickle_a_class_of_the_callers_main_is_named_on_loading(monkeypatch):
    # Plain pickle sends a __main__ class by name; this process's __main__
    # (pytest's) has no such class.
    payload = pickle.dumps(_Local(), protocol=2)  # GLOBAL names the class in plain text
    assert b"ctest_pickle\n_Local\n" in payload
    payload = payload.replace(b"ctest_pickle\n", b"c__main__\n")
    monkeypatch.setattr(_protocol, "cloudpickle", None)
    with pytest.raises(AttributeError, match=r"Can't get attribute '_Local'.*python3-cloudpickle"):
        _protocol.load_payload(payload)


def test_cloudpickle_output_where_cloudpickle_cannot_be_imported_says_what_to_do():
    payload = _protocol.dump_payload(lambda: 1)
    # -S: without site, Debian's dist-packages (and cloudpickle) are not on sys.path.
    code = ("import sys; from thaw import _protocol; assert _protocol.cloudpickle is None; "
            "_protocol.load_payload(sys.stdin.buffer.read())")
    cp = subprocess.run([PY, "-S", "-c", code], input=payload, capture_output=True,
                        env={"PYTHONPATH": str(REPO / "python")})
    assert cp.returncode != 0
    assert b"pickled with cloudpickle" in cp.stderr and b"apt-get install python3-cloudpickle" in cp.stderr, \
        cp.stderr.decode()


def test_dict_and_queue_values_from_another_scripts_main(tmp_path):
    # Another process (its own __main__) stores a lambda and an instance of
    # its own class; this one loads and uses them. Keys stay plain pickle.
    code = """
import thaw
class Greeter:
    def __init__(self, name):
        self.name = name
    def greet(self):
        return "hello " + self.name
d = thaw.Dict.from_name("pickled", create_if_missing=True)
d["f"] = lambda x: x * 10
d[("g", 1)] = Greeter("dict")
q = thaw.Queue.from_name("pickled", create_if_missing=True)
q.put(Greeter("queue"))
"""
    cp = subprocess.run([PY, "-c", code], capture_output=True, text=True,
                        env=dict(os.environ, PYTHONPATH=str(REPO / "python")))
    assert cp.returncode == 0, cp.stderr
    d = thaw.Dict.from_name("pickled")
    assert d["f"](4) == 40
    assert d[("g", 1)].greet() == "hello dict"
    assert dict(d.items())[("g", 1)].greet() == "hello dict"
    assert thaw.Queue.from_name("pickled").get(timeout=5).greet() == "hello queue"


def test_worker_tells_class_parameters_apart_even_when_sent_by_value():
    class Config:  # a class plain pickle cannot name (as a caller's __main__ class is here)
        def __init__(self, n):
            self.n = n

        def __eq__(self, other):
            return self.n == other.n

    one = _protocol.load_payload(_protocol.dump_payload({"args": (Config(1),), "kwargs": {}}))
    assert _worker._params_key(one) == _worker._params_key(one)
    assert _worker._params_key(one) != _worker._params_key({"args": (Config(2),), "kwargs": {}})
    # The usual values keep plain pickle's bytes.
    plain = {"args": (), "kwargs": {"name": "x"}}
    assert _worker._params_key(plain) == pickle.dumps(plain, protocol=4)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__]))
