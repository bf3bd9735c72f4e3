"""Shared helpers for thaw's end-to-end tests.

Run with Debian's python:  /usr/bin/python3 -m pytest tests/e2e
Standard library + pytest only.

Environment:
  THAW_BIN      path of the thaw binary (default <repo>/build/thaw)
  THAW_ZOO_DIR  directory of the zoo programs (default <repo>/build/tests/zoo)

Every zoo program prints "READY", blocks reading one line from stdin, then
checks its state, prints deterministic result lines, "DONE" and exits 0
(see tests/zoo/zoo.h).
"""

import os
import signal
import subprocess
import select
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
THAW_BIN = Path(os.environ.get("THAW_BIN") or REPO / "build" / "thaw")
ZOO_DIR = Path(os.environ.get("THAW_ZOO_DIR") or REPO / "build" / "tests" / "zoo")

READY_TIMEOUT = 20    # seconds for a zoo program to print READY
RUN_TIMEOUT = 30      # seconds for a program (or restore) to finish after "go"
THAW_TIMEOUT = 60     # seconds for thaw checkpoint / inspect
GO = b"go\n"


class Harness:
    """Starts zoo programs and thaw, tracks every child so that none outlives
    the test, and puts every temp file under the test's tmp_path."""

    def __init__(self, tmp_path):
        self.tmp_path = Path(tmp_path)
        self.procs = []
        self._n = 0

    # ---------------------------------------------------------------- paths
    def new_dir(self, name):
        """A fresh directory under the test's tmp_path."""
        self._n += 1
        d = self.tmp_path / f"{name}-{self._n}"
        d.mkdir()
        return d

    def img_path(self, name="img"):
        """A not-yet-existing image directory path (thaw creates it)."""
        self._n += 1
        return self.tmp_path / f"{name}-{self._n}"

    @staticmethod
    def prog_path(prog):
        p = ZOO_DIR / prog
        if not os.access(p, os.X_OK):
            pytest.fail(f"zoo program {p} not built (THAW_ZOO_DIR={ZOO_DIR})")
        return p

    def env(self, testtmp):
        e = dict(os.environ)
        e["THAW_TEST_TMP"] = str(testtmp)
        return e

    # -------------------------------------------------------- zoo programs
    def run_uninterrupted(self, prog, *args, testtmp=None):
        """Run prog start to end (go sent at once); returns the output after
        the READY line.  Fails the test unless it ends with DONE, exit 0."""
        if testtmp is None:
            testtmp = self.new_dir("ref-tmp")
        try:
            cp = subprocess.run(
                [str(self.prog_path(prog)), *args], input=GO,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=self.env(testtmp), timeout=RUN_TIMEOUT + READY_TIMEOUT,
                close_fds=True)
        except subprocess.TimeoutExpired:
            pytest.fail(f"uninterrupted run of {prog} timed out")
        out = cp.stdout.decode(errors="replace")
        if not out.startswith("READY\n"):
            pytest.fail(f"{prog}: output does not start with READY:\n{out}"
                        f"\nstderr:\n{cp.stderr.decode(errors='replace')}")
        out = out[len("READY\n"):]
        if cp.returncode != 0 or not out.endswith("DONE\n") or "FAIL" in out:
            pytest.fail(f"uninterrupted run of {prog} failed (rc={cp.returncode}):"
                        f"\n{out}\nstderr:\n{cp.stderr.decode(errors='replace')}")
        return out

    def start(self, prog, *args, testtmp=None):
        """Start prog with stdin/stdout/stderr pipes and wait for its READY
        line.  Returns the Popen (attribute .testtmp: its THAW_TEST_TMP)."""
        if testtmp is None:
            testtmp = self.new_dir("tmp")
        p = subprocess.Popen(
            [str(self.prog_path(prog)), *args], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0,
            env=self.env(testtmp), close_fds=True)
        self.procs.append(p)
        p.testtmp = Path(testtmp)
        p.prog = prog
        buf = b""
        deadline = time.monotonic() + READY_TIMEOUT
        fd = p.stdout.fileno()
        while b"READY\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill(p)
                pytest.fail(f"{prog} did not print READY within {READY_TIMEOUT}s"
                            f" (got {buf!r})")
            r, _, _ = select.select([fd], [], [], left)
            if not r:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                rc = p.wait(timeout=5)
                err = p.stderr.read().decode(errors="replace")
                pytest.fail(f"{prog} exited (rc={rc}) before READY; stdout {buf!r}"
                            f"\nstderr:\n{err}")
            buf += chunk
        before, _, after = buf.partition(b"READY\n")
        if before:
            self.kill(p)
            pytest.fail(f"{prog} printed {before!r} before READY")
        p.leftover = after
        return p

    def finish(self, p, data=GO, timeout=RUN_TIMEOUT):
        """Send data (the go line) to p, read everything until it exits.
        Returns (returncode, stdout text, stderr text)."""
        try:
            out, err = p.communicate(input=data, timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill(p)
            pytest.fail(f"{getattr(p, 'prog', p.args)} did not finish within {timeout}s")
        out = getattr(p, "leftover", b"") + out
        return p.returncode, out.decode(errors="replace"), err.decode(errors="replace")

    def kill(self, p):
        """SIGKILL p (its whole process group if it leads one) and every
        process below it (a process tree's would live on), and reap it,
        never blocking for long."""
        if p.poll() is None:
            for kid in self.descendants(p.pid):
                try:
                    os.kill(kid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        try:
            if getattr(p, "own_group", False):
                # also reaches what thaw left behind in its group
                os.killpg(p.pid, signal.SIGKILL)
            elif p.poll() is None:
                p.kill()
        except (ProcessLookupError, PermissionError):
            pass
        for f in (p.stdin, p.stdout, p.stderr):
            try:
                if f:
                    f.close()
            except OSError:
                pass
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    @staticmethod
    def descendants(pid):
        """Every process below pid, children before their own children."""
        out, todo = [], [pid]
        while todo:
            d = Path(f"/proc/{todo.pop()}/task")
            try:
                tasks = list(d.iterdir())
            except OSError:
                continue
            for t in tasks:
                try:
                    kids = [int(k) for k in (t / "children").read_text().split()]
                except OSError:
                    continue
                out += kids
                todo += kids
        return out

    def kill_original(self, p):
        """Kill a checkpointed original, and every process below it (a
        process tree's would live on, orphaned), with SIGKILL; wait for it."""
        assert p.poll() is None, f"{p.prog} died before it was killed (rc={p.returncode})"
        for kid in self.descendants(p.pid):
            try:
                os.kill(kid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        p.kill()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{p.prog} (pid {p.pid}) did not die from SIGKILL")
        self.kill(p)  # close the pipes

    # ----------------------------------------------------------------- thaw
    @staticmethod
    def thaw_cmd(*args):
        return [str(THAW_BIN), *[str(a) for a in args]]

    def thaw(self, *args, timeout=THAW_TIMEOUT):
        """Run thaw with args to completion; returns CompletedProcess with
        text stdout/stderr."""
        try:
            return subprocess.run(self.thaw_cmd(*args), stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  timeout=timeout, text=True, errors="replace",
                                  close_fds=True)
        except subprocess.TimeoutExpired:
            pytest.fail(f"thaw {' '.join(map(str, args))} timed out after {timeout}s")

    def checkpoint(self, p, img, kill=False, expect_ok=True):
        args = ["checkpoint", "--pid", p.pid, "--out", img]
        if kill:
            args.append("--kill")
        cp = self.thaw(*args)
        if expect_ok and cp.returncode != 0:
            pytest.fail(f"thaw checkpoint of {p.prog} failed (rc={cp.returncode}):\n"
                        f"{cp.stderr}{cp.stdout}")
        return cp

    def restore_start(self, img, *extra):
        """Start `thaw restore img` with fresh pipes as its stdin/stdout/stderr
        (in its own process group so the whole tree can be killed)."""
        p = subprocess.Popen(self.thaw_cmd("restore", img, *extra),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, bufsize=0, close_fds=True,
                             start_new_session=True)
        p.own_group = True
        p.prog = f"thaw restore {img}"
        self.procs.append(p)
        return p

    def restore(self, img, *extra, data=GO, timeout=RUN_TIMEOUT):
        """Restore img, send data, wait.  Returns (rc, stdout, stderr)."""
        p = self.restore_start(img, *extra)
        return self.finish(p, data=data, timeout=timeout)

    def cleanup(self):
        for p in self.procs:
            self.kill(p)


@pytest.fixture
def zoo(tmp_path):
    h = Harness(tmp_path)
    try:
        yield h
    finally:
        h.cleanup()


@pytest.fixture
def thaw_bin():
    """The thaw binary; fails (does not skip) the test when it is missing."""
    if not os.access(THAW_BIN, os.X_OK):
        pytest.fail(f"thaw binary not found at {THAW_BIN} (set THAW_BIN or build it)")
    return THAW_BIN
