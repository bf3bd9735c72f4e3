"""Torch worker for tests/e2e/test_runtimes.py.

Imports torch, builds a small MLP with a fixed seed, prints "READY", then
answers each stdin line with one line of deterministic state:

    <counter> <model output sum> <torch rng draw> <python rng draw> <num_threads> <history digest>

"quit" prints "bye" and exits 0; EOF exits 0 silently. Every answer depends
on all earlier ones (counter, both random generators, the history digest), so
after a restore the answers must continue exactly where the original left off.
Run with Debian's python: /usr/bin/python3.
"""
import hashlib
import random
import sys

import torch


def main():
    torch.manual_seed(1234)
    rng = random.Random(42)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 256),
        torch.nn.ReLU(),
        torch.nn.Linear(256, 8),
    )
    model.eval()
    x = torch.randn(16, 64)
    history = hashlib.sha256(b"torch-worker")
    counter = 0
    with torch.no_grad():
        model(x)  # warm up
    print("READY", flush=True)
    for line in iter(sys.stdin.readline, ""):
        cmd = line.strip()
        if cmd == "quit":
            print("bye", flush=True)
            return 0
        counter += 1
        with torch.no_grad():
            out = model(x).sum().item()
        draw = torch.rand(1).item()
        pdraw = rng.random()
        history.update(f"{counter}:{cmd}:{out:.6f}".encode())
        print(f"{counter} {out:.6f} {draw:.8f} {pdraw:.8f} {torch.get_num_threads()} "
              f"{history.hexdigest()[:16]}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
