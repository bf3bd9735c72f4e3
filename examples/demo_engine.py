"""thaw engine demo: cold start vs. restore of a torch worker.

1. Starts examples/torch_worker.py (imports torch, builds a model) and times
   its cold start: from spawning it until it prints READY.
2. Asks it for an answer, checkpoints it with `thaw checkpoint`, kills it.
3. Restores it with `thaw restore DIR --stats` (the restored process gets
   thaw's own stdin/stdout, so the pipes given to thaw are its pipes), sends
   a line and times until the answer arrives. The answer must be equal.
4. Restores the same image twice at once, and checks both answers.

Standard library only; run with Debian's python as root (thaw needs ptrace,
pid namespaces and PR_SET_MM):  /usr/bin/python3 examples/demo_engine.py
Exits non-zero if any step fails or an answer differs.
"""
import argparse
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYTHON = "/usr/bin/python3"
WORKER = REPO / "examples" / "torch_worker.py"

COLD_TIMEOUT = 120      # seconds for the worker to print READY
THAW_TIMEOUT = 120      # seconds for thaw checkpoint / inspect
ANSWER_TIMEOUT = 60     # seconds for an answer (after a restore, too)
EXIT_TIMEOUT = 30       # seconds for a process to exit after its stdin closes


class DemoError(Exception):
    pass


class LineReader:
    """Reads lines from a pipe with deadlines (select + os.read)."""

    def __init__(self, f, what):
        self.fd = f.fileno()
        self.what = what
        self.buf = b""
        self.eof = False

    def readline(self, timeout, watch=None):
        """The next line, within timeout seconds. With watch (a Popen), gives
        up early when that process has exited without the line coming."""
        deadline = time.monotonic() + timeout
        exited_at = None
        while b"\n" not in self.buf:
            if self.eof:
                raise DemoError(f"{self.what}: closed its output (got {self.buf!r})")
            now = time.monotonic()
            left = deadline - now
            if left <= 0:
                raise DemoError(f"{self.what}: no line within {timeout}s (got {self.buf!r})")
            if watch is not None and exited_at is None and watch.poll() is not None:
                exited_at = now
            if exited_at is not None and now - exited_at > 1.0:
                raise DemoError(f"{self.what}: no line, and {watch.args[0]} exited with "
                                f"status {watch.returncode} (got {self.buf!r})")
            r, _, _ = select.select([self.fd], [], [], min(left, 0.2))
            if not r:
                continue
            chunk = os.read(self.fd, 65536)
            if not chunk:
                self.eof = True
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode(errors="replace")

    def read_rest(self, timeout):
        """Everything up to EOF (or the deadline)."""
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


class Demo:
    def __init__(self, thaw, workdir):
        self.thaw = str(thaw)
        self.workdir = Path(workdir)
        self.procs = []   # (Popen, whole process group?) to clean up

    # ------------------------------------------------------------ processes
    def spawn(self, argv, group=False, stderr=subprocess.PIPE):
        p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                             bufsize=0, close_fds=True, start_new_session=group)
        self.procs.append((p, group))
        return p

    def kill(self, p, group=False):
        try:
            if group:
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
        for p, group in self.procs:
            self.kill(p, group)

    def run_thaw(self, *args):
        cmd = [self.thaw, *map(str, args)]
        try:
            cp = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, errors="replace",
                                timeout=THAW_TIMEOUT, close_fds=True)
        except subprocess.TimeoutExpired:
            raise DemoError(f"{' '.join(cmd)} timed out after {THAW_TIMEOUT}s")
        if cp.returncode != 0:
            raise DemoError(f"{' '.join(cmd)} failed (exit {cp.returncode}):\n{cp.stderr}{cp.stdout}")
        return cp

    @staticmethod
    def ask(p, out, what):
        try:
            p.stdin.write(b"go\n")
        except BrokenPipeError:
            raise DemoError(f"{what}: its stdin is closed (did it die?)")
        return out.readline(ANSWER_TIMEOUT, watch=p)

    def close_and_wait(self, p, what):
        p.stdin.close()
        try:
            return p.wait(timeout=EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise DemoError(f"{what}: did not exit within {EXIT_TIMEOUT}s after its stdin closed")

    # ---------------------------------------------------------------- steps
    def cold_start(self):
        log = open(self.workdir / "worker.log", "ab")  # its stderr, reopened by path on restore
        t0 = time.monotonic()
        p = self.spawn([PYTHON, str(WORKER)], stderr=log)
        log.close()
        out = LineReader(p.stdout, "worker")
        try:
            line = out.readline(COLD_TIMEOUT)
        except DemoError as e:
            raise DemoError(f"{e}\nworker.log:\n{self.worker_log()}")
        cold = time.monotonic() - t0
        if not line.startswith("READY"):
            raise DemoError(f"worker printed {line!r} instead of READY\n{self.worker_log()}")
        inner = float(line.split()[1])
        return p, out, cold, inner

    def worker_log(self):
        try:
            return (self.workdir / "worker.log").read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def restore_start(self, img):
        """Starts `thaw restore img --stats` in its own process group: thaw,
        the namespace's init and the restored worker can all be killed at once."""
        t0 = time.monotonic()
        p = self.spawn([self.thaw, "restore", str(img), "--stats"], group=True)
        return p, LineReader(p.stdout, f"restored worker ({img.name})"), \
            LineReader(p.stderr, f"thaw restore {img.name} (stderr)"), t0

    def finish_restore(self, p, out, err, what):
        """Ends a restored worker (EOF on its stdin) and checks thaw's exit."""
        rc = self.close_and_wait(p, what)
        stderr = err.read_rest(5)
        if rc != 0:
            raise DemoError(f"{what}: thaw restore exited {rc}:\n{stderr}")
        return stderr


def restore_stats_ms(stderr_line):
    # "restore: DIR running as pid N after X ms"
    words = stderr_line.split()
    try:
        return float(words[words.index("after") + 1])
    except (ValueError, IndexError):
        return None


def fmt_s(s):
    return f"{s:.3f} s" if s < 10 else f"{s:.1f} s"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--thaw", default=str(REPO / "build" / "thaw"), help="thaw binary")
    ap.add_argument("--workdir", help="where images go (default: a fresh temporary directory)")
    ap.add_argument("--keep", action="store_true", help="keep the image and logs")
    args = ap.parse_args()

    if not os.access(args.thaw, os.X_OK):
        sys.exit(f"demo: thaw binary {args.thaw} not found; run scripts/build.sh")
    if os.geteuid() != 0:
        print("demo: warning: not root; thaw needs CAP_SYS_ADMIN, CAP_SYS_PTRACE and "
              "CAP_CHECKPOINT_RESTORE", file=sys.stderr)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="thaw-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    demo = Demo(args.thaw, workdir)
    img = workdir / "torch-worker.img"
    rows = []
    ok = True
    try:
        # 1. cold start
        print(f"demo: starting {WORKER.name} (cold start: python + import torch + model) ...", flush=True)
        orig, orig_out, cold, inner = demo.cold_start()
        before = demo.ask(orig, orig_out, "worker")
        print(f"demo: worker pid {orig.pid} READY after {fmt_s(cold)}, answer {before}", flush=True)

        # 2. checkpoint, then kill the original
        t0 = time.monotonic()
        cp = demo.run_thaw("checkpoint", "--pid", orig.pid, "--out", img)
        ckpt = time.monotonic() - t0
        print(f"demo: {cp.stderr.strip()}", flush=True)
        demo.kill(orig)
        info = json.loads(demo.run_thaw("inspect", img, "--json").stdout)
        size = sum(f.stat().st_size for f in img.iterdir() if f.is_file())

        # 3. restore, ask, compare
        p, out, err, t0 = demo.restore_start(img)
        try:
            after = demo.ask(p, out, "restored worker")
        except DemoError as e:
            raise DemoError(f"{e}\nthaw restore stderr:\n{err.read_rest(2)}")
        restore = time.monotonic() - t0
        again = demo.ask(p, out, "restored worker")
        # thaw prints its --stats line when the restored process has exited.
        stats_line = next((l for l in demo.finish_restore(p, out, err, "restored worker").splitlines()
                           if l.startswith("restore:")), "")
        ready_ms = restore_stats_ms(stats_line)
        print(f"demo: {stats_line.strip()}; answered {after} after {fmt_s(restore)}", flush=True)

        # 4. two restores of the same image at once
        t0 = time.monotonic()
        pair = [demo.restore_start(img) for _ in range(2)]
        for q, _, _, _ in pair:
            q.stdin.write(b"go\n")
        twin = []
        for i, (q, o, e, _) in enumerate(pair):
            try:
                twin.append(o.readline(ANSWER_TIMEOUT, watch=q))
            except DemoError as ex:
                raise DemoError(f"restore #{i + 1} of 2: {ex}\nthaw restore stderr:\n{e.read_rest(2)}")
        both = time.monotonic() - t0
        for i, (q, o, e, _) in enumerate(pair):
            demo.finish_restore(q, o, e, f"restored worker #{i + 1} of 2")
        print(f"demo: two restores at once answered {twin} after {fmt_s(both)}", flush=True)

        same = after == before and again == before
        twin_same = all(a == before for a in twin)
        ok = same and twin_same
        threads = len(info.get("threads", []))
        rows = [
            ("cold start (spawn -> READY)", fmt_s(cold), f"import torch + model init inside: {fmt_s(inner)}"),
            ("checkpoint (thaw checkpoint)", fmt_s(ckpt), f"{threads} thread{'' if threads == 1 else 's'}, "
                                                          f"{len(info.get('mappings', []))} mappings"),
            ("image size", f"{size / 2**20:.1f} MiB",
             f"page data {info['pages_bytes'] / 2**20:.1f} MiB of "
             f"{info['mapped_bytes'] / 2**20:.0f} MiB mapped"),
            ("restore until it answers", fmt_s(restore),
             f"thaw --stats: running after {ready_ms:.1f} ms" if ready_ms is not None else stats_line),
            ("cold start / restore", f"{cold / restore:.1f}x", ""),
            ("answer before checkpoint", before, ""),
            ("answer after restore", after, "equal" if same else "DIFFERENT"),
            ("two restores at once", fmt_s(both),
             f"answers {', '.join(twin)}: " + ("equal" if twin_same else "DIFFERENT")),
        ]
    except DemoError as e:
        print(f"demo: FAILED: {e}", file=sys.stderr)
        ok = False
    finally:
        demo.cleanup()
        if args.keep:
            print(f"demo: image and logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    if rows:
        w0 = max(len(r[0]) for r in rows)
        w1 = max(len(r[1]) for r in rows)
        print()
        print(f"thaw engine demo: {WORKER.name} on {os.uname().release}")
        print("-" * (w0 + w1 + 40))
        for name, value, note in rows:
            print(f"  {name:<{w0}}  {value:>{w1}}  {note}")
        print("-" * (w0 + w1 + 40))
    print("demo: OK" if ok else "demo: FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
