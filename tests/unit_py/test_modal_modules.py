"""Modal's small modules as `import thaw as modal` code imports them
(thaw.config, thaw.functions, thaw.experimental), the worker's side of
thaw.experimental, and what App.lookup checks before asking a runtime."""

import logging
import os

import pytest

import thaw as modal
from thaw.exception import InvalidError


def test_functions_module_reexports_the_function_objects():
    from thaw.functions import Function, FunctionCall, FunctionStats, gather
    assert Function is modal.Function and FunctionCall is modal.FunctionCall
    assert gather is FunctionCall.gather
    stats = FunctionStats(backlog=2, num_total_runners=1)
    assert (stats.backlog, stats.num_total_runners) == (2, 1)


def test_config_reads_the_environment_and_override_locally_sets_it(monkeypatch):
    from thaw.config import config, logger
    monkeypatch.setenv("THAW_HOME", "/tmp/somewhere")
    assert config["thaw_home"] == "/tmp/somewhere" and config.get("thaw_home") == "/tmp/somewhere"
    monkeypatch.delenv("THAW_HOME")
    assert config["thaw_home"] == "/var/lib/thaw"
    assert config["environment"] == "main" and "loglevel" in config
    assert set(config.to_dict()) == set(config.keys())
    monkeypatch.setenv("THAW_LOGLEVEL", "WARNING")
    config.override_locally("loglevel", "debug")
    assert os.environ["THAW_LOGLEVEL"] == "debug" and logger.level == logging.DEBUG
    config.override_locally("loglevel", "WARNING")
    assert logger.name == "thaw" and logger.level == logging.WARNING


@pytest.mark.parametrize("key, words", [
    ("token_id", "no account, token or server"),
    ("image_builder_version", "builds no images"),
    ("no_such_key", "has no setting 'no_such_key'"),
])
def test_config_refuses_settings_thaw_has_not(key, words):
    from thaw.config import config
    with pytest.raises(KeyError, match=words):
        config[key]
    with pytest.raises(KeyError, match=words):
        config.override_locally(key, "x")


def test_config_refuses_bad_or_fixed_values():
    from thaw.config import config
    with pytest.raises(InvalidError, match="single environment"):
        config.override_locally("environment", "dev")
    with pytest.raises(InvalidError, match="use DEBUG, INFO"):
        config.override_locally("loglevel", "LOUD")


def test_experimental_outside_a_container_says_where_it_works():
    import thaw.experimental as exp
    for fn in (exp.stop_fetching_inputs, exp.get_local_input_concurrency):
        with pytest.raises(InvalidError, match="inside a function's container"):
            fn()


@pytest.mark.parametrize("name, words", [
    ("set_local_input_concurrency", "with_concurrency"),
    ("clustered", "one host"),
    ("something_new", "it has stop_fetching_inputs"),
])
def test_experimental_names_thaw_lacks_raise_saying_why(name, words):
    import thaw.experimental as exp
    with pytest.raises(AttributeError, match=words):
        getattr(exp, name)
    with pytest.raises(ImportError):
        exec(f"from thaw.experimental import {name}", {})


def test_worker_answers_say_stop_fetching_once_the_code_asked(write_app, worker):
    app = write_app("stopper", """
        import thaw
        import thaw.experimental

        app = thaw.App("stopper")

        @app.function()
        @thaw.concurrent(max_inputs=3)
        def f(stop):
            width = thaw.experimental.get_local_input_concurrency()
            if stop:
                thaw.experimental.stop_fetching_inputs()
            return width
    """)
    w = worker(app, "f", snapshot=False)
    w.start(restored=False)
    first = w.call((False,), call_id=1)
    assert first["ok"] and "stop_fetching" not in first, first
    second = w.call((True,), call_id=2)
    assert second["ok"] and second["stop_fetching"] is True, second
    from thaw._protocol import load_payload
    assert load_payload(second["value"]) == 3
    msg, rc = w.shutdown()
    assert msg["type"] == "bye" and rc == 0


def _plain():
    return 1


def test_app_lookup_checks_the_name_and_looked_up_apps_define_nothing():
    with pytest.raises(InvalidError, match="non-empty string"):
        modal.App.lookup("")
    app = modal.App._handle("deployed", version=3, functions={
        "f": {"kind": "function", "methods": [], "config": {"is_generator": True}},
        "C": {"kind": "class", "methods": ["m"], "config": {"methods": {"m": {}}}},
    })
    assert app not in modal.App._all  # not an App a file defines (thaw run picks from those)
    assert set(app.registered_functions) == {"f"} and set(app.registered_classes) == {"C"}
    f = app.registered_functions["f"]
    assert f._from_name and f._found and f._is_generator()
    assert repr(f) == "<thaw.Function deployed.f>"
    assert app.registered_classes["C"]._methods == {"m": {}}
    with pytest.raises(InvalidError, match="handle on the deployed app"):
        app.function()(_plain)
    with pytest.raises(InvalidError, match="handle on the deployed app"):
        app.deploy()
    with pytest.raises(InvalidError, match="handle on the deployed app"):
        with app.run():
            pass
