"""Connection from a user process to the thaw runtime (docs/runtime-protocol.md,
"Client ↔ runtime").

The runtime is reached at $THAW_RUNTIME_SOCKET (set by `thaw run`). When that
is unset, the first call starts `thaw serve --socket <tmp>` — the binary is
$THAW_BIN, else <repo>/build/thaw next to this package, else `thaw` on PATH —
once per process, and stops it when the process exits.

Each in-flight call has a connection of its own (a spawned call keeps its
connection until its result is read); idle connections are reused.
"""

import atexit
import itertools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from ._protocol import MAX_FRAME, MessageTooLarge, SocketConnection
from .exception import ConnectionError as ThawConnectionError
from .exception import InvalidError
from .exception import TimeoutError as ThawTimeoutError

_ids = itertools.count(1)
_ids_lock = threading.Lock()
_client = None
_client_lock = threading.Lock()

SERVE_START_TIMEOUT = float(os.environ.get("THAW_SERVE_START_TIMEOUT", "60"))


def next_id():
    with _ids_lock:
        return next(_ids)


def thaw_binary():
    """The thaw executable: $THAW_BIN, <repo>/build/thaw, or thaw on PATH."""
    env = os.environ.get("THAW_BIN")
    if env:
        return env
    repo_build = Path(__file__).resolve().parents[2] / "build" / "thaw"
    if os.access(repo_build, os.X_OK):
        return str(repo_build)
    found = shutil.which("thaw")
    if found:
        return found
    raise ThawConnectionError(
        "thaw: cannot find the thaw binary to start the runtime: set THAW_BIN, build it "
        f"into {repo_build.parent} (bash scripts/build.sh), or put thaw on PATH "
        "(or set THAW_RUNTIME_SOCKET to a running `thaw serve --socket PATH`)")


class PendingCall:
    """A request sent on its own connection, whose reply has not been read
    yet. For a spawned call, the `get` is sent on the first wait()."""

    def __init__(self, client, conn, msg, get_msg=None):
        self.client = client
        self.conn = conn
        self.msg = msg
        self.id = msg.get("id")
        self.get_msg = get_msg
        self.reply = None
        self.keep_connection = False  # True: leave the connection in kept_conn
        self.kept_conn = None
        self.call_id = None
        self.lost = None  # why the connection failed: said again by later waits
        self._lock = threading.Lock()

    def wait(self, timeout=None):
        """The runtime's reply; raises thaw.exception.TimeoutError if it has not
        come within timeout seconds (the call goes on; wait again later)."""
        with self._lock:
            if self.reply is not None:
                return self.reply
            if self.conn is None:
                raise ThawConnectionError(self.lost or f"call {self.id} was cancelled")
            if self.get_msg is not None:
                self.conn.send(self.get_msg)
                self.get_msg = None
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                msg = self._recv(deadline, timeout)
                if msg.get("type") != "yield":  # values of a stream nobody asked for
                    return self._finish(msg)

    def stream(self):
        """For a call sent with "stream": yields each `yield` message as it
        comes, then the final reply. A consumer that stops early closes the
        connection: the rest of the stream is never read."""
        try:
            while True:
                with self._lock:
                    if self.conn is None:
                        raise ThawConnectionError(self.lost or f"call {self.id} was cancelled")
                    msg = self._recv(None, None)
                    if msg.get("type") != "yield":
                        final = self._finish(msg)
                    else:
                        final = None
                if final is not None:
                    yield final
                    return
                yield msg
        finally:
            if self.reply is None:
                self.cancel()

    def _recv(self, deadline, timeout):
        """The next message for this call (the lock is held)."""
        while True:
            left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            try:
                msg = self.conn.recv(timeout=left)
            except TimeoutError:
                raise ThawTimeoutError(f"no result for call {self.id} within {timeout} s") \
                    from None
            except OSError as e:
                self._lose(f"thaw runtime connection failed while waiting for call {self.id}: {e}")
            if msg is None:
                # Never sent again: the runtime may have read it and run it
                # (an idle connection it had closed is not used, _acquire).
                self._lose(f"thaw runtime closed the connection before answering call {self.id}: it "
                           f"stopped or died while the call was under way, which may have run in "
                           f"part or in full")
            if msg.get("type") in ("result", "spawned", "yield") and \
                    msg.get("id") not in (None, self.id):
                continue  # not ours (should not happen on a private connection)
            return msg

    def _lose(self, why):
        # Later waits say the same, rather than reading a closed fd (EBADF).
        self.conn.close()
        self.conn = None
        self.lost = why
        raise ThawConnectionError(why) from None

    def _finish(self, msg):
        self.reply = msg
        if self.keep_connection:
            self.kept_conn = self.conn
        else:
            self.client._release(self.conn)
        self.conn = None
        return msg

    def cancel(self):
        if self.conn is not None and self.reply is None:
            self.conn.close()
            self.conn = None


class Client:
    def __init__(self, socket_path, proc=None, tmpdir=None):
        self.socket_path = socket_path
        self.proc = proc
        self.tmpdir = tmpdir
        self._idle = []
        self._lock = threading.Lock()

    def _connect(self):
        try:
            return SocketConnection(self.socket_path, timeout=30)
        except OSError as e:
            raise ThawConnectionError(
                f"thaw: cannot connect to the runtime at {self.socket_path}: {e}") from None

    def _acquire(self):
        """(connection, reused): an idle one the runtime has not closed, or a
        new one."""
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return self._connect(), False
            if conn.idle_and_open():
                return conn, True
            conn.close()

    def _release(self, conn):
        with self._lock:
            if len(self._idle) < 16:
                self._idle.append(conn)
                return
        conn.close()

    def start(self, msg):
        """Send msg on a connection of its own; the reply is read later."""
        conn, reused = self._acquire()
        try:
            conn.send(msg)
        except MessageTooLarge as e:
            self._release(conn)  # refused before a byte was written
            raise InvalidError(
                f"the call's arguments are {e.size} bytes once pickled, over thaw's limit of "
                f"{MAX_FRAME >> 20} MiB per call: pass large data through a Volume (or a path "
                f"to a file) instead") from None
        except OSError:
            if not reused:
                conn.close()
                raise
            conn.close()
            conn, reused = self._connect(), False  # a stale idle connection
            conn.send(msg)
        return PendingCall(self, conn, msg)

    def request(self, msg, timeout=None):
        """Send msg and return the reply."""
        return self.start(msg).wait(timeout)

    def spawn(self, msg):
        """Send a call as `spawn`. Returns (pending, None) once the runtime said
        `spawned` — pending.wait() then sends `get` on the same connection and
        returns the result — or (None, reply) if the runtime answered
        otherwise (an error, or the result itself)."""
        first = self.start({**msg, "type": "spawn"})
        first.keep_connection = True
        reply = first.wait(300)
        conn = first.kept_conn
        if reply.get("type") != "spawned":
            self._release(conn)
            return None, reply
        pending = PendingCall(self, conn, msg, get_msg={"type": "get", "id": msg["id"]})
        pending.call_id = reply.get("call_id")  # FunctionCall.object_id, for from_id
        return pending, None

    def close(self):
        with self._lock:
            idle, self._idle = self._idle, []
        for c in idle:
            c.close()
        if self.proc is not None:
            _stop_process(self.proc)
            self.proc = None
        if self.tmpdir:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None


def _stop_process(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _pdeathsig():
    # Ask the kernel to SIGTERM the runtime if this process dies without
    # running atexit (PR_SET_PDEATHSIG = 1). Only set from the main thread:
    # the signal fires when the *thread* that started the child exits.
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)
    except Exception:  # noqa: BLE001 - best effort
        pass


def _start_serve():
    binary = thaw_binary()
    tmpdir = tempfile.mkdtemp(prefix="thaw-client-")
    path = os.path.join(tmpdir, "runtime.sock")
    try:
        stdout = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        stdout = subprocess.DEVNULL
    main_thread = threading.current_thread() is threading.main_thread()
    try:
        # --no-warm: this runtime lives as long as this script, for its own
        # calls; warming every deployed app's min_containers is not its job.
        proc = subprocess.Popen([binary, "serve", "--socket", path, "--no-warm"], stdin=subprocess.DEVNULL,
                                stdout=stdout, preexec_fn=_pdeathsig if main_thread else None)
    except OSError as e:
        shutil.rmtree(tmpdir, ignore_errors=True)
        raise ThawConnectionError(f"thaw: cannot start `{binary} serve`: {e}") from None
    deadline = time.monotonic() + SERVE_START_TIMEOUT
    while True:
        rc = proc.poll()
        if rc is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)
            raise ThawConnectionError(
                f"thaw: `{binary} serve --socket {path}` exited with status {rc} before it "
                f"listened (its messages are above)")
        if os.path.exists(path):
            try:
                SocketConnection(path, timeout=5).close()
                break
            except OSError:
                pass
        if time.monotonic() > deadline:
            _stop_process(proc)
            shutil.rmtree(tmpdir, ignore_errors=True)
            raise ThawConnectionError(f"thaw: `{binary} serve` did not listen on {path} within "
                                      f"{SERVE_START_TIMEOUT:.0f} s")
        time.sleep(0.02)
    return path, proc, tmpdir


def get_client():
    """The process's runtime client, starting `thaw serve` on first use when
    THAW_RUNTIME_SOCKET is unset."""
    global _client
    with _client_lock:
        if _client is None:
            path = os.environ.get("THAW_RUNTIME_SOCKET")
            if path:
                _client = Client(path)
            else:
                path, proc, tmpdir = _start_serve()
                _client = Client(path, proc, tmpdir)
                atexit.register(_at_exit)
        return _client


def _close_client():
    global _client
    with _client_lock:
        c, _client = _client, None
    if c is not None:
        c.close()


def _at_exit():
    # Let go of the pickles this process held before the runtime it started
    # stops: that runtime then sweeps away those no one else holds
    # (thaw._serialized_files). Only at exit: until then calls may need them.
    from ._serialized_files import release_all
    release_all()
    _close_client()


def reset_client():
    """Forget (and stop) the current client; the next call makes a new one."""
    _close_client()
