#!/usr/bin/python3
"""How fast Python values move between a caller and its function: bytes of
1, 8 and 64 MiB sent to a function (`.remote(b)` returning its length) and
there and back (`.remote(b)` returning it), through `thaw run`. Each thaw
binary uses the SDK beside it (its ../python), so two checkouts compare in
one run, alternating:

  bench/payload_bench.py --thaw /tmp/old/build/thaw --thaw build/thaw [--rounds 3]
"""
import argparse
import re
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIZES = (1, 8, 64)

APP = """
import time
import thaw

app = thaw.App("payload-bench")


@app.function()
def echo(b):
    return b


@app.function()
def size(b):
    return len(b)


@app.local_entrypoint()
def main():
    size.remote(b"x")  # both containers up before the clock runs
    echo.remote(b"x")
    for mb in %r:
        b = b"\\x01" * (mb << 20)
        t = time.monotonic(); size.remote(b); up = time.monotonic() - t
        t = time.monotonic(); r = echo.remote(b); both = time.monotonic() - t
        assert r == b
        print(f"RESULT {mb} {mb / up:.1f} {2 * mb / both:.1f}")
""" % (SIZES,)


def run(thaw, app):
    cp = subprocess.run([thaw, "run", app], capture_output=True, text=True, timeout=600)
    if cp.returncode != 0:
        raise SystemExit(f"{thaw} run failed:\n{cp.stderr}")
    return {int(m[1]): (float(m[2]), float(m[3])) for m in re.finditer(r"RESULT (\d+) ([\d.]+) ([\d.]+)", cp.stdout)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--thaw", action="append", help="thaw binaries to compare (default build/thaw)")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    thaws = a.thaw or [str(ROOT / "build/thaw")]
    app = Path(tempfile.mkdtemp(prefix="thaw-payload-bench-")) / "app.py"
    app.write_text(APP)
    best = {t: {} for t in thaws}
    for _ in range(a.rounds):
        for t in thaws:
            for mb, (up, both) in run(t, app).items():
                old = best[t].get(mb, (0, 0))
                best[t][mb] = (max(old[0], up), max(old[1], both))
    print(f"{'MiB':>4}  " + "  ".join(f"{'up MiB/s':>9} {'both MiB/s':>10}" for _ in thaws) + "   (best of "
          f"{a.rounds}; columns: " + ", ".join(thaws) + ")")
    for mb in SIZES:
        row = "  ".join(f"{best[t][mb][0]:9.1f} {best[t][mb][1]:10.1f}" for t in thaws)
        ratio = ""
        if len(thaws) == 2:
            ratio = f"   ratio last/first: up {best[thaws[1]][mb][0] / best[thaws[0]][mb][0]:.1f}x, " \
                    f"both {best[thaws[1]][mb][1] / best[thaws[0]][mb][1]:.1f}x"
        print(f"{mb:4d}  {row}{ratio}")


if __name__ == "__main__":
    main()
