"""A tiny model server, the demo's stand-in for a function container.

Imports torch, builds a small MLP with a fixed seed and runs it once (that
is its cold start), prints "READY <seconds>", then answers every line read
from stdin with the sum of the model's output for a fixed input. The answer
is deterministic, so an answer after a restore must equal one from before.

Run with Debian's python:  /usr/bin/python3 examples/torch_worker.py
"""
import time

t0 = time.monotonic()

import sys  # noqa: E402

import torch  # noqa: E402


def main():
    torch.manual_seed(1234)
    model = torch.nn.Sequential(
        torch.nn.Linear(256, 1024),
        torch.nn.ReLU(),
        torch.nn.Linear(1024, 1024),
        torch.nn.ReLU(),
        torch.nn.Linear(1024, 16),
    )
    model.eval()
    x = torch.randn(32, 256)

    def answer():
        with torch.no_grad():
            return f"{model(x).sum().item():.6f}"

    answer()  # warm up: the first forward pass sets up torch's thread pool
    print(f"READY {time.monotonic() - t0:.3f}", flush=True)
    for line in iter(sys.stdin.readline, ""):
        cmd = line.strip()
        if cmd in ("quit", "exit"):
            break
        print(answer(), flush=True)


if __name__ == "__main__":
    main()
