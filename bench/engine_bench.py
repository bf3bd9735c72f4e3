#!/usr/bin/python3
"""thaw engine benchmark: cold start vs. checkpoint/restore, in one run.

Workloads (all measured in the same run, on the same machine):
  torch  examples/torch_worker.py under Debian's python (import torch, build a
         model): cold start (spawn -> READY), checkpoint time, image size,
         restore time until the restored process answers its first request,
         thaw restore --stats breakdown, cold/restore ratio.
  heap   build/tests/zoo/big_heap N (N MiB of non-zero data, default 2048):
         checkpoint time and GB/s, how long the process was held (thaw's
         default copy-on-write fork, and --no-cow, alternating), image size,
         restore time until the process
         runs and GB/s; every restore is checked (big_heap verifies its heap
         checksum and must print the same checksum as the original).
  node   tests/e2e/workers/node_worker.js under /usr/bin/node: cold start vs
         restore until the first answer ("ping").

Each restore is repeated --repeats times (default 5) and reported as min and
median; cold starts --cold-repeats times. GB/s is 10^9 bytes of page data
(the memory thaw stores, `pages_bytes` in `thaw inspect --json`) per second.
Restores read the image right after it was written, so it is in the page
cache (warm) unless --drop-caches is given.

Standard library only; run as root with Debian's python:
    /usr/bin/python3 bench/engine_bench.py [--json results.json]
Images go to a temporary directory (--workdir) and are deleted afterwards.
"""
import argparse
import datetime
import hashlib
import json
import os
import platform
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYTHON = "/usr/bin/python3"
TORCH_WORKER = REPO / "examples" / "torch_worker.py"
NODE_WORKER = REPO / "tests" / "e2e" / "workers" / "node_worker.js"
POOL_WORKER = REPO / "bench" / "pool_worker.py"  # a process tree: torch + a multiprocessing pool

START_TIMEOUT = 180     # seconds for a worker to print READY (2 GiB heap fill included)
THAW_TIMEOUT = 300      # seconds for thaw checkpoint
LINE_TIMEOUT = 120      # seconds for one answer / a restore to report running
EXIT_TIMEOUT = 60       # seconds for a process to exit once told to

# Restore modes measured side by side: thaw's default (lazy: large anonymous
# memory filled while the process runs) and --eager (filled before). The
# request workers add "template": `thaw restore --from-template` of a live
# template (`thaw template`) of the same image, where the image allows one.
MODES = ("lazy", "eager")
PREFIX = {"lazy": "", "eager": "eager_", "template": "template_"}
LABELS = (("", "lazy"), ("eager_", "eager"), ("template_", "template copy"))

# Targets from the issue.
TARGET_TORCH_RESTORE_MS = 50.0
TARGET_TORCH_SPEEDUP = 40.0
TARGET_RESTORE_GBPS = 4.0
TARGET_CHECKPOINT_GBPS = 1.0


class BenchError(Exception):
    pass


# ------------------------------------------------------------------ processes

class Child:
    """A child with stdin/stdout/stderr pipes. Lines of stdout and stderr are
    collected together, each stamped with the time.monotonic() at which the
    chunk holding its end was read."""

    def __init__(self, argv, what, group=False):
        self.what = what
        self.group = group
        self.t_spawn = time.monotonic()
        self.p = subprocess.Popen([str(a) for a in argv], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0,
                                  close_fds=True, start_new_session=group)
        self.fds = {self.p.stdout.fileno(): "out", self.p.stderr.fileno(): "err"}
        self.buf = {"out": b"", "err": b""}
        self.lines = {"out": [], "err": []}   # (text, t)
        self.eof = {"out": False, "err": False}

    def _pump(self, timeout):
        open_fds = [fd for fd, name in self.fds.items() if not self.eof[name]]
        if not open_fds:
            time.sleep(min(timeout, 0.05))
            return
        r, _, _ = select.select(open_fds, [], [], timeout)
        now = time.monotonic()
        for fd in r:
            name = self.fds[fd]
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                self.eof[name] = True
                continue
            self.buf[name] += chunk
            while b"\n" in self.buf[name]:
                line, _, self.buf[name] = self.buf[name].partition(b"\n")
                self.lines[name].append((line.decode(errors="replace"), now))

    def line(self, stream, timeout=LINE_TIMEOUT, pred=None):
        """The first not yet taken line of stream ("out"/"err") for which
        pred holds (all lines when pred is None): (text, t)."""
        deadline = time.monotonic() + timeout
        while True:
            for i, (text, t) in enumerate(self.lines[stream]):
                if pred is None or pred(text):
                    del self.lines[stream][: i + 1]
                    return text, t
            if self.eof[stream]:
                raise BenchError(f"{self.what}: {stream} closed without the expected line "
                                 f"(exit {self.p.poll()})\n{self.tail()}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"{self.what}: no {stream} line within {timeout}s\n{self.tail()}")
            self._pump(min(left, 0.5))

    def send(self, text):
        try:
            self.p.stdin.write(text.encode())
        except (BrokenPipeError, ValueError) as e:
            raise BenchError(f"{self.what}: cannot write: {e}\n{self.tail()}")

    def ask(self, text, timeout=LINE_TIMEOUT):
        t0 = time.monotonic()
        self.send(text + "\n")
        line, t = self.line("out", timeout)
        return line, t - t0

    def close_and_wait(self, timeout=EXIT_TIMEOUT):
        try:
            self.p.stdin.close()
        except OSError:
            pass
        deadline = time.monotonic() + timeout
        while self.p.poll() is None:
            if time.monotonic() > deadline:
                raise BenchError(f"{self.what}: did not exit within {timeout}s")
            self._pump(0.05)
        while not (self.eof["out"] and self.eof["err"]) and time.monotonic() < deadline:
            self._pump(0.05)
        return self.p.returncode

    def tail(self):
        try:
            self._pump(0)
        except (OSError, ValueError):
            pass
        out = "\n".join(t for t, _ in self.lines["out"][-10:]) + self.buf["out"].decode(errors="replace")
        err = "\n".join(t for t, _ in self.lines["err"][-20:]) + self.buf["err"].decode(errors="replace")
        return f"--- stdout ---\n{out}\n--- stderr ---\n{err}"

    def kill(self):
        try:
            if self.group:
                os.killpg(self.p.pid, signal.SIGKILL)
            elif self.p.poll() is None:
                self.p.kill()
        except (ProcessLookupError, PermissionError):
            pass
        for f in (self.p.stdin, self.p.stdout, self.p.stderr):
            try:
                f.close()
            except OSError:
                pass
        try:
            self.p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


class Bench:
    def __init__(self, args):
        self.args = args
        self.thaw = str(args.thaw)
        self.workdir = Path(args.workdir)
        self.children = []
        self._n = 0

    def spawn(self, argv, what, group=False):
        c = Child(argv, what, group)
        self.children.append(c)
        return c

    def cleanup(self):
        for c in self.children:
            c.kill()
        self.children.clear()

    def path(self, name):
        self._n += 1
        return self.workdir / f"{name}-{self._n}"

    # ------------------------------------------------------------ primitives
    def cold_start(self, argv, what, ready="READY"):
        """Spawns argv and waits for its READY line: (child, seconds)."""
        c = self.spawn(argv, what)
        line, t = c.line("out", START_TIMEOUT)
        if not line.startswith(ready):
            raise BenchError(f"{what}: printed {line!r} instead of {ready}\n{c.tail()}")
        c.ready_line = line
        return c, t - c.t_spawn

    def thaw_run(self, *args, timeout=THAW_TIMEOUT):
        cmd = [self.thaw, *map(str, args)]
        t0 = time.monotonic()
        try:
            cp = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, errors="replace",
                                timeout=timeout, close_fds=True)
        except subprocess.TimeoutExpired:
            raise BenchError(f"{' '.join(cmd)}: timed out after {timeout}s")
        if cp.returncode != 0:
            raise BenchError(f"{' '.join(cmd)} failed (exit {cp.returncode}):\n{cp.stderr}{cp.stdout}")
        return cp, time.monotonic() - t0

    def checkpoint(self, pid, img, *extra):
        cp, secs = self.thaw_run("checkpoint", "--pid", pid, "--out", img, *extra)
        line = cp.stderr.strip().splitlines()[-1] if cp.stderr.strip() else ""
        return {"seconds": secs, "thaw_line": line, "thaw_ms": parse_ms_pairs(line.partition(";")[2])}

    def inspect(self, img):
        cp, _ = self.thaw_run("inspect", img, "--json")
        return json.loads(cp.stdout)

    def restore(self, img, what, mode="lazy"):
        """Starts thaw restore --stats (own process group); mode "eager" fills
        all memory before the process runs, "lazy" (thaw's default) while it
        runs."""
        if self.args.drop_caches:
            drop_caches()
        if mode == "template":
            return self.spawn([self.thaw, "restore", "--from-template", self.template_sock, "--stats"], what,
                              group=True)
        extra = ["--eager"] if mode == "eager" else []
        return self.spawn([self.thaw, "restore", img, "--stats", *extra], what, group=True)

    def start_template(self, img, name):
        """Starts `thaw template img`; returns its Child, or None with the
        reason it gave in res (an image that cannot serve as one)."""
        self.template_sock = str(self.path(f"{name}-template.sock"))
        c = self.spawn([self.thaw, "template", img, "--socket", self.template_sock], f"{name} template",
                       group=True)
        line, _ = c.line("err", LINE_TIMEOUT, pred=lambda s: s.startswith("template: ") or s.startswith("thaw"))
        return c, line

    def stats_line(self, c):
        line, t = c.line("err", LINE_TIMEOUT, pred=lambda s: s.startswith("restore: "))
        return parse_stats(line), t


# -------------------------------------------------------------------- parsing

def parse_ms_pairs(text):
    """'stopped 0.3 ms, collected 196.3 ms' -> {'stopped': 0.3, ...}"""
    return {k: float(v) for k, v in re.findall(r"([a-z_]+) ([0-9.]+) ms", text)}


def parse_stats(line):
    """thaw restore --stats line -> {'line', 'pid', 'total_ms', 'parts': {...}}"""
    m = re.search(r"running as pid (\d+) after ([0-9.]+) ms(?: \(([^)]*)\))?", line)
    if not m:
        raise BenchError(f"cannot parse thaw restore --stats line {line!r}")
    parts = {}
    for item in (m.group(3) or "").split(","):
        kv = item.split()
        if len(kv) == 2:
            try:
                parts[kv[0]] = float(kv[1])
            except ValueError:
                pass
    return {"line": line, "pid": int(m.group(1)), "total_ms": float(m.group(2)), "parts": parts}


def dir_size(path):
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def summary(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return None
    return {"min": min(xs), "median": statistics.median(xs), "max": max(xs), "n": len(xs),
            "samples": xs}


def median_parts(stats_list):
    keys = []
    for s in stats_list:
        for k in s["parts"]:
            if k not in keys:
                keys.append(k)
    return {k: statistics.median([s["parts"][k] for s in stats_list if k in s["parts"]])
            for k in keys}


# -------------------------------------------------------------- workloads

def bench_request_worker(b, name, argv, request, expect, cold_repeats, repeats, ckpt_repeats):
    """torch/node: cold starts, checkpoints, restores until the first answer.
    expect(answer_before, answer_after) -> bool."""
    res = {"argv": [str(a) for a in argv]}
    cold, inner, warm_ms = [], [], []
    orig = None
    for i in range(cold_repeats):
        c, secs = b.cold_start(argv, f"{name} worker (cold start {i + 1})")
        cold.append(secs)
        parts = c.ready_line.split()
        if len(parts) > 1:
            try:
                inner.append(float(parts[1]))
            except ValueError:
                pass
        ans, lat = c.ask(request)
        warm_ms.append(lat * 1e3)
        if orig is None:
            orig, before = c, ans
        else:
            c.kill()
    res["cold_start_s"] = summary(cold)
    if inner:
        res["cold_start_inside_s"] = summary(inner)
    res["request_latency_original_ms"] = summary(warm_ms)
    res["answer_before"] = before

    img = None
    ckpts = []
    for i in range(ckpt_repeats):
        d = b.path(f"{name}-img")
        ckpts.append(b.checkpoint(orig.p.pid, d))
        if img is None:
            img = d
        else:
            shutil.rmtree(d, ignore_errors=True)
    orig.kill()
    info = b.inspect(img)
    res["checkpoint_s"] = summary([c["seconds"] for c in ckpts])
    res["checkpoint_thaw_line"] = ckpts[0]["thaw_line"]
    res["image_bytes"] = dir_size(img)
    res["pages_bytes"] = info.get("pages_bytes")
    res["mapped_bytes"] = info.get("mapped_bytes")
    res["mappings"] = len(info.get("mappings", []))
    res["threads"] = len(info.get("threads", []))

    modes = list(MODES)
    server, line = b.start_template(img, name)
    if line.startswith("template: "):
        modes.append("template")
        res["template_line"] = line
    else:
        res["template_error"] = line
        server.kill()
    per = {m: {"restore_ms": [], "running_wall_ms": [], "stats": [], "answers": []} for m in modes}
    for i in range(repeats):
        for mode in modes:  # interleaved, so all see the same machine
            d = per[mode]
            c = b.restore(img, f"{name} restore {i + 1} ({mode})", mode)
            c.send(request + "\n")   # waits in the pipe until the process reads it
            ans, t_ans = c.line("out")
            st, t_st = b.stats_line(c)
            d["restore_ms"].append((t_ans - c.t_spawn) * 1e3)
            d["running_wall_ms"].append((t_st - c.t_spawn) * 1e3)
            d["stats"].append(st)
            d["answers"].append(ans)
            rc = c.close_and_wait()
            c.kill()
            if not expect(before, ans):
                raise BenchError(f"{name}: restore {i + 1} ({mode}) answered {ans!r}, original {before!r}")
            if rc != 0:
                raise BenchError(f"{name}: thaw restore {i + 1} ({mode}) exited {rc}\n{c.tail()}")
    server.kill()
    shutil.rmtree(img, ignore_errors=True)
    for mode in modes:
        d, pre = per[mode], PREFIX[mode]
        res[pre + "restore_to_answer_ms"] = summary(d["restore_ms"])
        res[pre + "restore_running_wall_ms"] = summary(d["running_wall_ms"])
        res[pre + "restore_running_thaw_ms"] = summary([s["total_ms"] for s in d["stats"]])
        res[pre + "restore_breakdown_median_ms"] = median_parts(d["stats"])
        res[pre + "restore_stats_lines"] = [s["line"] for s in d["stats"]]
        res[pre + "answers_after"] = d["answers"]
        res[pre + "ratio_cold_over_restore_median"] = (res["cold_start_s"]["median"] * 1e3
                                                       / res[pre + "restore_to_answer_ms"]["median"])
        res[pre + "ratio_cold_over_restore_min"] = (res["cold_start_s"]["min"] * 1e3
                                                    / res[pre + "restore_to_answer_ms"]["min"])
    return res


def bench_heap(b, mib, repeats, ckpt_repeats):
    prog = Path(b.args.big_heap)
    if not os.access(prog, os.X_OK):
        raise BenchError(f"{prog} not built (scripts/build.sh builds it)")
    need = mib * 2**20
    free_disk = shutil.disk_usage(b.workdir).free
    if free_disk < 2 * need + 2**30:
        raise BenchError(f"not enough disk in {b.workdir}: {free_disk / 2**30:.1f} GiB free, "
                         f"need {(2 * need + 2**30) / 2**30:.1f} GiB")
    avail = meminfo().get("MemAvailable", 0) * 1024
    if avail < 3 * need + 2**30:
        raise BenchError(f"not enough memory: {avail / 2**30:.1f} GiB available, "
                         f"need {(3 * need + 2**30) / 2**30:.1f} GiB")
    res = {"mib": mib}
    orig, fill = b.cold_start([prog, mib], f"big_heap {mib}")
    res["fill_s"] = fill
    # Checkpoints alternate: thaw's default (the target is held until a
    # copy-on-write fork of it exists) and --no-cow (held while its pages
    # are read).
    img, ckpts, nocow = None, [], []
    for i in range(ckpt_repeats):
        for extra, into in (((), ckpts), (("--no-cow",), nocow)):
            d = b.path("heap-img")
            into.append(b.checkpoint(orig.p.pid, d, *extra))
            if img is None:
                img = d
            else:
                shutil.rmtree(d, ignore_errors=True)
    # the original's own result is the reference for every restore
    orig.send("go\n")
    expected = []
    while not expected or expected[-1] != "DONE":
        expected.append(orig.line("out", LINE_TIMEOUT)[0])
    rc = orig.close_and_wait()
    if rc != 0:
        raise BenchError(f"big_heap original exited {rc}: {expected}")
    info = b.inspect(img)
    pages = info.get("pages_bytes") or 0
    res["pages_bytes"] = pages
    res["mapped_bytes"] = info.get("mapped_bytes")
    res["image_bytes"] = dir_size(img)
    res["checkpoint_s"] = summary([c["seconds"] for c in ckpts])
    res["checkpoint_gbps"] = summary([pages / c["seconds"] / 1e9 for c in ckpts])
    # The target is held only until everything is captured; the image is
    # written (and fsynced) while it runs on.
    res["checkpoint_held_ms"] = summary([c["thaw_ms"]["held"] for c in ckpts])
    res["checkpoint_held_gbps"] = summary([pages / (c["thaw_ms"]["held"] / 1e3) / 1e9 for c in ckpts])
    res["nocow_checkpoint_s"] = summary([c["seconds"] for c in nocow])
    res["nocow_checkpoint_held_ms"] = summary([c["thaw_ms"]["held"] for c in nocow])
    res["nocow_checkpoint_held_gbps"] = summary([pages / (c["thaw_ms"]["held"] / 1e3) / 1e9 for c in nocow])
    res["nocow_checkpoint_thaw_lines"] = [c["thaw_line"] for c in nocow]
    res["checkpoint_thaw_lines"] = [c["thaw_line"] for c in ckpts]
    res["checkpoint_thaw_ms_median"] = {
        k: statistics.median([c["thaw_ms"][k] for c in ckpts if k in c["thaw_ms"]])
        for k in ckpts[0]["thaw_ms"]}

    per = {m: {"running_wall_ms": [], "stats": [], "verify_s": [], "all_read_ms": []} for m in MODES}
    for i in range(repeats):
        for mode in MODES:
            d = per[mode]
            c = b.restore(img, f"big_heap restore {i + 1} ({mode})", mode)
            st, t_st = b.stats_line(c)
            d["running_wall_ms"].append((t_st - c.t_spawn) * 1e3)
            d["stats"].append(st)
            t0 = time.monotonic()
            c.send("go\n")
            out = []
            while not out or out[-1] != "DONE":
                out.append(c.line("out", LINE_TIMEOUT)[0])
            t1 = time.monotonic()
            d["verify_s"].append(t1 - t0)
            # restored and every byte of the heap read back and checked
            d["all_read_ms"].append((t1 - c.t_spawn) * 1e3)
            rc = c.close_and_wait()
            c.kill()
            if out != expected or rc != 0:
                raise BenchError(f"big_heap restore {i + 1} ({mode}): exit {rc}, output {out}, "
                                 f"original {expected}")
    shutil.rmtree(img, ignore_errors=True)
    res["output"] = expected
    for mode in MODES:
        d, pre = per[mode], ("" if mode == "lazy" else "eager_")
        res[pre + "restore_running_wall_ms"] = summary(d["running_wall_ms"])
        res[pre + "restore_running_thaw_ms"] = summary([s["total_ms"] for s in d["stats"]])
        res[pre + "restore_gbps_wall"] = summary([pages / (ms / 1e3) / 1e9 for ms in d["running_wall_ms"]])
        res[pre + "restore_gbps_thaw"] = summary([pages / (s["total_ms"] / 1e3) / 1e9 for s in d["stats"]])
        res[pre + "restore_breakdown_median_ms"] = median_parts(d["stats"])
        res[pre + "restore_stats_lines"] = [s["line"] for s in d["stats"]]
        res[pre + "verify_after_restore_s"] = summary(d["verify_s"])
        res[pre + "restore_and_read_all_ms"] = summary(d["all_read_ms"])
        res[pre + "restore_and_read_all_gbps"] = summary([pages / (ms / 1e3) / 1e9 for ms in d["all_read_ms"]])
    return res


# ------------------------------------------------------------ machine info

def meminfo():
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = int(v.split()[0])
    return out


def cmd_out(argv):
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def machine_info(args):
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    thaw = Path(args.thaw)
    if args.thaw_version:
        version = args.thaw_version
    elif REPO in thaw.resolve().parents:
        head = cmd_out(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
        dirty = cmd_out(["git", "-C", str(REPO), "status", "--porcelain", "--", "src"])
        version = f"{head}{' with uncommitted src/ changes' if dirty else ''}"
    else:
        version = "unknown (pass --thaw-version)"
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "mem_gib": round(meminfo()["MemTotal"] / 2**20, 1),
        "loadavg_start": os.getloadavg(),
        "thaw": str(thaw),
        "thaw_sha256": hashlib.sha256(thaw.read_bytes()).hexdigest()[:16] if thaw.exists() else None,
        "thaw_version": version,
        "python": cmd_out([PYTHON, "-c", "import sys, torch; print(sys.version.split()[0], "
                                         "'torch', torch.__version__)"]),
        "node": cmd_out([args.node, "--version"]),
        "workdir": str(args.workdir),
        "workdir_fs": cmd_out(["df", "--output=fstype,source", str(args.workdir)]).splitlines()[-1:],
        "drop_caches": args.drop_caches,
    }


def probe_machine(workdir, mib=512):
    """Rough bounds for the GB/s figures, each by one thread: writing mib MiB
    to the work directory with fdatasync, reading it back from the page
    cache, and copying mib MiB (memmove) into fresh private anonymous memory
    with 4 KiB pages, into fresh memory with MADV_HUGEPAGE, and into memory
    that is already populated. Returns GB/s figures."""
    import ctypes
    import mmap
    n = mib * 2**20
    data = bytearray(os.urandom(1 << 20) * mib)
    path = Path(workdir) / "probe.bin"
    res = {"mib": mib}
    try:
        t0 = time.monotonic()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            off = 0
            while off < n:
                off += os.write(fd, view[off:off + (16 << 20)])
            os.fdatasync(fd)
        finally:
            os.close(fd)
        res["disk_write_fdatasync_gbps"] = n / (time.monotonic() - t0) / 1e9
        t0 = time.monotonic()
        with open(path, "rb", buffering=0) as f:
            buf = bytearray(16 << 20)
            while f.readinto(buf):
                pass
        res["page_cache_read_gbps"] = n / (time.monotonic() - t0) / 1e9
    finally:
        path.unlink(missing_ok=True)
    src = (ctypes.c_char * n).from_buffer(data)
    for key, huge in (("memcpy_fresh_4k_gbps", False), ("memcpy_fresh_thp_gbps", True)):
        m = mmap.mmap(-1, n, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        if huge:
            m.madvise(mmap.MADV_HUGEPAGE)
        dst = (ctypes.c_char * n).from_buffer(m)
        t0 = time.monotonic()
        ctypes.memmove(dst, src, n)
        res[key] = n / (time.monotonic() - t0) / 1e9
        if not huge:
            t0 = time.monotonic()
            ctypes.memmove(dst, src, n)
            res["memcpy_populated_gbps"] = n / (time.monotonic() - t0) / 1e9
        del dst
        m.close()
    del src
    return res


# ----------------------------------------------------------------- report

def fmt_ms(x):
    return "-" if x is None else (f"{x:.1f} ms" if x < 10000 else f"{x / 1e3:.1f} s")


def fmt_s(x):
    return "-" if x is None else (f"{x * 1e3:.0f} ms" if x < 1 else f"{x:.2f} s")


def fmt_mib(x):
    return "-" if x is None else f"{x / 2**20:.1f} MiB"


def build_rows(r):
    """(workload, metric, min, median, target, verdict) rows and the ratios."""
    rows, ratios = [], []

    def mm(s, f):
        return (f(s["min"]), f(s["median"])) if s else ("-", "-")

    t = r.get("torch")
    if isinstance(t, dict) and "error" not in t:
        rows.append(("torch", "cold start (spawn -> READY)", *mm(t["cold_start_s"], fmt_s), "", ""))
        rows.append(("torch", "checkpoint (thaw checkpoint, wall)", *mm(t["checkpoint_s"], fmt_s), "", ""))
        rows.append(("torch", "image size (page data)", "",
                     f"{fmt_mib(t['image_bytes'])} ({fmt_mib(t['pages_bytes'])})", "", ""))
        med = t["restore_to_answer_ms"]["median"]
        for pre, label in LABELS:
            if pre + "restore_to_answer_ms" not in t:
                continue
            m_ = t[pre + "restore_to_answer_ms"]["median"]
            rows.append(("torch", f"restore until first answer ({label})",
                         *mm(t[pre + "restore_to_answer_ms"], fmt_ms),
                         f"<= {TARGET_TORCH_RESTORE_MS:.0f} ms",
                         "met" if m_ <= TARGET_TORCH_RESTORE_MS else "NOT met"))
            rows.append(("torch", f"  thaw --stats: running after ({label})",
                         *mm(t[pre + "restore_running_thaw_ms"], fmt_ms),
                         f"<= {TARGET_TORCH_RESTORE_MS:.0f} ms",
                         "met" if t[pre + "restore_running_thaw_ms"]["median"] <= TARGET_TORCH_RESTORE_MS
                         else "NOT met"))
        rows.append(("torch", "  one request to the original", *mm(t["request_latency_original_ms"], fmt_ms),
                     "", ""))
        for pre, label in LABELS:
            if pre + "ratio_cold_over_restore_median" not in t:
                continue
            ratio = t[pre + "ratio_cold_over_restore_median"]
            rows.append(("torch", f"cold start / restore to answer ({label})",
                         f"{t[pre + 'ratio_cold_over_restore_min']:.1f}x",
                         f"{ratio:.1f}x", f">= {TARGET_TORCH_SPEEDUP:.0f}x",
                         "met" if ratio >= TARGET_TORCH_SPEEDUP else "NOT met"))
            ratios.append(f"torch ({label}): cold start {fmt_s(t['cold_start_s']['median'])} / restore "
                          f"{fmt_ms(t[pre + 'restore_to_answer_ms']['median'])} = {ratio:.1f}x (medians; mins "
                          f"give {t[pre + 'ratio_cold_over_restore_min']:.1f}x)")
    h = r.get("heap")
    if isinstance(h, dict) and "error" not in h:
        w = f"heap {h['mib']} MiB"
        rows.append((w, "fill heap (spawn -> READY)", "", fmt_s(h["fill_s"]), "", ""))
        rows.append((w, "checkpoint (thaw checkpoint, wall)", *mm(h["checkpoint_s"], fmt_s), "", ""))
        g = h["checkpoint_gbps"]
        rows.append((w, "checkpoint GB/s (page data / wall)", f"{g['min']:.2f}", f"{g['median']:.2f}",
                     f">= {TARGET_CHECKPOINT_GBPS:.0f} GB/s",
                     "met" if g["median"] >= TARGET_CHECKPOINT_GBPS else "NOT met"))
        rows.append((w, "  process held during checkpoint", *mm(h["checkpoint_held_ms"], fmt_ms), "", ""))
        g = h["checkpoint_held_gbps"]
        rows.append((w, "  checkpoint GB/s (page data / held)", f"{g['min']:.2f}", f"{g['median']:.2f}",
                     f">= {TARGET_CHECKPOINT_GBPS:.0f} GB/s",
                     "met" if g["median"] >= TARGET_CHECKPOINT_GBPS else "NOT met"))
        if "nocow_checkpoint_s" in h:
            rows.append((w, "checkpoint --no-cow (wall)", *mm(h["nocow_checkpoint_s"], fmt_s), "", ""))
            rows.append((w, "  process held, --no-cow", *mm(h["nocow_checkpoint_held_ms"], fmt_ms), "", ""))
            g = h["nocow_checkpoint_held_gbps"]
            rows.append((w, "  GB/s (page data / held), --no-cow", f"{g['min']:.2f}", f"{g['median']:.2f}",
                         "", ""))
        rows.append((w, "image size (page data)", "",
                     f"{fmt_mib(h['image_bytes'])} ({fmt_mib(h['pages_bytes'])})", "", ""))
        for pre, label in (("", "lazy"), ("eager_", "eager")):
            if pre + "restore_running_wall_ms" not in h:
                continue
            rows.append((w, f"restore until running ({label}, wall)",
                         *mm(h[pre + "restore_running_wall_ms"], fmt_ms), "", ""))
            rows.append((w, f"  thaw --stats: running after ({label})",
                         *mm(h[pre + "restore_running_thaw_ms"], fmt_ms), "", ""))
            g = h[pre + "restore_gbps_wall"]
            # a higher GB/s is better: "min" column holds the slowest run's rate
            rows.append((w, f"restore GB/s ({label}: page data / until running)", f"{g['min']:.2f}",
                         f"{g['median']:.2f}", f">= {TARGET_RESTORE_GBPS:.0f} GB/s",
                         "met" if g["median"] >= TARGET_RESTORE_GBPS else "NOT met"))
            if pre + "restore_and_read_all_ms" in h:
                rows.append((w, f"restore + read all of it back ({label})",
                             *mm(h[pre + "restore_and_read_all_ms"], fmt_ms), "", ""))
                g = h[pre + "restore_and_read_all_gbps"]
                rows.append((w, f"  GB/s (page data / restore + read all, {label})", f"{g['min']:.2f}",
                             f"{g['median']:.2f}", f">= {TARGET_RESTORE_GBPS:.0f} GB/s",
                             "met" if g["median"] >= TARGET_RESTORE_GBPS else "NOT met"))
    for key in ("node", "pool"):  # the other request workers (pool: a process tree)
        n = r.get(key)
        if not isinstance(n, dict) or "error" in n:
            continue
        rows.append((key, "cold start (spawn -> READY)", *mm(n["cold_start_s"], fmt_s), "", ""))
        rows.append((key, "checkpoint (thaw checkpoint, wall)", *mm(n["checkpoint_s"], fmt_s), "", ""))
        rows.append((key, "image size (page data)", "",
                     f"{fmt_mib(n['image_bytes'])} ({fmt_mib(n['pages_bytes'])})", "", ""))
        for pre, label in LABELS:
            if pre + "restore_to_answer_ms" not in n:
                continue
            rows.append((key, f"restore until first answer ({label})",
                         *mm(n[pre + "restore_to_answer_ms"], fmt_ms), "", ""))
            rows.append((key, f"  thaw --stats: running after ({label})",
                         *mm(n[pre + "restore_running_thaw_ms"], fmt_ms), "", ""))
        ratio = n["ratio_cold_over_restore_median"]
        rows.append((key, "cold start / restore", f"{n['ratio_cold_over_restore_min']:.1f}x",
                     f"{ratio:.1f}x", "", ""))
        ratios.append(f"{key}: cold start {fmt_s(n['cold_start_s']['median'])} / restore "
                      f"{fmt_ms(n['restore_to_answer_ms']['median'])} = {ratio:.1f}x (medians)")
    return rows, ratios


def print_report(r):
    m = r["machine"]
    print()
    print(f"thaw engine benchmark, {m['date']}: {m['cpu']} x{m['cpus']}, {m['mem_gib']} GiB, "
          f"kernel {m['kernel']}, thaw {m['thaw_version']}, "
          f"load {m['loadavg_start'][0]:.2f} at start / {m['loadavg_end'][0]:.2f} at end")
    pr = r.get("probe")
    if pr:
        print(f"machine probe ({pr['mib']} MiB, one thread): disk write+fdatasync "
              f"{pr['disk_write_fdatasync_gbps']:.2f} GB/s, page-cache read "
              f"{pr['page_cache_read_gbps']:.2f} GB/s; memcpy into fresh memory "
              f"{pr['memcpy_fresh_4k_gbps']:.2f} GB/s (4 KiB pages), "
              f"{pr['memcpy_fresh_thp_gbps']:.2f} GB/s (MADV_HUGEPAGE), into populated memory "
              f"{pr['memcpy_populated_gbps']:.2f} GB/s")
    rows, ratios = build_rows(r)
    head = ("workload", "metric", "min", "median", "target", "")
    widths = [max(len(str(x[i])) for x in rows + [head]) for i in range(6)]
    line = "  ".join("-" * w for w in widths)
    print(line)
    print("  ".join(f"{h:<{w}}" for h, w in zip(head, widths)).rstrip())
    print(line)
    for row in rows:
        cells = [f"{row[0]:<{widths[0]}}", f"{row[1]:<{widths[1]}}", f"{row[2]:>{widths[2]}}",
                 f"{row[3]:>{widths[3]}}", f"{row[4]:<{widths[4]}}", row[5]]
        print("  ".join(cells).rstrip())
    print(line)
    print("(GB/s rows: 'min' is the slowest run; heap restore rates are page data / time until running)")
    for k in ("torch", "heap", "node", "pool"):
        v = r.get(k)
        if isinstance(v, dict) and "template_error" in v:
            print(f"{k}: no template copies: {v['template_error']}")
        for pre, label in LABELS:
            if isinstance(v, dict) and pre + "restore_breakdown_median_ms" in v:
                parts = ", ".join(f"{a} {b:.1f}" for a, b in v[pre + "restore_breakdown_median_ms"].items())
                print(f"{k} restore breakdown, {label} (median ms, thaw --stats): {parts}")
        if isinstance(v, dict) and "error" in v:
            print(f"{k}: FAILED: {v['error']}")
    for s in ratios:
        print("ratio " + s)
    sys.stdout.flush()


# ------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--thaw", default=str(REPO / "build" / "thaw"), help="thaw binary")
    ap.add_argument("--thaw-version", help="what the thaw binary was built from, for the report "
                    "(default: git HEAD of this repository when --thaw is inside it)")
    ap.add_argument("--big-heap", default=str(REPO / "build" / "tests" / "zoo" / "big_heap"))
    ap.add_argument("--node", default="/usr/bin/node")
    ap.add_argument("--workdir", help="where images go (default: a new directory in /var/tmp)")
    ap.add_argument("--repeats", type=int, default=5, help="restores per workload (default 5)")
    ap.add_argument("--cold-repeats", type=int, default=5, help="cold starts of torch/node (default 5)")
    ap.add_argument("--checkpoint-repeats", type=int, default=3,
                    help="checkpoints per workload (default 3)")
    ap.add_argument("--heap-mib", type=int, default=2048, help="big_heap size in MiB (default 2048)")
    ap.add_argument("--only", default="torch,heap,node,pool",
                    help="comma-separated subset of torch,heap,node,pool")
    ap.add_argument("--drop-caches", action="store_true",
                    help="drop the page cache before every restore (cold-cache restores; whole machine)")
    ap.add_argument("--json", help="write all results (raw samples included) to this file")
    ap.add_argument("--no-probe", action="store_true",
                    help="skip the disk / page cache / memcpy probe")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()

    if not os.access(args.thaw, os.X_OK):
        sys.exit(f"bench: thaw binary {args.thaw} not found; run scripts/build.sh")
    if os.geteuid() != 0:
        print("bench: warning: not root; thaw needs root", file=sys.stderr)
    only = {w.strip() for w in args.only.split(",") if w.strip()}
    unknown = only - {"torch", "heap", "node", "pool"}
    if unknown:
        sys.exit(f"bench: unknown workload(s) {', '.join(sorted(unknown))}")
    args.workdir = Path(args.workdir or tempfile.mkdtemp(prefix="thaw-bench-", dir="/var/tmp"))
    args.workdir.mkdir(parents=True, exist_ok=True)

    b = Bench(args)
    results = {"machine": machine_info(args), "targets": {
        "torch_restore_ms": TARGET_TORCH_RESTORE_MS, "torch_speedup": TARGET_TORCH_SPEEDUP,
        "restore_gbps": TARGET_RESTORE_GBPS, "checkpoint_gbps": TARGET_CHECKPOINT_GBPS}}
    ok = True
    try:
        if not args.no_probe:
            print("bench: machine probe ...", file=sys.stderr, flush=True)
            results["probe"] = probe_machine(args.workdir)
        for name in ("torch", "heap", "node", "pool"):
            if name not in only:
                continue
            print(f"bench: {name} ...", file=sys.stderr, flush=True)
            t0 = time.monotonic()
            try:
                if name == "torch":
                    results[name] = bench_request_worker(
                        b, "torch", [PYTHON, TORCH_WORKER], "x",
                        lambda a, c: a == c, args.cold_repeats, args.repeats,
                        args.checkpoint_repeats)
                elif name == "pool":
                    results[name] = bench_request_worker(
                        b, "pool", [PYTHON, POOL_WORKER], "x",
                        lambda a, c: a == c, args.cold_repeats, args.repeats,
                        args.checkpoint_repeats)
                elif name == "heap":
                    results[name] = bench_heap(b, args.heap_mib, args.repeats,
                                               args.checkpoint_repeats)
                else:
                    results[name] = bench_request_worker(
                        b, "node", [args.node, NODE_WORKER], "ping",
                        lambda a, c: a == c and a.startswith("pong"), args.cold_repeats,
                        args.repeats, args.checkpoint_repeats)
            except BenchError as e:
                ok = False
                results[name] = {"error": str(e)}
                print(f"bench: {name} FAILED: {e}", file=sys.stderr)
            finally:
                b.cleanup()
            print(f"bench: {name} done in {time.monotonic() - t0:.1f} s", file=sys.stderr, flush=True)
    finally:
        b.cleanup()
        if args.keep:
            print(f"bench: work directory kept: {args.workdir}", file=sys.stderr)
        else:
            shutil.rmtree(args.workdir, ignore_errors=True)
    results["machine"]["loadavg_end"] = os.getloadavg()
    print_report(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
            f.write("\n")
        print(f"bench: results written to {args.json}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
