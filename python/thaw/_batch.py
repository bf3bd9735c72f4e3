"""Dynamic batching (@batched): single inputs gathered into one call with lists.

Callers pass one input per call; the function takes a list per argument and
returns a list with one output per input (Modal's contract). In a container
the runtime sends up to max_batch_size inputs at once; a Batcher gathers those
that arrive within wait_ms of the first, or until the batch is full, runs the
function once, and hands each input its own output. Outside a container
(`.local()`, a direct call) every call is a batch of one.
"""

import copy
import inspect
import threading
import time

from ._async_runner import resolve
from .exception import InvalidError

MAX_BATCH_SIZE = 1000          # Modal's limits: max_batch_size < 1000,
MAX_WAIT_MS = 10 * 60 * 1000   # wait_ms < 10 minutes


def check_params(max_batch_size, wait_ms):
    """The decorator's arguments, checked as Modal does."""
    if isinstance(max_batch_size, bool) or not isinstance(max_batch_size, int) \
            or not 1 <= max_batch_size < MAX_BATCH_SIZE:
        raise InvalidError(f"@batched(max_batch_size={max_batch_size!r}): it must be an integer "
                           f"from 1 to {MAX_BATCH_SIZE - 1}")
    if isinstance(wait_ms, bool) or not isinstance(wait_ms, int) or not 0 <= wait_ms < MAX_WAIT_MS:
        raise InvalidError(f"@batched(wait_ms={wait_ms!r}): it must be an integer number of "
                           f"milliseconds from 0 to {MAX_WAIT_MS - 1} (under 10 minutes)")


def check_function(f):
    """A batched function takes a list per named argument: no *args or
    **kwargs (they cannot be split into lists), and it is not a generator
    (each input gets one output)."""
    name = getattr(f, "__qualname__", repr(f))
    if inspect.isgeneratorfunction(f) or inspect.isasyncgenfunction(f):
        raise InvalidError(f"@batched function {name} is a generator; a batched function "
                           f"returns a list with one output per input")
    try:
        sig = inspect.signature(f)
    except (TypeError, ValueError):
        return
    for p in sig.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise InvalidError(f"@batched function {name} takes {p}: a batched function takes "
                               f"named arguments only, each as a list of the inputs' values")


def _input_values(sig, name, args, kwargs):
    """One input's arguments, in the signature's order (defaults filled in)."""
    try:
        bound = sig.bind(*args, **kwargs)
    except TypeError as e:
        raise TypeError(f"{name}: {e} (a batched function is called with one input: one value "
                        f"per argument)") from None
    bound.apply_defaults()
    return tuple(bound.arguments.values())


def _split_outputs(name, out, n):
    out = resolve(out)
    if not isinstance(out, (list, tuple)):
        raise TypeError(f"{name} returned {type(out).__name__}; a batched function returns a "
                        f"list with one output per input ({n} inputs in this batch)")
    if len(out) != n:
        raise ValueError(f"{name} returned {len(out)} outputs for a batch of {n} inputs; a "
                         f"batched function returns one output per input")
    return list(out)


def call_as_batch_of_one(fn, args, kwargs):
    """A batched function called outside a container: one input, one batch."""
    name = getattr(fn, "__qualname__", repr(fn))
    values = _input_values(inspect.signature(fn), name, args, kwargs)
    return _split_outputs(name, fn(*[[v] for v in values]), 1)[0]


class _Input:
    __slots__ = ("values", "done", "value", "error", "tb")

    def __init__(self, values):
        self.values = values
        self.done = threading.Event()
        self.value = None
        self.error = None
        self.tb = None


class _Batch:
    __slots__ = ("inputs", "deadline")

    def __init__(self, deadline):
        self.inputs = []
        self.deadline = deadline


class Batcher:
    """Gathers concurrent single inputs of one function (of one instance)
    into batches and runs them one at a time, as Modal does. Each input's
    thread calls it; the thread of a batch's first input waits until the
    batch is full, or wait_ms has passed and no other batch runs, then runs
    it while the others wait for their outputs. While a batch runs the next
    one keeps gathering, past its wait_ms, until it is full."""

    def __init__(self, fn, max_batch_size, wait_ms):
        self.fn = fn
        self.name = getattr(fn, "__qualname__", repr(fn))
        self.sig = inspect.signature(fn)
        self.max_size = max_batch_size
        self.wait_s = wait_ms / 1000.0
        self.cond = threading.Condition()
        self.open = None       # the batch gathering inputs; None when none is
        self.running = False   # a batch is running

    def __call__(self, *args, **kwargs):
        entry = _Input(_input_values(self.sig, self.name, args, kwargs))
        with self.cond:
            batch = self.open
            leader = batch is None
            if leader:
                batch = self.open = _Batch(time.monotonic() + self.wait_s)
            batch.inputs.append(entry)
            if len(batch.inputs) >= self.max_size:
                self.open = None  # full: no more inputs join it
                self.cond.notify_all()
            if leader:
                while True:
                    left = batch.deadline - time.monotonic()
                    ready = len(batch.inputs) >= self.max_size or left <= 0
                    if ready and not self.running:
                        break
                    # Woken when the batch fills or the running one ends.
                    self.cond.wait(None if ready else left)
                if self.open is batch:
                    self.open = None
                self.running = True
        if leader:
            try:
                self._run(batch.inputs)
            finally:
                with self.cond:
                    self.running = False
                    self.cond.notify_all()
        else:
            entry.done.wait()
        if entry.error is not None:
            raise entry.error.with_traceback(entry.tb)
        return entry.value

    def _run(self, inputs):
        n = len(inputs)
        try:
            columns = [list(col) for col in zip(*(e.values for e in inputs))]
            outs = _split_outputs(self.name, self.fn(*columns), n)
        except Exception as e:  # noqa: BLE001 - every input of the batch gets it
            for i, entry in enumerate(inputs):
                # Each input raises its own copy: one exception object raised
                # in several threads at once would mix their tracebacks.
                entry.error = e if i == 0 else _copied(e)
                entry.tb = e.__traceback__
                entry.done.set()
            return
        except BaseException:
            # Interrupted (a timeout's alarm with one input at a time): the
            # leader's input gets the interruption, any others an error.
            for entry in inputs[1:]:
                entry.error = RuntimeError(f"{self.name}: the batch was interrupted")
                entry.done.set()
            raise
        for entry, out in zip(inputs, outs):
            entry.value = out
            entry.done.set()


def _copied(e):
    try:
        return copy.copy(e)
    except Exception:  # noqa: BLE001 - an exception that cannot be copied is shared
        return e
