"""Function-runtime demo: deploy a Modal-style torch class with a memory
snapshot, then call it with a cold start and restored from the snapshot,
and print both times and their ratio. Standard library only; run with
Debian's /usr/bin/python3 after scripts/build.sh."""
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
THAW = os.environ.get("THAW_BIN", str(REPO / "build" / "thaw"))
APP = REPO / "examples" / "modal_style" / "embedder.py"
CALL = ["embedder", "Embedder", "--method", "similarity", "--args", '["cold start", "warm start"]']


def timed_call(env, cold):
    """Seconds until the result is printed (the container is torn down after
    that, while `thaw call` exits), the result, and the runtime's log."""
    t0 = time.monotonic()
    p = subprocess.Popen([THAW, "call", *CALL, *(["--cold"] if cold else [])], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = b""
    while b"\n" not in out:
        chunk = os.read(p.stdout.fileno(), 65536)
        if not chunk:
            break
        out += chunk
    elapsed = time.monotonic() - t0
    rest, err = p.communicate(timeout=300)
    if p.returncode != 0:
        sys.exit(f"thaw call failed ({'cold' if cold else 'restored'}):\n{err.decode()}")
    return elapsed, json.loads((out + rest).decode().splitlines()[0]), err.decode()


def main():
    home = tempfile.mkdtemp(prefix="thaw-demo-")
    env = dict(os.environ, THAW_HOME=home)
    try:
        print(f"$ thaw deploy {APP.relative_to(REPO)}")
        subprocess.run([THAW, "deploy", str(APP)], env=env, check=True, timeout=600)
        rounds = 3
        cold = [timed_call(env, True) for _ in range(rounds)]
        warm = [timed_call(env, False) for _ in range(rounds)]
        answers = {json.dumps(c[1]) for c in cold + warm}
        print("\nlast restored call's runtime log:\n" + warm[-1][2].strip())
        c = statistics.median(t for t, _, _ in cold)
        w = statistics.median(t for t, _, _ in warm)
        print(f"\n{'call (time to first result)':<34}{'median of ' + str(rounds):>14}")
        print(f"{'cold start (no snapshot)':<34}{c * 1000:>11.0f} ms")
        print(f"{'restored from memory snapshot':<34}{w * 1000:>11.0f} ms")
        print(f"{'speed-up':<34}{c / w:>12.1f}x")
        print(f"answers identical: {len(answers) == 1} ({answers.pop()})")
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
