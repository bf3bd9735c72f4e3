"""Cls.with_options / with_concurrency / with_batching: checked, merged, and
sent with each call (the runtime applies them: tests/e2e, tests/runtime).

Run with Debian's python: /usr/bin/python3 -m pytest tests/unit_py
"""

import pytest

import thaw as modal
from thaw.exception import InvalidError

app = modal.App("options-unit")


@app.cls()
class Model:
    @modal.method()
    def predict(self, x):
        return x


@app.cls()
class Batcher:
    @modal.batched(max_batch_size=4, wait_ms=10)
    def predict(self, xs):
        return xs


def _options(handle, method="predict"):
    return getattr(handle(), method)._target().message((), {}).get("options")


def test_a_plain_handle_sends_no_options():
    assert _options(Model) is None


def test_options_are_converted_merged_and_sent(monkeypatch):
    monkeypatch.setenv("THAW_SECRET_TOKENS", '{"TOKEN": "s3cret"}')
    h = Model.with_options(gpu="h100", cpu=2, memory=(512, 1024), timeout=5, retries=2,
                           env={"A": 1, "GONE": None}, secrets=[modal.Secret.from_name("tokens")],
                           volumes={"/data/": modal.Volume.from_name("weights")})
    h = h.with_options(timeout=7).with_concurrency(max_inputs=3)
    opts = _options(h)
    cfg = opts["config"]
    assert cfg["gpu"] == "H100" and cfg["timeout"] == 7 and cfg["max_concurrent_inputs"] == 3
    assert cfg["retries"]["max_retries"] == 2
    assert opts["env"] == {"A": "1", "GONE": None, "TOKEN": "s3cret"}
    assert opts["volumes"] == {"/data": "weights"}
    # The original handle is unchanged: each handle has its own settings.
    assert _options(Model) is None


@pytest.mark.parametrize("call, message", [
    (lambda: Model.with_options(image=None), "takes no image"),
    (lambda: Model.with_options(timeout=0), "timeout= must be"),
    (lambda: Model.with_options(max_containers=0), "max_containers= must be"),
    (lambda: Model.with_options(env={1: "x"}), r"env=\.\.\.\) must be a dict"),
    (lambda: Model.with_options(volumes={"/v": "name"}), "only thaw.Volume"),
    (lambda: Model.with_options(secrets=["x"]), "list of thaw.Secret"),
    (lambda: Model.with_concurrency(max_inputs=0), "positive integer"),
    (lambda: Model.with_batching(max_batch_size=4, wait_ms=10), "no @batched method"),
    (lambda: Batcher.with_concurrency(max_inputs=2), "cannot be combined with @concurrent"),
    (lambda: Batcher.with_batching(max_batch_size=0, wait_ms=10), "max_batch_size=0"),
])
def test_bad_options_are_refused(call, message):
    with pytest.raises(InvalidError, match=message):
        call()


def test_modal_old_names_and_one_host_settings():
    import warnings
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        h = Model.with_options(concurrency_limit=3, container_idle_timeout=30,
                               allow_concurrent_inputs=4, region="us-east", cloud="aws")
    cfg = _options(h)["config"]
    assert cfg == {"max_containers": 3, "scaledown_window": 30, "max_concurrent_inputs": 4}
    text = " ".join(str(w.message) for w in rec)
    assert "old name for max_containers" in text and "region=" in text and "cloud=" in text


def test_with_batching_overrides_the_batched_method():
    opts = _options(Batcher.with_batching(max_batch_size=16, wait_ms=50))
    assert opts["config"]["batched"] == {"max_batch_size": 16, "wait_ms": 50}
