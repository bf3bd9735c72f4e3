"""Queue hand-off latency: how long a value put by one process takes to
reach another process blocked in Queue.get, with thaw's wake-ups
(thaw._wakeup: inotify on the queue's signal file) and with looks alone
(the wake-ups turned off in the consumer: pauses growing to 0.1 s, as
before they existed). Both in one run, alternating; prints medians and
the ratio.

    /usr/bin/python3 bench/queue_bench.py [--rounds 20]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY = "/usr/bin/python3"

# The consumer waits in get(); each value carries the time it was put.
CONSUMER = r"""
import json, sys, time
import thaw
from thaw import _wakeup
if sys.argv[1] == "looks":
    _wakeup._LIBC = None   # every Waiter inactive: looks alone
q = thaw.Queue.from_name("bench", create_if_missing=True)
print("ready", flush=True)
out = []
for _ in range(int(sys.argv[2])):
    put_at = q.get(timeout=60)
    out.append(time.time() - put_at)
print(json.dumps(out), flush=True)
"""


def run(kind, rounds, env):
    consumer = subprocess.Popen([PY, "-c", CONSUMER, kind, str(rounds)], env=env, stdout=subprocess.PIPE,
                                text=True)
    assert consumer.stdout.readline().strip() == "ready"
    sys.path.insert(0, str(REPO / "python"))
    os.environ.update(env)
    import thaw
    q = thaw.Queue.from_name("bench", create_if_missing=True)
    for i in range(rounds):
        # Past the first pauses: a consumer that has waited a while, as
        # workers of a pipeline do.
        time.sleep(0.3 + (i % 5) * 0.037)
        q.put(time.time())
    out = json.loads(consumer.stdout.readline())
    consumer.wait(timeout=60)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=20)
    a = ap.parse_args()
    # On tmpfs where there is one: SQLite's fsyncs on this VM's disk vary by
    # tens of ms and would hide what is measured (what a put costs on disk
    # is the same on both sides).
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(dir=shm) as home:
        env = dict(os.environ, THAW_HOME=home, PYTHONPATH=str(REPO / "python"))
        times = {"woken": [], "looks": []}
        for _ in range(2):
            for kind in ("woken", "looks"):
                times[kind] += run(kind, a.rounds // 2, env)
    w, l = statistics.median(times["woken"]), statistics.median(times["looks"])
    print(f"Queue put -> blocked get in another process, median of {len(times['woken'])} each "
          f"(THAW_HOME on {shm or 'disk'})")
    for kind in ("woken", "looks"):
        t = sorted(times[kind])
        print(f"  {kind:6} {statistics.median(t) * 1000:7.2f} ms   max {t[-1] * 1000:7.2f} ms   all: {[round(x * 1000, 1) for x in t]}")
    print(f"  wake-ups are {l / w:.0f}x faster")


if __name__ == "__main__":
    main()
