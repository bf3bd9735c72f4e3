"""Throughput of @batched against one input at a time, for a torch model on
one container, measured in one run.

The same MLP (4 layers of 2048x2048, fp32, random from a seed, built in
@enter(snap=True) so it is in the memory snapshot) is deployed twice with
max_containers=1: once as a plain method, once as a @batched(max_batch_size,
wait_ms) method. Each is sent the same N inputs, max_batch_size of them in
flight at a time (client threads calling .remote()); the bench prints the
wall time of them all, inputs per second, the batch
sizes the batched one ran, the speed-up, and whether both gave the same
answers. Standard library only; run as root with Debian's python after
scripts/build.sh:

    /usr/bin/python3 bench/batch_bench.py [--inputs 128] [--batch 32] [--wait-ms 20]
"""
import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

APP = '''
import thaw

app = thaw.App("batch-bench")
image = thaw.Image.debian_slim().pip_install("torch")
WIDTH = 2048


class Base:
    @thaw.enter(snap=True)
    def load(self):
        import torch
        torch.manual_seed(0)
        torch.set_num_threads(2)
        self.torch = torch
        self.model = torch.nn.Sequential(*[torch.nn.Linear(WIDTH, WIDTH) for _ in range(4)]).eval()

    def forward(self, seeds):
        torch = self.torch
        x = torch.stack([torch.randn(WIDTH, generator=torch.Generator().manual_seed(s)) for s in seeds])
        with torch.no_grad():
            y = self.model(x)
        return [round(float(row.sum()), 2) for row in y]


@app.cls(image=image, enable_memory_snapshot=True, max_containers=1)
class Single(Base):
    @thaw.method()
    def predict(self, seed):
        return [self.forward([seed])[0], 1]


@app.cls(image=image, enable_memory_snapshot=True, max_containers=1)
class Batched(Base):
    @thaw.batched(max_batch_size=BATCH, wait_ms=WAIT_MS)
    def predict(self, seeds):
        return [[v, len(seeds)] for v in self.forward(seeds)]
'''

# Both classes get the same requests in flight (IN_FLIGHT client threads,
# each calling .remote() in turn): the runtime queues those the container
# cannot take, so the plain method runs them one at a time, the batched one
# gathers them.
CLIENT = '''
import concurrent.futures, json, sys, time, thaw
cls_name, n, in_flight = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
predict = thaw.Cls.from_name("batch-bench", cls_name)().predict
predict.remote(10**6)  # a container up and warm before the clock starts
t = time.monotonic()
with concurrent.futures.ThreadPoolExecutor(in_flight) as pool:
    out = list(pool.map(predict.remote, range(n)))
print(json.dumps({"s": time.monotonic() - t, "out": out}))
'''


def run(cls_name, n, in_flight, env):
    cp = subprocess.run([sys.executable, "-c", CLIENT, cls_name, str(n), str(in_flight)], env=env,
                        capture_output=True,
                        text=True, timeout=900)
    if cp.returncode != 0:
        sys.exit(f"{cls_name} failed:\n{cp.stderr}")
    return json.loads(cp.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--thaw", default=os.environ.get("THAW_BIN", str(REPO / "build" / "thaw")))
    ap.add_argument("--inputs", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--wait-ms", type=int, default=20)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="thaw-batchbench-"))
    env = dict(os.environ, THAW_HOME=str(tmp / "home"), THAW_BIN=a.thaw, PYTHONPATH=str(REPO / "python"))
    env.pop("THAW_RUNTIME_SOCKET", None)
    try:
        app = tmp / "batch_bench_app.py"
        app.write_text(APP.replace("BATCH", str(a.batch)).replace("WAIT_MS", str(a.wait_ms)))
        subprocess.run([a.thaw, "deploy", str(app)], env=env, check=True, capture_output=True, timeout=600)
        single, batched = run("Single", a.inputs, a.batch, env), run("Batched", a.inputs, a.batch, env)
        sizes = collections.Counter(n for _, n in batched["out"])
        # Batched and single matrix products may round differently.
        diff = max(abs(x - y) for (x, _), (y, _) in zip(single["out"], batched["out"]))
        scale = max(abs(x) for x, _ in single["out"]) or 1.0
        print(f"{a.inputs} inputs, {a.batch} in flight, to one container of a 4x2048x2048 fp32 MLP "
              f"(@batched(max_batch_size={a.batch}, wait_ms={a.wait_ms}))")
        for name, r in (("one at a time", single), ("batched", batched)):
            print(f"  {name:14} {r['s']:7.2f} s   {a.inputs / r['s']:7.1f} inputs/s")
        print(f"  speed-up       {single['s'] / batched['s']:7.1f}x   answers agree: {diff <= 1e-4 * scale} "
              f"(largest difference {diff:.3g}; outputs up to {scale:.3g})")
        print(f"  batch sizes run (inputs in batches of that size): "
              f"{dict(sorted(sizes.items(), reverse=True))}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
