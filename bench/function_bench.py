"""Time to first result of the Modal-style torch class (examples/modal_style/
embedder.py), cold against restored from its memory snapshot, two ways:

  call   one `thaw call` process per call (the README demo): everything from
         spawning thaw until the result line on its stdout
  serve  calls from one SDK client to `thaw serve`, each landing on a fresh
         container (scaledown_window=1, and the bench waits until the previous
         container was stopped): `.remote()` until it returns

  web    HTTP requests to its @fastapi_endpoint method through `thaw serve
         --http`, each landing on a fresh container as for serve; and
         requests to a warm container (what HTTP adds to a call)

Cold means the same class deployed without enable_memory_snapshot (serve,
web) or `thaw call --cold` (call). Prints medians, the ratio and the runtime's
breakdown of the last restores. Standard library only; run as root with
Debian's python after scripts/build.sh:

    /usr/bin/python3 bench/function_bench.py [--rounds 5] [--thaw build/thaw]
"""
import argparse
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
APP = REPO / "examples" / "modal_style" / "embedder.py"
ARGS = ["cold start", "warm start"]
DECORATOR = '@app.cls(image=image, enable_memory_snapshot=True, gpu="a10g")'

CLIENT = """
import json, sys, time, thaw
app, log, rounds, before = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[5])
cls = thaw.Cls.from_name(app, "Embedder")
def stopped():
    with open(log) as f:
        return f.read().count("Stopping idle container")
for i in range(rounds):
    t = time.monotonic()
    value = cls().similarity.remote(*json.loads(sys.argv[4]))
    print(json.dumps({"s": time.monotonic() - t, "value": value}), flush=True)
    deadline = time.monotonic() + 60
    while stopped() < before + i + 1:  # the next call must start a container
        if time.monotonic() > deadline:
            sys.exit("the container was not scaled down")
        time.sleep(0.05)
"""


def first_line_time(argv, env):
    """Seconds from spawning argv until its first stdout line; (seconds, line,
    stderr, seconds until it exited)."""
    t0 = time.monotonic()
    p = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = b""
    while b"\n" not in out:
        chunk = os.read(p.stdout.fileno(), 65536)
        if not chunk:
            break
        out += chunk
    first = time.monotonic() - t0
    rest, err = p.communicate(timeout=300)
    if p.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed:\n{err.decode()}")
    return first, out.decode().strip(), err.decode(), time.monotonic() - t0


def breakdowns(log, n):
    lines = [l.strip() for l in log.splitlines() if l.strip().startswith("(container ") and ("engine" in l or "template" in l)]
    return lines[-n:]


def bench_call(thaw, env, rounds):
    call = [thaw, "call", "embedder", "Embedder", "--method", "similarity", "--args", json.dumps(ARGS)]
    res = {"cold": [], "restored": []}
    logs = []
    for _ in range(rounds):
        res["restored"].append(first_line_time(call, env))
        res["cold"].append(first_line_time(call + ["--cold"], env))
        logs.append(res["restored"][-1][2])
    return ({k: [r[0] for r in v] for k, v in res.items()},
            {r[1] for v in res.values() for r in v}, breakdowns("\n".join(logs), 2))


def start_serve(thaw, env, tmp, *extra):
    sock, log = tmp / "runtime.sock", tmp / "serve.log"
    with open(log, "w") as f:
        serve = subprocess.Popen([thaw, "serve", "--socket", str(sock), *extra], env=env, stdout=f, stderr=f,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 30
    while not sock.exists():
        if serve.poll() is not None or time.monotonic() > deadline:
            sys.exit("thaw serve did not start:\n" + log.read_text())
        time.sleep(0.05)
    return serve, log


def bench_serve(thaw, env, rounds, tmp):
    times, answers = {}, set()
    sock = tmp / "runtime.sock"
    serve, log = start_serve(thaw, env, tmp)
    try:
        for kind, app in (("restored", "embedder"), ("cold", "embedder-cold")):
            before = log.read_text().count("Stopping idle container")
            cp = subprocess.run([sys.executable, "-c", CLIENT, app, str(log), str(rounds), json.dumps(ARGS),
                                 str(before)],
                                env=dict(env, THAW_RUNTIME_SOCKET=str(sock)), capture_output=True, text=True,
                                timeout=600)
            if cp.returncode != 0:
                sys.exit(f"client failed:\n{cp.stderr}\n{log.read_text()}")
            rows = [json.loads(l) for l in cp.stdout.splitlines()]
            times[kind] = [r["s"] for r in rows]
            answers.update(json.dumps(r["value"]) for r in rows)
    finally:
        serve.terminate()
        serve.wait(timeout=60)
    return times, answers, breakdowns(log.read_text(), 2)


def bench_web(thaw, env, rounds, tmp):
    """Each request on a fresh container (as bench_serve), then 20 on a warm one."""
    times, answers = {}, set()
    serve, log = start_serve(thaw, env, tmp, "--http", "127.0.0.1:0")
    try:
        deadline = time.monotonic() + 30
        while not (m := re.search(r"Serving web endpoints at (http://[0-9.:]+)/", log.read_text())):
            if time.monotonic() > deadline:
                sys.exit("thaw serve --http did not say where it serves:\n" + log.read_text())
            time.sleep(0.05)
        query = "/Embedder.embed?text=" + ARGS[0].replace(" ", "%20")

        def get(app):
            t = time.monotonic()
            with urllib.request.urlopen(m.group(1) + "/" + app + query, timeout=300) as r:
                body = r.read()
            return time.monotonic() - t, body.decode()

        for kind, app in (("restored", "embedder"), ("cold", "embedder-cold")):
            times[kind] = []
            for _ in range(rounds):
                before = log.read_text().count("Stopping idle container")
                s, body = get(app)
                times[kind].append(s)
                answers.add(body)
                deadline = time.monotonic() + 60
                while log.read_text().count("Stopping idle container") < before + 1:
                    if time.monotonic() > deadline:
                        sys.exit("the container was not scaled down:\n" + log.read_text())
                    time.sleep(0.05)
        get("embedder")
        times["warm"] = [get("embedder")[0] for _ in range(20)]
        # The same requests on one kept connection, as HTTP clients send them.
        host, port = m.group(1)[len("http://"):].split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=300)
        times["warm kept"] = []
        for _ in range(20):
            t = time.monotonic()
            conn.request("GET", "/embedder" + query)
            answers.add(conn.getresponse().read().decode())
            times["warm kept"].append(time.monotonic() - t)
        conn.close()
    finally:
        serve.terminate()
        serve.wait(timeout=60)
    return times, answers, breakdowns(log.read_text(), 2)


def report(name, times, answers, lines):
    c, w = statistics.median(times["cold"]), statistics.median(times["restored"])
    print(f"\n{name}: time to first result, median of {len(times['cold'])}")
    for kind in ("cold", "restored"):
        print(f"  {kind:9} {statistics.median(times[kind]) * 1000:7.0f} ms   all: "
              f"{[round(t * 1000) for t in times[kind]]}")
    print(f"  speed-up  {c / w:7.1f}x   answers identical: {len(answers) == 1}")
    if "warm" in times:
        print(f"  warm container: {statistics.median(times['warm']) * 1000:.1f} ms per request "
              f"(median of {len(times['warm'])}, a new connection each)")
    if "warm kept" in times:
        print(f"  warm container, one kept connection: {statistics.median(times['warm kept']) * 1000:.1f} ms "
              f"per request (median of {len(times['warm kept'])}; "
              f"{statistics.median(times['warm']) / statistics.median(times['warm kept']):.2f}x)")
    for l in lines:
        print("  restore: " + l)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--thaw", default=os.environ.get("THAW_BIN", str(REPO / "build" / "thaw")))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--only", choices=["call", "serve", "web"])
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="thaw-fbench-"))
    env = dict(os.environ, THAW_HOME=str(tmp / "home"), THAW_BIN=a.thaw,
               PYTHONPATH=str(REPO / "python"))
    env.pop("THAW_RUNTIME_SOCKET", None)
    try:
        text = APP.read_text()
        if DECORATOR not in text:
            sys.exit(f"{APP} no longer has the decorator this bench edits: {DECORATOR}")
        snap = tmp / "embedder.py"
        snap.write_text(text.replace(DECORATOR, DECORATOR[:-1] + ", scaledown_window=1)"))
        cold = tmp / "embedder_cold.py"
        cold.write_text(snap.read_text().replace('modal.App("embedder")', 'modal.App("embedder-cold")')
                        .replace("enable_memory_snapshot=True", "enable_memory_snapshot=False")
                        # snap=True needs a snapshot; without one it is an ordinary @enter
                        .replace("@modal.enter(snap=True)", "@modal.enter()"))
        for f in (snap, cold):
            subprocess.run([a.thaw, "deploy", str(f)], env=env, check=True, capture_output=True, timeout=600)
        if a.only in (None, "call"):
            report("thaw call (one process per call)", *bench_call(a.thaw, env, a.rounds))
        if a.only in (None, "serve"):
            report("thaw serve (a fresh container per call)", *bench_serve(a.thaw, env, a.rounds, tmp))
        if a.only in (None, "web"):
            report("thaw serve --http (a fresh container per request)", *bench_web(a.thaw, env, a.rounds, tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
