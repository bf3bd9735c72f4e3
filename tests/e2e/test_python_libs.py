"""Python programs using libraries that set up state at import or in a
setup phase (process pools, named semaphores, OpenSSL's generator),
checkpointed with --kill and restored: same output as an uninterrupted run.
Helpers from conftest.py (the zoo fixture tracks and kills every process)."""

import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PYTHON = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable


def _start(zoo, prog, *args):
    """Start a Python program; wait for its READY line."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "python"))
    p = subprocess.Popen([PYTHON, str(prog), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, bufsize=0, close_fds=True, env=env, cwd=prog.parent)
    zoo.procs.append(p)
    p.prog = prog.name
    buf = b""
    deadline = time.monotonic() + 60
    while b"READY\n" not in buf:
        left = deadline - time.monotonic()
        assert left > 0, f"{prog.name} printed no READY: {buf!r}"
        r, _, _ = select.select([p.stdout], [], [], left)
        if r:
            chunk = os.read(p.stdout.fileno(), 4096)
            assert chunk, f"{prog.name} exited before READY: {buf!r} {p.stderr.read()!r}"
            buf += chunk
    p.leftover = buf.partition(b"READY\n")[2]
    return p


def _image(zoo, prog):
    p = _start(zoo, prog)
    img = zoo.img_path()
    zoo.checkpoint(p, img, kill=True)
    p.wait(timeout=10)
    return img


SPAWN_POOL = '''
import multiprocessing as mp, sys
def sq(x): return x * x
if __name__ == "__main__":
    ctx = mp.get_context("spawn")
    pool = ctx.Pool(2)
    pool.map(sq, range(4))
    lock, ev = ctx.Lock(), ctx.Event()
    print("READY", flush=True)
    sys.stdin.readline()
    print(pool.map(sq, range(6)))
    with lock:
        ev.set()
    print(ev.is_set())
    pool.close(); pool.join()
    print("DONE")
'''


def test_a_spawn_pool_works_after_restore(zoo, thaw_bin, tmp_path):
    """A "spawn" pool's workers open its queues' named semaphores by name,
    which the parent made with sem_open: its maps show each under glibc's
    temporary name, deleted. Restored as a deleted file (a copy of its
    own), the parent no longer shared them with the workers, and the pool
    hung. Also the setup pipe each worker keeps, its writer closed, is the
    tree's own (restored as connected outside, it was refused)."""
    prog = tmp_path / "spawn_pool.py"
    prog.write_text(SPAWN_POOL)
    img = _image(zoo, prog)
    rc, out, err = zoo.restore(img, timeout=60)
    assert rc == 0 and out == "[0, 1, 4, 9, 16, 25]\nTrue\nDONE\n", f"rc={rc}\n{out}\n{err}"


OPENSSL_DRAWS = '''
import os, ssl, sys
import thaw._worker as worker
ssl.RAND_bytes(16)
print("READY", flush=True)
seed = int(sys.stdin.readline())
before = ssl.RAND_bytes(8).hex()
worker.reseed(seed)
print(before, ssl.RAND_bytes(8).hex())
'''


def test_the_worker_s_reseed_reaches_openssl(zoo, thaw_bin, tmp_path):
    """OpenSSL's generator reseeds itself when its pid changes (a fork); a
    restored process keeps its pid, so every restore of one image draws
    the same bytes, keys and nonces included. The runtime worker's reseed
    mixes fresh entropy in."""
    prog = tmp_path / "openssl_draws.py"
    prog.write_text(OPENSSL_DRAWS)
    img = _image(zoo, prog)
    draws = []
    for seed in (1, 2):
        rc, out, err = zoo.restore(img, data=f"{seed}\n".encode())
        assert rc == 0, f"rc={rc}\n{out}\n{err}"
        draws.append(out.split())
    assert draws[0][0] == draws[1][0], "without a reseed both restores draw the same (the cause)"
    assert draws[0][1] != draws[1][1], f"OpenSSL drew the same bytes after the reseed: {draws}"
