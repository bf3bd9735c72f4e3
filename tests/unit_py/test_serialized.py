"""serialized=True: the function or class itself is cloudpickled and its
containers load it from that, instead of importing the app file and finding
it by name."""

import warnings

import pytest

import thaw
from thaw import _protocol, _state
from thaw._functions import _Target
from thaw.exception import InvalidError

# The app file the worker is told about: importing it would fail, so a
# worker that serves the function did not import it.
UNIMPORTABLE = '''
raise RuntimeError("the app file was imported")
'''


def _define(greeting):
    app = thaw.App("ser-unit")

    @app.function(serialized=True, enable_memory_snapshot=True)
    def greet(name):
        return f"{greeting}, {name}"

    @app.cls(serialized=True, enable_memory_snapshot=True)
    class Book:
        @thaw.enter(snap=True)
        def load(self):
            self.words = {"hi": greeting}
            self.loaded = 1

        @thaw.enter(snap=False)
        def wake(self):
            self.loaded += 1

        @thaw.method()
        def say(self, key):
            return [self.words[key], self.loaded]

    return app, greet, Book


def test_a_function_defined_in_a_function_runs_from_its_pickle(write_app, worker):
    _, greet, _ = _define("Bonjour")
    path = greet._write_serialized()
    w = worker(write_app("ser_unimportable", UNIMPORTABLE), "greet", snapshot=True,
               env={"THAW_SERIALIZED_FUNCTION": str(path)})
    assert w.recv()["type"] == "snapshot_ready"
    w.start()
    assert w.value("Ada") == "Bonjour, Ada"


def test_a_class_defined_in_a_function_runs_its_hooks_from_its_pickle(write_app, worker):
    _, _, Book = _define("Salut")
    path = Book._write_serialized()
    w = worker(write_app("ser_unimportable_cls", UNIMPORTABLE), "Book", snapshot=True,
               env={"THAW_SERIALIZED_FUNCTION": str(path)})
    assert w.recv()["type"] == "snapshot_ready"
    w.start()
    # snap=True ran before the snapshot point, snap=False after the start.
    assert w.value("hi", method="say") == ["Salut", 2]


def test_a_missing_pickle_fails_the_container_saying_so(write_app, worker, tmp_path):
    w = worker(write_app("ser_missing", UNIMPORTABLE), "greet", snapshot=True,
               env={"THAW_SERIALIZED_FUNCTION": str(tmp_path / "gone.pkl")})
    msg = w.recv()
    assert msg["type"] == "failed" and msg["stage"] == "import", msg
    assert "serialized=True" in msg["error"] and "gone.pkl" in msg["error"]


def test_the_entry_and_the_call_carry_the_pickle(tmp_path, monkeypatch):
    _, greet, _ = _define("Hej")
    spec = greet.spec()
    sha = spec["config"]["serialized_sha256"]
    assert spec["serialized_function"]["sha256"] == sha
    assert spec["serialized_function"]["path"].endswith(f"/serialized/{sha}.pkl")
    # A closure over another value is another pickle: another snapshot key.
    assert _define("Hallo")[1].spec()["config"]["serialized_sha256"] != sha

    monkeypatch.setattr(_state, "mode", "ephemeral")
    monkeypatch.setattr(_state, "app_file", str(tmp_path / "script.py"))
    msg = _Target(greet).message(("Bo",), {})
    definition = msg["definition"]
    assert definition["config"]["serialized_sha256"] == sha
    with open(definition["serialized_function"]["path"], "rb") as f:
        loaded = _protocol.load_payload(f.read())
    assert loaded._raw_f("Bo") == "Hej, Bo"
    # Neither the App nor the secrets travel with it.
    assert loaded._app is None and loaded._secrets == [] and loaded._app_name == "ser-unit"
    # A function found by name goes as before.
    by_name = thaw.App("by-name").function()(len)
    assert "definition" not in _Target(by_name).message(([],), {})
    assert "serialized_function" not in by_name.spec()


def test_serialized_is_honoured_without_warnings():
    app = thaw.App("quiet")
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")

        def make():
            @app.function(serialized=True)
            def inner():
                return 1
            return inner
        f = make()
    assert [str(w.message) for w in rec] == []
    assert f.config["serialized"] is True and "serialized" not in f.config["unsupported"]


def test_a_local_function_without_serialized_is_told_to_use_it():
    app = thaw.App("locals")
    for decorate in (lambda: app.function()(lambda: 1),
                     lambda: app.cls()(type("Local", (), {"__qualname__": "f.<locals>.Local"}))):
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            decorate()
        messages = [str(w.message) for w in rec]
        assert any("global scope" in m and "serialized=True" in m for m in messages), messages


def test_serialized_without_cloudpickle_fails_at_decoration(monkeypatch):
    monkeypatch.setattr(_protocol, "cloudpickle", None)
    app = thaw.App("no-cloudpickle")
    with pytest.raises(InvalidError, match="python3-cloudpickle"):
        app.function(serialized=True)(lambda: 1)
    with pytest.raises(InvalidError, match="python3-cloudpickle"):
        app.cls(serialized=True)(type("C", (), {}))


FACTORY_APP = '''
import thaw

app = thaw.App("ser-factory")


def helper(x):  # at global scope: cloudpickle sends it by name
    return x * 10


def make():
    @app.function(serialized=True)
    def uses_helper(x):
        return helper(x) + 1
    return uses_helper
'''


@pytest.mark.parametrize("stem", ["ser_factory", "json"])  # "json": a name already taken
def test_the_app_files_globals_pickled_by_name_are_imported_in_the_container(
        write_app, worker, stem):
    from thaw._loader import load_app_module
    path = write_app(stem, FACTORY_APP)
    f = load_app_module(path).make()  # not at import: the container cannot find it by name
    pickled = f._write_serialized()
    w = worker(path, "uses_helper", snapshot=False,
               env={"THAW_SERIALIZED_FUNCTION": str(pickled)})
    w.start(restored=False)
    assert w.value(4) == 41


NO_FILE = '''
import thaw
app = thaw.App("no-file")

@app.function()
def double(x):
    return 2 * x

@app.cls()
class Box:
    @thaw.method()
    def get(self):
        return 1

@app.function(serialized=False)
def told(x):
    return x
'''


def test_an_app_defined_where_there_is_no_file_sends_its_functions_themselves():
    """Modal's notebook rule: in a __main__ without a file (a notebook's
    cells, the REPL, `python -c`) functions and classes are serialized
    unless told otherwise, and app.run() refuses one that is not."""
    ns = {"__name__": "__main__"}
    exec(compile(NO_FILE, "<stdin>", "exec"), ns)
    app = ns["app"]
    assert app._file is None
    assert ns["double"]._is_serialized() and ns["Box"]._is_serialized()
    assert not ns["told"]._is_serialized()
    with pytest.raises(InvalidError, match="told come from a module: give them serialized=True"):
        with app.run():
            pass
    del app._functions["told"]
    with app.run():
        assert _state.mode == "ephemeral"
