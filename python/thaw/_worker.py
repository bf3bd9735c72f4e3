"""The worker loop that runs inside every function container:
`python3 -m thaw._worker` (docs/runtime-protocol.md, "Runtime ↔ worker").

Lifecycle, in Modal's order:
  global scope (import the app file) → @enter(snap=True) → [snapshot_ready;
  the runtime checkpoints, later restores] → start (env, seed) →
  @enter(snap=False) → ready → calls → shutdown → @exit → bye.

Environment: THAW_CONTROL_FD (default 3), THAW_APP_FILE, THAW_FUNCTION (the
function or class name), THAW_SNAPSHOT=1 when this container is snapshotted,
optionally THAW_APP (the app's name, when the file defines several) and
THAW_SERIALIZED_FUNCTION (serialized=True: the file of the pickled function
or class, loaded instead of importing the app file).

Every read of the control channel is a plain read() of one frame at a time
on the fd number, so the channel installed as fd 3 after a restore is used
from the next read on, with nothing read ahead in the snapshot.
"""

import atexit
import base64
import concurrent.futures
import contextlib
import ctypes
import gc
import inspect
import json
import os
import pickle
import queue
import random
import select
import signal
import sys
import threading
import time
import traceback
import warnings

from . import _state
from ._async_runner import iterate, resolve
from ._batch import Batcher
from ._config import inputs_at_once
from ._functions import PARAMS_KEY, Cls, Function, class_params, param_value, unwrap_method
from ._loader import load_app_module, module_name_for, pick_app
from ._partial import ENTER_POST, ENTER_PRE, EXIT
from ._sqlite_files import open_sqlite_databases, sqlite_warning
from ._temp_files import keep_snapshot_temp_files
from ._protocol import MAX_FRAME, Channel, MessageTooLarge, ProtocolError, dump_payload, load_payload
from .exception import (DeprecatedWarning, FunctionTimeoutError, InputCancellation, InvalidError,
                        UnsupportedWarning)

CUDA_FIX = "move CUDA use to @enter(snap=False)"


class _Deadline(InputCancellation):
    """Raised in the main thread by _DEADLINE_SIGNAL when a call or hook
    overruns its timeout, or in a concurrent input's thread (a BaseException,
    so that user `except Exception` does not eat it; user code may catch it
    as Modal's InputCancellation to clean up)."""


class _Cancelled(InputCancellation):
    """Raised in a streaming generator's call when its caller has gone (the
    runtime sent `cancel`): the generator is closed, the container stays."""


# How long a concurrent input past its timeout has to end once interrupted
# before its container is retired (it may be in native code).
_INTERRUPT_GRACE_S = 1.0


class _Terminate(BaseException):
    """Raised by SIGTERM: stop serving, run @exit hooks, leave."""


class _Failed(Exception):
    def __init__(self, stage, error, tb=""):
        super().__init__(error)
        self.stage = stage
        self.error = error
        self.tb = tb


# The signal that interrupts the main thread at a call's or hook's deadline:
# a real-time one that user code leaves alone, so that SIGALRM and the
# ITIMER_REAL timer (`signal.alarm`, `setitimer`, the "time limit" helpers
# of evaluation code) stay the function's, as in plain Python. A watchdog
# thread sends it; none is armed when the snapshot is taken.
_DEADLINE_SIGNAL = signal.SIGRTMAX - 1


class _alarm:
    """Interrupt the main thread with _Deadline after `seconds` (no-op for
    None, or off the main thread)."""

    def __init__(self, seconds):
        self.seconds = seconds
        self.armed = False
        self.fired = False  # so that code which swallowed the _Deadline still timed out
        self._done = threading.Event()
        self._watchdog = None

    def __enter__(self):
        if self.seconds and threading.current_thread() is threading.main_thread():
            signal.signal(_DEADLINE_SIGNAL, self._on_alarm)
            self.armed = True
            self._watchdog = threading.Thread(target=self._watch, args=(threading.main_thread().ident,),
                                              name="thaw-deadline", daemon=True)
            self._watchdog.start()
        return self

    def __exit__(self, *exc):
        if self.armed:
            # Disarmed before the watchdog is stopped: a signal it sent
            # meanwhile is ignored when it lands.
            self.armed = False
            self._done.set()
            self._watchdog.join()
        return False

    def _watch(self, main):
        if not self._done.wait(float(self.seconds)):
            signal.pthread_kill(main, _DEADLINE_SIGNAL)

    def _on_alarm(self, signum, frame):
        if not self.armed:
            return  # sent just as the block ended
        self.fired = True
        raise _Deadline()


def _interrupt_thread(ident, exc):
    """Raise exc in the thread `ident` at its next Python instruction (a
    thread in a long native call sees it when the call returns); None takes
    back one not raised yet."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident),
                                               ctypes.py_object(exc) if exc is not None else None)


@contextlib.contextmanager
def _alarm_held():
    """The deadline's signal (the call's timeout) blocked for the block; one
    that fell due meanwhile is delivered right after it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {_DEADLINE_SIGNAL})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _on_term(signum, frame):
    raise _Terminate()


def _leave_when_runtime_gone(fd, busy):
    """Watch the control channel for its other end closing (the runtime
    died) while an input runs: its result has nowhere to go, and an input
    that never ends would keep the container forever. Polls for hang-up
    only, so it reads nothing the main loop expects. When no input runs,
    the main loop sees the end of the channel itself and leaves as usual."""
    poller = select.poll()
    poller.register(fd, 0)  # POLLHUP and POLLERR are reported regardless
    while True:
        try:
            events = poller.poll()
        except InterruptedError:
            continue
        if any(ev & (select.POLLHUP | select.POLLERR | select.POLLNVAL) for _, ev in events):
            break
    # Calls the runtime sent before it died may still be read and started
    # after the hang-up: keep looking until the main loop has left.
    while not busy():
        time.sleep(0.1)
    try:  # stderr was the runtime's pipe too: it may be gone with it
        print("thaw worker: the runtime has gone (its control channel closed) while an "
              "input ran; leaving, since its result has nowhere to go", file=sys.stderr)
    except OSError:
        pass
    os._exit(1)


class _LeaveIfRuntimeGoesWhileStarting:
    """While the global scope and @enter(snap=True) run (a model's load: a
    minute, or for ever if it waits on something), the main thread reads
    nothing from the control channel: a runtime killed then (`thaw deploy`
    or `thaw call` under SIGKILL) would leave the container running until
    they end. A thread watches for the channel's hang-up meanwhile and ends
    the container at once; it is stopped and joined before the snapshot,
    which so holds no thread or fd of it."""

    def __init__(self, fd):
        self.fd = fd

    def __enter__(self):
        self.wake_r, self.wake_w = os.pipe()
        self.thread = threading.Thread(target=self._watch, name="thaw-startup-watch", daemon=True)
        try:
            self.thread.start()
        except BaseException:  # no thread (a pids limit): no watch, and no fds left open
            os.close(self.wake_r)
            os.close(self.wake_w)
            raise
        return self

    def _watch(self):
        poller = select.poll()
        poller.register(self.fd, 0)  # POLLHUP and POLLERR are reported regardless
        poller.register(self.wake_r, select.POLLIN)
        while True:
            try:
                events = poller.poll()
            except InterruptedError:
                continue
            for fd, ev in events:
                if fd == self.wake_r:
                    return
                if ev & (select.POLLHUP | select.POLLERR | select.POLLNVAL):
                    # Nothing printed: either the runtime stopped this start
                    # on purpose (a cancelled call), and says so itself, or it
                    # has gone, and with it the pipe our stderr goes to.
                    os._exit(1)

    def __exit__(self, *exc):
        os.write(self.wake_w, b"x")
        self.thread.join()
        os.close(self.wake_r)
        os.close(self.wake_w)
        return False


def _params_key(params):
    """A class instance's parameters as bytes that tell sets of them apart.
    Plain pickle, deterministic for the usual values; cloudpickle's bytes
    for what it cannot name (an object of a class the caller's script
    defined, sent by value), stable within this process."""
    try:
        return pickle.dumps(params, protocol=4)
    except (pickle.PicklingError, AttributeError, TypeError):
        return dump_payload(params)


def reseed_openssl():
    """OpenSSL's generator (ssl.RAND_bytes, and what `cryptography` draws
    keys and nonces from) reseeds itself on a fork, seen by a new pid; a
    restored process has its old pid, so every restore of one snapshot drew
    the same bytes. Fresh kernel entropy mixed into its primary generator
    reseeds those drawn from (OpenSSL 3). Only where libcrypto is in use
    already: loading it costs more than a restore should."""
    if not any(m in sys.modules for m in ("_ssl", "_hashlib", "cryptography")):
        return
    try:
        import ssl
        ssl.RAND_add(os.urandom(32), 32.0)
    except Exception:  # no ssl module in this Python: nothing of OpenSSL's to reseed
        pass


def reseed(seed):
    """Reseed Python's, NumPy's and torch's default generators (when loaded),
    and mix fresh entropy into OpenSSL's (when loaded)."""
    seed = int(seed)
    random.seed(seed)
    reseed_openssl()
    tempfile = sys.modules.get("tempfile")
    if tempfile is not None:
        # Its names come from a generator of its own, made again only when
        # the pid changes: every restored copy (same pid) drew the same
        # names. Dropped, it is made anew, seeded from the kernel.
        tempfile._name_sequence = None
    np = sys.modules.get("numpy")
    if np is not None and hasattr(np, "random"):
        np.random.seed(seed % (1 << 32))
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "manual_seed"):
        torch.manual_seed(seed % (1 << 63))


def _scan(directory, describe):
    """describe(path) of each entry of a /proc directory, where it says something, sorted and unique."""
    try:
        entries = os.listdir(directory)
    except OSError:
        return []
    found = set()
    for e in entries:
        try:
            what = describe(os.path.join(directory, e))
        except OSError:  # the thread or fd went away meanwhile
            continue
        if what:
            found.add(what)
    return sorted(found)


def _driver_thread(task):
    with open(os.path.join(task, "comm")) as f:
        name = f.read().strip()
    # The driver's names: cuda-EvtHandlr, cuda-msgHandler, cuda00001400006.
    if name.startswith("cuda-") or (name.startswith("cuda0") and name[4:].isdigit()):
        return f"thread {name}"
    return None


def cuda_driver_threads(task_dir="/proc/self/task"):
    """Threads the CUDA driver started, as 'thread NAME'."""
    return _scan(task_dir, _driver_thread)


def nvidia_device_fds(fd_dir="/proc/self/fd"):
    """The NVIDIA device nodes (/dev/nvidiactl, /dev/nvidia0, ...) this process has open."""
    def device(fd):
        target = os.readlink(fd)
        return f"{target} open" if target.startswith("/dev/nvidia") else None
    return _scan(fd_dir, device)


def cuda_snapshot_warnings(where):
    """A warning when CUDA was initialized during the snapshot phase."""
    causes = []
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_initialized():
            causes.append("torch.cuda was initialized")
    except Exception:  # noqa: BLE001 - a broken torch must not stop the snapshot
        pass
    # libcuda merely loaded means nothing (torch 2.x maps it at import). cuInit
    # is what caches "no GPU" for the life of the process, and it leaves
    # traces: the driver's own threads (cuda-EvtHandlr, cuda0000...; seen on
    # an H100 after torch.cuda.is_available() with no GPU visible, which left
    # no device open) and, with a GPU, its device files.
    traces = cuda_driver_threads() + nvidia_device_fds()
    if traces:
        causes.append(f"the CUDA driver was initialized (the process has {', '.join(traces)}), "
                      f"e.g. by torch.cuda.is_available()")
    if not causes:
        return []
    return [f"CUDA was initialized during the snapshot phase of {where}: {' and '.join(causes)} "
            f"in the global scope or an @enter(snap=True) method. No GPU is visible in that "
            f"phase, so CUDA has cached zero devices and will not see the GPU after the "
            f"restore. Fix: {CUDA_FIX} (calls such as .to('cuda') and "
            f"torch.cuda.is_available()), or set "
            f"experimental_options={{'enable_gpu_snapshot': True}}."]


def _json_default(v):
    if hasattr(v, "tolist"):
        return v.tolist()
    if isinstance(v, (set, frozenset, tuple)):
        return list(v)
    return repr(v)


def _keys_as_text(v, depth=0):
    """v with every dict key JSON cannot hold (a tuple, ...) as its repr;
    `default=` is asked about values only, never keys."""
    if depth > 500:
        raise ValueError("the value nests too deeply")
    if isinstance(v, dict):
        return {(k if isinstance(k, (str, int, float, bool)) or k is None else repr(k)): _keys_as_text(x, depth + 1)
                for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_keys_as_text(x, depth + 1) for x in v]
    return v


def _as_json(value, what):
    """`value` as JSON (`thaw call`'s output): other objects as their repr,
    keys JSON cannot hold as theirs. InvalidError for what has no JSON form
    (a value that contains itself)."""
    try:
        return json.loads(json.dumps(value, default=_json_default))
    except TypeError:
        pass  # a dict key JSON cannot hold
    except (ValueError, RecursionError) as e:
        raise InvalidError(f"{what} ({type(value).__name__}) has no JSON form: {e}") from None
    try:
        return json.loads(json.dumps(_keys_as_text(value), default=_json_default))
    except (TypeError, ValueError, RecursionError) as e:
        raise InvalidError(f"{what} ({type(value).__name__}) has no JSON form: {e}") from None


def _describe_exc(e):
    text = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
    return text, "".join(traceback.format_exception(type(e), e, e.__traceback__))


class Worker:
    def __init__(self, chan, env=None):
        env = os.environ if env is None else env
        self.chan = chan
        self.app_file = env.get("THAW_APP_FILE")
        self.target_name = env.get("THAW_FUNCTION")
        self.app_name = env.get("THAW_APP") or None
        self.snapshot = env.get("THAW_SNAPSHOT") == "1"
        # serialized=True: the file holding the pickled function or class.
        self.serialized = env.get("THAW_SERIALIZED_FUNCTION") or None
        self.target = None
        self.config = {}
        self.instance = None          # a class's default instance (in the snapshot)
        self.instance_error = None    # why there is none (parameters required)
        self.instance_params = None   # the values of self.instance's parameters (class_params)
        self.routed = False           # whether those values are not the defaults (THAW_CLASS_PARAMS)
        self.param_instances = {}     # pickled params → entered instance
        self.web_apps = {}            # @asgi_app/@wsgi_app: the app each made, kept
        self.batchers = {}            # @batched: (method, params) → its Batcher
        self.param_lock = threading.Lock()
        self.timings = {}
        self.answer_lock = threading.Lock()
        self.in_flight = {}  # id → the call dict of a threaded input (for `cancel`)
        self.deferred = []   # messages read while a call ran (one input at a time)
        self.started = False
        self.running = 0     # inputs being run (read by the runtime watch)
        self.leaving = None  # why this container must leave after its answer
        self.running_lock = threading.Lock()

    # ------------------------------------------------------------ helpers
    @property
    def width(self):
        """How many inputs run at once: max_concurrent_inputs, or with
        @batched the batch size (the runtime sends that many at once, and
        each waits in its own thread for its batch's outputs)."""
        return inputs_at_once(self.config)

    def batcher(self, method, params, fn, options):
        """The one Batcher of a batched function (of one instance, for a
        class with parameters): inputs batch together only with their own."""
        key = (method, None if params is None else _params_key(params))
        with self.param_lock:
            b = self.batchers.get(key)
            if b is None:
                b = self.batchers[key] = Batcher(fn, options["max_batch_size"], options["wait_ms"])
            return b

    def send(self, msg):
        self.chan.send(msg)

    def _timed(self, name, fn):
        t = time.monotonic()
        try:
            return fn()
        finally:
            self.timings[name] = round(time.monotonic() - t, 6)

    def _run_hooks(self, instance, kind, stage):
        if not isinstance(self.target, Cls) or instance is None:
            return
        for hook in self.target._lifecycle[kind]:
            try:
                with _alarm(self.config.get("startup_timeout")):
                    resolve(getattr(instance, hook)())
            except _Deadline:
                raise _Failed(stage, f"@{'enter' if kind != EXIT else 'exit'} method "
                              f"{self.target_name}.{hook} exceeded startup_timeout="
                              f"{self.config.get('startup_timeout')} s") from None
            except (_Terminate, KeyboardInterrupt):
                raise
            except BaseException as e:  # noqa: BLE001 - reported to the runtime
                text, tb = _describe_exc(e)
                raise _Failed(stage, f"{self.target_name}.{hook} raised {text}", tb) from None

    # ------------------------------------------------------------ phases
    def load(self):
        """Global scope: import the app file and find the target."""
        # A serialized function may come from no file (a notebook, the REPL).
        if not self.target_name or not (self.app_file or self.serialized):
            raise _Failed("import", "THAW_APP_FILE and THAW_FUNCTION must be set")
        if _state.mode == "ephemeral" and self.app_file:
            _state.app_file = os.path.abspath(self.app_file)
        sys.argv = [self.app_file or ""]
        if self.serialized:
            return self.load_serialized()
        try:
            # thaw's warnings about the app's configuration were shown where
            # it was run or deployed; every container repeating them is noise.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UnsupportedWarning)
                warnings.simplefilter("ignore", DeprecatedWarning)
                module = self._timed("import_s", lambda: load_app_module(self.app_file))
        except (_Terminate, KeyboardInterrupt):
            raise
        except BaseException as e:  # noqa: BLE001
            text, tb = _describe_exc(e)
            raise _Failed("import", f"importing {self.app_file} failed: {text}", tb) from None
        try:
            app = pick_app(module, self.app_name)
        except Exception as e:  # noqa: BLE001
            raise _Failed("find", str(e)) from None
        target = app._functions.get(self.target_name) or app._classes.get(self.target_name)
        if target is None:
            names = sorted(list(app._functions) + list(app._classes))
            raise _Failed("find", f"app '{app.name}' ({self.app_file}) has no function or class "
                          f"named '{self.target_name}' (it has: {', '.join(names) or 'none'})")
        self.target = target
        self.config = target._config or {}

    def load_serialized(self):
        """serialized=True: the function or class was pickled by the client
        (or by `thaw deploy`'s introspection) and is loaded from that, as
        Modal does, instead of importing the app file and finding it by
        name (which a function defined in another one, or under `if
        __name__ == "__main__":`, cannot be)."""
        path = self.serialized
        try:
            with open(path, "rb") as f:
                payload = f.read()
        except OSError as e:
            raise _Failed("import", f"cannot read the pickled {self.target_name} "
                          f"(serialized=True) at {path}: {e}; deploy or run the app again") from None
        app_dir = os.path.dirname(os.path.abspath(self.app_file)) if self.app_file else os.getcwd()
        if app_dir not in sys.path:  # its local modules, pickled by name
            sys.path.insert(0, app_dir)

        def unpickle():
            try:
                return load_payload(payload)
            except ModuleNotFoundError as e:
                # Globals of the app file pickled by reference, under the
                # name the app file had where it was pickled; it is loaded
                # here under the same one.
                if not self.app_file or e.name != module_name_for(self.app_file):
                    raise
                load_app_module(self.app_file)
                return load_payload(payload)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UnsupportedWarning)
                warnings.simplefilter("ignore", DeprecatedWarning)
                target = self._timed("import_s", unpickle)
        except (_Terminate, KeyboardInterrupt):
            raise
        except BaseException as e:  # noqa: BLE001
            text, tb = _describe_exc(e)
            raise _Failed("import", f"loading the pickled {self.target_name} (serialized=True) "
                          f"failed: {text}", tb) from None
        if not isinstance(target, (Function, Cls)) or target._name != self.target_name:
            raise _Failed("find", f"{path} does not hold '{self.target_name}' (it holds "
                          f"{target!r})")
        self.target = target
        self.config = target._config or {}

    def check_image(self):
        try:
            warnings_ = self.target._image.check()
        except Exception as e:  # noqa: BLE001
            raise _Failed("image", str(e)) from None
        workdir = self.target._image.describe().get("workdir")
        if workdir:
            try:
                os.chdir(workdir)
            except OSError as e:
                raise _Failed("image", f"Image.workdir({workdir!r}): {e}") from None
        return [f"Image: {w}" for w in warnings_]

    def enter_snapshot_phase(self):
        """Create a class's default instance and run its @enter(snap=True) hooks."""
        if not isinstance(self.target, Cls):
            return
        # The runtime gives each set of parameter values containers of their
        # own (runtime/class_params.h): this container's instance has them.
        routed = os.environ.get("THAW_CLASS_PARAMS")
        self.routed = bool(routed)
        try:
            if routed:
                values = json.loads(routed)
                self.instance = self.target._new_instance(
                    (), {k: param_value(v) for k, v in values.items()})
                self.instance_params = values
            else:
                self.instance = self.target._new_instance()
                self.instance_params = class_params(self.target, None)
        except Exception as e:  # noqa: BLE001 - e.g. required parameters
            if routed:
                # This container (and its snapshot) exists for these values
                # only: with no instance it can serve nothing, and a
                # snapshot of it would only take a good one's place.
                raise _Failed("enter", f"{self.target_name}: the parameter values of this container "
                                       f"do not make an instance: {type(e).__name__}: {e}") from None
            self.instance_error = f"{type(e).__name__}: {e}"
            return
        self._timed("enter_snap_s", lambda: self._run_hooks(self.instance, ENTER_PRE, "enter_snap"))

    def apply_start(self, msg):
        env = msg.get("env") or {}
        for k, v in env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[str(k)] = str(v)
        # Cls.with_options & co: this container's handle overrides settings
        # the worker applies itself (timeouts, concurrency, batching).
        set_modal_environment()  # this container's id, after a restore
        overrides = os.environ.get("THAW_CONFIG_OVERRIDES")
        if overrides:
            self.config = {**self.config, **json.loads(overrides)}
        _state.input_concurrency = self.width  # thaw.experimental.get_local_input_concurrency()
        if msg.get("restored") and msg.get("seed") is not None:
            self._timed("reseed_s", lambda: reseed(msg["seed"]))
        signal.signal(signal.SIGTERM, _on_term)
        # Started after the restore: the snapshot holds no such thread.
        threading.Thread(target=_leave_when_runtime_gone,
                         args=(self.chan.fd, lambda: self.running > 0),
                         name="thaw-runtime-watch", daemon=True).start()
        self._timed("enter_s", lambda: self._run_hooks(self.instance, ENTER_POST, "enter"))
        self.started = True

    # ------------------------------------------------------------ calls
    def callable_for(self, method, params):
        t = self.target
        if not isinstance(t, Cls):
            if method:
                raise LookupError(f"'{self.target_name}' is a function; the call names method "
                                  f"{method!r}")
            if t._batched:
                return self.batcher(None, None, t._raw_f, self.config["batched"]), False
            return t._raw_f, bool(self.config.get("is_generator"))
        if not method:
            raise LookupError(f"'{self.target_name}' is a class; the call must name a method")
        info = t._methods.get(method)
        if info is None:
            raise LookupError(f"class '{self.target_name}' has no @method() named {method!r} "
                              f"(it has: {', '.join(sorted(t._methods)) or 'none'})")
        instance = self.instance_for(params)
        fn = unwrap_method(getattr(instance, method))
        if info.get("batched"):
            # The class's batching is its batched method's, or a handle's
            # with_batching override of it.
            return self.batcher(method, params, fn, self.config.get("batched") or info["batched"]), False
        return fn, bool(info.get("is_generator"))

    def _web_kind(self, method):
        if isinstance(self.target, Cls):
            info = self.target._methods.get(method) or {}
            return (info.get("web_endpoint") or {}).get("kind")
        return (self.config.get("web_endpoint") or {}).get("kind")

    def _leave_if_asked(self):
        """After an answer: a container whose @web_server broke leaves, so
        that the next request gets a new one (the runtime sends it no more),
        once the other inputs it runs are answered too."""
        with self.running_lock:
            others = self.running
        if self.leaving and not others:
            try:
                print(f"thaw worker: leaving: {self.leaving}", file=sys.stderr)
                sys.stderr.flush()
            except OSError:
                pass
            os._exit(1)

    def instance_for(self, params):
        """The instance a call with these parameter values runs on: the
        container's own when the values are its (the runtime routes each
        set of values to containers of its own), else one made here on
        first use (a class whose values the runtime cannot tell apart)."""
        if self.instance is not None and self.instance_params is not None \
                and class_params(self.target, params) == self.instance_params:
            return self.instance
        if params is None and not self.routed:
            if self.instance is None:
                raise TypeError(f"class '{self.target_name}' cannot be created without "
                                f"parameters: {self.instance_error}")
            return self.instance
        params = params or {}
        key = _params_key(params)
        with self.param_lock:
            inst = self.param_instances.get(key)
            if inst is None:
                inst = self.target._new_instance(params.get("args", ()), params.get("kwargs", {}))
                for kind in (ENTER_PRE, ENTER_POST):
                    for hook in self.target._lifecycle[kind]:
                        resolve(getattr(inst, hook)())
                self.param_instances[key] = inst
            return inst

    def serve_call(self, msg, timeout=None, call=None):
        """Run one call and return its result message. A generator's values
        go out one by one as `yield` messages when the caller asked for a
        stream (call: the dict _answer marks, so no value follows a timeout's
        answer); otherwise they come back as one list."""
        cid = msg.get("id")
        call = {} if call is None else call
        streamed = None
        # Unique across containers (the channel's ids start at 1 in each):
        # code that names its outputs after the input must not collide.
        _state.set_input_id(f"in-{os.environ.get('THAW_CONTAINER_ID', 'local')}-{cid}")
        try:
            if msg.get("args") is not None:
                args = tuple(load_payload(msg["args"]))
            else:
                args = tuple(msg.get("args_json") or ())
            if msg.get("kwargs") is not None:
                kwargs = dict(load_payload(msg["kwargs"]))
            else:
                kwargs = dict(msg.get("kwargs_json") or {})
                # `thaw call --params`: bytes come as {"__bytes__": base64}.
                p = kwargs.get(PARAMS_KEY)
                if isinstance(p, dict) and isinstance(p.get("kwargs"), dict):
                    kwargs[PARAMS_KEY] = {**p, "kwargs": {k: param_value(v) for k, v in p["kwargs"].items()}}
            params = kwargs.pop(PARAMS_KEY, None)
            fn, is_gen = self.callable_for(msg.get("method"), params)
            web = msg.get("web_request")
            if web is not None:
                # An HTTP request (`thaw serve --http`): the answer is the
                # response, status and all, as JSON. Imported here: most
                # workers never serve one.
                from . import _web
                streamed = None
                try:
                    with _alarm(timeout):
                        value = _web.handle(web["kind"], web.get("options") or {}, fn,
                                            web["request"], self.web_apps)
                        if "stream" in value and msg.get("stream"):
                            streamed = self._stream_web_answer(call, cid, value)
                            value = None
                        else:
                            value = _web.whole(value)
                except _web.LeaveContainer as e:
                    value, self.leaving = e.response, str(e)
                reply = {"type": "result", "id": cid, "ok": True, "value": dump_payload(None),
                         "value_json": value}
                if streamed is not None:
                    reply["streamed"] = streamed
                if self.leaving:
                    reply["leaving"] = True  # the runtime sends this container nothing more
                return reply
            if self._web_kind(msg.get("method")) == "web_server":
                raise InvalidError(f"{self.target_name}: a @web_server function is reached over "
                                   f"HTTP (thaw serve --http), not called: calling it would start "
                                   f"its server a second time")
            with _alarm(timeout) as alarm:
                value = fn(*args, **kwargs)
                if msg.get("stream") and inspect.isasyncgen(value):
                    value = iterate(value)
                value = resolve(value)
                if is_gen or (hasattr(value, "__next__") and hasattr(value, "send")):
                    if msg.get("stream"):
                        streamed = 0
                        for item in value:
                            self._stream_item(call, cid, item, msg.get("result_format"))
                            streamed += 1
                        value = None
                    else:
                        value = list(value)
            if alarm.fired or call.get("interrupted") == "deadline":
                raise _Deadline()  # the code caught InputCancellation and went on
            if call.get("interrupted") == "cancel":
                raise _Cancelled()
        except _Deadline:
            # A @concurrent input's deadline is its timer's (serve_call gets
            # no timeout there): the limit is the function's all the same.
            limit = timeout if timeout is not None else self.config.get("timeout")
            err = FunctionTimeoutError(f"{self.target_name} exceeded its timeout of {limit} s")
            return self._ended_early(msg, fn, {
                "type": "result", "id": cid, "ok": False, "error": f"FunctionTimeoutError: {err}",
                "traceback": "", "exception": dump_payload(err)})
        except _Cancelled:
            return self._ended_early(msg, fn, {
                "type": "result", "id": cid, "ok": False, "cancelled": True,
                "error": "cancelled: its caller went away or stopped reading its values",
                "traceback": ""})
        except (_Terminate, KeyboardInterrupt):
            raise
        except BaseException as e:  # noqa: BLE001 - user errors go back to the caller
            return self._error_result(cid, e)
        finally:
            _state.set_input_id(None)
        try:
            reply = {"type": "result", "id": cid, "ok": True, "value": dump_payload(value)}
            if streamed is not None:
                reply["streamed"] = streamed
        except Exception as e:  # noqa: BLE001
            return {"type": "result", "id": cid, "ok": False,
                    "error": f"the result ({type(value).__name__}) cannot be pickled: {e}",
                    "traceback": ""}
        if msg.get("result_format") == "json":
            try:
                reply["value_json"] = _as_json(value, "the result")
            except InvalidError as e:
                return self._error_result(cid, e)
        return reply

    def _stream_web_answer(self, call, cid, answer):
        """Send a web answer that comes in pieces as it comes: the head, then
        each piece, as values. The pieces are read in a thread of their own,
        so that a caller gone (the runtime's `cancel`) is noticed while the
        source is silent (an idle event stream): its `stop` then ends it."""
        self._stream_item(call, cid, {"status": answer["status"], "headers": answer["headers"]},
                          "json")
        pieces = queue.Queue()

        def pump():
            try:
                for piece in answer["stream"]:
                    pieces.put(("piece", piece))
                pieces.put(("end", None))
            except BaseException as e:  # noqa: BLE001 - handed to the input's thread
                pieces.put(("error", e))
        threading.Thread(target=pump, name="thaw-web-stream", daemon=True).start()
        sent, ended = 1, False
        try:
            while True:
                try:
                    kind, x = pieces.get(timeout=0.2)
                except queue.Empty:
                    if call.get("cancelled") or (self.width == 1 and self._cancel_came(cid)):
                        raise _Cancelled() from None
                    continue
                if kind == "end":
                    ended = True
                    return sent
                if kind == "error":
                    ended = True
                    raise x
                self._stream_item(call, cid, {"chunk_b64": base64.b64encode(x).decode("ascii")},
                                  "json")
                sent += 1
        finally:
            stop = answer.get("stop")
            if not ended and stop is not None:
                stop()  # the pump's source ends, and the pump with it

    def _stream_item(self, call, cid, item, result_format):
        try:
            msg = {"type": "yield", "id": cid, "value": dump_payload(item)}
        except Exception as e:  # noqa: BLE001
            raise InvalidError(f"a value the generator yielded ({type(item).__name__}) "
                               f"cannot be pickled: {e}") from None
        if result_format == "json":
            msg["value_json"] = _as_json(item, "a value the generator yielded")
        # Under the answer lock: a timeout's answer never overtakes a value,
        # and no value follows it. The timeout's alarm waits until the frame
        # is whole (a frame cut in half would break the channel).
        # A concurrent input's thread: no interrupt lands while the frame
        # goes out (_interrupt waits for the call's lock), and one that came
        # before stops the value here.
        with call.get("lock") or contextlib.nullcontext(), self.answer_lock, _alarm_held():
            if call.get("answered") or call.get("interrupted") == "deadline":
                raise _Deadline()
            if call.get("interrupted") == "cancel":
                raise _Cancelled()
            self.send(msg)
            cancelled = self.width == 1 and self._cancel_came(cid)
        if cancelled or call.get("cancelled"):
            raise _Cancelled()

    def _cancel_came(self, cid):
        """One input at a time: the main loop is in the call, so messages that
        came meanwhile (a `cancel`, a `shutdown`) are read here; the rest are
        kept for the loop. True if this call was cancelled."""
        cancelled = False
        while select.select([self.chan.fd], [], [], 0)[0]:
            msg = self.chan.recv()
            if msg is not None and msg.get("type") == "cancel":
                cancelled = cancelled or msg.get("id") == cid
                continue
            self.deferred.append(msg)
            if msg is None:
                break
        return cancelled

    @contextlib.contextmanager
    def _input_running(self):
        with self.running_lock:
            self.running += 1
        try:
            yield
        finally:
            with self.running_lock:
                self.running -= 1

    def _ended_early(self, msg, fn, reply):
        """A call's reply after its timeout or cancel. A web request whose
        code runs in a thread the end cannot stop (an ASGI app's sync code)
        may still be running: the container then takes no more inputs."""
        web = msg.get("web_request")
        if web is not None:
            from . import _web
            if _web.may_outlive_its_call(web.get("kind"), fn, self.web_apps):
                self.leaving = (f"{self.target_name}: a request's code may still run in a "
                                f"thread after its call ended")
                reply["leaving"] = True
        return reply

    def _error_result(self, cid, e):
        text, tb = _describe_exc(e)
        reply = {"type": "result", "id": cid, "ok": False, "error": text, "traceback": tb}
        try:
            payload = dump_payload(e)
            load_payload(payload)
            reply["exception"] = payload
        except Exception:  # noqa: BLE001 - unpicklable exceptions travel as text only
            pass
        return reply

    def _answer(self, call, reply, leaving=None):
        """Send the one reply to a call (call: a dict made per received call;
        ids are the runtime's and need not be unique, so the mark is on it).
        leaving: why the container must go after it, taken only if this
        reply is the one that goes (it says so to the runtime): a container
        that left after a reply without the word would be sent another call."""
        with self.answer_lock:
            if call.get("answered"):
                return  # already answered (it timed out, or the input ended first)
            call["answered"] = True
            if leaving:
                self.leaving = leaving
            if _state.stop_fetching_inputs and reply.get("type") == "result":
                # thaw.experimental.stop_fetching_inputs(): the runtime sends
                # no more and stops the container (with @exit) once idle.
                reply = {**reply, "stop_fetching": True}
        try:
            self.send(reply)
        except MessageTooLarge as e:
            # Refused before a byte was written: the channel goes on, and
            # the caller learns why rather than that the container died.
            self.send({"type": "result", "id": reply.get("id"), "ok": False, "traceback": "",
                       "error": f"the function's result is {e.size} bytes once pickled, over "
                                f"thaw's limit of {MAX_FRAME >> 20} MiB per message: return less, "
                                f"or write it to a Volume and return its path"})

    def serve(self):
        """Answer calls until shutdown (or the channel closes)."""
        timeout = self.config.get("timeout")
        width = self.width
        pool = None
        if width > 1:
            pool = concurrent.futures.ThreadPoolExecutor(max_workers=width,
                                                         thread_name_prefix="thaw-input")
        try:
            while True:
                msg = self.deferred.pop(0) if self.deferred else self.chan.recv()
                if msg is None or msg.get("type") == "shutdown":
                    return
                if msg.get("type") == "cancel":
                    call = self.in_flight.get(msg.get("id"))
                    if call is not None:
                        call["cancelled"] = True
                        self._interrupt(call, "cancel")
                    continue
                if msg.get("type") != "call":
                    print(f"thaw worker: ignoring unexpected message {msg.get('type')!r}",
                          file=sys.stderr)
                    continue
                if pool is None:
                    call = {}
                    with self._input_running():
                        self._answer(call, self.serve_call(msg, timeout, call))
                    self._leave_if_asked()
                else:
                    pool.submit(self._serve_threaded, msg, timeout)
        finally:
            if pool is not None:
                pool.shutdown(wait=True)

    def _interrupt(self, call, why):
        """Raise InputCancellation (_Deadline or _Cancelled) in the thread
        running a concurrent input, if it still runs it."""
        with call["lock"]:
            if call["running"] and not call.get("interrupted"):
                call["interrupted"] = why
                _interrupt_thread(call["thread"], _Deadline if why == "deadline" else _Cancelled)

    def _serve_threaded(self, msg, timeout):
        call = {"thread": threading.get_ident(), "lock": threading.Lock(), "running": True,
                "ended": threading.Event()}
        self.in_flight[msg.get("id")] = call
        timer = None
        if timeout:
            def expire():
                err = FunctionTimeoutError(f"{self.target_name} exceeded its timeout of "
                                           f"{timeout} s")
                batched = bool(self.config.get("batched"))
                # Its thread is interrupted as Modal interrupts an input; one
                # in a native call (a sleep, a C extension) goes on, holding a
                # slot the runtime would count as free: then the container
                # takes no more inputs, and the runtime stops it once its
                # other inputs are done.
                stuck = batched
                if not batched:
                    self._interrupt(call, "deadline")
                    stuck = not call["ended"].wait(_INTERRUPT_GRACE_S)
                leaving = stuck
                why = (f"{self.target_name}: an input past its timeout of {timeout} s is still "
                       f"running in native code") if stuck and not batched else None
                self._answer(call, {"type": "result", "id": msg.get("id"), "ok": False,
                                   "error": f"FunctionTimeoutError: {err}", "traceback": "",
                                   "exception": dump_payload(err),
                                   **({"leaving": True} if leaving else {})}, leaving=why)
                if batched:
                    # A batch cannot be stopped in its thread, and the next
                    # one waits for it: the container leaves instead, and
                    # the runtime gives the other inputs another.
                    try:
                        print(f"thaw worker: a batch of {self.target_name} overran its timeout "
                              f"of {timeout} s; stopping the container", file=sys.stderr)
                    except OSError:
                        pass
                    os._exit(1)
            timer = threading.Timer(timeout, expire)
            timer.daemon = True
            timer.start()
        reply = None
        try:
            try:
                with self._input_running():
                    reply = self.serve_call(msg, call=call)
                    self._ended(call)
                    self._answer(call, reply)
            finally:
                self._ended(call)
            self._leave_if_asked()
        except InputCancellation:
            # An interrupt that landed after the call's own code (in _ended
            # itself, say): the reply it made still goes, unless the
            # timeout's went already.
            self._ended(call)
            if reply is None:
                reply = {"type": "result", "id": msg.get("id"), "ok": False, "cancelled": True,
                         "error": "cancelled: its caller went away or stopped reading its values",
                         "traceback": ""}
            self._answer(call, reply)
        except Exception as e:  # noqa: BLE001
            self._answer(call, self._error_result(msg.get("id"), e))
        finally:
            call["ended"].set()  # whatever happened: expire must not wait for nothing
            self.in_flight.pop(msg.get("id"), None)
            if timer is not None:
                timer.cancel()

    @staticmethod
    def _ended(call):
        """The input's code is done: no interrupt may land in this thread
        from now on (it goes on to other inputs); one sent but not yet
        raised is taken back. (One raised in here anyway is caught by the
        caller, which calls this again.)"""
        with call["lock"]:
            if call.get("interrupted"):
                _interrupt_thread(call["thread"], None)
            call["running"] = False
            call["ended"].set()

    def run_exit_hooks(self):
        if not isinstance(self.target, Cls) or not self.started:
            return
        for inst in [self.instance] + list(self.param_instances.values()):
            if inst is None:
                continue
            for hook in self.target._lifecycle[EXIT]:
                try:
                    resolve(getattr(inst, hook)())
                except Exception:  # noqa: BLE001 - keep going; log it
                    print(f"thaw worker: @exit method {self.target_name}.{hook} failed:",
                          file=sys.stderr)
                    traceback.print_exc()

    # ------------------------------------------------------------ main
    def run(self):
        """The whole lifecycle; returns the exit status."""
        try:
            with _LeaveIfRuntimeGoesWhileStarting(self.chan.fd):
                self.load()
                warnings_ = self.check_image()
                self.enter_snapshot_phase()
            if self.instance_error:
                warnings_.append(f"class '{self.target_name}' needs parameters "
                                 f"({self.instance_error}); its @enter hooks run per parameter "
                                 f"set on first use, after the restore")
            if self.snapshot:
                # The runtime sets THAW_GPU_SNAPSHOT=1 when the GPU really is in
                # the snapshot (enable_gpu_snapshot on a machine with a GPU);
                # otherwise CUDA made here is lost, and the user is told.
                if os.environ.get("THAW_GPU_SNAPSHOT") != "1":
                    warnings_ += cuda_snapshot_warnings(f"'{self.target_name}'")
                # What the snapshot phase built stays: collect its garbage
                # now (a temporary file only garbage held is removed, not
                # kept) and move the rest out of the collector's reach, so a
                # collection after the restore does not walk (and fault in)
                # the whole heap. Refcounting still frees these objects.
                gc.collect()
                kept = keep_snapshot_temp_files()
                if kept:
                    warnings_.append(
                        "the snapshot phase made temporary files outside the container's own temporary "
                        "directory, in the host's filesystem, which every container restored from the "
                        "snapshot shares: " + ", ".join(kept) +
                        "; they are kept for all of them, no longer removed when a container ends or "
                        "closes them (an explicit TemporaryDirectory.cleanup() still removes it)")
                databases = open_sqlite_databases()
                if databases:
                    warnings_.append(sqlite_warning(databases))
                for w in warnings_:
                    print(f"thaw worker: warning: {w}", file=sys.stderr)
                sys.stdout.flush()
                sys.stderr.flush()
                gc.freeze()
                self.send({"type": "snapshot_ready", "warnings": warnings_,
                           "timings": dict(self.timings)})
            msg = self.chan.recv()
            while msg is not None and msg.get("type") not in ("start", "shutdown"):
                print(f"thaw worker: ignoring {msg.get('type')!r} before start", file=sys.stderr)
                msg = self.chan.recv()
            if msg is None or msg.get("type") == "shutdown":
                if msg is not None:
                    self.send({"type": "bye"})
                return 0
            try:
                self.apply_start(msg)
            except _Failed:
                raise
            self.send({"type": "ready", "timings": dict(self.timings)})
            try:
                self.serve()
            except _Terminate:
                pass
            self.run_exit_hooks()
            try:
                self.send({"type": "bye"})
            except OSError:
                pass
            return 0
        except _Failed as f:
            print(f"thaw worker: {f.stage} failed: {f.error}\n{f.tb}", file=sys.stderr)
            try:
                self.send({"type": "failed", "stage": f.stage, "error": f.error,
                           "traceback": f.tb})
            except OSError:
                pass
            return 1
        except _Terminate:
            self.run_exit_hooks()
            return 0
        except (ProtocolError, OSError) as e:
            print(f"thaw worker: control channel error: {e}", file=sys.stderr)
            return 1


def set_modal_environment():
    """The variables Modal sets in every function container (its guide,
    "Environment variables"), which code written for Modal reads to tell
    where it runs: MODAL_IS_REMOTE, MODAL_TASK_ID (this container; set
    again after a restore), MODAL_ENVIRONMENT. Reserved, as in Modal: set
    over any of the function's own."""
    os.environ["MODAL_IS_REMOTE"] = "1"
    os.environ["MODAL_ENVIRONMENT"] = "main"
    os.environ["MODAL_TASK_ID"] = "ta-" + os.environ.get("THAW_CONTAINER_ID", "local")


def main():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(line_buffering=True)
        except (AttributeError, ValueError):
            pass
    _state.in_container = True
    set_modal_environment()
    fd = int(os.environ.get("THAW_CONTROL_FD", "3"))
    code = Worker(Channel(fd)).run()
    # Leave without waiting for threads user code may have left running.
    try:
        atexit._run_exitfuncs()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    main()
