"""`thaw run` entry options (thaw._cli_args, thaw._entrypoint): converted by
type hints as `modal run` does, string annotations included."""

import datetime
import json
import subprocess

import pytest

from thaw import _loader
from thaw._cli_args import params_of, parse_kwargs
from thaw._entrypoint import resolve
from thaw.exception import InvalidError

PY = "/usr/bin/python3"

FUTURE_APP = '''
from __future__ import annotations
import datetime
import json
from typing import Optional
import thaw as modal

app = modal.App("cli-args")


@app.function()
def remote_fn(n: int, m: Optional[int] = None, when: datetime.datetime | None = None,
              verbose: bool = False, ratio: float = 0.5, name="x", items: list[int] = None):
    return n


@app.cls()
class Model:
    size: int = modal.parameter(default=1)
    label: str = modal.parameter()

    @modal.method()
    def predict(self, k: int, fast: bool = False):
        return k


@app.local_entrypoint()
def main(n: int, when: Optional[datetime.datetime] = None, verbose: bool = False,
         ratio: float | None = None):
    print(json.dumps({"n": [type(n).__name__, n], "when": when and when.isoformat(),
                      "verbose": verbose, "ratio": ratio}))
'''


@pytest.fixture
def app(write_app):
    path = write_app("cli_args_app", FUTURE_APP)
    return path, _loader.load_app_module(path).app


def test_string_annotations_optional_and_datetime_convert(app):
    _, a = app
    e = resolve(a, "remote_fn")
    kw = parse_kwargs(e.params, ["--n", "4", "--m", "5", "--when", "2024-05-01T12:30:00",
                                 "--verbose", "--ratio", "2.5", "--name", "y"])
    assert kw == {"n": 4, "m": 5, "when": datetime.datetime(2024, 5, 1, 12, 30), "verbose": True,
                  "ratio": 2.5, "name": "y"}
    assert parse_kwargs(e.params, ["--n", "1", "--no-verbose", "--when", "2024-05-01"]) == \
        {"n": 1, "verbose": False, "when": datetime.datetime(2024, 5, 1)}


def test_negative_numbers_are_values_and_prefixes_are_not_options(app, capsys):
    _, a = app
    params = resolve(a, "remote_fn").params
    assert parse_kwargs(params, ["--n", "-3", "--ratio", "-1e3"]) == {"n": -3, "ratio": -1000.0}
    assert parse_kwargs(params, ["--n", "1", "--ratio=-2.5"]) == {"n": 1, "ratio": -2.5}
    with pytest.raises((SystemExit, InvalidError)):
        parse_kwargs(params, ["--n", "1", "--verb"])  # not --verbose


def test_bad_values_name_the_option_and_what_it_takes(app, capsys):
    _, a = app
    params = resolve(a, "remote_fn").params
    for argv, said in ((["--n", "four"], "argument --n: 'four' is not an int"),
                       (["--n", "1", "--when", "soon"], "'soon' is not a date and time in ISO 8601"),
                       (["--n", "1", "--items", "1"], "its type list[int] cannot be given on the command line"),
                       ([], "the following arguments are required: --n")):
        with pytest.raises(SystemExit) as ei:
            parse_kwargs(params, argv, prog="thaw run app.py::remote_fn")
        assert ei.value.code == 2
        assert said in capsys.readouterr().err, argv


def test_unevaluable_hints_fall_back_to_their_text():
    ns = {}
    exec("from __future__ import annotations\n"
         "from typing import Optional\n"
         "def f(a: int, b: Optional[float] = None, c: bool = False, d: NotImported = None,\n"
         "      e: int | None = None): pass\n", ns)
    types = {p.name: p.type for p in params_of(ns["f"])}
    assert types["a"] is int and types["b"] is float and types["c"] is bool and types["e"] is int
    assert types["d"] == "NotImported"
    assert parse_kwargs(params_of(ns["f"]), ["--a", "3", "--c", "--b", "1.5"]) == {"a": 3, "c": True, "b": 1.5}


def test_class_method_takes_the_class_parameters_too(app):
    _, a = app
    e = resolve(a, "Model.predict")
    assert [p.name for p in e.params] == ["size", "label", "k", "fast"]
    assert parse_kwargs(e.params, ["--label", "l", "--size", "3", "--k", "2", "--fast"]) == \
        {"label": "l", "size": 3, "k": 2, "fast": True}
    with pytest.raises(SystemExit):
        parse_kwargs(e.params, ["--k", "2"])  # --label is required


def test_local_entrypoint_under_future_annotations_gets_typed_values(app):
    path, _ = app
    r = subprocess.run([PY, "-m", "thaw._entrypoint", f"{path}::main", "--n", "4", "--verbose",
                        "--when", "2024-05-01 08:00:00", "--ratio", "0.25"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"n": ["int", 4], "when": "2024-05-01T08:00:00", "verbose": True,
                                    "ratio": 0.25}
