"""Modal's small modules as `import thaw as modal` code imports them
(thaw.config, thaw.functions, thaw.experimental), the worker's side of
thaw.experimental, and what App.lookup checks before asking a runtime."""

import logging
import os

import pytest

import thaw as modal
from thaw.exception import InvalidError


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
