"""Steps of bench/gpu_check.sh, one per invocation (the shell script runs
each under `timeout`): cold, cpu-snapshot, gpu-snapshot, runtime, summary.
Each step writes $RESULTS/<step>.json; summary prints the table.

Environment (set by gpu_check.sh): THAW (binary), PY (python with torch),
RESULTS (directory), WORK (scratch), GIB (model size), DEVICE (cuda, or cpu
in the dry run), CPU_ONLY=1 in the dry run.
"""
import json
import os
import re
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
THAW = os.environ["THAW"]
PY = os.environ.get("PY", "python3")
RESULTS = Path(os.environ["RESULTS"])
WORK = Path(os.environ["WORK"])
GIB = os.environ.get("GIB", "4")
DEVICE = os.environ.get("DEVICE", "cuda")
CPU_ONLY = os.environ.get("CPU_ONLY") == "1"
STEP_TIMEOUT = float(os.environ.get("STEP_TIMEOUT", "150"))
CHILDREN = []


def log(*a):
    print("[gpu_check]", *a, flush=True)


def cleanup(*_):
    for p in CHILDREN:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    if _:
        sys.exit(1)


signal.signal(signal.SIGTERM, cleanup)


def spawn(argv, **kw):
    p = subprocess.Popen([str(a) for a in argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=kw.pop("stderr", subprocess.PIPE), start_new_session=True, close_fds=True, **kw)
    CHILDREN.append(p)
    return p


def read_json_line(p, phase, timeout):
    """The next JSON line of p's stdout with this phase (other lines logged)."""
    deadline = time.monotonic() + timeout
    buf = b""
    fd = p.stdout.fileno()
    while True:
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            text = line.decode(errors="replace")
            try:
                j = json.loads(text)
                if j.get("phase") == phase:
                    return j
            except ValueError:
                pass
            log("  |", text)
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no {phase!r} line within {timeout:.0f} s")
        r, _, _ = select.select([fd], [], [], left)
        if r:
            chunk = os.read(fd, 65536)
            if not chunk:
                err = p.stderr.read().decode(errors="replace") if p.stderr else ""
                raise RuntimeError(f"process ended before its {phase!r} line (rc={p.wait()}):\n{err[-3000:]}")
            buf += chunk


def thaw(*args, timeout=STEP_TIMEOUT, env=None):
    t = time.monotonic()
    cp = subprocess.run([THAW, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env)
    dt = time.monotonic() - t
    log(f"thaw {' '.join(map(str, args))}: rc={cp.returncode} in {dt:.2f} s")
    for line in (cp.stderr + cp.stdout).strip().splitlines()[-15:]:
        log("  |", line)
    return cp, dt


DTYPE = "float32" if CPU_ONLY else "float16"


class Size:
    """A model size with its weights file (built from the seed by its first
    cold start, loaded by the rest) and its cold start's output (which every
    path must reproduce)."""

    def __init__(self, gib, tag):
        self.gib, self.weights, self.ref = gib, WORK / f"weights{tag}.pt", WORK / f"cold-output{tag}.pt"


MODEL = Size(GIB, "")
# A second, small GPU snapshot separates the fixed cost of the driver's
# restore (contexts, channels) from its rate per byte.
SMALL = Size(os.environ.get("GIB_SMALL", "0.0625" if CPU_ONLY else "0.5"), "-small")


def model(device, *extra, env=None, size=MODEL):
    path = WORK / f"model-{device}-{time.monotonic_ns()}.err"
    p = spawn([PY, HERE / "gpu_model.py", "--device", device, "--dtype", DTYPE, "--gib", size.gib,
               "--weights", size.weights, *extra], stderr=open(path, "ab"), env=env)
    p.err_path = path  # a restored copy of it writes its stderr there too
    return p


def restore_and_go(img, go, *flags, size=MODEL):
    t = time.monotonic()
    r = spawn([THAW, "restore", img, "--stats", *flags])
    r.stdin.write(go.rstrip(b"\n") + f" ref={size.ref}\n".encode())
    r.stdin.flush()
    res = read_json_line(r, "result", STEP_TIMEOUT)
    start_s = time.monotonic() - t
    r.wait(timeout=30)
    return res, start_s, r.stderr.read().decode(errors="replace")


def save(step, result):
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{step}.json").write_text(json.dumps(result, indent=2))
    log(step, json.dumps(result))


def cold_start(*extra, size=MODEL):
    t = time.monotonic()
    p = model(DEVICE, *extra, size=size)
    ready = read_json_line(p, "ready", STEP_TIMEOUT)
    cold = time.monotonic() - t
    p.stdin.write(b"go\n")
    p.stdin.flush()
    res = read_json_line(p, "result", 60)
    return p, {"ok": res["equal"], "cold_start_s": cold, "ready": ready, "result": res}


def step_cold():
    # First with the weights built from the seed (and saved), then the cold
    # start every later comparison uses: the weights read from a file that
    # is in the page cache, the best case for a real cold start.
    _, built = cold_start()
    p, out = cold_start("--save-ref", MODEL.ref, "--pcie")
    out["built"] = built
    out["ok"] = out["ok"] and built["ok"] and out["ready"]["digest"] == built["ready"]["digest"]
    if not CPU_ONLY:
        try:
            out["pcie"] = read_json_line(p, "pcie", 60)
        except (TimeoutError, RuntimeError) as e:
            out["pcie"] = {"error": str(e)}
    save("cold", out)


def thread_names(pid):
    names = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                n = f.read().strip()
            names[n] = names.get(n, 0) + 1
        except OSError:
            pass
    return names


def restore_times(err):
    """What a `thaw restore --stats` log says about where its time went."""
    m = re.search(r"restore: .* after ([0-9.]+) ms", err)
    mem = re.search(r"memory ([0-9.]+)[,)]", err)
    g = re.search(r"GPU state restored and unlocked in ([0-9.]+) ms", err)
    copy = re.search(r"cuCheckpointProcessRestore ([0-9.]+) ms", err)
    return {"restore_ready_ms": float(m.group(1)) if m else None,
            "memory_ms": float(mem.group(1)) if mem else None,
            "gpu_restore_ms": float(g.group(1)) if g else None,
            "gpu_copy_ms": float(copy.group(1)) if copy else None}


def snapshot_path(step, device, go, *extra, env=None, tries=None, size=MODEL, repeats=()):
    p = model(device, *extra, env=env, size=size)
    ready = read_json_line(p, "ready", STEP_TIMEOUT)
    ready["threads"] = thread_names(p.pid)
    img = WORK / f"img-{step}"
    cp, ckpt_s = thaw("checkpoint", "--pid", p.pid, "--out", img, "--kill")
    if cp.returncode != 0:
        # What the target holds, for the next attempt to know.
        diag = {}
        try:
            fd_dir = f"/proc/{p.pid}/fd"
            diag["fds"] = {fd: os.readlink(f"{fd_dir}/{fd}") for fd in os.listdir(fd_dir)}
            with open(f"/proc/{p.pid}/maps") as f:
                diag["maps"] = [ln.strip() for ln in f if "/dev/" in ln or "memfd" in ln or "SYSV" in ln][:40]
        except OSError as e:
            diag["error"] = str(e)
        # A failed checkpoint must leave the target as it was: it still answers.
        after = {}
        try:
            p.stdin.write(b"go\n")
            p.stdin.flush()
            after = read_json_line(p, "result", 60)
        except Exception as e:  # noqa: BLE001 - recorded
            after = {"error": f"{type(e).__name__}: {e}"}
        cleanup()
        save(step, {"ok": False, "error": cp.stderr.strip()[-2000:], "ready": ready,
                    "target_after_failed_checkpoint": after, "target": diag})
        return
    p.wait(timeout=30)
    info = json.loads(thaw("inspect", "--json", img)[0].stdout)
    image_bytes = sum(f.stat().st_size for f in img.rglob("*") if f.is_file())
    tries = tries or [()]
    failures = []
    for flags in tries:
        try:
            res, start_s, err = restore_and_go(img, go, *flags, size=size)
            break
        except Exception as e:  # noqa: BLE001 - recorded; the next way is tried
            tail = p.err_path.read_text(errors="replace")[-2500:] if p.err_path.exists() else ""
            failures.append({"flags": list(flags), "error": f"{type(e).__name__}: {e}"[-1500:], "stderr": tail})
            log(f"restore {' '.join(flags) or '(lazy)'} failed; the process's stderr ends with:\n{tail}")
    else:
        save(step, {"ok": False, "error": failures[-1]["error"], "failures": failures, "ready": ready,
                    "checkpoint_log": (cp.stderr + cp.stdout).strip()[-1200:]})
        return
    for line in err.strip().splitlines()[-6:]:
        log("  |", line)
    gpu = info.get("gpu") or {}
    out = {"ready": ready, "result": res, "checkpoint_s": ckpt_s, "restore_to_result_s": start_s,
           "image_bytes": image_bytes, "pages_bytes": info.get("pages_bytes"), "gpu": gpu or None,
           **restore_times(err), "gib": size.gib,
           "checkpoint_log": (cp.stderr + cp.stdout).strip()[-1200:], "restore_log": err.strip()[-1500:],
           "restore_flags": list(flags), "failures": failures}
    if out["gpu_copy_ms"] and gpu.get("memory_bytes"):
        out["gpu_restore_GBps"] = gpu["memory_bytes"] / 1e9 / max(out["gpu_copy_ms"], 0.5) * 1000
    # The same image again, once per entry of `repeats` (extra restore
    # flags): is the first restore's time what every restore pays (page
    # cache warm, driver loaded once before)? And with --gpu-lazy, does the
    # driver's restore overlapping the memory's make the start sooner?
    out["repeats"] = []
    for more in repeats:
        rflags = [*flags, *more]
        try:
            res2, start2, err2 = restore_and_go(img, go, *rflags, size=size)
            lazy = re.search(r"restore: lazy memory .*", err2)
            out["repeats"].append({"flags": rflags, "restore_to_result_s": start2, "ok": bool(res2.get("ref_close")),
                                   **restore_times(err2), "lazy": lazy.group(0) if lazy else None})
        except Exception as e:  # noqa: BLE001 - recorded; the first restore stands
            out["repeats"].append({"flags": rflags, "ok": False, "error": f"{type(e).__name__}: {e}"[-500:]})
    # Its own output from before the checkpoint, bit for bit where it stayed
    # on one device; the cold start's within a tolerance in every case.
    own = res.get("equal", True) if device == DEVICE else True
    out["ok"] = bool(own and res.get("ref_close"))
    save(step, out)


def all_gpus():
    n = sorted(int(d[6:]) for d in os.listdir("/dev") if d.startswith("nvidia") and d[6:].isdigit())
    return ",".join(map(str, n)) or "0"


def step_cpu_snapshot():
    # The model on the CPU in the snapshot, the GPU hidden while it loads
    # (CUDA_VISIBLE_DEVICES=, as the runtime's CPU snapshots run); after the
    # restore the GPU is made visible, then .to(DEVICE).
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    go = f"go move={DEVICE}" + ("" if CPU_ONLY else f" visible={all_gpus()}")
    snapshot_path("cpu-snapshot", "cpu", (go + "\n").encode(), "--no-forward", env=env,
                  tries=[(), ("--eager",)])


def step_cpu_snapshot_visible():
    # Diagnosis, not a path users take: the same with the GPU visible while
    # libcuda loads. On the H100 (driver 580, torch 2.11) the restored process
    # crashed in libcuda at its first CUDA call (twice) or hung (once).
    snapshot_path("cpu-snapshot-visible", "cpu", f"go move={DEVICE}\n".encode(), "--no-forward",
                  tries=[(), ("--eager",)])


# Restored again eagerly (warm), then twice with the memory lazy and the
# driver started before it comes in (the second with the working set the
# first recorded).
GPU_REPEATS = [(), ("--gpu-lazy",), ("--gpu-lazy",)]


def step_gpu_snapshot():
    snapshot_path("gpu-snapshot", DEVICE, b"go\n", repeats=GPU_REPEATS)


def step_gpu_snapshot_small():
    _, built = cold_start("--save-ref", SMALL.ref, size=SMALL)
    if not built["ok"]:
        save("gpu-snapshot-small", {"ok": False, "error": "the small model's cold start failed", "cold": built})
        return
    snapshot_path("gpu-snapshot-small", DEVICE, b"go\n", size=SMALL, repeats=GPU_REPEATS[:2])


APP = '''
import os, time
import thaw
app = thaw.App("{name}")

@app.cls(gpu="H100", enable_memory_snapshot=True, experimental_options={{"enable_gpu_snapshot": {gpu_snap}}})
class Model:
    @thaw.enter(snap=True)
    def load(self):
        import torch
        torch.manual_seed(0)
        self.model = torch.nn.Sequential(*[torch.nn.Linear(4096, 4096) for _ in range(8)]).eval()
        self.x = torch.randn(8, 4096)
        if {touch_cuda} and torch.cuda.is_available():
            self.model, self.x = self.model.to("cuda"), self.x.to("cuda")

    @thaw.enter(snap=False)
    def setup(self):
        import torch
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model, self.x = self.model.to(self.device), self.x.to(self.device)

    @thaw.method()
    def predict(self):
        import torch
        with torch.no_grad():
            return {{"sum": float(self.model(self.x).float().sum()), "device": self.device}}
'''


def step_runtime():
    home = WORK / "thaw-home"
    env = dict(os.environ, THAW_HOME=str(home), THAW_PYTHON=PY)
    out = {}
    # A GPU snapshot; a CPU snapshot whose snapshot phase leaves CUDA alone
    # (the GPU is attached after the restore); one that touches CUDA there
    # (the warning must show, and the restored function runs on the CPU).
    apps = (("gpucheck-gpusnap", True, True), ("gpucheck-cpusnap", False, False),
            ("gpucheck-cpusnap-touch", False, True))
    for name, gpu_snap, touch in apps:
        f = WORK / f"{name}.py"
        f.write_text(textwrap.dedent(APP.format(name=name, gpu_snap=gpu_snap, touch_cuda=touch)))
        cp, dep_s = thaw("deploy", f, env=env)
        calls = []
        # The GPU snapshot is also restored with THAW_GPU_LAZY=1 (the restore
        # shells' --gpu-lazy), after the two default calls.
        runs = [env, env] + ([dict(env, THAW_GPU_LAZY="1")] * 2 if gpu_snap else [])
        for call_env in runs:
            c, call_s = thaw("call", name, "Model", "--method", "predict", env=call_env)
            calls.append({"rc": c.returncode, "s": call_s, "out": c.stdout.strip()[-300:],
                          "log": c.stderr.strip()[-600:], "gpu_lazy": call_env is not env})
        snaps, _ = thaw("snapshot", "ls", env=env)
        out[name] = {"deploy_rc": cp.returncode, "deploy_s": dep_s, "calls": calls,
                     "cuda_warning": "CUDA was initialized during the snapshot phase" in cp.stdout + cp.stderr,
                     "gpu_snapshot_line": "GPU snapshot:" in cp.stdout + cp.stderr,
                     "no_gpu_warning": "has no NVIDIA GPU" in cp.stdout + cp.stderr,
                     "deploy_log": (cp.stdout + cp.stderr)[-1500:], "snapshots": snaps.stdout[-800:]}
    g, c, w = out["gpucheck-gpusnap"], out["gpucheck-cpusnap"], out["gpucheck-cpusnap-touch"]

    def devices(app):
        return [json.loads(x["out"].splitlines()[-1]).get("device") if x["rc"] == 0 and x["out"] else None
                for x in app["calls"]]
    for app in (g, c, w):
        app["devices"] = devices(app)
    # The THAW_GPU_LAZY calls are a measurement, not (yet) the path users take.
    ok_calls = all(x["rc"] == 0 for v in out.values() for x in v["calls"] if not x["gpu_lazy"])
    ok_deploys = all(v["deploy_rc"] == 0 for v in out.values())
    if CPU_ONLY:
        ok_paths = g["no_gpu_warning"]
    else:
        ok_paths = (g["gpu_snapshot_line"] and w["cuda_warning"] and not c["cuda_warning"]
                    and g["devices"][:2] == ["cuda", "cuda"] and c["devices"] == ["cuda", "cuda"])
    out["ok"] = ok_calls and ok_deploys and ok_paths
    save("runtime", out)


def fmt(v, unit="", nd=2):
    return "-" if v is None else f"{v:.{nd}f}{unit}"


def fixed_and_rate(big, small):
    """cuCheckpointProcessRestore's time as a fixed part plus bytes / rate,
    from the two sizes (each the faster of its restores)."""
    def point(x):
        # Eager restores only: a lazy one's driver time includes waiting for memory.
        reps = [rep.get("gpu_copy_ms") for rep in x.get("repeats") or [] if not rep.get("flags")]
        times = [t for t in [x.get("gpu_copy_ms")] + reps if t]
        b = (x.get("gpu") or {}).get("memory_bytes")
        return (b, min(times)) if times and b else None
    p, q = point(big), point(small)
    if not p or not q or p[0] <= q[0] or p[1] <= q[1]:
        print("driver restore, fixed part and rate: not measured (needs both GPU snapshots)")
        return
    rate = (p[0] - q[0]) / 1e9 / ((p[1] - q[1]) / 1000)
    fixed = q[1] - q[0] / 1e9 / rate * 1000
    print(f"driver restore: {q[0] / 2**30:.2f} GiB in {q[1]:.0f} ms, {p[0] / 2**30:.2f} GiB in {p[1]:.0f} ms: "
          f"fixed part ~{fixed:.0f} ms, then {rate:.1f} GB/s")


def step_summary():
    r = {}
    for name in ("cold", "cpu-snapshot", "gpu-snapshot", "gpu-snapshot-small", "runtime", "cpu-snapshot-visible"):
        f = RESULTS / f"{name}.json"
        r[name] = json.loads(f.read_text()) if f.exists() else {"ok": False, "error": "step did not finish"}
    cold = r["cold"].get("cold_start_s")
    print()
    print(f"GPU check summary (device={DEVICE}, model {GIB} GiB{', DRY RUN on CPU' if CPU_ONLY else ''})")
    print(f"{'path':<20} {'ok':<5} {'start->result s':>16} {'speedup':>8} {'checkpoint s':>13} "
          f"{'image GiB':>10} {'GPU GiB':>8} {'GPU restore GB/s':>17}")
    for name in ("cold", "cpu-snapshot", "gpu-snapshot", "gpu-snapshot-small", "cpu-snapshot-visible"):
        x = r[name]
        if name == "cold" and x.get("built"):
            b = x["built"]
            print(f"{'cold (built)':<20} {str(b.get('ok')):<5} {fmt(b['cold_start_s'] + b['result']['t_after_go']):>16}"
                  f"   (weights made from the seed: {fmt(b['ready']['t_build'], ' s', 1)}; not the baseline)")
        start = x.get("cold_start_s") if name == "cold" else x.get("restore_to_result_s")
        if name == "cold" and start is not None:
            start += x["result"]["t_after_go"]
        # The small model has no cold start of the same size to compare with.
        sp = (cold + r["cold"]["result"]["t_after_go"]) / start if cold and start and name != "gpu-snapshot-small" else None
        gpu = (x.get("gpu") or {}).get("memory_bytes")
        print(f"{name:<20} {str(x.get('ok')):<5} {fmt(start):>16} {fmt(sp, 'x', 1):>8} "
              f"{fmt(x.get('checkpoint_s')):>13} {fmt((x.get('image_bytes') or 0) / 2**30 or None):>10} "
              f"{fmt(gpu / 2**30 if gpu else None):>8} {fmt(x.get('gpu_restore_GBps'), '', 1):>17}")
        if x.get("error"):
            print("   error:", x["error"].strip().splitlines()[-1][:300])
        for f in x.get("failures") or []:
            print(f"   restore {' '.join(f['flags']) or '(lazy)'} failed: {f['error'].strip().splitlines()[0][:200]}")
            for line in f["stderr"].strip().splitlines()[-10:]:
                print(f"     | {line[:200]}")
        for k, rep in enumerate(x.get("repeats") or []):
            t = rep.get("restore_to_result_s")
            rsp = (cold + r["cold"]["result"]["t_after_go"]) / t if cold and t and name != "gpu-snapshot-small" else None
            print(f"   restored again ({k + 2}, {' '.join(rep.get('flags') or []) or 'no flags'}): ok {rep.get('ok')}, "
                  f"start->result {fmt(t, ' s')} {fmt(rsp, 'x', 1)}, "
                  f"running after {fmt(rep.get('restore_ready_ms'), ' ms', 0)} (memory {fmt(rep.get('memory_ms'), ' ms', 0)}, "
                  f"cuCheckpointProcessRestore {fmt(rep.get('gpu_copy_ms'), ' ms', 0)})" + (f" {rep['error']}" if rep.get("error") else ""))
            if rep.get("lazy"):
                print(f"     {rep['lazy'][:300]}")
        if "target_after_failed_checkpoint" in x:
            print("   target after the failed checkpoint:", json.dumps(x["target_after_failed_checkpoint"])[:300])
    pc = r["cold"].get("pcie") or {}
    if pc:
        print(f"host-to-device copy of 1 GiB in the cold process: pageable {fmt(pc.get('h2d_pageable_GBps'), ' GB/s', 1)}, "
              f"pinned {fmt(pc.get('h2d_pinned_GBps'), ' GB/s', 1)}")
    fixed_and_rate(r["gpu-snapshot"], r["gpu-snapshot-small"])
    for name in ("cpu-snapshot", "gpu-snapshot", "gpu-snapshot-small"):
        for key in ("checkpoint_log", "restore_log"):
            for line in (r[name].get(key) or "").splitlines():
                if "GPU state" in line or " running as pid " in line or "checkpoint: pid" in line:
                    print(f"  {name}: {line.strip()[:400]}")
    rt = r["runtime"]
    print(f"{'runtime':<20} {str(rt.get('ok')):<5}")
    for name in ("gpucheck-gpusnap", "gpucheck-cpusnap", "gpucheck-cpusnap-touch"):
        a = rt.get(name) or {}
        calls = a.get("calls", [])
        restored = [re.search(r"Restored in ([0-9]+) ms", c.get("log", "")) for c in calls]
        print(f"  {name:<24} deploy rc {a.get('deploy_rc')} in {fmt(a.get('deploy_s'), ' s', 1)}; calls rc "
              f"{[c['rc'] for c in calls]} on {a.get('devices')}; restored in "
              f"{[int(m.group(1)) if m else None for m in restored]} ms"
              f"{' (the last two with THAW_GPU_LAZY=1)' if len(calls) > 2 else ''}; CUDA warning {a.get('cuda_warning')}")
    print("targets: GPU-snapshot start >= 10x faster than cold; GPU restore >= 20 GB/s (PCIe ~55 GB/s)")
    print("(cpu-snapshot-visible is a diagnosis: the GPU visible while libcuda loads; not part of the verdict)")
    return all(r[n].get("ok") for n in r if n != "cpu-snapshot-visible")


if __name__ == "__main__":
    step = sys.argv[1]
    try:
        ok = {"cold": step_cold, "cpu-snapshot": step_cpu_snapshot, "gpu-snapshot": step_gpu_snapshot,
              "gpu-snapshot-small": step_gpu_snapshot_small, "cpu-snapshot-visible": step_cpu_snapshot_visible,
              "runtime": step_runtime, "summary": step_summary}[step]()
    except Exception as e:  # noqa: BLE001 - record it, the next step still runs
        log(f"{step} failed: {type(e).__name__}: {e}")
        if step != "summary":
            save(step, {"ok": False, "error": f"{type(e).__name__}: {e}"})
        ok = False
    finally:
        cleanup()
    sys.exit(0 if ok in (None, True) else 1)
