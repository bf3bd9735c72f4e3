#!/usr/bin/python3
"""How often a `thaw checkpoint` killed with SIGKILL breaks its target.

Starts a zoo program, starts a checkpoint of it, kills thaw at a moment
drawn uniformly over a checkpoint's run, then lets the program finish and
compares its output with an uninterrupted run's. Prints broken / killed
mid-way. Compare binaries in one run: pass several --thaw.

  bench/kill_rate.py --prog signals --runs 200 --thaw build/thaw --thaw /tmp/old-thaw [-- --no-cow]
"""
import argparse
import os
import random
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--prog", default="signals", help="zoo program (build/tests/zoo)")
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--thaw", action="append", help="thaw binaries to compare (default build/thaw)")
    ap.add_argument("flags", nargs="*", help="extra checkpoint flags, after --")
    a = ap.parse_args()
    zoo = ROOT / "build/tests/zoo" / a.prog
    work = Path(tempfile.mkdtemp(prefix="thaw-kill-rate-"))
    env = dict(os.environ, THAW_TEST_TMP=str(work))

    def start():
        p = subprocess.Popen([zoo], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        line = p.stdout.readline()
        assert line.startswith(b"READY"), line
        return p

    expected = start().communicate(b"go\n")[0]
    try:
        for thaw in a.thaw or [str(ROOT / "build/thaw")]:
            img = work / "img"
            took = 1e9
            for _ in range(3):  # the quickest checkpoint: the span kills are drawn over
                p = start()
                t0 = time.monotonic()
                subprocess.run([thaw, "checkpoint", "--pid", str(p.pid), "--out", img, *a.flags], capture_output=True)
                took = min(took, time.monotonic() - t0)
                p.communicate(b"go\n")
                shutil.rmtree(img, True)
            broken = killed = 0
            for _ in range(a.runs):
                p = start()
                c = subprocess.Popen([thaw, "checkpoint", "--pid", str(p.pid), "--out", img, *a.flags],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(random.random() * took)
                c.kill()
                c.wait()
                killed += c.returncode == -9
                for d in work.glob("img*"):
                    shutil.rmtree(d, True)
                if p.poll() is not None:
                    broken += 1
                    continue
                out = p.communicate(b"go\n")[0]
                broken += p.returncode != 0 or out != expected
            print(f"{thaw}: {a.prog} {' '.join(a.flags)}: broken {broken} / killed mid-way {killed} "
                  f"(of {a.runs}); a checkpoint took {took * 1000:.1f} ms")
    finally:
        shutil.rmtree(work, True)


if __name__ == "__main__":
    main()
