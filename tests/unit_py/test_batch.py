"""@batched: the decorator's checks and the Batcher that gathers inputs.

Run with Debian's python: /usr/bin/python3 -m pytest tests/unit_py
"""

import threading
import time
import warnings

import pytest

import thaw as modal
from thaw._batch import Batcher
from thaw.exception import InvalidError


def _run_concurrently(batcher, inputs):
    """Submit each input from its own thread, all at once; returns
    [(value or None, exception or None)] in input order."""
    out = [None] * len(inputs)
    start = threading.Barrier(len(inputs))

    def one(i, args, kwargs):
        start.wait()
        try:
            out[i] = (batcher(*args, **kwargs), None)
        except Exception as e:  # noqa: BLE001 - collected for the test
            out[i] = (None, e)
    threads = [threading.Thread(target=one, args=(i, a, k)) for i, (a, k) in enumerate(inputs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads), "a batched input never got its output"
    return out


class Recorder:
    """A batched function that records the batches it was called with."""

    def __init__(self, result=None):
        self.batches = []
        self.lock = threading.Lock()
        self.result = result

    def __call__(self, xs, ys):
        with self.lock:
            self.batches.append((list(xs), list(ys)))
        if self.result is not None:
            return self.result(xs, ys)
        return [x + y for x, y in zip(xs, ys)]


# ====================================================================== Batcher
def test_inputs_arriving_together_run_as_one_batch():
    rec = Recorder()
    b = Batcher(rec, max_batch_size=4, wait_ms=5000)
    out = _run_concurrently(b, [((i, 100 * i), {}) for i in range(4)])
    assert [v for v, _ in out] == [101 * i for i in range(4)]
    # A full batch runs at once (not after wait_ms), as one call.
    assert len(rec.batches) == 1 and sorted(rec.batches[0][0]) == [0, 1, 2, 3]


def test_a_batch_is_at_most_max_batch_size():
    rec = Recorder()
    b = Batcher(rec, max_batch_size=3, wait_ms=300)
    out = _run_concurrently(b, [((i, 0), {}) for i in range(7)])
    assert [v for v, _ in out] == list(range(7))
    sizes = sorted(len(xs) for xs, _ in rec.batches)
    assert sum(sizes) == 7 and max(sizes) <= 3 and len(sizes) >= 3, rec.batches


def test_a_lone_input_runs_after_wait_ms():
    rec = Recorder()
    b = Batcher(rec, max_batch_size=8, wait_ms=50)
    assert b(2, 3) == 5
    assert rec.batches == [([2], [3])]


def test_keyword_and_positional_inputs_batch_together_with_defaults_filled():
    calls = []

    def f(xs, ys=None):
        calls.append((list(xs), list(ys)))
        return [(x, y) for x, y in zip(xs, ys)]
    b = Batcher(f, max_batch_size=3, wait_ms=5000)
    out = _run_concurrently(b, [((1,), {"ys": "a"}), ((), {"xs": 2, "ys": "b"}), ((3,), {})])
    assert sorted(v for v, _ in out if v[0] != 3) == [(1, "a"), (2, "b")]
    assert out[2][0] == (3, None)
    assert len(calls) == 1


def test_an_input_with_bad_arguments_fails_alone():
    rec = Recorder()
    b = Batcher(rec, max_batch_size=2, wait_ms=200)
    out = _run_concurrently(b, [((1, 2), {}), ((1, 2, 3), {})])
    assert out[0] == (3, None)
    assert isinstance(out[1][1], TypeError) and "one value per argument" in str(out[1][1])
    assert rec.batches == [([1], [2])]


def test_an_exception_reaches_every_input_of_the_batch():
    def boom(xs, ys):
        raise ValueError(f"bad batch of {len(xs)}")
    b = Batcher(Recorder(boom), max_batch_size=3, wait_ms=5000)
    out = _run_concurrently(b, [((i, i), {}) for i in range(3)])
    errors = [e for _, e in out]
    assert all(isinstance(e, ValueError) and str(e) == "bad batch of 3" for e in errors), errors
    assert len({id(e) for e in errors}) == 3  # each input raises its own copy


@pytest.mark.parametrize("result, message", [
    (lambda xs, ys: [1], "returned 1 outputs for a batch of 2 inputs"),
    (lambda xs, ys: 42, "returned int; a batched function returns a list"),
])
def test_outputs_that_do_not_match_the_inputs_are_an_error_for_each(result, message):
    b = Batcher(Recorder(result), max_batch_size=2, wait_ms=5000)
    out = _run_concurrently(b, [((1, 1), {}), ((2, 2), {})])
    assert all(e is not None and message in str(e) for _, e in out), out


def test_an_async_batched_function():
    async def add(xs, ys):
        return [x + y for x, y in zip(xs, ys)]
    b = Batcher(add, max_batch_size=2, wait_ms=5000)
    out = _run_concurrently(b, [((1, 1), {}), ((2, 2), {})])
    assert sorted(v for v, _ in out) == [2, 4]


def test_batches_run_one_at_a_time_and_the_next_gathers_meanwhile():
    release = threading.Event()
    running, most = [0], [0]
    lock = threading.Lock()

    def slow(xs, ys):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        release.wait(10)
        with lock:
            running[0] -= 1
        return list(xs)
    rec = Recorder(slow)
    b = Batcher(rec, max_batch_size=4, wait_ms=10)
    first = threading.Thread(target=_run_concurrently, args=(b, [((i, 0), {}) for i in range(4)]))
    first.start()
    deadline = time.monotonic() + 10
    while not rec.batches and time.monotonic() < deadline:
        time.sleep(0.01)
    # Three inputs, one by one, well past wait_ms while the first batch runs.
    later = []
    for i in range(3):
        t = threading.Thread(target=lambda i=i: later.append(b(10 + i, 0)))
        t.start()
        time.sleep(0.05)
    assert len(rec.batches) == 1  # none of them ran beside the first batch
    release.set()
    first.join(10)
    while len(later) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(later) == [10, 11, 12]
    assert [sorted(xs) for xs, _ in rec.batches] == [[0, 1, 2, 3], [10, 11, 12]]
    assert most[0] == 1


# ====================================================================== decorator
def test_batched_function_config_and_local_call():
    app = modal.App("batch")
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")

        @app.function()
        @modal.batched(max_batch_size=8, wait_ms=10)
        def double(xs):
            return [x * 2 for x in xs]
    assert not [w for w in rec if "batch" in str(w.message)]  # honoured: not warned
    assert double.config["batched"] == {"max_batch_size": 8, "wait_ms": 10}
    assert double.local(21) == 42
    assert double(xs=4) == 8


@pytest.mark.parametrize("kwargs, message", [
    ({"max_batch_size": 0, "wait_ms": 10}, "max_batch_size=0"),
    ({"max_batch_size": 1000, "wait_ms": 10}, "from 1 to 999"),
    ({"max_batch_size": 2.5, "wait_ms": 10}, "must be an integer"),
    ({"max_batch_size": 4, "wait_ms": -1}, "wait_ms=-1"),
    ({"max_batch_size": 4, "wait_ms": 600000}, "under 10 minutes"),
])
def test_batched_arguments_are_checked(kwargs, message):
    with pytest.raises(InvalidError, match=message):
        modal.batched(**kwargs)


def test_batched_refuses_what_cannot_be_batched():
    app = modal.App("batch-bad")
    with pytest.raises(InvalidError, match="generator"):
        @modal.batched(max_batch_size=2, wait_ms=1)
        def gen(xs):
            yield from xs
    with pytest.raises(InvalidError, match=r"takes \*xs"):
        @modal.batched(max_batch_size=2, wait_ms=1)
        def var(*xs):
            return xs
    with pytest.raises(InvalidError, match="cannot be combined with @concurrent"):
        @app.function()
        @modal.concurrent(max_inputs=2)
        @modal.batched(max_batch_size=2, wait_ms=1)
        def both(xs):
            return xs
    with pytest.raises(InvalidError, match="web endpoint"):
        @app.function()
        @modal.fastapi_endpoint()
        @modal.batched(max_batch_size=2, wait_ms=1)
        def web(xs):
            return xs


def test_a_class_with_a_batched_method():
    app = modal.App("batch-cls")

    @app.cls()
    class Model:
        @modal.batched(max_batch_size=4, wait_ms=100)
        def predict(self, xs):
            return [x + 1 for x in xs]
    assert Model.config["batched"] == {"max_batch_size": 4, "wait_ms": 100}
    assert Model.config["methods"]["predict"]["batched"] == {"max_batch_size": 4, "wait_ms": 100}
    assert Model().predict.local(1) == 2

    with pytest.raises(InvalidError, match="cannot have other methods"):
        @app.cls()
        class Two:
            @modal.batched(max_batch_size=4, wait_ms=100)
            def predict(self, xs):
                return xs

            @modal.method()
            def other(self):
                return 1
    with pytest.raises(InvalidError, match="cannot be combined with @concurrent on the class"):
        @app.cls()
        @modal.concurrent(max_inputs=4)
        class Busy:
            @modal.batched(max_batch_size=4, wait_ms=100)
            def predict(self, xs):
                return xs
