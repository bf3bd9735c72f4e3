"""Helpers for test_runtimes.py: line-oriented workers (python, node) driven
over pipes with deadlines, and `thaw restore` runs whose restored process is
found through --stats and --pidfile.

Standard library only. Every wait has a timeout; every process started here
is registered with a Runner and killed (with its process group, for restores)
by Runner.cleanup().
"""

import os
import re
import select
import shutil
import signal
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
THAW_BIN = Path(os.environ.get("THAW_BIN") or REPO / "build" / "thaw")
WORKERS = Path(__file__).resolve().parent / "workers"
PYTHON = "/usr/bin/python3"  # Debian's, with torch


def node_bin():
    """/usr/bin/node (or THAW_NODE, or node on PATH); None if there is none."""
    cand = os.environ.get("THAW_NODE") or "/usr/bin/node"
    if os.access(cand, os.X_OK):
        return cand
    return shutil.which("node")


START_TIMEOUT = 90     # seconds for a worker to print READY (import torch on a loaded VM)
ANSWER_TIMEOUT = 30    # seconds for one answer line
THAW_TIMEOUT = 90      # seconds for thaw checkpoint
RESTORE_TIMEOUT = 60   # seconds until thaw restore reports the process running
EXIT_TIMEOUT = 30      # seconds for a process to exit once told to


class WorkerError(AssertionError):
    pass


class LineReader:
    """Reads lines from a pipe fd with deadlines (select + os.read)."""

    def __init__(self, f, what):
        self.fd = f.fileno()
        self.what = what
        self.buf = b""
        self.eof = False

    def readline(self, timeout, proc=None):
        """The next line without its newline. Raises WorkerError on timeout or
        EOF. With proc (a Popen), gives up 2 s after it exited."""
        deadline = time.monotonic() + timeout
        exited_at = None
        while b"\n" not in self.buf:
            if self.eof:
                raise WorkerError(f"{self.what}: output closed (partial line {self.buf!r})")
            now = time.monotonic()
            if now >= deadline:
                raise WorkerError(f"{self.what}: no line within {timeout}s (got {self.buf!r})")
            if proc is not None and exited_at is None and proc.poll() is not None:
                exited_at = now
            if exited_at is not None and now - exited_at > 2.0:
                raise WorkerError(f"{self.what}: exited with status {proc.returncode} "
                                  f"without a line (got {self.buf!r})")
            r, _, _ = select.select([self.fd], [], [], min(deadline - now, 0.2))
            if not r:
                continue
            chunk = os.read(self.fd, 65536)
            if not chunk:
                self.eof = True
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode(errors="replace")

    def read_rest(self, timeout):
        """Whatever is buffered plus everything until EOF or the deadline."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            r, _, _ = select.select([self.fd], [], [], left)
            if not r:
                continue
            chunk = os.read(self.fd, 65536)
            if not chunk:
                self.eof = True
            self.buf += chunk
        out, self.buf = self.buf, b""
        return out.decode(errors="replace")


class Proc:
    """A running worker (original or restored) with line I/O over pipes.
    For a restore, .popen is `thaw restore` and .pid the restored process's
    host pid (from --pidfile)."""

    def __init__(self, popen, what, group):
        self.popen = popen
        self.what = what
        self.group = group
        self.out = LineReader(popen.stdout, f"{what} (stdout)")
        self.err = LineReader(popen.stderr, f"{what} (stderr)")
        self.pid = popen.pid
        self.stats = None

    def send(self, line):
        try:
            self.popen.stdin.write(line.encode() + b"\n")
        except (BrokenPipeError, ValueError) as e:
            raise WorkerError(f"{self.what}: cannot write {line!r}: {e}\n{self.diag()}")

    def readline(self, timeout=ANSWER_TIMEOUT):
        try:
            return self.out.readline(timeout, proc=self.popen)
        except WorkerError as e:
            raise WorkerError(f"{e}\n{self.diag()}") from None

    def ask(self, line, timeout=ANSWER_TIMEOUT):
        self.send(line)
        return self.readline(timeout)

    def diag(self):
        """stderr collected so far (non-blocking), for failure messages."""
        try:
            return f"--- {self.what} stderr ---\n{self.err.read_rest(0.2)}"
        except OSError:
            return ""

    def wait_exit(self, timeout=EXIT_TIMEOUT):
        """Closes stdin, waits for exit; returns (rc, rest of stdout, stderr)."""
        try:
            self.popen.stdin.close()
        except OSError:
            pass
        try:
            rc = self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise WorkerError(f"{self.what}: did not exit within {timeout}s\n{self.diag()}")
        return rc, self.out.read_rest(5), self.err.read_rest(5)


class Runner:
    """Starts workers and thaw; kills everything it started in cleanup()."""

    def __init__(self, tmp_path):
        self.tmp = Path(tmp_path)
        self.procs = []
        self._n = 0

    def path(self, name):
        self._n += 1
        return self.tmp / f"{name}-{self._n}"

    def _popen(self, argv, group, env=None):
        p = subprocess.Popen([str(a) for a in argv], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0,
                             close_fds=True, start_new_session=group, env=env)
        return p

    def start(self, argv, what, ready="READY", timeout=START_TIMEOUT, env=None):
        """Starts a worker and waits for its READY line. Returns a Proc with
        .cold_s: seconds from spawn to READY."""
        t0 = time.monotonic()
        p = Proc(self._popen(argv, group=False, env=env), what, group=False)
        self.procs.append(p)
        line = p.readline(timeout)
        p.cold_s = time.monotonic() - t0
        if line != ready:
            raise WorkerError(f"{what}: first line {line!r}, expected {ready!r}\n{p.diag()}")
        return p

    def run_through(self, argv, lines, what, timeout=START_TIMEOUT + ANSWER_TIMEOUT):
        """Runs a worker uninterrupted, feeding it `lines`; returns (rc,
        stdout lines, stderr)."""
        data = "".join(l + "\n" for l in lines).encode()
        try:
            cp = subprocess.run([str(a) for a in argv], input=data, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, timeout=timeout, close_fds=True)
        except subprocess.TimeoutExpired:
            raise WorkerError(f"uninterrupted run of {what} timed out after {timeout}s")
        return (cp.returncode, cp.stdout.decode(errors="replace").splitlines(),
                cp.stderr.decode(errors="replace"))

    def thaw(self, *args, timeout=THAW_TIMEOUT):
        try:
            return subprocess.run([str(THAW_BIN), *map(str, args)], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  errors="replace", timeout=timeout, close_fds=True)
        except subprocess.TimeoutExpired:
            raise WorkerError(f"thaw {' '.join(map(str, args))} timed out after {timeout}s")

    def checkpoint(self, proc, img):
        cp = self.thaw("checkpoint", "--pid", proc.pid, "--out", img)
        if cp.returncode != 0:
            raise WorkerError(f"thaw checkpoint of {proc.what} failed (rc={cp.returncode}):\n"
                              f"{cp.stderr}{cp.stdout}")
        return cp

    def kill_original(self, proc):
        """SIGKILL a checkpointed original, which must still be running."""
        if proc.popen.poll() is not None:
            raise WorkerError(f"{proc.what} died before it was killed "
                              f"(rc={proc.popen.returncode})\n{proc.diag()}")
        self.kill(proc)

    def restore(self, img, what, timeout=RESTORE_TIMEOUT):
        """Starts `thaw restore img --stats --pidfile F` in its own process
        group with fresh pipes (which the restored process gets as its fds
        0-2) and waits for the stats line. Returns a Proc whose .pid is the
        restored process's host pid, .stats the stats line and .restore_s the
        seconds from spawning thaw to that line."""
        pidfile = self.path("pid")
        p = self._start_restore(["restore", img, "--stats", "--pidfile", pidfile], what, timeout)
        # the pidfile is written before the stats line is printed
        text = pidfile.read_text()
        if not text.strip().isdigit():
            raise WorkerError(f"pidfile {pidfile} holds {text!r}")
        p.pid = int(text)
        return p

    def _start_restore(self, args, what, timeout):
        """Runs thaw with args (a restore with --stats) and waits for its
        stats line; the Proc's .pid is the one that line names."""
        label = "thaw " + " ".join(map(str, args[:3]))
        t0 = time.monotonic()
        popen = self._popen([THAW_BIN, *args], group=True)
        p = Proc(popen, what, group=True)
        self.procs.append(p)
        try:
            line = p.err.readline(timeout, proc=popen)
        except WorkerError as e:
            raise WorkerError(f"{label}: no stats line: {e}\n"
                              f"stderr: {p.err.read_rest(1)}") from None
        p.restore_s = time.monotonic() - t0
        m = re.search(r" running as pid (\d+) ", line)
        if not line.startswith("restore: ") or not m:
            raise WorkerError(f"{label}: unexpected stderr line {line!r}\n{p.err.read_rest(1)}")
        p.stats = line
        p.pid = int(m.group(1))
        return p

    def start_template(self, img, what):
        """Starts `thaw template img --socket S` and waits until it serves;
        returns (Proc of the server, socket path)."""
        sock = self.path("template.sock")
        p = Proc(self._popen([THAW_BIN, "template", img, "--socket", sock], group=True), what, group=True)
        self.procs.append(p)
        line = p.err.readline(RESTORE_TIMEOUT, proc=p.popen)
        if not line.startswith("template: ") or not sock.exists():
            raise WorkerError(f"thaw template {img}: {line!r}\n{p.err.read_rest(1)}")
        return p, sock

    def restore_from_template(self, sock, what, timeout=RESTORE_TIMEOUT):
        """Like restore(), through `thaw restore --from-template sock`."""
        return self._start_restore(["restore", "--from-template", sock, "--stats"], what, timeout)

    def kill(self, proc):
        p = proc.popen
        try:
            if proc.group:
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

    def cleanup(self):
        for p in self.procs:
            self.kill(p)


# ----------------------------------------------------------------- /proc

def read_proc(pid, name, binary=False):
    path = f"/proc/{pid}/{name}"
    with open(path, "rb" if binary else "r") as f:
        return f.read()


def proc_identity(pid):
    """What must be equal between an original and its restore."""
    return {
        "cmdline": read_proc(pid, "cmdline", binary=True),
        "environ": read_proc(pid, "environ", binary=True),
        "exe": os.readlink(f"/proc/{pid}/exe"),
    }


def smaps_flags(pid):
    """{"start-end": "VmFlags ..."} from /proc/PID/smaps."""
    flags, cur = {}, None
    for line in read_proc(pid, "smaps").splitlines():
        first = line.split(" ", 1)[0]
        if "-" in first and ":" not in first:
            cur = first
        elif line.startswith("VmFlags:") and cur:
            flags[cur] = line[len("VmFlags:"):].strip()
    return flags


def lazy_stats(err):
    """The numbers of the "lazy memory" line `thaw restore --stats` prints
    at exit (asserts that there is one)."""
    m = re.search(r"lazy memory ([\d.]+) MiB: (\d+) faults \((\d+) for zero pages, (\d+) ahead of the "
                  r"working set's copy\) brought ([\d.]+) MiB, "
                  r"the working set ([\d.]+) MiB, the background ([\d.]+) MiB, ([\d.]+) MiB dropped by the "
                  r"process, (\d+) forks", err)
    assert m, f"no lazy memory statistics in thaw restore --stats output:\n{err}"
    keys = ("lazy_mib", "faults", "zero_faults", "early_faults", "fault_mib", "working_set_mib", "background_mib", "dropped_mib",
            "forks")
    return dict(zip(keys, (float(x) for x in m.groups())))


def settled_smaps_flags(pid, timeout=20.0):
    """smaps_flags once thaw's lazy pager has finished: while it fills memory
    the mappings it serves carry the userfaultfd flag "um"; afterwards
    nothing of thaw may be left. Fails if the flag outlives the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        flags = smaps_flags(pid)
        busy = [r for r, f in flags.items() if "um" in f.split()]
        if not busy:
            return flags
        if time.monotonic() > deadline:
            raise AssertionError(f"userfaultfd still registered on {len(busy)} mappings "
                                 f"{timeout:.0f} s after restore (e.g. {busy[0]})")
        time.sleep(0.02)


def thread_count(pid):
    return len(os.listdir(f"/proc/{pid}/task"))


def vm_locked_kb(pid):
    for line in read_proc(pid, "status").splitlines():
        if line.startswith("VmLck:"):
            return int(line.split()[1])
    return None


def _anon_key(fields):
    """(perms, name) for an anonymous mapping line that the kernel could merge
    with an adjacent one, else None."""
    if len(fields) < 5 or fields[3] != "00:00" or fields[4] != "0":
        return None
    name = " ".join(fields[5:])
    if name and not name.startswith("[anon:"):
        return None  # [heap], [stack], [vdso], ... are never merged with neighbours
    return fields[1], name


def merge_adjacent_anon(maps_text):
    """maps lines with runs of adjacent anonymous mappings of equal
    protection and name folded into one line. Returns (lines, merges) where
    merges lists the groups of original ranges that were folded."""
    out, merges, group = [], [], None
    for line in maps_text.splitlines():
        f = line.split()
        start, end = f[0].split("-")
        key = _anon_key(f)
        if out and key is not None and group and group["key"] == key and group["end"] == start:
            group["end"] = end
            group["ranges"].append(f[0])
            out[-1] = f"{group['start']}-{end} " + out[-1].split(" ", 1)[1]
            continue
        if group and len(group["ranges"]) > 1:
            merges.append(group["ranges"])
        group = {"key": key, "start": start, "end": end, "ranges": [f[0]]} if key else None
        out.append(line)
    if group and len(group["ranges"]) > 1:
        merges.append(group["ranges"])
    return out, merges


# Differences in /proc/PID/smaps VmFlags between an original and its restore
# that thaw is known to produce. The gaps are reported as xfail by
# test_runtimes.py, so that they show until fixed; "hugepage" is by design
# (docs/architecture.md, restore step 9) and accepted.
KNOWN_VMFLAG_GAPS = {}
ACCEPTED_VMFLAG_DIFFS = {
    "hugepage": "large anonymous mappings keep the restorer's MADV_HUGEPAGE ('hg' gained)",
}


def classify_vmflags(orig_flags, rest_flags):
    """Compares {range: VmFlags} of an original and a restore over the
    ranges both have. Returns (known, unexplained): known maps each key of
    KNOWN_VMFLAG_GAPS and ACCEPTED_VMFLAG_DIFFS to the ranges it explains
    (only keys with ranges); unexplained lists
    (range, original flags, restored flags) for any other difference."""
    known = {k: [] for k in (*KNOWN_VMFLAG_GAPS, *ACCEPTED_VMFLAG_DIFFS)}
    unexplained = []
    for rng in sorted(set(orig_flags) & set(rest_flags)):
        o, r = set(orig_flags[rng].split()), set(rest_flags[rng].split())
        if o == r:
            continue
        lost, gained = o - r, r - o
        if "hg" in gained:
            gained.discard("hg")
            known["hugepage"].append(rng)
        if lost or gained:
            unexplained.append((rng, orig_flags[rng], rest_flags[rng]))
    return {k: v for k, v in known.items() if v}, unexplained
