"""A/B of restored `thaw call`s in one run: two thaw binaries, or one binary
with a kernel setting off and on, alternating call by call so that the
machine's drift hits both sides alike. Deploys examples/modal_style/
embedder.py (with side A's binary) into a temporary THAW_HOME, then times
each call to its first result line and to its exit. Prints medians.

    /usr/bin/python3 bench/ab_call.py --a OLD/thaw --b build/thaw [--rounds 12]
    /usr/bin/python3 bench/ab_call.py --toggle /sys/kernel/rcu_expedited   # A: 0, B: 1

Run as root (containers, and writing the toggle); the toggle is set back to
what it was at the end.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from function_bench import APP, REPO, first_line_time

CALL = ["call", "embedder", "Embedder", "--method", "similarity", "--args", '["cold start", "warm start"]']


def timed_call(thaw, env):
    """(ms to the first stdout line, ms to exit) of one restored call."""
    first, _, err, total = first_line_time([thaw, *CALL], env)
    if "Restored in" not in err:
        sys.exit(f"{thaw}: the call did not restore from the snapshot:\n{err}")
    return first * 1000, total * 1000


def main():
    default = os.environ.get("THAW_BIN", str(REPO / "build" / "thaw"))
    ap = argparse.ArgumentParser()
    ap.add_argument("--a", default=default, help="thaw binary of side A")
    ap.add_argument("--b", default=default, help="thaw binary of side B")
    ap.add_argument("--toggle", help="a file to write 0 into for side A and 1 for side B")
    ap.add_argument("--rounds", type=int, default=12)
    o = ap.parse_args()
    home = tempfile.mkdtemp(prefix="thaw-ab-")
    env = dict(os.environ, THAW_HOME=home)
    saved = Path(o.toggle).read_text().strip() if o.toggle else None
    sides = {"A": (o.a, "0"), "B": (o.b, "1")}
    times = {"A": [], "B": []}
    try:
        subprocess.run([o.a, "deploy", str(APP)], env=env, check=True, capture_output=True, timeout=600)
        for i in range(o.rounds):
            for side in ("A", "B") if i % 2 == 0 else ("B", "A"):
                thaw, value = sides[side]
                if o.toggle:
                    Path(o.toggle).write_text(value)
                times[side].append(timed_call(thaw, env))
    finally:
        if o.toggle:
            Path(o.toggle).write_text(saved)
        shutil.rmtree(home, ignore_errors=True)
    for side, (thaw, value) in sides.items():
        t = times[side]
        what = f"{o.toggle}={value}" if o.toggle else thaw
        print(f"{side} ({what}): first result median {statistics.median(x[0] for x in t):.0f} ms, "
              f"exit median {statistics.median(x[1] for x in t):.0f} ms; all {[round(x[0]) for x in t]}")


if __name__ == "__main__":
    main()
